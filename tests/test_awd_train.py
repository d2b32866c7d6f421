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
    monkeypatch.setattr(optim.SGD, "step", lambda self, g, **kw: (seen.append(self.lr),
                                                                 step(self, g, **kw))[1])
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


# -- NT-ASGD -----------------------------------------------------------------------------------
def _reference_trigger(values, n):
    """The authors' code, literally: the index of the check that starts the averaging."""
    best_val_loss = []
    for k, val_loss in enumerate(values):
        if len(best_val_loss) > n and val_loss > min(best_val_loss[:-n]):
            return k
        best_val_loss.append(val_loss)
    return None


@pytest.mark.parametrize("n", [1, 2, 5])
def test_ntasgd_switches_exactly_when_the_reference_does(n):
    from rnnkit.train.ntasgd import NTASGD

    rng = np.random.default_rng(n)
    for _ in range(200):
        values = list(np.round(3 - np.cumsum(rng.uniform(-0.3, 0.5, 15)), 1))
        opt = NTASGD({"w": np.zeros(2)}, lr=0.1, nonmono=n)
        got = [opt.observe(v) for v in values]
        want = _reference_trigger(values, n)
        assert got == [k == want for k in range(len(values))]
        assert opt.averaging == (want is not None)


def test_ntasgd_average_is_the_mean_of_the_iterates_since_the_switch():
    from rnnkit.train.ntasgd import NTASGD

    rng = np.random.default_rng(0)
    w = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}
    opt = NTASGD(w, lr=0.1, nonmono=1, momentum=0.5, weight_decay=0.01)
    for _ in range(3):
        opt.step({k: rng.standard_normal(v.shape) for k, v in w.items()})
    assert opt.avg is None
    for v in (1.0, 2.0, 3.0):
        opt.observe(v)
    assert opt.averaging and opt.switched_at == 3
    before = {k: v.copy() for k, v in w.items()}
    with opt.swapped():  # no averaged step yet: the iterate itself
        for k in w:
            np.testing.assert_array_equal(w[k], before[k])
    iterates = []
    for _ in range(7):
        opt.step({k: rng.standard_normal(v.shape) for k, v in w.items()})
        iterates.append({k: v.copy() for k, v in w.items()})
        for k in w:
            np.testing.assert_allclose(opt.avg[k], np.mean([it[k] for it in iterates], 0),
                                       rtol=1e-13, atol=1e-15)
    with opt.swapped():
        for k in w:
            np.testing.assert_array_equal(w[k], opt.avg[k])
    for k in w:
        np.testing.assert_array_equal(w[k], iterates[-1][k])  # the iterate is back


