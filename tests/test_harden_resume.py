"""Losing or misreporting progress: crash recovery on resume, run directories without last/,
best/ across crash and resume, double Ctrl-C, SIGTERM, and the lock on a run directory."""

from __future__ import annotations

import argparse
import os
import signal

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.errors import CheckpointError
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.tasks.lm.task import LMTask
from rnnkit.text.tokenizers import CharTokenizer
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.options import out_dir
from rnnkit.train.runlog import read_metrics
from rnnkit.train.trainer import TrainConfig, Trainer

TEXT = "the quick brown fox jumps over the lazy dog\n" * 3
N_BATCHES = 13


class Task(LMTask):
    """A tiny LM task that can send signals, crash, or return scripted validation figures."""

    def __init__(self, *, signals=(), at=None, crash_at=None, scripted=None):
        tok = CharTokenizer().fit(TEXT)
        cfg = LMConfig(vocab_size=len(tok.vocab), cell="gru", embed_size=4, hidden_size=6,
                       num_layers=1, dtype="float64")
        ids = tok.encode(TEXT)
        super().__init__(LanguageModel(cfg, rng=np.random.default_rng(0)), tok, ids[:132],
                         ids[100:], batch_size=2, bptt=5, eval_batch_size=2)
        self.signals, self.at, self.crash_at = signals, at, crash_at
        self.scripted, self.calls, self.evals = scripted, 0, 0

    def train_batch(self, i, rng):
        self.calls += 1
        if self.calls == self.at:
            for s in self.signals:
                signal.raise_signal(s)
        if self.calls == self.crash_at:
            raise RuntimeError("crash")
        return super().train_batch(i, rng)

    def evaluate(self, split):
        if self.scripted is None:
            return super().evaluate(split)
        self.evals += 1
        value = self.scripted[min(self.evals, len(self.scripted)) - 1]
        return {"loss": value, "ppl": float(np.exp(value))}


@pytest.fixture(autouse=True)
def no_plot(monkeypatch):
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)


def _cfg(**kw):
    return TrainConfig(**{"epochs": 2, "progress": False, "seed": 1, "log_every": 4, **kw})


def _train(out, cfg, task=None, resume=False):
    task = task or Task()
    return Trainer(task, cfg, out, resume=resume, echo=lambda s: None).fit()


def _args(out, resume):
    return argparse.Namespace(out=out, resume=resume)


# -- 1: a save cut between its two renames -------------------------------------------------------


def test_resume_recovers_a_save_cut_between_its_two_renames(tmp_path):
    _train(tmp_path, _cfg(epochs=1))
    os.replace(tmp_path / "last", tmp_path / ".last.old-0123abcd")
    assert out_dir(_args(tmp_path, True), "lm") == tmp_path
    assert (tmp_path / "last" / "manifest.json").exists()
    _train(tmp_path, _cfg(epochs=2), resume=True)
    assert load_checkpoint(tmp_path / "last").train_meta["epoch"] == 3


def test_a_new_run_is_refused_where_a_cut_save_left_a_run(tmp_path):
    _train(tmp_path, _cfg(epochs=1))
    os.replace(tmp_path / "last", tmp_path / ".last.old-0123abcd")
    os.replace(tmp_path / "best", tmp_path / ".best.old-0123abcd")
    with pytest.raises(ValueError, match="already holds a run"):
        out_dir(_args(tmp_path, False), "lm")


# -- 2: a run stopped before its first last/ save -------------------------------------------------


def test_a_run_directory_with_only_best_takes_a_new_run(tmp_path, capsys):
    task = Task()
    save_checkpoint(tmp_path / "best", kind="lm", config={"model": task.model.cfg.to_dict()},
                    weights=task.model.state_dict())
    assert out_dir(_args(tmp_path, False), "lm") == tmp_path
    assert "best/" in capsys.readouterr().err  # says that best/ will be replaced
    with pytest.raises(CheckpointError, match="without --resume"):
        out_dir(_args(tmp_path, True), "lm")


# -- 3: best/ never gets worse ---------------------------------------------------------------------


def test_best_never_gets_worse_across_crash_and_resume(tmp_path):
    # epoch 1 ends at 2.0 (last/ says best 2.0); at step 16 a validation reaches 1.0 (best/);
    # a crash at step 17; the resumed run validates at 1.5, which must not replace best/.
    with pytest.raises(RuntimeError, match="crash"):
        _train(tmp_path, _cfg(eval_every=16), Task(crash_at=17, scripted=[2.0, 1.0]))
    assert load_checkpoint(tmp_path / "last").train_meta["best"] == 2.0
    before = (tmp_path / "best" / "weights.npz").read_bytes()
    summary = _train(tmp_path, _cfg(eval_every=16), Task(scripted=[1.5]), resume=True)
    assert (tmp_path / "best" / "weights.npz").read_bytes() == before
    assert summary["best"] == 1.0


