"""Checkpoints and resume against hostile input: the data a run resumes on, dtypes, symlinks and
random bytes in a checkpoint, crafted configs on --resume."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.errors import CheckpointError
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.trainer import Trainer

TEXT = "the quick brown fox jumps over the lazy dog\n" * 12
TINY = ["--hidden", "6", "--embed", "4", "--layers", "1", "--bptt", "5", "--batch-size", "2",
        "--sample-length", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def no_plot(monkeypatch):
    monkeypatch.setattr(Trainer, "_plot", lambda self: None)


def _rewrite(ckpt, name, data: bytes):
    """Replace one file of a checkpoint and make the manifest agree (a crafted checkpoint)."""
    (ckpt / name).write_bytes(data)
    m = json.loads((ckpt / "manifest.json").read_text())
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (ckpt / "manifest.json").write_text(json.dumps(m))


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _trained(tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with open("t.txt", "w", encoding="utf-8") as f:
        f.write(TEXT)
    code, _, err = _run(["train", "--data", "t.txt", "--out", tmp_path / "run", "--max-steps",
                         "3", *TINY], capsys)
    assert code == 0, err
    return tmp_path / "run"


# -- 7: the data of a resumed run --------------------------------------------------------------


def test_resume_from_another_working_directory(tmp_path, monkeypatch, capsys):
    run = _trained(tmp_path, monkeypatch, capsys)
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["train", "--out", run, "--resume", "--max-steps", "5"], capsys)
    assert code == 0, err
    assert load_checkpoint(run / "last").train_meta["step"] == 5
    saved = load_checkpoint(run / "last").config["data"]
    assert saved["source"] == str(tmp_path / "a" / "t.txt")
    assert saved["fingerprint"]["chars"] == len(TEXT)
    assert len(saved["fingerprint"]["sha256"]) == 64


def test_resume_on_changed_data_is_refused_unless_accepted(tmp_path, monkeypatch, capsys):
    run = _trained(tmp_path, monkeypatch, capsys)
    (tmp_path / "a" / "t.txt").write_text(TEXT.upper(), encoding="utf-8")
    code, _, err = _run(["train", "--out", run, "--resume", "--max-steps", "5"], capsys)
    assert code == 2
    assert "t.txt" in err and "--accept-changed-data" in err and len(err.splitlines()) == 1
    code, _, err = _run(["train", "--out", run, "--resume", "--max-steps", "5",
                         "--accept-changed-data"], capsys)
    assert code == 0 and "warning" in err and "t.txt" in err


# -- 8: dtypes, symlinks, random bytes ------------------------------------------------------------


def _lm_checkpoint(tmp_path):
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    cfg = LMConfig(vocab_size=5, embed_size=3, hidden_size=4, num_layers=1, dtype="float32")
    model = LanguageModel(cfg, rng=np.random.default_rng(0))
    p = save_checkpoint(tmp_path / "ck", kind="lm", config={"model": cfg.to_dict()},
                        weights=model.state_dict())
    return p, model


def _npz_bytes(arrays):
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", ["int64", "float16", "float64"])
def test_a_dtype_other_than_the_config_is_refused(tmp_path, dtype):
    from rnnkit.tasks.lm.model import LanguageModel

    p, model = _lm_checkpoint(tmp_path)
    _rewrite(p, "weights.npz", _npz_bytes({k: v.astype(dtype)
                                            for k, v in model.state_dict().items()}))
    with pytest.raises(CheckpointError, match=f"dtype {dtype}.*float32"):
        load_checkpoint(p).restore(LanguageModel, model.cfg)


def test_symlinks_inside_a_checkpoint_are_not_followed(tmp_path):
    p, _ = _lm_checkpoint(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((p / "config.json").read_bytes())
    (p / "config.json").unlink()
    os.symlink(outside, p / "config.json")
    with pytest.raises(CheckpointError, match="symbolic link"):
        load_checkpoint(p)


def test_random_bytes_are_not_an_npz_archive(tmp_path):
    p, _ = _lm_checkpoint(tmp_path)
    _rewrite(p, "weights.npz", bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="not an .npz archive") as info:
        load_checkpoint(p)
    assert "pickle" not in str(info.value)


# -- 9: crafted config.json on --resume -----------------------------------------------------------


@pytest.mark.parametrize("config", [
    {},
    {"model": "lstm"},
    {"model": {"vocab_size": "x"}},
    {"model": {"vocab_size": 10**30, "hidden_size": 10**30}},
    {"model": {}, "data": []},
])
def test_resume_on_a_crafted_config_is_one_line(tmp_path, monkeypatch, capsys, config):
    run = _trained(tmp_path, monkeypatch, capsys)
    _rewrite(run / "last", "config.json", json.dumps(config).encode())
    code, _, err = _run(["train", "--out", run, "--resume", "--max-steps", "5"], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert str(run / "last") in err
    assert "--debug" not in err  # a known, explained error
