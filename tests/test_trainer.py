"""rnnkit.train.trainer with the language-model task: resume equality, stopping, schedules,
checkpoints, logs and failures."""

from __future__ import annotations

import errno
import json
import signal

import numpy as np
import pytest

from rnnkit.errors import CheckpointError, ConfigError, NonFiniteError
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.tasks.lm.task import LMTask
from rnnkit.text.tokenizers import CharTokenizer
from rnnkit.train import checkpoint as checkpoint_module
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.runlog import read_metrics
from rnnkit.train.trainer import TrainConfig, Trainer

TEXT = "the quick brown fox jumps over the lazy dog\n" * 3
N_BATCHES = 13  # windows per epoch of the task below: ceil((66 - 1) / 5)


class FakeClock:
    """Seconds that pass only when the test says so (training batches, evaluations)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Task(LMTask):
    """The LM task with hooks: a clock that batches and evaluations advance, a step that
    sends SIGINT or returns NaN, scripted validation figures."""

    def __init__(self, *, cell="lstm", dropout=0.0, seed=0, clock=None, batch_cost=1.0,
                 eval_cost=0.0, sigint_at=None, nan_at=None, inf_grad_at=None, scripted=None):
        tok = CharTokenizer().fit(TEXT)
        cfg = LMConfig(vocab_size=len(tok.vocab), cell=cell, embed_size=6, hidden_size=8,
                       num_layers=2, dropout=dropout, dtype="float64")
        ids = tok.encode(TEXT)
        super().__init__(LanguageModel(cfg, rng=np.random.default_rng(seed)), tok, ids[:132],
                         ids[100:], batch_size=2, bptt=5, eval_batch_size=2)
        self.clock, self.batch_cost, self.eval_cost = clock, batch_cost, eval_cost
        self.sigint_at, self.nan_at, self.inf_grad_at = sigint_at, nan_at, inf_grad_at
        self.scripted, self.calls = scripted, 0

    def train_batch(self, i, rng):
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.batch_cost
        if self.calls == self.sigint_at:
            signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came in the middle of a step
        loss, n = super().train_batch(i, rng)
        if self.calls == self.inf_grad_at:
            self.model.grads()["out.W"][0, 0] = np.inf
        return (float("nan"), n) if self.calls == self.nan_at else (loss, n)

    def evaluate(self, split):
        if self.clock is not None:
            self.clock.now += self.eval_cost
        if self.scripted is not None:
            value = self.scripted[min(len(self.scripted), self.calls_eval()) - 1]
            return {"loss": value, "ppl": float(np.exp(value))}
        return super().evaluate(split)

    def calls_eval(self):
        self._evals = getattr(self, "_evals", 0) + 1
        return self._evals


@pytest.fixture(autouse=True)
def no_plot(monkeypatch):
    """Drawing training.png takes most of a tiny run's time; one test draws it."""
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)


def _cfg(**kw):
    base = {"epochs": 3, "progress": False, "seed": 3, "log_every": 4}
    return TrainConfig(**{**base, **kw})


def _train(out, cfg, task=None, resume=False, clock=None, **task_kw):
    task = task or Task(clock=clock, **task_kw)
    kw = {} if clock is None else {"clock": clock}
    trainer = Trainer(task, cfg, out, resume=resume, echo=lambda s: None, **kw)
    return trainer, trainer.fit()