class Recording(Task):
    """Scripted validation figures; remembers the weights every validation sees."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def evaluate(self, split):
        self.seen.append({k: v.copy() for k, v in self.model.parameters().items()})
        return super().evaluate(split)


SCRIPT = [2.0, 3.0, 2.5, 1.9, 1.8, 1.7]  # nonmono 1: the third check starts the averaging


def test_trainer_ntasgd_switches_validates_and_saves_with_the_average(tmp_path):
    from test_trainer import N_BATCHES

    task = Recording(scripted=SCRIPT)
    trainer, summary = _train(tmp_path / "a", _cfg(optimizer="nt-asgd", lr=0.5, nonmono=1,
                                                   epochs=5), task=task)
    opt = trainer.opt
    assert opt.switched_at == 3 * N_BATCHES and opt.n_avg == 2 * N_BATCHES
    assert opt.history == SCRIPT[:3]
    # validation 4 and 5 saw the average, not the iterate
    for k, v in opt.avg.items():
        np.testing.assert_array_equal(task.seen[-1][k], v)
        assert not np.array_equal(v, trainer.model.parameters()[k])
    # best/ (the best figure, 1.8 at epoch 5) and last/ hold the average; last/ keeps the
    # iterate for a resume
    for which in ("best", "last"):
        ck = load_checkpoint(tmp_path / "a" / which)
        for k, v in opt.avg.items():
            np.testing.assert_array_equal(ck.weights[k], v)
    ck = load_checkpoint(tmp_path / "a" / "last")
    for k, v in trainer.model.parameters().items():
        np.testing.assert_array_equal(ck.train_arrays[f"raw.{k}"], v)
    assert any(r.get("event") == "nt-asgd" for r in map(json.loads, open(
        tmp_path / "a" / "metrics.jsonl")))


@pytest.mark.parametrize("stop_after", [20, 45])  # before and after the switch (step 39)
def test_trainer_ntasgd_resume_equals_an_uninterrupted_run(tmp_path, stop_after):
    cfg = {"optimizer": "nt-asgd", "lr": 0.5, "nonmono": 1, "epochs": 5}
    full, _ = _train(tmp_path / "a", _cfg(**cfg), task=Task(scripted=SCRIPT, dropout=0.2))
    first, _ = _train(tmp_path / "b", _cfg(max_steps=stop_after, **cfg),
                      task=Task(scripted=SCRIPT, dropout=0.2))
    # the partial validation at the stop does not count as a check
    assert first.opt.history == SCRIPT[:stop_after // 13]
    resumed = Task(scripted=SCRIPT, dropout=0.2)
    resumed._evals = len(SCRIPT[:stop_after // 13]) + 0  # the script continues where it was
    second, _ = _train(tmp_path / "b", _cfg(**cfg), task=resumed, resume=True)
    _assert_same(_weights(full), _weights(second))
    _assert_same(full.opt.avg, second.opt.avg)
    assert (full.opt.switched_at, full.opt.n_avg, full.opt.history) == (
        second.opt.switched_at, second.opt.n_avg, second.opt.history)


def test_ntasgd_config_checks():
    from rnnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="use one of them"):
        _cfg(optimizer="nt-asgd", ema=0.99)
    with pytest.raises(ConfigError, match="nonmono must be a positive integer"):
        _cfg(optimizer="nt-asgd", nonmono=0)


def test_the_readme_awd_command_and_the_ablation_parse():
    """The README's AWD-LSTM command and every configuration of benchmarks/awd_ptb.py are
    valid ``rnnkit train`` command lines."""
    import re
    import shlex
    import sys
    from pathlib import Path

    from rnnkit.cli.main import build_parser

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("### AWD-LSTM options", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    argv = shlex.split(block)
    assert argv[:3] == ["RNNKIT_DATA=../shared/data", "rnnkit", "train"]
    parser = build_parser().commands["train"]
    args = parser.parse_args(argv[3:])
    assert (args.weight_drop, args.locked, args.optimizer, args.bptt_jitter) == (
        0.5, True, "nt-asgd", True)
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import awd_ptb
    finally:
        sys.path.pop(0)

    class Opts:
        hidden, minutes, eval_every, seed, dropout = 200, 1.0, 200, 1, None

    for dropout in (None, 0.2):
        Opts.dropout = dropout
        for name in awd_ptb.CONFIGS:
            cmd = awd_ptb.command(name, Opts, Path("/nonexistent") / name)
            parsed = parser.parse_args(cmd[4:])
            assert parsed.tie_weights == (not name.startswith("untied"))
            assert bool(parsed.adaptive_softmax) == ("adaptive" in name)
            if dropout is not None and name != "awd":
                assert parsed.dropout == dropout
    assert set(awd_ptb.AWD) <= set(argv)  # the recipe is the README command


def test_resume_keeps_the_eval_batch_size(tmp_path, capsys):
    """The validation figures (best/, NT-ASGD's checks) depend on the evaluation streams, so a
    resumed run scores with the run's own --eval-batch-size."""
    text = tmp_path / "tiny.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "r"
    assert main(["train", "--data", str(text), *TINY, "--eval-batch-size", "3", "--epochs", "1",
                 "--out", str(out)]) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress",
                 "--sample-length", "0"]) == 0
    cfg = json.loads((out / "last" / "config.json").read_text())
    assert cfg["eval_batch_size"] == 3 and cfg["train"]["epochs"] == 2
