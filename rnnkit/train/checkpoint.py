"""Checkpoints: one directory format for every kind of model.

A checkpoint is a directory (the full specification is in ``docs/checkpoint-format.md``)::

    ckpt/
      manifest.json      format, version, kind, sha256 and size of every other file; written last
      config.json        the model's configuration as a JSON object
      weights.npz        parameters under stable dotted names (``encoder.layers.0.fwd.W_h``)
      vocab.json         optional: tokenizer / label dictionaries
      train_state.json   optional: trainer, optimiser and RNG metadata
      train_state.npz    optional: optimiser buffers, carried hidden states, ...

Saving is atomic: everything is written and fsynced into a fresh sibling ``.ckpt.tmp-XXXXXXXX``,
then swapped into place (``ckpt -> .ckpt.old-XXXXXXXX``, ``tmp -> ckpt``, delete the old one).
A crash at any moment leaves either the old or the new checkpoint; if it struck between the two
renames, :func:`load_checkpoint` and :func:`find_checkpoint` put the old one back.

Loading verifies every file it reads against the manifest and never unpickles anything.

Example::

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = save_checkpoint(f"{d}/ckpt", kind="lm", config={"H": 4}, weights={"W_h": np.eye(2)})
    >>> ck = load_checkpoint(p, kind="lm")
    >>> ck.config, ck.weights["W_h"].dtype
    ({'H': 4}, dtype('float64'))
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath

import numpy as np
from numpy.lib import format as npy_format

from .. import __version__
from ..errors import CheckpointError

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
WEIGHTS = "weights.npz"
VOCAB = "vocab.json"
TRAIN_META = "train_state.json"
TRAIN_ARRAYS = "train_state.npz"
_DATA_FILES = (CONFIG, WEIGHTS, VOCAB, TRAIN_META, TRAIN_ARRAYS)


@dataclass
class Checkpoint:
    """A loaded checkpoint.  ``train_meta``/``train_arrays`` are ``None`` when absent or when
    loaded with ``weights_only=True``."""

    path: Path
    kind: str
    config: dict
    weights: dict[str, np.ndarray] = field(repr=False)
    vocab: dict | None = field(repr=False)
    train_meta: dict | None = field(repr=False)
    train_arrays: dict[str, np.ndarray] | None = field(repr=False)
    manifest: dict = field(repr=False)
    # int8 weights of a quantised checkpoint as stored: {name: (q int8, scale, axis)}, the
    # scales running along `axis` of q (1: per column, 0: per row); ``weights`` holds them
    # dequantised (see dequantize_weights)
    quantized: dict[str, tuple] = field(default_factory=dict, repr=False)

    def read(self, parse):
        """``parse()``, which reads ``config`` and ``vocab`` into objects, with a missing or
        malformed entry (``KeyError``, ``TypeError``, ``ValueError``) turned into one
        :class:`CheckpointError` naming this checkpoint."""
        try:
            return parse()
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError,
                MemoryError) as e:
            detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise CheckpointError(f"{self.path}: config or vocabulary unreadable "
                                  f"({detail})") from None

    def restore(self, model_cls, cfg):
        """A ``model_cls(cfg)`` holding these weights, in evaluation mode."""
        model = self.read(lambda: model_cls(cfg, rng=0))
        self.load_into(model)
        model.eval()
        return model

    def load_into(self, model) -> None:
        """Copy the weights into ``model``, refusing a dtype other than the model's (an int64
        array would truncate the weights, a float16 one lose precision)."""
        params = model.parameters()
        for name, a in self.weights.items():
            if name in params and a.dtype != params[name].dtype:
                raise CheckpointError(
                    f"{self.path}: {WEIGHTS} holds {name!r} with dtype {a.dtype}, but the "
                    f"config gives the model dtype {params[name].dtype}")
        model.load_state_dict(self.weights)


# -- saving ------------------------------------------------------------------------------------


def save_checkpoint(
    path,
    *,
    kind: str,
    config: dict,
    weights: dict[str, np.ndarray],
    vocab: dict | None = None,
    train_meta: dict | None = None,
    train_arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically and return ``path``.

    JSON parts (``config``, ``vocab``, ``train_meta``) must be dicts with string keys; NumPy
    scalars and arrays in them become plain numbers and lists.  Arrays must be numeric (never
    object) and finite.  On any failure the temporary directory is removed, whatever was at
    ``path`` is left untouched, and :class:`CheckpointError` is raised.
    """
    path = _as_path(path)
    kept = _kept(path)
    if not isinstance(kind, str) or not kind:
        raise CheckpointError(f"{path}: kind must be a non-empty string, got {kind!r}")
    # Everything that can be refused is refused before the disk is touched.
    texts = {CONFIG: _json_bytes(path, "config", config)}
    if vocab is not None:
        texts[VOCAB] = _json_bytes(path, "vocab", vocab)
    if train_meta is not None:
        texts[TRAIN_META] = _json_bytes(path, "train_meta", train_meta)
    arrays = {WEIGHTS: _checked_arrays(path, "weights", weights, kept)}
    if train_arrays is not None:
        arrays[TRAIN_ARRAYS] = _checked_arrays(path, "train_arrays", train_arrays, kept)

    _recover(path)
    _check_replaceable(path)
    had_previous = path.exists()
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        files = {}
        for name in _DATA_FILES:
            if name in texts:
                files[name] = _write_bytes(tmp / name, texts[name])
            elif name in arrays:
                files[name] = _write_npz(tmp / name, arrays[name])
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "rnnkit_version": __version__,
            "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": files,
        }
        _write_bytes(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        old = _swap(tmp, path)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, CheckpointError) or not isinstance(e, Exception):
            raise
        raise CheckpointError(_save_failure(path, e, had_previous)) from e
    _fsync_dir(path.parent)
    if old is not None:
        _remove(old)
    _remove_stale(path)
    return path


