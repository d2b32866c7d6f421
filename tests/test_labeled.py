"""Labelled text: rnnkit.text.classification and rnnkit.text.tagged readers on small files
(every bad input named by file and line), rnnkit.text.vectors, rnnkit.text.io.iter_lines, and
the padding and bucketing of rnnkit.text.batching."""

from __future__ import annotations

import gzip
import io
import sys
import warnings

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.text.batching import bucket_batches, epoch_rng, num_bucket_batches, pad_batch
from rnnkit.text.classification import check_label_counts, read_classification
from rnnkit.text.io import SkippedWarning, iter_lines
from rnnkit.text.tagged import is_bio, read_tagged
from rnnkit.text.vectors import load_vectors
from rnnkit.text.vocab import build_vocab


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


# -- classification -----------------------------------------------------------------------
def test_space_format_as_in_sst(tmp_path):
    p = write(tmp_path, "sst.txt", "1 a fine film\n\n0 dull , dull\n")
    d = read_classification(p)
    assert d.texts == [["a", "fine", "film"], ["dull", ",", "dull"]]
    assert d.labels == ["1", "0"] and d.lines == [1, 3]


def test_tsv_format_and_auto_detection(tmp_path):
    p = write(tmp_path, "data.txt", "pos\tGreat  Movie\r\nneg\tbad one\n")
    d = read_classification(p, lowercase=True)
    assert d.texts == [["great", "movie"], ["bad", "one"]] and d.labels == ["pos", "neg"]


def test_csv_with_named_columns(tmp_path):
    p = write(tmp_path, "d.csv", 'id,review,stars\n1,"good, really",5\n2,awful,1\n')
    d = read_classification(p, label_column="stars", text_column="review")
    assert d.texts == [["good,", "really"], ["awful"]] and d.labels == ["5", "1"]
    assert d.lines == [2, 3]


def test_gzip_files_are_read(tmp_path):
    p = tmp_path / "d.txt.gz"
    p.write_bytes(gzip.compress(b"1 yes\n0 no\n"))
    assert read_classification(p).labels == ["1", "0"]


@pytest.mark.parametrize("name, text, fmt, match", [
    ("a.txt", "1 good\nlonely\n", "space", r"a\.txt:2: expected 'label text', found one field"),
    ("b.tsv", "pos\tgood\nno tab here\n", "auto", r"b\.tsv:2: expected 'label<TAB>text'"),
    ("c.tsv", "pos\tgood\n\tno label\n", "tsv", r"c\.tsv:2: no label"),
    ("d.tsv", "pos\tgood\nneg\t   \n", "tsv", r"d\.tsv:2: label 'neg' but no text"),
    ("e.csv", "label,body\n1,x\n", "auto", r"e\.csv:1: no text column 'text'.*'body'"),
    ("f.csv", "label,text\n1,x\n2\n", "csv", r"f\.csv:3: label '2' but no text"),
    ("g.txt", "\n\n", "space", r"g\.txt: no examples found"),
    ("h.txt", "", "space", r"h\.txt: file is empty"),
])
def test_bad_classification_lines_name_file_and_line(tmp_path, name, text, fmt, match):
    p = write(tmp_path, name, text)
    with pytest.raises(DataError, match=match):
        read_classification(p, fmt)


