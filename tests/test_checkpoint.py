"""Checkpoint format: round trips, corruption, crash safety, recovery."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnkit
import rnnkit.train.checkpoint as ckmod
from rnnkit.errors import CheckpointError
from rnnkit.train.checkpoint import Checkpoint, find_checkpoint, load_checkpoint, save_checkpoint


def _weights(rng, scale=1.0):
    return {
        "embed.W": (scale * rng.standard_normal((7, 3))).astype(np.float32),
        "layers.0.fwd.W_h": scale * rng.standard_normal((3, 12)),  # float64
        "layers.0.fwd.b": np.zeros(12, dtype=np.float32),
        "file": np.arange(3),  # a name np.savez(file, **arrays) would choke on
    }


def _save(path, rng, **kw):
    args = {"kind": "lm", "config": {"H": 3, "cell": "lstm"}, "weights": _weights(rng)}
    args.update(kw)
    return save_checkpoint(path, **args)


def _snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def _rewrite_manifest(ck, **changes):
    m = json.loads((ck / "manifest.json").read_text())
    m.update(changes)
    (ck / "manifest.json").write_text(json.dumps(m))


def _rehash(ck, name):
    """Make the manifest agree with a file we replaced, so only the content check can fail."""
    m = json.loads((ck / "manifest.json").read_text())
    data = (ck / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (ck / "manifest.json").write_text(json.dumps(m))


def _error(path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_every_field(tmp_path):
    rng = np.random.default_rng(0)
    weights = _weights(rng)
    config = {"H": 3, "dropout": 0.25, "sizes": [1, 2], "nested": {"ok": True, "none": None}}
    vocab = {"itos": ["<unk>", "a", "é"], "stoi": {"<unk>": 0, "a": 1, "é": 2}}
    state = rng.bit_generator.state
    meta = {"step": np.int64(120), "lr": np.float32(0.5), "best": float("inf"),
            "rng": state, "shape": (2, 3)}
    arrays = {"adam.m.embed.W": rng.standard_normal((7, 3)), "step": np.array(5),
              "h0": rng.standard_normal((2, 4)).astype(np.float32)}
    p = save_checkpoint(tmp_path / "ck", kind="lm", config=config, weights=weights, vocab=vocab,
                        train_meta=meta, train_arrays=arrays)
    assert p == tmp_path / "ck"
    ck = load_checkpoint(p, kind="lm")
    assert isinstance(ck, Checkpoint) and ck.path == p and ck.kind == "lm"
    assert ck.config == config and ck.vocab == vocab
    assert ck.train_meta == {"step": 120, "lr": 0.5, "best": float("inf"),
                             "rng": state, "shape": [2, 3]}
    for got, want in ((ck.weights, weights), (ck.train_arrays, arrays)):
        assert list(got) == list(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
            assert np.array_equal(got[k], want[k])
    m = ck.manifest
    assert m["format"] == "rnnkit-checkpoint" and m["format_version"] == 1
    assert m["rnnkit_version"] == rnnkit.__version__ and m["kind"] == "lm" and m["created"]
    assert list(m["files"]) == ["config.json", "weights.npz", "vocab.json",
                                "train_state.json", "train_state.npz"]
    for name, entry in m["files"].items():
        data = (p / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert "array" not in repr(ck) and len(repr(ck)) < 400  # no array dumps in the repr
    assert _leftovers(tmp_path) == []


def test_optional_parts_absent_and_weights_only(tmp_path):
    rng = np.random.default_rng(1)
    ck = load_checkpoint(_save(tmp_path / "a", rng))
    assert ck.vocab is None and ck.train_meta is None and ck.train_arrays is None
    p = _save(tmp_path / "b", rng, train_meta={"step": 1}, train_arrays={"m": np.ones(2)})
    (p / "train_state.npz").write_bytes(b"garbage")  # not even looked at with weights_only
    ck = load_checkpoint(p, weights_only=True)
    assert ck.train_meta is None and ck.train_arrays is None
    assert "train_state.npz is" in _error(p)


def test_overwrite_replaces_and_leaves_nothing_behind(tmp_path):
    rng = np.random.default_rng(2)
    p = _save(tmp_path / "ck", rng, config={"v": 1})
    _save(p, rng, config={"v": 2})
    assert load_checkpoint(p).config == {"v": 2}
    assert _leftovers(tmp_path) == []


def test_kind_filter(tmp_path):
    p = _save(tmp_path / "ck", np.random.default_rng(3), kind="classifier")
    assert load_checkpoint(p, kind=("lm", "classifier")).kind == "classifier"
    msg = _error(p, kind="lm")
    assert str(p) in msg and "is a 'classifier' checkpoint; expected 'lm'" in msg
    assert "expected one of 'lm', 'tagger'" in _error(p, kind=["lm", "tagger"])


def test_import_needs_only_numpy():
    code = ("import sys, rnnkit.train.checkpoint, rnnkit.train.runlog, rnnkit.train.plotting; "
            "bad = {'matplotlib', 'tqdm', 'torch'} & set(sys.modules); assert not bad, bad")
    root = Path(rnnkit.__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# -- refusing to save ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_refused(tmp_path, bad):
    rng = np.random.default_rng(4)
    p = _save(tmp_path / "ck", rng)
    before = _snapshot(p)
    w = _weights(rng)
    w["layers.0.fwd.W_h"][1, 2] = bad
    with pytest.raises(CheckpointError, match="refusing to save non-finite weights.*"
                       r"layers.0.fwd.W_h.*previous checkpoint kept"):
        _save(p, rng, weights=w)
    assert _snapshot(p) == before and _leftovers(tmp_path) == []
    with pytest.raises(CheckpointError, match="non-finite train state"):
        _save(tmp_path / "new", rng, train_arrays={"m": np.array([bad])})
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("kw, match", [
    ({"config": {0: "a"}}, "non-string key 0"),
    ({"config": {"f": print}}, r"config\['f'\] is a builtin_function_or_method"),
    ({"config": [1, 2]}, "config must be a dict"),
    ({"vocab": {"x": b"bytes"}}, "bytes"),
    ({"weights": {"w": np.array([object()])}}, "dtype object"),
    ({"weights": {"": np.ones(2)}}, "non-empty strings"),
    ({"kind": ""}, "kind must be"),
])
def test_bad_inputs_refused_before_touching_disk(tmp_path, kw, match):
    with pytest.raises(CheckpointError, match=match):
        _save(tmp_path / "ck", np.random.default_rng(5), **kw)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_non_checkpoint_directory(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="not an rnnkit checkpoint.*refusing"):
        _save(tmp_path / "run", np.random.default_rng(6))
    assert (tmp_path / "run" / "notes.txt").read_text() == "precious"


# -- failures while saving ----------------------------------------------------------------------


def _fail_nth(real, n, exc):
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in n:
            raise exc
        return real(*args, **kwargs)

    return fake


DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target, n", [
    ((ckmod.npy_format, "write_array"), {2}),  # half-way through weights.npz
    ((os, "fsync"), {3}),
    ((os, "replace"), {1}),  # renaming the old checkpoint away
    ((os, "replace"), {2}),  # renaming tmp into place (the old one is put back)
])
def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch, target, n):
    rng = np.random.default_rng(7)
    p = _save(tmp_path / "ck", rng, train_arrays={"m": np.ones(3)})
    before = _snapshot(p)
    monkeypatch.setattr(*target, _fail_nth(getattr(*target), n, DISK_FULL))
    with pytest.raises(CheckpointError, match="disk is full; the previous checkpoint was kept"):
        _save(p, rng, config={"v": 2}, train_arrays={"m": np.zeros(3)})
    monkeypatch.undo()
    assert _snapshot(p) == before
    assert _leftovers(tmp_path) == []
    assert load_checkpoint(p).config == {"H": 3, "cell": "lstm"}


def test_other_errors_are_wrapped_and_cleaned_up(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(ckmod.npy_format, "write_array", boom)
    with pytest.raises(CheckpointError, match=r"\(RuntimeError: boom\); nothing was saved"):
        _save(tmp_path / "ck", np.random.default_rng(8))
    assert list(tmp_path.iterdir()) == []


def test_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    run = tmp_path / "run"
    p = _save(run / "best", rng, config={"v": 1})
    before = _snapshot(p)
    # tmp -> path fails and so does putting the old one back: `best` is gone, `.best.old-*` stays
    monkeypatch.setattr(os, "replace", _fail_nth(os.replace, {2, 3}, DISK_FULL))
    with pytest.raises(CheckpointError, match="previous checkpoint was kept"):
        _save(p, rng, config={"v": 2})
    monkeypatch.undo()
    assert not p.exists()
    assert [n.startswith(".best.old-") for n in _leftovers(run)] == [True]

    assert find_checkpoint(run) == p  # restored by the run-directory lookup
    assert _snapshot(p) == before and _leftovers(run) == []
    assert load_checkpoint(p).config == {"v": 1}


def test_load_recovers_old_dir_and_next_save_cleans_stale(tmp_path):
    rng = np.random.default_rng(10)
    p = _save(tmp_path / "ck", rng, config={"v": 1})
    os.replace(p, tmp_path / ".ck.old-0123abcd")  # a crash right after the first rename ...
    (tmp_path / ".ck.tmp-89abcdef").mkdir()  # ... with a half-written new one beside it
    (tmp_path / ".ck.tmp-89abcdef" / "config.json").write_text("{")
    assert load_checkpoint(p).config == {"v": 1}
    assert p.is_dir() and _leftovers(tmp_path) == [".ck.tmp-89abcdef"]
    _save(p, rng, config={"v": 2})
    assert _leftovers(tmp_path) == [] and load_checkpoint(p).config == {"v": 2}


def test_incomplete_old_dir_is_not_restored(tmp_path):
    p = _save(tmp_path / "ck", np.random.default_rng(11))
    old = tmp_path / ".ck.old-0123abcd"
    os.replace(p, old)
    (old / "weights.npz").unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(p)


# -- corrupt and foreign checkpoints ------------------------------------------------------------


@pytest.fixture
def ck(tmp_path):
    return _save(tmp_path / "ck", np.random.default_rng(12))


def test_truncated_weights(ck):
    data = (ck / "weights.npz").read_bytes()
    (ck / "weights.npz").write_bytes(data[: len(data) // 2])
    msg = _error(ck)
    assert str(ck) in msg and "weights.npz is truncated" in msg


def test_flipped_byte(ck):
    data = bytearray((ck / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (ck / "weights.npz").write_bytes(bytes(data))
    assert "weights.npz is corrupt (sha256" in _error(ck)


def test_flipped_byte_in_config(ck):
    data = bytearray((ck / "config.json").read_bytes())
    data[2] ^= 0x20
    (ck / "config.json").write_bytes(bytes(data))
    assert "config.json is corrupt" in _error(ck)


def test_missing_manifest(ck):
    (ck / "manifest.json").unlink()
    msg = _error(ck)
    assert str(ck) in msg and "not an rnnkit checkpoint" in msg


def test_garbage_manifest(ck):
    (ck / "manifest.json").write_bytes(b"\x00\xffnot json")
    assert "manifest.json is not valid JSON" in _error(ck)


def test_wrong_format_name(ck):
    _rewrite_manifest(ck, format="something-else")
    assert "not an rnnkit checkpoint (manifest.json format is 'something-else'" in _error(ck)


def test_future_format_version(ck):
    _rewrite_manifest(ck, format_version=2, rnnkit_version="9.0.0")
    msg = _error(ck)
    assert "written by rnnkit 9.0.0, format 2; " in msg
    assert "reads format <= 1; upgrade rnnkit" in msg


def test_missing_file(ck):
    (ck / "config.json").unlink()
    assert "missing file config.json" in _error(ck)


def test_malformed_files_table(ck):
    m = json.loads((ck / "manifest.json").read_text())
    m["files"]["../../etc/passwd"] = {"sha256": "0", "bytes": 1}
    (ck / "manifest.json").write_text(json.dumps(m))
    assert "malformed 'files' table" in _error(ck)


def test_not_a_directory_and_not_there(tmp_path, ck):
    assert "(a file, not a directory); pass its directory" in _error(ck / "weights.npz")
    assert "does not exist" in _error(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "not an rnnkit checkpoint" in _error(tmp_path / "empty")


def test_object_array_is_never_unpickled(ck, monkeypatch):
    np.savez(ck / "weights.npz", w=np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    _rehash(ck, "weights.npz")

    def no_unpickling(*a, **k):
        raise AssertionError("unpickled!")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    assert "object arrays or pickled data; rnnkit never unpickles" in _error(ck)


def test_pickle_file_posing_as_npz(ck):
    (ck / "weights.npz").write_bytes(pickle.dumps({"w": np.ones(2)}))
    _rehash(ck, "weights.npz")
    assert "never unpickles" in _error(ck)


@pytest.mark.parametrize("payload", [b"PK\x03\x04 not really a zip", b""])
def test_unreadable_npz(ck, payload):
    (ck / "weights.npz").write_bytes(payload)
    _rehash(ck, "weights.npz")
    assert "weights.npz is" in _error(ck)


def test_plain_npy_posing_as_npz(ck):
    with open(ck / "weights.npz", "wb") as f:
        np.save(f, np.ones(3))
    _rehash(ck, "weights.npz")
    assert "weights.npz is not an .npz archive" in _error(ck)


def test_non_finite_weights_on_disk_rejected(ck):
    np.savez(ck / "weights.npz", w=np.array([1.0, np.nan]))
    _rehash(ck, "weights.npz")
    assert "non-finite values in 'w'" in _error(ck)


# -- find_checkpoint ----------------------------------------------------------------------------


def test_find_checkpoint(tmp_path):
    rng = np.random.default_rng(13)
    run = tmp_path / "run"
    last = _save(run / "last", rng)
    assert find_checkpoint(last) == last
    assert find_checkpoint(run) == last
    best = _save(run / "best", rng)
    assert find_checkpoint(run) == best
    assert load_checkpoint(run).path == best
    (run / "other").mkdir()
    with pytest.raises(CheckpointError, match="no best/ or last/"):
        find_checkpoint(run / "other")
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "missing")


def test_read_and_restore(tmp_path):
    from rnnkit.errors import CheckpointError
    from rnnkit.tasks.lm.model import LanguageModel, LMConfig

    cfg = LMConfig(vocab_size=7, embed_size=3, hidden_size=4, num_layers=1)
    model = LanguageModel(cfg, rng=5)
    save_checkpoint(tmp_path / "ck", kind="lm", config={"model": cfg.to_dict()},
                    weights=model.state_dict(), vocab={"tokens": []})
    ck = load_checkpoint(tmp_path / "ck")
    got = ck.restore(LanguageModel, ck.read(lambda: LMConfig.from_dict(ck.config["model"])))
    assert not got.training
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(got.parameters()[k], v)
    with pytest.raises(CheckpointError, match="config or vocabulary unreadable .*'missing'"):
        ck.read(lambda: ck.config["missing"])
    with pytest.raises(CheckpointError, match="unknown language-model config keys"):
        ck.read(lambda: LMConfig.from_dict({**ck.config["model"], "extra": 1}))
