"""Training commands refuse a model the machine cannot hold, before allocating it."""

from __future__ import annotations

import pytest

from rnnkit.cli.main import main
from rnnkit.errors import ConfigError
from rnnkit.train.memory import check_memory, recurrent_parameters, training_bytes

TEXT = "the quick brown fox jumps over the lazy dog\n" * 12


def test_estimate_counts_parameters_optimiser_and_activations():
    n = recurrent_parameters("gru", 3, 5, 2, directions=2)
    assert n == 2 * (3 * 15 + 5 * 15 + 30) + 2 * (10 * 15 + 5 * 15 + 30)
    assert training_bytes(10, 4, optimizer="adam", activations=6) == 4 * (4 * 10 + 6)
    assert training_bytes(10, 8, optimizer="sgd", momentum=0.9, ema=True) == 8 * 4 * 10
    with pytest.raises(ConfigError, match="--ignore-memory-check"):
        check_memory("the options", 2e9, available=10**9)
    check_memory("the options", 2e9, available=10**9, ignore=True)
    check_memory("the options", 1e3, available=10**9)


def test_train_refuses_a_huge_model_before_allocating(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--hidden",
                 "100000000", "--sample-length", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--ignore-memory-check" in err and "GiB" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command, data, extra", [
    ("train-classifier", "pos\tgood film\nneg\tbad film\n" * 5, []),
    ("train-tagger", "the DET\ndog NOUN\n\n" * 5, []),
    ("train-seq2seq", "a b\tc d\ne f\tg h\n" * 5, ["--decoder-hidden", "100000000"]),
])
def test_every_training_command_checks_memory(tmp_path, capsys, command, data, extra):
    f = tmp_path / "train.txt"
    f.write_text(data, encoding="utf-8")
    argv = [command, "--train", str(f), "--out", str(tmp_path / "run"), "--hidden", "100000000",
            "--no-progress", *extra]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "--ignore-memory-check" in err, err
    assert not (tmp_path / "run" / "last").exists()
