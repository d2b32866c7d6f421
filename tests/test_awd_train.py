"""AWD-LSTM training: random window lengths (``--bptt-jitter``), NT-ASGD
(``--optimizer nt-asgd``) and the regularisers end to end through ``rnnkit train``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_trainer import Task, _assert_same, _cfg, _train, _weights

from rnnkit.cli.main import main
from rnnkit.tasks.lm.task import jitter_windows
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train.trainer import Trainer


@pytest.fixture(autouse=True)
def no_plot(monkeypatch):
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)


# -- random window lengths ----------------------------------------------------------------------
def test_jitter_windows_are_seeded_and_cover_the_stream():
    n, T = 5000, 70
    a = jitter_windows(n, T, np.random.default_rng([3, 1]))
    assert a == jitter_windows(n, T, np.random.default_rng([3, 1]))  # same seed, same windows
    assert a != jitter_windows(n, T, np.random.default_rng([3, 2]))  # another epoch
    starts, lengths = np.array([s for s, _ in a]), np.array([k for _, k in a])
    assert starts[0] == 0 and np.all(starts[1:] == starts[:-1] + lengths[:-1])
    assert starts[-1] + lengths[-1] == n - 1  # every prediction once
    assert lengths[:-1].min() >= 5
    # AWD-LSTM's draw, replayed: T or T/2 (p = 0.95), then int(N(., 5)), at least 5
    rng = np.random.default_rng([3, 1])
    for _, length in a[:-1]:
        base = T if rng.random() < 0.95 else T / 2
        assert length == max(5, int(rng.normal(base, 5)))
    long = jitter_windows(10**6, T, np.random.default_rng(0))
    half = np.mean([k < T * 0.75 for _, k in long])
    assert 0.03 < half < 0.07  # about 5 % of the windows are drawn around T / 2


class JitterTask(Task):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.jitter, self.seed, self.windows = True, 4, None


def test_jitter_scales_the_learning_rate_of_each_step(tmp_path, monkeypatch):
    seen = []
    from rnnkit.train import optim

    step = optim.SGD.step
    monkeypatch.setattr(optim.SGD, "step", lambda self, g: (seen.append(self.lr),
                                                           step(self, g))[1])
    task = JitterTask()
    trainer, _ = _train(tmp_path / "a", _cfg(optimizer="sgd", lr=0.5, epochs=2), task=task)
    expected = []
    for epoch in (1, 2):
        windows = jitter_windows(task.streams.shape[1], task.T, np.random.default_rng([4, epoch]))
        expected += [0.5 * k / task.T for _, k in windows]
    assert seen == pytest.approx(expected)
    assert len(set(seen)) > 1 and trainer.opt.lr == 0.5  # the base rate is kept


def test_jitter_resume_inside_an_epoch_equals_an_uninterrupted_run(tmp_path):
    cfg = {"optimizer": "sgd", "lr": 0.5}
    full, _ = _train(tmp_path / "a", _cfg(**cfg), task=JitterTask(dropout=0.2))
    _train(tmp_path / "b", _cfg(max_steps=4, **cfg), task=JitterTask(dropout=0.2))
    second, _ = _train(tmp_path / "b", _cfg(**cfg), task=JitterTask(dropout=0.2), resume=True)
    _assert_same(_weights(full), _weights(second))


# -- the command line ---------------------------------------------------------------------------
TINY = ["--hidden", "8", "--embed", "8", "--layers", "2", "--bptt", "8", "--batch-size", "2",
        "--no-progress", "--sample-length", "5"]
TEXT = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(12))
AWD = ["--dropout", "0.2", "--dropout-input", "0.3", "--dropout-output", "0.3",
       "--dropout-embed", "0.1", "--weight-drop", "0.5", "--locked", "--ar", "2", "--tar", "1",
       "--bptt-jitter", "--tie-weights", "--optimizer", "sgd", "--lr", "1", "--seed", "5"]


def test_train_with_every_awd_option_saves_them_and_resumes_exactly(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    common = ["train", "--data", str(text), *AWD, *TINY]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--epochs", "2", "--max-steps", "5", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--max-steps", "1000",
                 "--no-progress", "--sample-length", "0"]) == 0
    cfg = json.loads((tmp_path / "a" / "last" / "config.json").read_text())
    model = cfg["model"]
    assert (model["dropout"], model["dropout_input"], model["dropout_output"],
            model["dropout_embed"], model["weight_drop"], model["locked"], model["ar"],
            model["tar"]) == (0.2, 0.3, 0.3, 0.1, 0.5, True, 2.0, 1.0)
    assert cfg["bptt_jitter"] is True
    a = load_checkpoint(tmp_path / "a" / "last").weights
    b = load_checkpoint(tmp_path / "b" / "last").weights
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the trained model evaluates and samples like any other
    assert main(["eval", str(tmp_path / "a" / "best"), str(text)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_awd_options_refused_with_output_recurrent(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    assert main(["train", "--data", str(text), "--cell", "output-recurrent", "--weight-drop",
                 "0.5", *TINY, "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--weight-drop is not available with --cell output-recurrent")
    assert main(["train", "--data", str(text), "--dropout-embed", "1.5", *TINY,
                 "--out", str(tmp_path / "s")]) != 0
    assert "dropout_embed must be in [0, 1)" in capsys.readouterr().err
