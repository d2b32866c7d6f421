"""Run logs (metrics JSON lines, progress bar) and the training plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.errors import DataError, ShapeError
from rnnkit.train.runlog import MetricsLog, Progress, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(n_steps=60, per_epoch=20, classifier=False):
    rng = np.random.default_rng(0)
    records = [{"event": "start", "clip": 1.0}]
    for s in range(1, n_steps + 1):
        g = float(rng.lognormal(0.0, 1.0))
        rec = {"event": "step", "epoch": (s - 1) // per_epoch + 1, "step": s, "tokens": 64 * s,
               "loss": 4.0 * np.exp(-s / 30) + 0.1 * rng.random(), "lr": 1e-3,
               "grad_norm": g, "clipped": g > 1.0, "tokens_per_s": 5e4}
        if classifier:
            del rec["grad_norm"], rec["clipped"], rec["tokens"]
        records.append(rec)
        if s % per_epoch == 0:
            ep = {"event": "epoch", "epoch": s // per_epoch, "train_loss": rec["loss"],
                  "valid_loss": rec["loss"] + 0.2}
            if classifier:
                ep["valid_accuracy"] = 0.5 + s / (4 * n_steps)
            records.append(ep)
    return records


def test_metrics_round_trip_and_flush_per_line(tmp_path):
    p = tmp_path / "run" / "metrics.jsonl"
    with MetricsLog(p) as log:
        rec = log.log("step", step=np.int64(3), loss=np.float32(1.5), clipped=np.bool_(True),
                      h=np.arange(2), where=tmp_path)
        assert rec == {"event": "step", "step": 3, "loss": 1.5, "clipped": True, "h": [0, 1],
                       "where": str(tmp_path)}
        assert read_metrics(p) == [rec]  # already on disk while the log is open
        log.write({"event": "epoch", "epoch": 1, "valid_loss": float("nan")})
    got = read_metrics(p)
    assert got[0] == rec and got[1]["epoch"] == 1 and np.isnan(got[1]["valid_loss"])
    assert all(isinstance(json.loads(line), dict) for line in p.read_text().splitlines())


def test_resume_appends(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with MetricsLog(p) as log:
        log.log("step", step=1)
    with MetricsLog(p) as log:
        log.log("step", step=2)
    assert [r["step"] for r in read_metrics(p)] == [1, 2]


def test_truncated_last_line_tolerated_and_dropped_on_resume(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with MetricsLog(p) as log:
        log.log("step", step=1, loss=2.0)
        log.log("step", step=2, loss=1.9)
    data = p.read_bytes()
    p.write_bytes(data[:-9])  # a crash in the middle of the second line
    assert read_metrics(p) == [{"event": "step", "step": 1, "loss": 2.0}]
    with MetricsLog(p) as log:
        log.log("step", step=2, loss=1.8)
    assert [r["loss"] for r in read_metrics(p)] == [2.0, 1.8]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"event": "step", "step": 1}')
    with MetricsLog(p) as log:
        log.log("step", step=2)
    assert [r["step"] for r in read_metrics(p)] == [1, 2]


def test_bad_middle_line_and_missing_file(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_metrics(p)
    p.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        read_metrics(p)
    with pytest.raises(DataError, match="no such metrics file"):
        read_metrics(tmp_path / "nope.jsonl")


def test_progress_disabled_is_silent(capsys):
    with Progress(total=100, desc="train", disable=True) as bar:
        bar.update(10, loss=1.0)
    assert capsys.readouterr().err == ""


def test_progress_shows_postfix_on_stderr(capsys):
    with Progress(total=1000, desc="train") as bar:
        bar.update(500, loss=np.float32(2.34567), ppl=10.4, tokens_per_s=51234.0, grad_norm=3.2)
        bar.write("hello")
    out = capsys.readouterr()
    assert out.out == ""
    for piece in ("train", "loss=2.346", "ppl=10.4", "tok/s=51.2k", "|g|=3.2", "hello"):
        assert piece in out.err


# -- plots --------------------------------------------------------------------------------------


def _is_png(p):
    data = p.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 5000


@pytest.mark.parametrize("classifier", [False, True])
def test_plot_training_writes_png(tmp_path, classifier):
    pytest.importorskip("matplotlib")
    from rnnkit.train.plotting import plot_training

    p = plot_training(_run(classifier=classifier), tmp_path / "plots" / "training.png")
    assert _is_png(p)
    assert [x.name for x in p.parent.iterdir()] == ["training.png"]  # no temp files left


def test_plot_training_partial_and_resumed_logs(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnkit.train.plotting import plot_training

    only_epochs = [{"event": "epoch", "epoch": e, "valid_loss": 3.0 / e} for e in (1, 2, 3)]
    assert _is_png(plot_training(only_epochs, tmp_path / "a.png"))
    resumed = _run(40) + _run(60)[30:]  # steps 31.. logged twice after a crash and resume
    resumed.append({"event": "step", "step": 61, "loss": float("nan"), "grad_norm": float("inf")})
    assert _is_png(plot_training(resumed, tmp_path / "b.png"))
    with pytest.raises(DataError, match="no 'step' or 'epoch' records"):
        plot_training([{"event": "start"}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_plot_curves(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnkit.train.plotting import plot_curves

    t = np.arange(50)
    curves = {"rnn": 0.9 ** t, "lstm": np.ones(50), "zeros": np.zeros(50)}
    p = plot_curves(curves, tmp_path / "g.png", xlabel="t", ylabel="|dL/dh_t|", title="BPTT")
    assert _is_png(p)
    assert _is_png(plot_curves({"a": t - 10.0}, tmp_path / "h.png", logy=False, x=t))
    with pytest.raises(ShapeError, match="expected curve 'a' of shape"):
        plot_curves({"a": np.ones((2, 3))}, tmp_path / "i.png")