def test_mixed_encodings_are_an_error_naming_the_line(tmp_path):
    p = write(tmp_path, "mixed.txt", "1 café\n".encode() + "0 naïve\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"mixed\.txt: cannot decode byte 0xef .*line 2"):
        read_classification(p)
    assert read_classification(p, encoding="latin-1").texts[1] == ["naïve"]


def test_unseen_labels_at_evaluation_time(tmp_path):
    p = write(tmp_path, "dev.txt", "1 fine\n7 odd\n")
    with pytest.raises(DataError, match=r"dev\.txt:2: label '7' was never seen in training"):
        read_classification(p, labels=["0", "1"])


def test_skip_mode_counts_bad_lines_in_one_warning(tmp_path):
    p = write(tmp_path, "s.txt", "1 good\nlonely\n0 bad\nalone\n")
    with pytest.warns(SkippedWarning, match=r"skipped 2 bad lines \(first at line 2"):
        d = read_classification(p, on_error="skip")
    assert d.labels == ["1", "0"] and d.skipped == 2


def test_a_line_missing_its_label_is_caught_by_label_counts(tmp_path):
    """'this movie rocks' without a label reads as label 'this': refused in training."""
    p = write(tmp_path, "t.txt", "1 good\n0 bad\n1 nice\nthis movie rocks\n0 poor\n")
    d = read_classification(p)
    with pytest.raises(DataError, match=r"t\.txt:4: label 'this' occurs only 1 time"):
        check_label_counts(d)
    check_label_counts(d, min_count=1)


# -- tagging ----------------------------------------------------------------------------------
CONLLU = """# sent_id = 1
# text = I'm here.
1-2	I'm	_	_	_	_	_	_	_	_
1	I	I	PRON	PRP	_	3	nsubj	_	_
2	'm	be	AUX	VBP	_	3	cop	_	_
3	here	here	ADV	RB	_	0	root	_	_
3.1	gone	go	VERB	VBN	_	_	_	3:conj	_
4	.	.	PUNCT	.	_	3	punct	_	_

# sent_id = 2
1	Yes	yes	INTJ	UH	_	0	root	_	_
"""


def test_conllu_upos_and_xpos_skip_ranges_and_empty_nodes(tmp_path):
    p = write(tmp_path, "x.conllu", CONLLU)
    d = read_tagged(p)
    assert d.sentences == [["I", "'m", "here", "."], ["Yes"]]
    assert d.tags == [["PRON", "AUX", "ADV", "PUNCT"], ["INTJ"]]
    assert d.lines == [1, 10]
    assert read_tagged(p, column="xpos").tags[0] == ["PRP", "VBP", "RB", "."]


def test_conllu_is_detected_without_its_suffix(tmp_path):
    p = write(tmp_path, "x.txt", CONLLU)
    assert read_tagged(p).tags[1] == ["INTJ"]


@pytest.mark.parametrize("bad, match", [
    ("1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\n", r"x\.conllu:2: expected 10 tab-separated .*, got 9"),
    ("1\tI\tI\t_\tPRP\t_\t3\tnsubj\t_\t_\n", r"x\.conllu:2: no UPOS tag"),
    ("a\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n", r"x\.conllu:2: token ID 'a' is not a number"),
])
def test_bad_conllu_names_file_and_line(tmp_path, bad, match):
    p = write(tmp_path, "x.conllu", "# c\n" + bad)
    with pytest.raises(DataError, match=match):
        read_tagged(p)


def test_empty_sentence_is_skipped_with_a_warning(tmp_path):
    p = write(tmp_path, "x.conllu", "# sent_id = 0\n# text =\n\n" + CONLLU)
    with pytest.warns(SkippedWarning, match="skipped 1 empty sentence"):
        d = read_tagged(p)
    assert len(d) == 2 and d.empty == 1


def test_word_tag_format(tmp_path):
    p = write(tmp_path, "ner.txt", "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n"
                                   "Peter B-PER\nBlackburn I-PER\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a document marker is not an empty sentence
        d = read_tagged(p)
    assert d.sentences == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert d.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert is_bio({t for s in d.tags for t in s}) and not is_bio({"NOUN", "VERB"})


def test_word_tag_missing_tag_and_unseen_tag(tmp_path):
    p = write(tmp_path, "wt.txt", "the DT\ncat\n")
    with pytest.raises(DataError, match=r"wt\.txt:2: expected 'word tag', found one field"):
        read_tagged(p)
    p = write(tmp_path, "wt2.txt", "the DT\ncat NN\n\na DT\n")
    with pytest.raises(DataError, match=r"wt2\.txt:2: tag 'NN' was never seen in training"):
        read_tagged(p, tags=["DT"])
    with pytest.warns(SkippedWarning, match="skipped 1 bad sentences"):
        d = read_tagged(p, tags=["DT"], on_error="skip")
    assert d.sentences == [["a"]]


# -- vocabularies and batches --------------------------------------------------------------
def test_vocab_specials_first():
    v = build_vocab([["b", "a"], ["b"]])
    assert v.tokens[:2] == ("<pad>", "<unk>") and v.tokens[2] == "b"


def test_pad_batch_and_empty_sequences():
    ids, lengths = pad_batch([np.array([1, 2]), np.array([3])])
    assert ids.tolist() == [[1, 2], [3, 0]] and lengths.tolist() == [2, 1]
    with pytest.raises(DataError, match="at least one token"):
        pad_batch([[1], []])


def test_bucket_batches_cover_everything_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, 1000)
    batches = bucket_batches(lengths, 16, epoch_rng(3, 1), pool=10)
    assert len(batches) == num_bucket_batches(1000, 16, pool=10)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 8  # random batches would spread over ~45
    same = bucket_batches(lengths, 16, epoch_rng(3, 1), pool=10)
    other = bucket_batches(lengths, 16, epoch_rng(3, 2), pool=10)
    assert all(np.array_equal(a, b) for a, b in zip(batches, same))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))
    for n in (1, 15, 16, 17, 160, 161):
        assert len(bucket_batches(np.ones(n), 16, epoch_rng(0, 1), pool=10)) == \
            num_bucket_batches(n, 16, pool=10)