def _swap(tmp: Path, path: Path) -> Path | None:
    """``path -> old``, ``tmp -> path``; returns ``old`` (to delete) or ``None``."""
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            try:
                os.replace(old, path)
            except OSError:
                pass  # `old` is complete: the next load or save restores it
        raise
    return old


def _save_failure(path: Path, e: Exception, had_previous: bool) -> str:
    kept = "the previous checkpoint was kept" if had_previous else "nothing was saved"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"{path}: cannot save checkpoint: the disk is full; {kept}"
    return f"{path}: cannot save checkpoint ({type(e).__name__}: {e}); {kept}"


def _kept(path: Path) -> str:
    there = path.exists() or bool(_siblings(path, "old"))
    return "previous checkpoint kept" if there else "nothing was saved"


def _check_replaceable(path: Path) -> None:
    # Never swap away a directory that is not a checkpoint (a run directory, a data folder).
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise CheckpointError(f"{path}: exists and is not a directory; refusing to replace it")
    if not (path / MANIFEST).exists() and any(path.iterdir()):
        raise CheckpointError(
            f"{path}: exists and is not an rnnkit checkpoint (no {MANIFEST}); "
            "refusing to replace it"
        )


def _checked_arrays(path: Path, what: str, arrays, kept: str) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        raise CheckpointError(
            f"{path}: {what} must be a dict of name -> array, got {type(arrays).__name__}"
        )
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{path}: {what} names must be non-empty strings, got {name!r}")
        a = np.asarray(value)
        if a.dtype.hasobject:
            raise CheckpointError(
                f"{path}: {what}[{name!r}] has dtype object; only plain arrays can be saved"
            )
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = "NaN" if np.isnan(a).any() else "inf"
            noun = "weights" if what == "weights" else "train state"
            raise CheckpointError(
                f"{path}: refusing to save non-finite {noun} ({what}[{name!r}] contains {bad}); "
                f"{kept}"
            )
        out[name] = a if a.flags.c_contiguous else a.copy(order="C")
    return out


