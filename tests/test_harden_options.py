"""Option values out of range are one-line usage errors naming the option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.cli.main import main

TEXT = "the quick brown fox jumps over the lazy dog\n" * 12


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture
def files(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    labelled = tmp_path / "l.tsv"
    labelled.write_text("".join(f"{'pos' if i % 2 else 'neg'}\tgood film {i}\n"
                                for i in range(20)), encoding="utf-8")
    tagged = tmp_path / "tags.txt"
    tagged.write_text("the DET\ndog NOUN\n\na DET\ncat NOUN\n", encoding="utf-8")
    pairs = tmp_path / "p.tsv"
    pairs.write_text("".join(f"a b {i}\tc d {i}\n" for i in range(20)), encoding="utf-8")
    return {"text": text, "labelled": labelled, "tagged": tagged, "pairs": pairs,
            "dir": tmp_path}


CASES = [
    (["train-classifier", "--train", "{labelled}", "--batch-size", "0"], "--batch-size"),
    (["train-tagger", "--train", "{tagged}", "--batch-size", "0"], "--batch-size"),
    (["train-tagger", "--train", "{tagged}", "--max-chars", "0"], "--max-chars"),
    (["train-classifier", "--train", "{labelled}", "--min-label-count", "0"],
     "--min-label-count"),
    (["inspect", "gradients", "--length", "0"], "--length"),
    (["inspect", "gradients", "--every", "0"], "--every"),
    (["inspect", "gradients", "--every", "-1"], "--every"),
    (["inspect", "gradients", "--vocab", "0"], "--vocab"),
    (["inspect", "spectrum", "--top", "-1"], "--top"),
    (["inspect", "gates", "--low", "nan"], "--low"),
    (["inspect", "clipping", "{dir}", "--bins", "0"], "--bins"),
    (["inspect", "activations", "x", "y", "--max-tokens", "-1"], "--max-tokens"),
    (["train", "--data", "{text}", "--eval-batch-size", "0"], "--eval-batch-size"),
    (["train", "--data", "{text}", "--seed", "-1"], "--seed"),
    (["train", "--data", "{text}", "--out", ""], "--out"),
    (["train", "--data", "{text}", "--valid-fraction", "1"], "--valid-fraction"),
    (["eval", "x", "y", "--batch-size", "0"], "--batch-size"),
    (["eval", "x", "y", "--batch-size", "-1"], "--batch-size"),
    (["train-seq2seq", "--train", "{pairs}", "--max-len", "0"], "--max-len"),
    (["train-seq2seq", "--train", "{pairs}", "--alpha", "nan"], "--alpha"),
    (["train-seq2seq", "--train", "{pairs}", "--alpha", "-1"], "--alpha"),
    (["train-seq2seq", "--train", "{pairs}", "--sampling-k", "-1"], "--sampling-k"),
    (["train-seq2seq", "--train", "{pairs}", "--valid-fraction", "1"], "--valid-fraction"),
    (["translate", "x", "--alpha", "nan"], "--alpha"),
    (["sample", "x", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("argv, option", CASES, ids=[" ".join(c[0][:2] + c[0][-2:])
                                                     for c in CASES])
def test_a_value_out_of_range_is_a_usage_error_naming_the_option(files, capsys, argv, option):
    argv = [a.format(**files) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert option in err and len(err.strip().splitlines()) == 1


def test_gates_low_above_high(capsys):
    code, err = _run(["inspect", "gates", "--low", "0.9", "--high", "0.1"], capsys)
    assert code == 2 and "--low" in err and "--high" in err


def test_out_inside_a_checkpoint_is_refused(files, capsys):
    from rnnkit.train.checkpoint import save_checkpoint

    ck = save_checkpoint(files["dir"] / "ck", kind="lm", config={}, weights={"w": np.ones(2)})
    code, err = _run(["train", "--data", files["text"], "--out", ck / "run"], capsys)
    assert code == 2 and "inside the checkpoint" in err and str(ck) in err
    assert not (ck / "run").exists()


def test_a_budget_too_short_for_one_step_says_so(files, capsys, monkeypatch):
    from rnnkit.train.trainer import Trainer

    monkeypatch.setattr(Trainer, "_plot", lambda self: None)
    out = files["dir"] / "run"
    code, err = _run(["train", "--data", files["text"], "--out", out, "--minutes", "0.001",
                      "--hidden", "6", "--embed", "4", "--layers", "1", "--no-progress",
                      "--batch-size", "2", "--bptt", "5"],
                     capsys)
    assert code == 2, err
    assert "--minutes" in err and "no such checkpoint" not in err


def test_start_record_is_plain_json(files):
    # the typed options leave the saved trainer options plain numbers
    out = files["dir"] / "run"
    assert main(["train", "--data", str(files["text"]), "--out", str(out), "--max-steps", "2",
                 "--hidden", "6", "--embed", "4", "--layers", "1", "--sample-length", "0",
                 "--bptt", "5", "--batch-size", "2", "--no-progress"]) == 0
    cfg = json.loads((out / "last" / "config.json").read_text())
    assert cfg["train"]["seed"] == 0 and cfg["train"]["max_steps"] == 2


def test_sample_temperature_inf_names_the_option(tmp_path, capsys):
    from rnnkit.decode import check_sampling

    with pytest.raises(ValueError, match="temperature must be >= 0 and finite"):
        check_sampling(float("inf"))
