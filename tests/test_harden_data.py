"""Data that gave wrong results: a word-level LM split inside a word, a tagger with one tag or
ragged columns, inspect on an n-gram checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.lm.data import load_texts
from rnnkit.text.tagged import read_tagged


def test_word_level_single_file_splits_at_a_line_boundary(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("".join(f"alpha{i} beta{i} gamma{i}\n" for i in range(40)), encoding="utf-8")
    texts, level, _ = load_texts(str(p), level="word", valid_fraction=0.13)
    assert level == "word"
    assert texts["train"].endswith("\n") and texts["train"] + texts["valid"] == p.read_text()


def test_word_level_single_line_splits_at_a_word_boundary(tmp_path):
    p = tmp_path / "w.txt"
    words = [f"word{i:03d}" for i in range(100)]
    p.write_text(" ".join(words), encoding="utf-8")
    texts, _, _ = load_texts(str(p), level="word", valid_fraction=0.1003)
    assert texts["train"].split() + texts["valid"].split() == words


def test_tagger_file_with_ragged_columns_names_the_line(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("the DET\nran VERB\nran X EXTRA\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t.txt:3: expected 2 columns"):
        read_tagged(p)


def test_conll_2003_columns_stay_accepted(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n", encoding="utf-8")
    assert read_tagged(p).tags == [["B-ORG", "O"]]


def test_tagger_with_a_single_tag_is_refused(tmp_path, capsys):
    from rnnkit.cli.main import main

    p = tmp_path / "t.txt"
    p.write_text("the X\ndog X\n\na X\ncat X\n", encoding="utf-8")
    code = main(["train-tagger", "--train", str(p), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "at least 2 tags" in err


def test_inspect_on_an_ngram_checkpoint_is_one_line(tmp_path, capsys):
    from rnnkit.cli.main import main

    p = tmp_path / "t.txt"
    p.write_text("the quick brown fox jumps over the lazy dog\n" * 10, encoding="utf-8")
    assert main(["train", "--model", "ngram", "--data", str(p), "--out",
                 str(tmp_path / "ng"), "--order", "2"]) == 0
    capsys.readouterr()
    for action in (["gradients"], ["spectrum"], ["gates"], ["activations"]):
        extra = [str(p), "--out", str(tmp_path / "a.html")] if action == ["activations"] else []
        code = main(["inspect", *action, str(tmp_path / "ng"), *extra])
        err = capsys.readouterr().err
        assert code == 2, (action, err)
        assert "no RNN/GRU/LSTM layers" in err and len(err.strip().splitlines()) == 1
    assert np  # numpy imported for parity with the other files


@pytest.mark.parametrize("value", ["nan", "inf", "1e40", "-1e40"])
def test_word_vectors_with_non_finite_values_name_the_file_and_line(tmp_path, value):
    import warnings

    from rnnkit.text.vectors import load_vectors
    from rnnkit.text.vocab import Vocab

    p = tmp_path / "v.txt"
    p.write_text(f"the 0.1 0.2\ndog 0.3 {value}\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out either
        with pytest.raises(DataError, match=r"v\.txt:2: the vector of 'dog' holds nan, inf"):
            load_vectors(p, Vocab(["the", "dog"]))


def test_iter_lines_on_a_directory_says_so(tmp_path):
    from rnnkit.text.io import iter_lines

    with pytest.raises(DataError, match="is a directory; expected a text file"):
        list(iter_lines(tmp_path))


def test_activations_on_a_tagger_name_the_checkpoint(tmp_path, capsys):
    from rnnkit.cli.main import main

    p = tmp_path / "t.txt"
    p.write_text("the DET\ndog NOUN\n\na DET\ncat NOUN\n", encoding="utf-8")
    assert main(["train-tagger", "--train", str(p), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress", "--hidden", "4", "--embed", "4"]) == 0
    text = tmp_path / "in.txt"
    text.write_text("the dog\n", encoding="utf-8")
    capsys.readouterr()
    code = main(["inspect", "activations", str(tmp_path / "run"), str(text), "--out",
                 str(tmp_path / "a.html")])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "run") in err and "in.txt" in err
