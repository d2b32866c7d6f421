"""`rnnkit train-seq2seq`, `rnnkit translate` and `rnnkit eval` on tiny data: the round trip
and every documented bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.tasks.seq2seq.data import addition_pairs, write_pairs
from rnnkit.tasks.seq2seq.model import EOS_ID
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    one = addition_pairs(50, 1, rng=rng)
    train = one + addition_pairs(60, 2, rng=rng, exclude=one)
    write_pairs(d / "train.tsv", train)
    write_pairs(d / "test.tsv", train[:20])
    return d


TINY = ["--src-level", "char", "--tgt-level", "char", "--hidden", "8", "--embed", "4",
        "--batch-size", "16", "--no-progress", "--valid-fraction", "0.2", "--beam", "2"]


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    code = main(["train-seq2seq", "--train", str(data / "train.tsv"), "--epochs", "2",
                 "--out", str(out), "--attention", "additive", "--bidirectional",
                 "--input-feed", "--sampling", "linear", "--sampling-c", "0.01",
                 "--save-splits", str(data / "splits"), *TINY])
    assert code == 0
    return out


def test_train_round_trip(run_dir, data, capsys):
    cfg = json.loads((run_dir / "best" / "config.json").read_text())
    assert cfg["model"]["attention"] == "additive" and cfg["model"]["input_feed"]
    assert cfg["schedule"] == {"kind": "linear", "k": 1.0, "c": 0.01, "min_tf": 0.0}
    assert cfg["data"]["pairs"] == {"train": 88, "valid": 22, "test": 0}
    assert (data / "splits" / "train.tsv").read_text().count("\n") == 88
    assert (run_dir / "metrics.jsonl").exists()

    assert main(["translate", str(run_dir), "12+3", "--beam", "2",
                 "--attention-plot", str(run_dir / "att.png")]) == 0
    out = capsys.readouterr()
    assert out.out.count("\n") == 1 and (run_dir / "att.png").stat().st_size > 1000
    assert "attention plot:" in out.err

    assert main(["eval", str(run_dir), str(data / "test.tsv")]) == 0
    lines = dict(line.split(": ") for line in capsys.readouterr().out.strip().splitlines())
    assert lines["pairs"] == "20"
    for key in ("exact match", "token accuracy", "bleu", "exact match (beam 5)", "bleu (beam 5)"):
        assert 0 <= float(lines[key]) <= 100


def test_translate_stdin_unknown_tokens(run_dir, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"1+2\n\n7+x\n")))
    assert main(["translate", str(run_dir), "-", "--beam", "1"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 3  # one output line per input line
    assert "line 3: 1 of 3 tokens are not in the vocabulary and became <unk>, first: 'x'" \
        in out.err
    assert main(["translate", str(run_dir), "1+2", "--beam", "3", "--n-best", "3"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 3 and all(len(r.split("\t")) == 2 for r in rows)
    assert main(["translate", str(run_dir), "1+2", "--beam", "1", "--temperature", "1"]) == 0


@pytest.mark.parametrize("beam", ["1", "3"])
def test_translate_without_eos_stops_at_max_len(run_dir, tmp_path, capsys, beam):
    """A decoder that never emits <eos> stops at --max-len, with a warning."""
    ck = load_checkpoint(run_dir / "best")
    weights = dict(ck.weights)
    weights["out.b"] = weights["out.b"].copy()
    weights["out.b"][EOS_ID] = -1e4
    save_checkpoint(tmp_path / "ck", kind=ck.kind, config=ck.config, weights=weights,
                    vocab=ck.vocab)
    assert main(["translate", str(tmp_path / "ck"), "1+2", "--beam", beam,
                 "--max-len", "4"]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip()) == 4  # four characters, no <eos>
    assert "no <eos> within 4 tokens; output cut at --max-len" in out.err


@pytest.mark.parametrize("argv, message", [
    (["--beam", "0"], "--beam must be at least 1, got 0"),
    (["--n-best", "3", "--beam", "2"], "--n-best must be in 1..--beam (2), got 3"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
])
def test_translate_bad_options(run_dir, capsys, argv, message):
    assert main(["translate", str(run_dir), "1+2", *argv]) == 2
    assert message in capsys.readouterr().err


def test_translate_bad_inputs(run_dir, tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"1+2\n3+4\n")))
    assert main(["translate", str(run_dir), "-", "--attention-plot", "x.png"]) == 2
    assert "--attention-plot draws one sentence; got 2 lines" in capsys.readouterr().err
    assert main(["translate", str(run_dir), "   "]) == 2
    assert "nothing to translate" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "nope"), "1+2"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_train_bad_pairs_file(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1+1\t2\n2+2 4\n")
    assert main(["train-seq2seq", "--train", str(bad), "--out", str(tmp_path / "r"),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: expected 'source<TAB>target', found no tab in '2+2 4'" in err
    assert len(err.strip().splitlines()) == 1
    bad.write_text("1+1\t2\n\t4\n")
    assert main(["train-seq2seq", "--train", str(bad), "--out", str(tmp_path / "r"),
                 *TINY]) == 2
    assert f"{bad}:2: empty source side" in capsys.readouterr().err


def test_train_filters_and_bad_options(data, tmp_path, capsys):
    assert main(["train-seq2seq", "--train", str(data / "train.tsv"), "--max-src-len", "2",
                 "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "no pairs left after filtering" in capsys.readouterr().err
    assert main(["train-seq2seq", "--train", str(data / "train.tsv"), "--attention", "none",
                 "--input-feed", "--out", str(tmp_path / "r2"), *TINY]) == 2
    assert "input_feed needs attention" in capsys.readouterr().err
    assert main(["train-seq2seq", "--train", str(data / "train.tsv"), "--sampling",
                 "exponential", "--sampling-k", "2", "--out", str(tmp_path / "r3"), *TINY]) == 2
    assert "exponential schedule needs 0 < k < 1" in capsys.readouterr().err


def test_resume(data, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train-seq2seq", "--train", str(data / "train.tsv"), "--out", str(out),
            "--attention", "dot", *TINY]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["event"] == "epoch"] == [1, 2]