def test_evaluation_batches_sorted_by_length():
    batches = bucket_batches([3, 1, 2, 5], 2)
    assert [b.tolist() for b in batches] == [[1, 2], [0, 3]]


# -- word vectors ----------------------------------------------------------------------------
def test_glove_and_word2vec_files(tmp_path):
    vocab = build_vocab([["the", "Cat", "dog", "zebra"]])
    glove = write(tmp_path, "g.txt", "the 1 2\ncat 3 4\ndog 5 6\nnew 7 8\n")
    vecs, rows, D = load_vectors(glove, vocab)
    assert D == 2
    got = {vocab.tokens[r]: v.tolist() for r, v in zip(rows, vecs)}
    assert got == {"the": [1, 2], "Cat": [3, 4], "dog": [5, 6]}  # Cat via its lowercase form
    w2v = tmp_path / "w.txt.gz"
    w2v.write_bytes(gzip.compress(b"2 3\nthe 1 2 3\nzebra 0.5 0 1\n"))
    vecs, rows, D = load_vectors(w2v, vocab)
    assert D == 3 and len(rows) == 2


@pytest.mark.parametrize("text, match", [
    ("the 1 2\ncat 3\n", r"v\.txt:2: expected a word and 2 numbers, got 2 fields"),
    ("the 1 2\ncat 3 x\n", r"v\.txt:2: the vector of 'cat' holds a field that is not a num"),
    ("", r"v\.txt: no vectors found"),
])
def test_bad_vector_files(tmp_path, text, match):
    vocab = build_vocab([["the", "cat"]])
    with pytest.raises(DataError, match=match):
        load_vectors(write(tmp_path, "v.txt", text), vocab)


def test_vectors_fill_the_embedding_rows():
    from rnnkit.tasks.classify.model import ClassifierConfig, SequenceClassifier

    model = SequenceClassifier(ClassifierConfig(vocab_size=5, num_classes=2, embed_size=2),
                               rng=0)
    model.set_embeddings(np.array([[1.0, 2.0]]), np.array([3]))
    assert model.embed.param["W"][3].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="3 dimensions but the embedding size is 2"):
        model.set_embeddings(np.ones((1, 3)), np.array([3]))


# -- streaming input ----------------------------------------------------------------------------
def test_iter_lines_streams_and_names_bad_bytes(tmp_path, monkeypatch):
    p = write(tmp_path, "in.txt", b"\xef\xbb\xbfone\r\ntwo\n\xff\n")
    it = iter_lines(p)
    assert next(it) == (1, "one") and next(it) == (2, "two")
    with pytest.raises(DataError, match=r"in\.txt:3: cannot decode byte 0xff"):
        next(it)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a b\n\nc\n")))
    assert list(iter_lines("-")) == [(1, "a b"), (2, ""), (3, "c")]


def test_no_warnings_on_clean_files(tmp_path):
    p = write(tmp_path, "ok.txt", "1 a\n0 b\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_classification(p)
