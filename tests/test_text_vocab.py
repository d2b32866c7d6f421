"""Vocab and the char/word tokenizers."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.text import (
    BOS,
    EOS,
    PAD,
    UNK,
    CharTokenizer,
    UnknownTokenWarning,
    Vocab,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_dict,
)

# ---------------------------------------------------------------- Vocab


def test_build_orders_specials_then_count_then_token():
    v = Vocab.build(["c", "b", "a", "b", "c", "b", "d"], specials=(PAD, UNK))
    # b:3, c:2, then a and d (1 each) in token order
    assert v.tokens == (PAD, UNK, "b", "c", "a", "d")
    assert [v.index(t) for t in v.tokens] == list(range(6))
    assert v.stoi["c"] == 3 and len(v) == 6


def test_build_is_independent_of_insertion_order():
    words = ["x", "y", "z", "y", "z", "z", "w", "w", "w", "v"]
    a = Vocab.build(words)
    b = Vocab.build(Counter(reversed(words)))
    c = Vocab.build(dict(sorted(Counter(words).items())))
    assert a == b == c


def test_min_count_and_max_size_count_specials():
    counts = {"a": 5, "b": 4, "c": 3, "d": 1}
    assert Vocab.build(counts, min_count=3, specials=(UNK,)).tokens == (UNK, "a", "b", "c")
    v = Vocab.build(counts, max_size=3, specials=(PAD, UNK))
    assert v.tokens == (PAD, UNK, "a") and len(v) == 3
    assert Vocab.build(counts, max_size=2, specials=(PAD, UNK)).tokens == (PAD, UNK)
    with pytest.raises(DataError, match="max_size"):
        Vocab.build(counts, max_size=1, specials=(PAD, UNK))
    with pytest.raises(DataError, match="min_count"):
        Vocab.build(counts, min_count=0)


def test_special_token_in_text_keeps_its_special_id():
    v = Vocab.build(["<unk>"] * 10 + ["a"], specials=(PAD, UNK, BOS, EOS))
    assert v.tokens == (PAD, UNK, BOS, EOS, "a")
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert v.encode(["a", "<unk>"]).tolist() == [4, 1]


def test_encode_maps_unknown_to_unk_with_one_warning():
    v = Vocab.build(["a", "b", "c"])
    tokens = ["a", "zz", "b", "yy", "zz", "q1", "q2", "q3", "q4", "q5"]
    with pytest.warns(UnknownTokenWarning) as record:
        ids = v.encode(tokens)
    assert len(record) == 1
    message = str(record[0].message)
    assert "8 of 10 tokens" in message
    assert "'zz', 'yy', 'q1', 'q2', 'q3'" in message and "q4" not in message
    assert record[0].filename == __file__  # points at the caller
    assert ids.dtype == np.int64
    assert ids.tolist() == [v.index("a"), 1, v.index("b")] + [1] * 7


def test_encode_warn_false_and_error_mode():
    v = Vocab.build(["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert v.encode(["a", "nope"], warn=False).tolist() == [v.index("a"), v.unk_id]
        assert v.encode(iter(["b", "a"])).tolist() == [v.index("b"), v.index("a")]
        assert v.encode([]).shape == (0,)
    with pytest.raises(DataError, match="'nope' at position 1"):
        v.encode(["a", "nope"], unknown="error")
    with pytest.raises(DataError, match="unknown must be"):
        v.encode(["a"], unknown="skip")
    no_unk = Vocab.build(["a"], specials=())
    with pytest.raises(DataError, match="no <unk> token"):
        no_unk.encode(["b"])


def test_decode_and_index():
    v = Vocab.build(["a", "b", "b"], specials=(UNK,))
    assert v.decode(np.array([1, 2, 0])) == ["b", "a", UNK]
    assert v.decode([]) == []
    with pytest.raises(DataError, match=r"ids must be in 0\.\.2"):
        v.decode([3])
    with pytest.raises(DataError, match="integer ids"):
        v.decode([0.5])
    with pytest.raises(DataError, match="'zz' is not in the vocabulary"):
        v.index("zz")


def test_json_round_trip():
    v = Vocab.build(["the", "cat", "sat", "on", "the", "mat", "é", "漢"])
    back = Vocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.stoi == v.stoi and back.specials == v.specials


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1, 2], "expected a dict"),
        ({"tokens": ["a"]}, "expected keys"),
        ({"tokens": ["a"], "specials": [], "extra": 1}, "expected keys"),
        ({"tokens": "ab", "specials": []}, "list of strings"),
        ({"tokens": ["a", 3], "specials": []}, "list of strings"),
        ({"tokens": ["a", "a"], "specials": []}, "more than once"),
        ({"tokens": ["a", UNK], "specials": [UNK]}, "must be the first"),
    ],
)
def test_from_dict_rejects_malformed(bad, match):
    with pytest.raises(DataError, match=match):
        Vocab.from_dict(bad)


# ---------------------------------------------------------------- tokenizers


def test_special_ids_are_shared_by_both_levels():
    c = CharTokenizer().fit("ab")
    w = WordTokenizer().fit("a b")
    assert c.vocab.tokens[:3] == w.vocab.tokens[:3] == (PAD, UNK, BOS)
    assert w.vocab.eos_id == 3 and EOS not in c.vocab
    assert len(c.vocab) == 3 + 2 and len(w.vocab) == 4 + 2
    assert (c.level, w.level) == ("char", "word")


def test_char_round_trip_is_exact():
    text = "Hello, wörld!\n\tTabs  and  spaces \n漢字 and emoji 🙂\n\n"
    tok = CharTokenizer().fit(text)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tok.decode(ids) == text
    assert len(tok.vocab) == len(set(text)) + 3


def test_char_unknown_characters():
    tok = CharTokenizer().fit("abc")
    with pytest.warns(UnknownTokenWarning, match="2 of 4 tokens") as record:
        ids = tok.encode("axcy")
    assert record[0].filename == __file__
    assert ids.tolist() == [tok.vocab.index("a"), 1, tok.vocab.index("c"), 1]
    assert tok.decode(ids) == "a\ufffdc\ufffd"
    assert tok.decode([0, 2, tok.vocab.index("b")]) == "b"  # <pad> and <bos> vanish


def test_word_tokenize_appends_eos_per_line():
    w = WordTokenizer()
    assert w.tokenize(" a b \n c\n") == ["a", "b", EOS, "c", EOS]
    assert w.tokenize("a\n\nb") == ["a", EOS, EOS, "b", EOS]  # empty line, no final newline
    assert w.tokenize("a\r\nb\r\n") == ["a", EOS, "b", EOS]
    assert w.tokenize("") == [] and w.tokenize("\n") == [EOS]


def test_word_round_trip_and_min_count():
    text = " the cat sat\n the dog sat\n a cat\n"
    w = WordTokenizer().fit(text)
    assert w.decode(w.encode(text)) == "the cat sat\nthe dog sat\na cat\n"
    w2 = WordTokenizer().fit(text, min_count=2)
    assert w2.vocab.tokens == (PAD, UNK, BOS, EOS, "cat", "sat", "the")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = w2.encode(text, warn=False)
    assert w2.decode(ids) == "the cat sat\nthe <unk> sat\n<unk> cat\n"
    w3 = WordTokenizer().fit(text, max_size=6)  # 4 specials + the two most frequent
    assert w3.vocab.tokens[4:] == ("cat", "sat")


def test_unfitted_tokenizer_says_so():
    with pytest.raises(DataError, match="not fitted"):
        WordTokenizer().encode("a")


@pytest.mark.parametrize("level", ["char", "word"])
def test_tokenizer_json_round_trip(level):
    text = "one two three\ntwo three\n"
    tok = make_tokenizer(level).fit(text)
    back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert type(back) is type(tok) and back.vocab == tok.vocab
    assert np.array_equal(back.encode(text), tok.encode(text))


def test_tokenizer_from_dict_rejects_malformed():
    char = CharTokenizer().fit("ab").to_dict()
    with pytest.raises(DataError, match="unknown level"):
        tokenizer_from_dict({**char, "level": "byte"})
    with pytest.raises(DataError, match="'level' key"):
        tokenizer_from_dict({"vocab": char["vocab"]})
    with pytest.raises(DataError, match="expected specials"):
        tokenizer_from_dict({**char, "level": "word"})
    with pytest.raises(DataError, match="expected level"):
        WordTokenizer.from_dict(char)
    with pytest.raises(DataError, match="unknown tokenizer level"):
        make_tokenizer("bpe")