def _json_bytes(path: Path, what: str, obj) -> bytes:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: {what} must be a dict, got {type(obj).__name__}")
    try:
        clean = _jsonable(obj, what)
    except TypeError as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:
        return (json.dumps(clean, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them instead
        return (json.dumps(clean, indent=2) + "\n").encode("ascii")


def _jsonable(obj, where: str):
    """Plain-JSON copy of ``obj``; refuses non-string keys, which JSON would silently turn
    into strings (``{0: "a"}`` would load back as ``{"0": "a"}``)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{where} has the non-string key {k!r}; JSON keys are strings, "
                    "so convert keys explicitly (e.g. str(k))"
                )
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where} is a {type(obj).__name__}, which cannot be stored as JSON")


def _write_bytes(p: Path, data: bytes) -> dict:
    with open(p, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _write_npz(p: Path, arrays: dict[str, np.ndarray]) -> dict:
    # The same archive np.savez writes, built by hand because np.savez(file, **arrays) breaks
    # on arrays named "file" or "allow_pickle", and so that pickling is off when writing too.
    with open(p, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    npy_format.write_array(member, a, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    h = hashlib.sha256()
    with open(p, "rb") as f:  # hash what reached the disk, not what we meant to write
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": p.stat().st_size}


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open directories (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(p: Path) -> None:
    try:
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            p.unlink()
        elif p.exists():
            shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _siblings(path: Path, what: str) -> list[Path]:
    """``.<name>.tmp-XXXXXXXX`` or ``.<name>.old-XXXXXXXX`` entries next to ``path``."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{what}-[0-9a-f]{{8}}")
    try:
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []


def _remove_stale(path: Path) -> None:
    # Leftovers of crashed saves.  One writer per checkpoint path is assumed.
    for p in _siblings(path, "tmp") + _siblings(path, "old"):
        _remove(p)


# -- finding and recovering ---------------------------------------------------------------------


def find_checkpoint(path) -> Path:
    """Resolve ``path`` to a checkpoint directory.

    ``path`` may be a checkpoint, or a run directory holding ``best/`` and/or ``last/`` (``best``
    is preferred).  A checkpoint left half-swapped by a crash is restored first.
    """
    path = _recover(_as_path(path))
    if path.is_dir():
        if (path / MANIFEST).exists():
            return path
        for sub in ("best", "last"):
            cand = _recover(path / sub)
            if (cand / MANIFEST).exists():
                return cand
        raise CheckpointError(
            f"{path}: not an rnnkit checkpoint (no {MANIFEST}) and not a run directory "
            "(no best/ or last/ checkpoint inside)"
        )
    if path.exists():
        hint = (f"; pass its directory {path.parent}" if path.name in (MANIFEST, *_DATA_FILES)
                else "")
        raise CheckpointError(f"{path}: not an rnnkit checkpoint (a file, not a directory){hint}")
    raise CheckpointError(f"{path}: no such checkpoint (the path does not exist)")


def recover(path) -> Path:
    """Put back a checkpoint left half-swapped at ``path`` by a crash (see :func:`_recover`);
    returns the path to use."""
    return _recover(_as_path(path))


def _recover(path: Path) -> Path:
    """If a crash struck between the two renames of a save, put the old checkpoint back.

    Returns the path to use: ``path`` itself, or the old directory when it cannot be renamed
    (a read-only disk).
    """
    if path.exists() or path.is_symlink():
        return path
    complete = [p for p in _siblings(path, "old") if _looks_complete(p)]
    if not complete:
        return path
    newest = max(complete, key=lambda p: (p / MANIFEST).stat().st_mtime)
    try:
        os.replace(newest, path)
    except OSError:
        return newest
    _fsync_dir(path.parent)
    return path


def _looks_complete(d: Path) -> bool:
    try:
        m = json.loads((d / MANIFEST).read_bytes())
        return m["format"] == FORMAT and all(
            (d / name).stat().st_size == entry["bytes"] for name, entry in m["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


# -- loading ------------------------------------------------------------------------------------


def load_checkpoint(
    path, *, kind: str | Sequence[str] | None = None, weights_only: bool = False
) -> Checkpoint:
    """Load and verify a checkpoint (or the best/last one of a run directory).

    ``kind`` restricts which model kinds are accepted.  ``weights_only=True`` skips the training
    state (neither read nor verified), for inference.  Every problem raises a one-line
    :class:`CheckpointError` naming the path.
    """
    path = find_checkpoint(path)
    manifest = _read_manifest(path)
    _check_kind(path, manifest["kind"], kind)
    files = manifest["files"]
    for required in (CONFIG, WEIGHTS):
        if required not in files:
            raise CheckpointError(f"{path}: {MANIFEST} lists no {required}; checkpoint incomplete")
    config = _read_json(path, files, CONFIG)
    weights = _read_npz(path, files, WEIGHTS)
    for name, a in weights.items():
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {WEIGHTS} holds non-finite values in {name!r}")
    weights, quantized = dequantize_weights(path, config, weights)
    vocab = _read_json(path, files, VOCAB) if VOCAB in files else None
    train_meta = train_arrays = None
    if not weights_only:
        if TRAIN_META in files:
            train_meta = _read_json(path, files, TRAIN_META)
        if TRAIN_ARRAYS in files:
            train_arrays = _read_npz(path, files, TRAIN_ARRAYS)
    return Checkpoint(path, manifest["kind"], config, weights, vocab, train_meta, train_arrays,
                      manifest, quantized)


QUANTIZATION = "quantization"  # the config.json key of a quantised checkpoint
SCALE_SUFFIX = ".scale"


def dequantize_weights(path: Path, config: dict, weights: dict):
    """``(weights, quantized)``: the weights with every int8 matrix that ``config["quantization"]``
    lists turned back into floats (``q * scale``: one scale per column for the names under
    ``"weights"``, per row for those under ``"rows"``; see :mod:`rnnkit.nn.quant`), and the
    stored ``{name: (q, scale, axis)}``.  A checkpoint without that key is returned as it is."""
    from ..nn.quant import dequantize

    spec = config.get(QUANTIZATION)
    if spec is None:
        return weights, {}
    ok = isinstance(spec, dict) and spec.get("scheme") == "int8-per-output"
    columns, rows = (spec.get("weights"), spec.get("rows", [])) if ok else (None, None)
    if not (isinstance(columns, list) and isinstance(rows, list)):
        raise CheckpointError(f"{path}: {CONFIG} has an unknown {QUANTIZATION!r} entry; "
                              "expected scheme 'int8-per-output' and a list of weights")
    out, quantized = dict(weights), {}
    for axis, names in ((1, columns), (0, rows)):
        for name in names:
            q, scale = weights.get(name), weights.get(name + SCALE_SUFFIX)
            if (q is None or scale is None or q.dtype != np.int8 or q.ndim != 2
                    or scale.dtype.kind != "f" or scale.shape != (q.shape[axis],)):
                what = "column" if axis else "row"
                raise CheckpointError(f"{path}: quantised weight {name!r} needs an int8 matrix "
                                      f"and a float {name + SCALE_SUFFIX!r} of one scale per "
                                      f"{what}")
            out[name] = dequantize(q, scale, axis)
            del out[name + SCALE_SUFFIX]
            quantized[name] = (q, scale, axis)
    return out, quantized


def _read_manifest(path: Path) -> dict:
    if (path / MANIFEST).is_symlink():
        raise CheckpointError(f"{path}: {MANIFEST} is a symbolic link; rnnkit does not follow "
                              "links inside a checkpoint")
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not an rnnkit checkpoint (no {MANIFEST})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {MANIFEST} ({e.strerror})") from None
    try:
        m = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise CheckpointError(f"{path}: {MANIFEST} is not valid JSON ({e}); corrupt") from None
    fmt = m.get("format") if isinstance(m, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(
            f"{path}: not an rnnkit checkpoint ({MANIFEST} format is {fmt!r}, expected {FORMAT!r})"
        )
    version = m.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: {MANIFEST} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by rnnkit {m.get('rnnkit_version', '?')}, format {version}; "
            f"this rnnkit ({__version__}) reads format <= {FORMAT_VERSION}; upgrade rnnkit"
        )
    if not isinstance(m.get("kind"), str):
        raise CheckpointError(f"{path}: {MANIFEST} has no valid 'kind'")
    files = m.get("files")
    ok = isinstance(files, dict) and all(
        isinstance(e, dict) and isinstance(e.get("sha256"), str)
        and isinstance(e.get("bytes"), int) and n == Path(n).name and n not in ("", ".", "..")
        for n, e in files.items()
    )
    if not ok:
        raise CheckpointError(f"{path}: {MANIFEST} has a malformed 'files' table")
    return m


def _check_kind(path: Path, got: str, want) -> None:
    if want is None:
        return
    wanted = (want,) if isinstance(want, str) else tuple(want)
    if got not in wanted:
        expected = repr(wanted[0]) if len(wanted) == 1 else "one of " + ", ".join(map(repr, wanted))
        raise CheckpointError(f"{path} is a {got!r} checkpoint; expected {expected}")


def _read_verified(path: Path, files: dict, name: str) -> bytes:
    want = files[name]
    if (path / name).is_symlink():
        raise CheckpointError(f"{path}: {name} is a symbolic link; rnnkit does not follow links "
                              "inside a checkpoint")
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: missing file {name} (listed in {MANIFEST}); checkpoint incomplete"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {name} ({e.strerror})") from None
    if len(data) < want["bytes"]:
        raise CheckpointError(
            f"{path}: {name} is truncated ({len(data)} bytes, {MANIFEST} says {want['bytes']})"
        )
    if len(data) != want["bytes"]:
        raise CheckpointError(
            f"{path}: {name} is corrupt ({len(data)} bytes, {MANIFEST} says {want['bytes']})"
        )
    if hashlib.sha256(data).hexdigest() != want["sha256"]:
        raise CheckpointError(f"{path}: {name} is corrupt (sha256 does not match {MANIFEST})")
    return data


def _read_json(path: Path, files: dict, name: str) -> dict:
    data = _read_verified(path, files, name)
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise CheckpointError(f"{path}: {name} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {name} holds a {type(obj).__name__}, not a JSON object")
    return obj


def _read_npz(path: Path, files: dict, name: str) -> dict[str, np.ndarray]:
    data = _read_verified(path, files, name)
    out = {}
    if not zipfile.is_zipfile(io.BytesIO(data)):
        pickled = data[:1] == b"\x80" or data[:6] == b"\x93NUMPY"  # a pickle, or a bare .npy
        raise CheckpointError(f"{path}: {name} is not an .npz archive" + (
            " (pickled data or a bare array; rnnkit never unpickles)" if pickled else ""))
    # Any exception here comes from file contents that passed the hash check, i.e. a file
    # written by something other than save_checkpoint; all of them mean "unusable".
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: {name} is not an .npz archive")
        with archive:
            for key in archive.files:
                a = archive[key]
                if not isinstance(a, np.ndarray):
                    raise CheckpointError(f"{path}: {name} member {key!r} is not a .npy array")
                out[key] = a
    except CheckpointError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise CheckpointError(
                f"{path}: {name} holds object arrays or pickled data; rnnkit never unpickles"
            ) from None
        raise CheckpointError(f"{path}: {name} is unreadable ({e})") from None
    except Exception as e:  # noqa: BLE001 -- crafted headers raise SyntaxError, MemoryError, ...
        raise CheckpointError(f"{path}: {name} is unreadable ({type(e).__name__}: {e})") from None
    return out


def _as_path(path) -> Path:
    path = Path(path)
    return path.resolve() if path.name in ("", "..") else path