def _weights(trainer):
    return {k: v.copy() for k, v in trainer.model.parameters().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


SETUPS = {
    "sgd-decay": ({"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "lr_decay": 0.5,
                   "decay_after": 1}, {"cell": "gru"}),
    "adam-dropout": ({"optimizer": "adam", "lr": 0.01}, {"cell": "lstm", "dropout": 0.3}),
}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("stop_after", [5, N_BATCHES, N_BATCHES + 7])
def test_resume_after_max_steps_equals_an_uninterrupted_run(tmp_path, setup, stop_after):
    cfg_kw, task_kw = SETUPS[setup]
    full, summary = _train(tmp_path / "a", _cfg(**cfg_kw), **task_kw)
    assert summary["reason"] == "epochs" and summary["step"] == 3 * N_BATCHES

    first, s1 = _train(tmp_path / "b", _cfg(max_steps=stop_after, **cfg_kw), **task_kw)
    assert s1["reason"] == "steps" and first.step == stop_after
    second, s2 = _train(tmp_path / "b", _cfg(**cfg_kw), resume=True, **task_kw)
    assert s2["reason"] == "epochs" and second.step == 3 * N_BATCHES
    _assert_same(_weights(full), _weights(second))
    _assert_same(full.opt.state_dict()[1], second.opt.state_dict()[1])
    assert full.rng.bit_generator.state == second.rng.bit_generator.state
    assert full.opt.lr == second.opt.lr
    # the epoch records of whole epochs match too (a partial one sits in between)
    whole = [[(r["epoch"], r["train_loss"], r["valid_loss"]) for r in read_metrics(d)
              if r["event"] == "epoch" and not r["partial"]] for d in
             (tmp_path / "a" / "metrics.jsonl", tmp_path / "b" / "metrics.jsonl")]
    assert whole[0] == whole[1]


def test_resume_after_time_budget_equals_an_uninterrupted_run(tmp_path):
    cfg_kw, task_kw = SETUPS["adam-dropout"]
    full, _ = _train(tmp_path / "a", _cfg(**cfg_kw), clock=FakeClock(), **task_kw)
    clock = FakeClock()  # one second per batch: a 0.3-minute budget stops inside epoch 2
    first, s1 = _train(tmp_path / "b", _cfg(minutes=0.3, **cfg_kw), clock=clock, **task_kw)
    assert s1["reason"] == "time" and first.epoch == 2 and 0 < first.batch < N_BATCHES
    second, _ = _train(tmp_path / "b", _cfg(**cfg_kw), resume=True, clock=clock, **task_kw)
    _assert_same(_weights(full), _weights(second))


def test_ctrl_c_saves_last_and_resume_equals_an_uninterrupted_run(tmp_path):
    cfg_kw, task_kw = SETUPS["adam-dropout"]
    full, _ = _train(tmp_path / "a", _cfg(**cfg_kw), **task_kw)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", _cfg(**cfg_kw), sigint_at=N_BATCHES + 4, **task_kw)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    meta = load_checkpoint(tmp_path / "b" / "last").train_meta
    assert (meta["epoch"], meta["batch"]) == (2, 4)  # the step in flight was finished
    assert read_metrics(tmp_path / "b" / "metrics.jsonl")[-1]["event"] == "interrupted"
    second, _ = _train(tmp_path / "b", _cfg(**cfg_kw), resume=True, **task_kw)
    _assert_same(_weights(full), _weights(second))


def test_time_budget_leaves_room_for_validation(tmp_path):
    """One second per batch, seven per validation, a 30-second budget: epoch 1 ends at 13 s
    and validates until 20 s; epoch 2 must stop at 23 s so its validation ends by 30 s."""
    clock = FakeClock()
    trainer, summary = _train(tmp_path, _cfg(minutes=0.5, epochs=10), clock=clock,
                              eval_cost=7.0)
    assert summary["reason"] == "time" and clock.now <= 30.0
    assert (trainer.epoch, trainer.batch) == (2, 3)
    clock = FakeClock()
    trainer = Trainer(Task(clock=clock, eval_cost=7.0), _cfg(minutes=0.5, epochs=10),
                      tmp_path / "r", echo=lambda s: None, clock=clock, reserve_s=2.0)
    trainer.fit()
    assert clock.now <= 28.0


def test_a_slow_first_step_does_not_end_a_budget_early(tmp_path):
    """The first step costs 40 s (loading the kernels), the others 1 s, a 60-second budget:
    estimated from the first step, the validation (32 tokens at 4 s a token, x 0.4) would
    seem to need 51 s and stop the run after one step; from the later steps it needs 1.3 s."""

    class SlowStart(Task):
        def train_batch(self, i, rng):
            if self.calls == 0:
                self.clock.now += 39.0
            return super().train_batch(i, rng)

    clock = FakeClock()
    task = SlowStart(clock=clock)
    assert task.eval_size() * 4.0 * 0.4 > 60 - 40
    trainer = Trainer(task, _cfg(minutes=1.0, epochs=10), tmp_path, echo=lambda s: None,
                      clock=clock)
    summary = trainer.fit()
    assert summary["reason"] == "time" and trainer.step > N_BATCHES
    assert clock.now <= 60.0


def test_a_spent_budget_or_finished_run_does_nothing_on_resume(tmp_path):
    first, _ = _train(tmp_path, _cfg(epochs=1))
    again, summary = _train(tmp_path, _cfg(epochs=1), resume=True)
    assert summary["reason"] == "epochs" and again.step == first.step == N_BATCHES
    _assert_same(_weights(first), _weights(again))


def test_early_stopping(tmp_path):
    # whole-epoch validation losses 3, 2, 2.5, 2.6, ...: patience 2 stops after epoch 4
    trainer, summary = _train(tmp_path, _cfg(epochs=10, patience=2),
                              scripted=[3.0, 2.0, 2.5, 2.6, 2.7, 1.0])
    assert summary["reason"] == "early-stopping" and trainer.epoch == 5
    assert summary["best"] == 2.0 and trainer.bad_epochs == 2
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "epoch"]
    assert [r["valid_loss"] for r in records] == [3.0, 2.0, 2.5, 2.6]
    best = load_checkpoint(tmp_path / "best")
    assert best.train_meta is None  # best is for inference only; last carries the state
    assert load_checkpoint(tmp_path / "last").train_meta["epoch"] == 5


