"""The clipping report from a run's metrics."""


import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.inspect.clipping import clipping_report, format_clipping, plot_clipping
from rnnkit.train.runlog import MetricsLog


def _run(tmp_path, norms_per_epoch, clip_counts, log_every=2, resume_dup=False):
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        log.log("start", params=10, train={"clip": 1.0})
        step = 0
        for e, norms in enumerate(norms_per_epoch, 1):
            for g in norms:
                step += 1
                if step % log_every == 0:
                    log.log("step", epoch=e, step=step, loss=1.0, grad_norm=g,
                            clipped=g > 1.0, clip=1.0)
            if e <= len(clip_counts):
                log.log("epoch", epoch=e, step=step, clip_count=clip_counts[e - 1])
        if resume_dup:  # a resumed run re-logs the last step with another norm
            log.log("step", epoch=e, step=step, loss=1.0, grad_norm=7.0, clipped=True, clip=1.0)
    return tmp_path


def test_per_epoch_rates_and_quantiles(tmp_path):
    rng = np.random.default_rng(0)
    norms = [rng.lognormal(0, 1, 10), rng.lognormal(0, 1, 6), rng.lognormal(0, 1, 4)]
    _run(tmp_path, norms, clip_counts=[3, 6])  # the third epoch has no epoch record
    r = clipping_report(tmp_path)
    assert r.threshold == 1.0
    e1, e2, e3 = r.epochs
    assert (e1["steps"], e1["clipped"], e1["fraction"]) == (10, 3, 0.3)
    assert (e2["steps"], e2["clipped"], e2["fraction"]) == (6, 6, 1.0)
    logged = np.concatenate(norms)[1::2]  # every second step was logged
    assert e3["logged"] == 2 and e3["steps"] == 2
    assert e3["clipped"] == int((logged[-2:] > 1).sum())
    np.testing.assert_allclose(r.norms, logged)
    np.testing.assert_allclose(r.quantiles["50%"], np.median(logged))
    np.testing.assert_allclose(r.quantiles["95%"], np.quantile(logged, 0.95))
    assert r.counts.sum() == logged.size
    assert r.edges[0] <= logged.min() and r.edges[-1] >= logged.max()
    text = format_clipping(r)
    assert "clip threshold: 1.0" in text and "<- clip" in text
    assert "    1      10        3     30.0%" in text


def test_resumed_steps_replace_earlier_ones_and_nonfinite_norms(tmp_path):
    _run(tmp_path, [[0.5, 2.0, 0.5, np.inf]], clip_counts=[2], resume_dup=True)
    r = clipping_report(tmp_path / "metrics.jsonl")
    assert r.nonfinite == 0 and r.norms.tolist() == [2.0, 7.0]
    _run(tmp_path / "b", [[0.5, np.nan]], clip_counts=[1])
    assert clipping_report(tmp_path / "b").nonfinite == 1


def test_plot_and_errors(tmp_path):
    pytest.importorskip("matplotlib")
    _run(tmp_path, [[0.5, 2.0, 3.0, 0.1]], clip_counts=[2])
    path = plot_clipping(clipping_report(tmp_path), tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="no step or epoch records"):
        clipping_report([{"event": "start"}])
