"""rnnkit.tasks.seq2seq.data: readers and their errors, the tutorial's normalisation and filter, the
addition generator, sentence tokenizers."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.seq2seq.data import (
    SentenceTokenizer,
    addition_pairs,
    filter_pairs,
    normalize_string,
    read_pairs,
    read_tatoeba,
    split_pairs,
    write_pairs,
)
from rnnkit.text.vocab import UnknownTokenWarning


def test_read_pairs(tmp_path):
    p = tmp_path / "p.tsv"
    p.write_bytes(b"Go.\tVa !\r\n\n I am cold. \tJ'ai froid.\tCC-BY 2.0 (France)\n")
    assert read_pairs(p) == [("Go.", "Va !"), ("I am cold.", "J'ai froid.")]
    assert write_pairs(tmp_path / "w.tsv", read_pairs(p)).read_text() == \
        "Go.\tVa !\nI am cold.\tJ'ai froid.\n"


@pytest.mark.parametrize("text, message", [
    ("a\tb\nno tab here\n", "p.tsv:2: expected 'source<TAB>target', found no tab in 'no tab here'"),
    ("a\tb\n\nc\t \n", "p.tsv:3: empty target side in 'c\\t '"),
    ("\tb\n", "p.tsv:1: empty source side"),
    ("\n\n", "p.tsv: holds no sentence pairs"),
])
def test_read_pairs_errors(tmp_path, text, message):
    p = tmp_path / "p.tsv"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        read_pairs(p)
    assert message in str(e.value)


def test_read_pairs_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match="is a directory"):
        read_pairs(tmp_path)
    (tmp_path / "b.tsv").write_bytes(b"a\t\xff\n")
    with pytest.raises(DataError, match="not valid utf-8 text"):
        read_pairs(tmp_path / "b.tsv")
    (tmp_path / "z.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip archive"):
        read_pairs(tmp_path / "z.zip")


def test_normalize_string():
    assert normalize_string("I'm cold.") == "i m cold ."
    assert normalize_string("  Qu'est-ce que c'est?!  ") == "qu est ce que c est ? !"
    assert normalize_string("Ça, c'est très bien !") == "ca c est tres bien !"
    assert normalize_string("He's 19.") == "he s ."
    assert normalize_string(normalize_string("Hi !")) == normalize_string("Hi !") == "hi !"


def test_read_tatoeba_zip(tmp_path):
    lines = ["Go.\tVa !",
             "I'm cold.\tJ'ai froid.",
             "He's a teacher.\tIl est enseignant.",
             "They are one two three four five six seven.\tIls sont un deux trois.",
             "They are one two three four five six.\tIls sont un deux trois.",
             "You're late!\tTu es en retard !"]
    z = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("_about.txt", "about")
        f.writestr("fra.txt", "\n".join(lines) + "\n")
    pairs = read_tatoeba(z)
    assert pairs == [("i m cold .", "j ai froid ."),
                     ("he s a teacher .", "il est enseignant ."),
                     ("they are one two three four five six .", "ils sont un deux trois ."),
                     ("you re late !", "tu es en retard !")]
    assert read_tatoeba(z, reverse=True)[0] == ("j ai froid .", "i m cold .")
    assert read_pairs(z)[0] == ("Go.", "Va !")
    with pytest.raises(DataError, match="has no member 'deu.txt'"):
        read_tatoeba(z, member="deu.txt")


def test_filter_and_split():
    pairs = [("a b c", "x"), ("a", "x y z w"), ("b a", "y")]
    assert filter_pairs(pairs, max_src_len=2) == pairs[1:]
    assert filter_pairs(pairs, max_tgt_len=2, src_prefixes=("a",)) == pairs[:1]
    assert filter_pairs(pairs, max_src_len=3, tokenize=list) == pairs[1:]
    many = [(str(i), str(i)) for i in range(100)]
    tr, va, te = split_pairs(many, (0.8, 0.1, 0.1), seed=3)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    assert sorted(tr + va + te) == sorted(many)
    assert split_pairs(many, (0.8, 0.1, 0.1), seed=3)[1] == va
    with pytest.raises(DataError, match="sum to at most 1"):
        split_pairs(many, (0.8, 0.3))


def test_addition_pairs():
    rng = np.random.default_rng(0)
    pairs = addition_pairs(3000, 3, rng)
    keys = set()
    for q, a in pairs:
        x, y = q.split("+")
        assert 1 <= len(x) <= 3 and 1 <= len(y) <= 3 and int(a) == int(x) + int(y)
        assert str(int(x)) == x  # no leading zeros
        keys.add((min(int(x), int(y)), max(int(x), int(y))))
    assert len(keys) == 3000  # a+b and b+a are one question
    lengths = np.array([len(q.split("+")[0]) for q, _ in pairs])
    assert {1, 2, 3} <= set(lengths) and (lengths == 3).mean() > 0.3
    more = addition_pairs(500, 3, rng, exclude=pairs)
    assert not keys & {tuple(sorted(int(v) for v in q.split("+"))) for q, _ in more}
    assert addition_pairs(5, 3, np.random.default_rng(1)) == \
        addition_pairs(5, 3, np.random.default_rng(1))
    assert len(addition_pairs(55, 1, rng)) == 55  # every question with one-digit operands
    with pytest.raises(DataError, match="only 55 distinct questions"):
        addition_pairs(56, 1, rng)


def test_sentence_tokenizer():
    tok = SentenceTokenizer("char").fit(["535+61", "1+1"])
    assert tok.vocab.tokens[:4] == ("<pad>", "<unk>", "<bos>", "<eos>")
    ids = tok.encode("61+5")
    assert tok.decode(ids) == "61+5"
    assert tok.decode(list(ids) + [3, 4, 4]) == "61+5"  # stops at <eos>
    with pytest.warns(UnknownTokenWarning, match="1 of 3 tokens .* first: '9'"):
        assert tok.encode("9+1").tolist()[0] == 1
    back = SentenceTokenizer.from_dict(tok.to_dict())
    assert back.vocab == tok.vocab and back.level == "char"
    w = SentenceTokenizer("word").fit(["je suis la", "je suis"], min_count=2)
    assert w.vocab.tokens[4:] == ("je", "suis")
    assert w.decode(w.encode("je suis la", warn=False)) == "je suis <unk>"
    with pytest.raises(DataError, match="level must be 'char' or 'word'"):
        SentenceTokenizer("byte")
    with pytest.raises(DataError, match="not fitted"):
        SentenceTokenizer("word").encode("a")
    with pytest.raises(DataError, match="expected specials"):
        SentenceTokenizer.from_dict({"level": "char", "vocab": {"tokens": ["<pad>", "a"],
                                                                "specials": ["<pad>"]}})