def test_partial_epochs_do_not_count_for_early_stopping(tmp_path):
    """A stop inside epoch 2 validates (scripted 1.0, the best) but must not reset the
    patience count that the uninterrupted run keeps: both stop after the same epoch."""
    kw = {"epochs": 10, "patience": 1}
    full, s_full = _train(tmp_path / "a", _cfg(**kw), scripted=[2.0, 2.5])
    assert s_full["reason"] == "early-stopping" and full.epoch == 3
    _train(tmp_path / "b", _cfg(max_steps=N_BATCHES + 2, **kw), scripted=[2.0, 1.0])
    second, s2 = _train(tmp_path / "b", _cfg(**kw), resume=True, scripted=[2.5])
    assert s2["reason"] == "early-stopping" and second.epoch == 3
    _assert_same(_weights(full), _weights(second))
    assert s2["best"] == 1.0  # ... while best/ keeps the better mid-epoch snapshot


def test_lr_decay_schedule_per_epoch(tmp_path):
    _train(tmp_path, _cfg(epochs=5, optimizer="sgd", lr=1.0, lr_decay=0.5, decay_after=2))
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "epoch"]
    assert [r["lr"] for r in records] == [1.0, 1.0, 0.5, 0.25, 0.125]
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "step"]
    assert all(r["lr"] == 1.0 * 0.5 ** max(0, r["epoch"] - 2) for r in steps)


def test_plateau_schedule(tmp_path):
    _train(tmp_path, _cfg(epochs=4, optimizer="sgd", lr=1.0, lr_decay=0.1, plateau_patience=1),
           scripted=[2.0, 3.0, 3.0, 3.0])
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "epoch"]
    # patience 1: the second bad epoch (3) lowers the lr, from epoch 4 on
    assert [r["lr"] for r in records] == pytest.approx([1.0, 1.0, 1.0, 0.1])


def _step_lrs(out):
    return [(r["step"], r["lr"]) for r in read_metrics(out / "metrics.jsonl")
            if r["event"] == "step"]


def test_cosine_schedule_with_warmup_over_max_steps(tmp_path):
    """Step s (from 0) of 20 uses 0.05 + 0.45 (1 + cos(pi s / 20)) / 2, times (s + 1) / 3 in
    the three warm-up steps; the 3 epochs of 13 batches would end later than max_steps."""
    _train(tmp_path, _cfg(optimizer="sgd", lr=0.5, schedule="cosine", min_lr=0.05, warmup=3,
                          max_steps=20, log_every=1))
    got = _step_lrs(tmp_path)
    assert [step for step, _ in got] == list(range(1, 21))
    for step, lr in got:
        s = step - 1
        want = (0.05 + 0.45 * (1 + np.cos(np.pi * s / 20)) / 2) * min(1.0, (s + 1) / 3)
        assert lr == pytest.approx(want, rel=1e-12), step


