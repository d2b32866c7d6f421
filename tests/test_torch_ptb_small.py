"""benchmarks/torch_ptb_small.py: the torch reference run halves its rate after epoch 4, logs
what valid_curves.py reads, and prints the test figure it parses."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not (SHARED / "ptb").is_dir(),
                                reason=f"shared data not found at {SHARED}")


def _load(name):
    sys.path.insert(0, str(BENCH))  # the scripts import benchutil
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_log_and_test_figure(tmp_path, capsys):
    script, curves = _load("torch_ptb_small"), _load("valid_curves")
    out = tmp_path / "run"
    assert script.main(["--data-dir", str(SHARED), "--epochs", "6", "--max-steps", "2",
                        "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    (out / "train.log").write_text(printed)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["lr"] for r in epochs] == [20, 20, 20, 20, 10, 5]
    assert all(r["valid_ppl"] > 1 for r in epochs)
    times = [r["time"] for r in epochs]
    assert times == sorted(times)
    points, rate = curves.read_points(out, "ppl")
    assert len(points) == 6 and rate > 0
    test = [r for r in records if r["event"] == "test"][0]
    assert curves.test_figure(out / "train.log") == pytest.approx(test["test_ppl"], abs=0.01)
    assert "vocabulary 10002" in printed


def test_refuses_absurd_options(tmp_path):
    script = _load("torch_ptb_small")
    for bad in (["--epochs", "0"], ["--max-steps", "-1"]):
        with pytest.raises(SystemExit):
            script.parse_args([*bad, "--out", str(tmp_path)])
