"""`translate -` keeps one output line per input line and refuses binary input; plots are
written where the message says."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.tasks.seq2seq.data import addition_pairs, write_pairs
from rnnkit.train.plotting import png_path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    write_pairs(d / "train.tsv", addition_pairs(50, 1, rng=np.random.default_rng(0)))
    out = d / "run"
    assert main(["train-seq2seq", "--train", str(d / "train.tsv"), "--epochs", "1", "--out",
                 str(out), "--attention", "additive", "--src-level", "char", "--tgt-level",
                 "char", "--hidden", "8", "--embed", "4", "--batch-size", "16",
                 "--no-progress", "--beam", "2"]) == 0
    return out


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_translate_keeps_one_output_line_per_input_line(run_dir, monkeypatch, capsys):
    _stdin(monkeypatch, b"1+2\n\n   \n3+4\n")
    capsys.readouterr()
    assert main(["translate", str(run_dir), "-", "--beam", "1"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 5 and lines[1] == lines[2] == "" and lines[4] == ""


@pytest.mark.parametrize("data, message", [(b"1+2\n\x00\x01\x02\n", "<stdin>:2: binary"),
                                           (b"1+2\n\xe9t\xe9\n", "<stdin>:2: cannot decode")])
def test_translate_refuses_binary_or_latin1_stdin(run_dir, monkeypatch, capsys, data, message):
    _stdin(monkeypatch, data)
    capsys.readouterr()
    assert main(["translate", str(run_dir), "-"]) == 2
    assert message in capsys.readouterr().err


def test_png_path_is_the_file_written(tmp_path):
    assert png_path(tmp_path, "a.png") == tmp_path / "a.png"
    assert png_path(f"{tmp_path}/new/", "a.png") == tmp_path / "new" / "a.png"
    assert png_path(tmp_path / "plot", "a.png") == tmp_path / "plot.png"
    assert png_path(tmp_path / "p.png", "a.png") == tmp_path / "p.png"


def test_attention_plot_into_a_directory_reports_the_file_written(run_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    capsys.readouterr()
    assert main(["translate", str(run_dir), "1+2", "--attention-plot", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    reported = err.split("attention plot: ")[1].strip()
    assert reported == str(tmp_path / "attention.png") and (tmp_path / "attention.png").is_file()


def test_clipping_plot_into_a_directory_reports_the_file_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rnnkit.train.trainer import TrainConfig, Trainer  # noqa: F401 -- a run to read
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 12, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--data", str(text), "--out", str(run), "--max-steps", "3",
                 "--hidden", "6", "--embed", "4", "--layers", "1", "--bptt", "5",
                 "--batch-size", "2", "--sample-length", "0", "--no-progress",
                 "--log-every", "1"]) == 0
    target = tmp_path / "plots"
    target.mkdir()
    capsys.readouterr()
    assert main(["inspect", "clipping", str(run), "--out", str(target)]) == 0
    out = capsys.readouterr().out
    reported = out.split("plot: ")[1].strip()
    assert reported == str(target / "clipping.png") and (target / "clipping.png").is_file()