def test_linear_schedule_over_the_epochs(tmp_path):
    """Without max_steps or a budget, the epochs are the run: batch b of epoch e is at
    ((e - 1) + b / 13) / 3."""
    _train(tmp_path, _cfg(optimizer="sgd", lr=0.3, schedule="linear", log_every=1))
    got = _step_lrs(tmp_path)
    assert len(got) == 3 * N_BATCHES
    for step, lr in got:
        assert lr == pytest.approx(0.3 * (1 - (step - 1) / (3 * N_BATCHES)), rel=1e-12), step


def test_linear_schedule_over_a_time_budget(tmp_path):
    """One second per batch, three per validation, a 30-second budget.  The step after the
    batch that ends at t seconds is at t / 30; from epoch 2 on the time counts the room kept
    for the last validation (3 s, as the first one took), so the last step is nearly at 1."""
    clock = FakeClock()
    _train(tmp_path, _cfg(optimizer="sgd", lr=0.6, schedule="linear", minutes=0.5, epochs=100,
                          log_every=1), clock=clock, eval_cost=3.0)
    got = _step_lrs(tmp_path)
    assert len(got) > N_BATCHES + 5
    for step, lr in got:
        if step <= N_BATCHES:
            assert lr == pytest.approx(0.6 * (1 - step / 30), rel=1e-12), step
        else:
            assert lr == pytest.approx(0.6 * (1 - (step + 3 + 3) / 30), rel=1e-12), step
    assert got[-1][1] <= 0.6 * 1 / 30 + 1e-12


def test_warmup_multiplies_the_step_decay(tmp_path):
    _train(tmp_path, _cfg(optimizer="sgd", lr=1.0, lr_decay=0.5, decay_after=1, warmup=20,
                          log_every=1))
    for step, lr in _step_lrs(tmp_path):
        epoch = (step - 1) // N_BATCHES + 1
        assert lr == pytest.approx(0.5 ** (epoch - 1) * min(1.0, step / 20), rel=1e-12)


def test_cosine_schedule_resume_equals_an_uninterrupted_run(tmp_path):
    cfg_kw = {"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "schedule": "cosine",
              "warmup": 4, "min_lr": 0.01}
    full, _ = _train(tmp_path / "a", _cfg(**cfg_kw))
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", _cfg(**cfg_kw), sigint_at=N_BATCHES + 2)
    second, _ = _train(tmp_path / "b", _cfg(**cfg_kw), resume=True)
    _assert_same(_weights(full), _weights(second))
    assert _step_lrs(tmp_path / "a")[-1] == _step_lrs(tmp_path / "b")[-1]


@pytest.mark.parametrize("where", ["nan_at", "inf_grad_at"])
def test_non_finite_loss_or_gradient_keeps_the_last_checkpoint(tmp_path, where):
    _train(tmp_path, _cfg(epochs=1))
    saved = load_checkpoint(tmp_path / "last")
    with pytest.raises(NonFiniteError) as info:
        _train(tmp_path, _cfg(epochs=3), resume=True, **{where: 3})
    message = str(info.value)
    assert ("loss became nan" in message) if where == "nan_at" else ("exploding" in message)
    assert f"last good checkpoint is kept in {tmp_path / 'last'}" in message
    assert "\n" not in message
    after = load_checkpoint(tmp_path / "last")
    assert after.train_meta == saved.train_meta
    _assert_same(after.weights, saved.weights)
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["event"] == "diverged"


def test_nan_before_any_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError, match="no checkpoint was saved"):
        _train(tmp_path, _cfg(), nan_at=2)
    assert not (tmp_path / "last").exists()