# -- 4 and 5: two Ctrl-C at once, SIGTERM ---------------------------------------------------------


def test_two_ctrl_c_at_once_save_nothing_and_say_so(tmp_path):
    with pytest.raises(KeyboardInterrupt) as info:
        _train(tmp_path, _cfg(), Task(signals=(signal.SIGINT, signal.SIGINT), at=3))
    assert not (tmp_path / "last").exists()
    assert info.value.saved is None


def _lm_cli(tmp_path, monkeypatch, signals, at):
    data = tmp_path / "t.txt"
    data.write_text(TEXT * 4, encoding="utf-8")
    calls = {"n": 0}
    original = LMTask.train_batch

    def train_batch(self, i, rng):
        calls["n"] += 1
        if calls["n"] == at:
            for s in signals:
                signal.raise_signal(s)
        return original(self, i, rng)

    monkeypatch.setattr(LMTask, "train_batch", train_batch)
    return main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--hidden", "6",
                 "--embed", "4", "--layers", "1", "--bptt", "5", "--batch-size", "2",
                 "--epochs", "2", "--sample-length", "0", "--no-progress"])


def test_cli_message_after_two_ctrl_c_matches_the_disk(tmp_path, monkeypatch, capsys):
    rc = _lm_cli(tmp_path, monkeypatch, (signal.SIGINT, signal.SIGINT), at=3)
    err = capsys.readouterr().err
    assert rc == 130
    assert not (tmp_path / "run" / "last").exists()
    assert "progress saved" not in err and "nothing was saved" in err


def test_cli_one_ctrl_c_saves_and_says_where(tmp_path, monkeypatch, capsys):
    rc = _lm_cli(tmp_path, monkeypatch, (signal.SIGINT,), at=3)
    err = capsys.readouterr().err
    assert rc == 130
    assert load_checkpoint(tmp_path / "run" / "last").train_meta["step"] == 3
    assert f"progress saved in {tmp_path / 'run' / 'last'}" in err


class Terminated(Exception):
    pass


@pytest.fixture
def sigterm_guard():
    """Without the trainer's handler a SIGTERM would end pytest: raise instead."""

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_saves_like_ctrl_c(tmp_path, sigterm_guard):
    with pytest.raises(KeyboardInterrupt) as info:
        _train(tmp_path, _cfg(), Task(signals=(signal.SIGTERM,), at=3))
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard  # put back
    assert info.value.status == 143
    assert load_checkpoint(tmp_path / "last").train_meta["step"] == 3
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["event"] == "interrupted"


def test_cli_sigterm_exits_143_after_saving(tmp_path, monkeypatch, capsys, sigterm_guard):
    rc = _lm_cli(tmp_path, monkeypatch, (signal.SIGTERM,), at=3)
    err = capsys.readouterr().err
    assert rc == 143
    assert "SIGTERM" in err and "progress saved" in err
    assert load_checkpoint(tmp_path / "run" / "last").train_meta["step"] == 3


# -- 6: one writer per run directory ---------------------------------------------------------------


def test_a_second_writer_is_refused_with_one_line(tmp_path):
    from rnnkit.train.runlock import RunLock

    with RunLock(tmp_path):
        with pytest.raises(CheckpointError) as info:
            _train(tmp_path, _cfg(epochs=1))
    message = str(info.value)
    assert "another rnnkit run" in message and str(tmp_path) in message
    assert "\n" not in message
    assert not (tmp_path / "last").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_the_lock_is_released_on_exit_and_stale_after_a_crash(tmp_path):
    from rnnkit.train.runlock import LOCK_FILE, RunLock

    with pytest.raises(RuntimeError, match="crash"):
        _train(tmp_path, _cfg(epochs=1), Task(crash_at=2))
    with RunLock(tmp_path):  # released although the run failed
        pass
    (tmp_path / LOCK_FILE).write_text("99999999\n")  # left by a killed process
    _train(tmp_path / "other", _cfg(epochs=1))
    (tmp_path / "other" / LOCK_FILE).write_text("1\n")
    _train(tmp_path / "other", _cfg(epochs=2), resume=True)