def test_full_disk_while_saving_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
    _train(tmp_path, _cfg(epochs=1))
    before = {w: load_checkpoint(tmp_path / w) for w in ("best", "last")}
    real = checkpoint_module._write_npz

    def full(path, arrays):
        real(path, arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_npz", full)
    with pytest.raises(CheckpointError, match="the disk is full; the previous checkpoint was kept"):
        _train(tmp_path, _cfg(epochs=2), resume=True)
    monkeypatch.undo()
    for which, ck in before.items():
        now = load_checkpoint(tmp_path / which)
        _assert_same(now.weights, ck.weights)
        assert now.train_meta == ck.train_meta
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_checkpoints_metrics_and_plot(tmp_path, monkeypatch):
    monkeypatch.undo()  # draw the plot here
    trainer, summary = _train(tmp_path, _cfg(epochs=2))
    assert {"best", "last", "metrics.jsonl", "training.png"} <= {p.name for p in
                                                                 tmp_path.iterdir()}
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = [r["event"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert events[0] == "start" and events[-1] == "end" and events.count("epoch") == 2
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "step"]
    assert {"loss", "ppl", "lr", "grad_norm", "tokens_per_s", "clipped"} <= set(steps[0])
    assert [r["step"] for r in steps] == [4, 8, 12, 13, 16, 20, 24, 26]
    last = load_checkpoint(tmp_path / "last")
    assert last.kind == "lm" and (last.train_meta["epoch"], last.train_meta["batch"]) == (3, 0)
    _assert_same(last.weights, _weights(trainer))
    assert summary["best_figures"]["loss"] == summary["best"]
    assert set(summary["best_figures"]) == {"loss", "ppl", "bpc"}
    cfg = json.loads((tmp_path / "last" / "config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["bptt"] == 5 and cfg["model"]["cell"] == "lstm"


def test_without_validation_best_follows_the_latest_weights(tmp_path):
    class NoValid(Task):
        def evaluate(self, split):
            return None

    trainer, summary = _train(tmp_path, _cfg(epochs=2), task=NoValid())
    _assert_same(load_checkpoint(tmp_path / "best").weights, _weights(trainer))
    assert summary["best"] is None


def test_plain_progress_lines_without_a_terminal(tmp_path):
    lines = []
    clock = FakeClock()
    trainer = Trainer(Task(clock=clock, batch_cost=3.0), _cfg(epochs=1, progress=True),
                      tmp_path, echo=lines.append, clock=clock)
    trainer.show_bar = False
    trainer.fit()
    progress = [s for s in lines if s.startswith("epoch 1 step")]
    assert len(progress) == 3  # every 4 steps logged, 12 s apart: at steps 4, 8, 12
    assert "loss" in progress[0] and "tok/s" in progress[0] and "|g|" in progress[0]


def test_resume_refusals(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Trainer(Task(), _cfg(), tmp_path, resume=True)
    task = Task()
    save_checkpoint(tmp_path / "last", kind="lm", config={"model": task.model.cfg.to_dict()},
                    weights=task.model.state_dict(), vocab=task.tokenizer.to_dict())
    with pytest.raises(CheckpointError, match="no training state"):
        Trainer(task, _cfg(), tmp_path, resume=True)
    save_checkpoint(tmp_path / "last", kind="classifier", config={},
                    weights=task.model.state_dict())
    with pytest.raises(CheckpointError, match="is a 'classifier' checkpoint; expected 'lm'"):
        Trainer(task, _cfg(), tmp_path, resume=True)


def test_train_config_checks():
    with pytest.raises(ConfigError, match="unknown trainer config keys"):
        TrainConfig.from_dict({"epochs": 2, "warmup_steps": 3})
    with pytest.raises(ConfigError, match="trainer config must be a dict, got list"):
        TrainConfig.from_dict([2])
    for bad in ({"epochs": 0}, {"minutes": 0}, {"lr": -1}, {"optimizer": "rmsprop"},
                {"lr_decay": 1.5}, {"patience": 0}, {"max_steps": 0}, {"clip": -1},
                {"ema": 1.0}, {"ema": 0.0}, {"schedule": "exp"},
                {"schedule": "cosine", "lr_decay": 0.5},
                {"schedule": "linear", "plateau_patience": 2},
                {"warmup": -1}, {"warmup": 1.5}, {"min_lr": -0.1}, {"lr": 0.1, "min_lr": 0.1},
                {"min_lr": float("nan")}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_eval_every_validates_inside_epochs_without_changing_training(tmp_path):
    cfg_kw, task_kw = SETUPS["adam-dropout"]
    plain, _ = _train(tmp_path / "a", _cfg(**cfg_kw), **task_kw)
    often, summary = _train(tmp_path / "b", _cfg(eval_every=3, **cfg_kw), **task_kw)
    _assert_same(_weights(plain), _weights(often))  # validation consumes no training state
    records = read_metrics(tmp_path / "b" / "metrics.jsonl")
    between = [r for r in records if r["event"] == "valid"]
    assert len(between) == sum(1 for s in range(1, 3 * N_BATCHES + 1)
                               if s % 3 == 0 and s % N_BATCHES != 0)
    every = [r["valid_loss"] for r in records if r["event"] in ("valid", "epoch")]
    assert summary["best_figures"]["loss"] == pytest.approx(min(every))
    best = load_checkpoint(tmp_path / "b" / "best")
    model = LanguageModel(LMConfig.from_dict(best.config["model"]))
    model.load_state_dict(best.weights)
    task = Task(**task_kw)
    task.model = model
    assert task.evaluate("valid")["loss"] == pytest.approx(min(every), rel=1e-6)


def test_weight_average_follows_the_formula():
    from rnnkit.train.ema import WeightAverage

    w = {"a": np.array([0.0, 1.0]), "b": np.array([[2.0]])}
    ema = WeightAverage(w, 0.9)
    expect = {k: v.copy() for k, v in w.items()}
    rng = np.random.default_rng(0)
    for n in range(30):
        for v in w.values():
            v += rng.normal(size=v.shape)  # the optimiser's step, in place
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in w.items():
            expect[k] = d * expect[k] + (1 - d) * v
        ema.update()
    for k, v in expect.items():
        np.testing.assert_allclose(ema.avg[k], v, rtol=1e-12)
    live = {k: v.copy() for k, v in w.items()}
    with ema.swapped():
        for k, v in w.items():
            np.testing.assert_array_equal(v, ema.avg[k])
    _assert_same(w, live)  # the raw weights are back, in the same arrays


def test_ema_validates_and_saves_best_with_the_average(tmp_path):
    cfg_kw, task_kw = SETUPS["adam-dropout"]
    plain, _ = _train(tmp_path / "a", _cfg(**cfg_kw), **task_kw)
    averaged, summary = _train(tmp_path / "b", _cfg(ema=0.9, **cfg_kw), **task_kw)
    _assert_same(_weights(plain), _weights(averaged))  # training itself is unchanged
    last = load_checkpoint(tmp_path / "b" / "last")
    _assert_same(last.weights, _weights(averaged))  # last/ holds the raw weights ...
    avg = {k[4:]: v for k, v in last.train_arrays.items() if k.startswith("ema.")}
    _assert_same(avg, averaged.ema.avg)  # ... and the average, for a resume
    assert last.train_meta["ema_updates"] == 3 * N_BATCHES
    differs = any(not np.array_equal(avg[k], last.weights[k]) for k in avg)
    assert differs
    # best/ holds the average of the best epoch, and its validation loss is the one reported
    best = load_checkpoint(tmp_path / "b" / "best")
    model = LanguageModel(LMConfig.from_dict(best.config["model"]))
    model.load_state_dict(best.weights)
    task = Task(**task_kw)
    task.model = model
    assert task.evaluate("valid")["loss"] == pytest.approx(summary["best"], rel=1e-9)


def test_ema_resume_equals_an_uninterrupted_run(tmp_path):
    cfg_kw, task_kw = SETUPS["sgd-decay"]
    full, _ = _train(tmp_path / "a", _cfg(ema=0.95, **cfg_kw), **task_kw)
    _train(tmp_path / "b", _cfg(ema=0.95, max_steps=N_BATCHES + 4, **cfg_kw), **task_kw)
    second, _ = _train(tmp_path / "b", _cfg(ema=0.95, **cfg_kw), resume=True, **task_kw)
    _assert_same(_weights(full), _weights(second))
    _assert_same(full.ema.avg, second.ema.avg)
    assert full.ema.updates == second.ema.updates
    _assert_same(load_checkpoint(tmp_path / "a" / "best").weights,
                 load_checkpoint(tmp_path / "b" / "best").weights)


def test_huge_figures_are_printed_short():
    from rnnkit.train.trainer import fmt_figure

    assert fmt_figure(118.27) == "118.2700" and fmt_figure(114.123, 2) == "114.12"
    assert fmt_figure(float(np.exp(468.9))) == "4.372e+203"
    assert fmt_figure(float("inf")) == "inf"
