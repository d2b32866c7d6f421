"""int8 checkpoints: ``quantize_checkpoint("runs/ptb", "runs/ptb-int8")``.

Every weight matrix of a Linear layer, a recurrent layer (``W_x``, ``W_h``) and the attention
(``W_a``, ``W_q``, ``W_k``) is stored as int8 with one float scale per output unit
(:mod:`rnnkit.nn.quant`); with ``embeddings=True`` the embedding tables too, with one scale per
row (token).  Biases and peepholes stay as they are.  The result is an
ordinary checkpoint directory (``docs/checkpoint-format.md``, "Quantised weights"): its
``config.json`` lists the int8 weights under ``"quantization"``, ``weights.npz`` holds each as
``name`` (int8) and ``name.scale``.  :func:`rnnkit.train.checkpoint.load_checkpoint`
dequantises them when it loads, so every command and :func:`rnnkit.tasks.load_model` take it as
they take the float checkpoint; NumPy inference then runs in floating point on the rounded
weights (the saving is on disk and in transfer, not in arithmetic).  ``rnnkit export`` keeps the
int8 matrices and adds a ``DequantizeLinear`` for each.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RnnkitError

# W_hr: the projection of an LSTMP; W_hq: the output layer of the output-recurrent LM
MATRICES = ("W", "W_x", "W_h", "W_a", "W_q", "W_k", "W_hr", "W_hq")


def quantizable(name: str, array) -> bool:
    """Whether the weight ``name`` is a matrix that gets int8 storage with one scale per
    column: a Linear, recurrent or attention matrix, never an embedding table."""
    module, _, leaf = name.rpartition(".")
    return (array.ndim == 2 and array.dtype.kind == "f" and leaf in MATRICES
            and not is_embedding(name, array))


def is_embedding(name: str, array) -> bool:
    """An embedding table (``embed.W``, ``src_embed.W``, ``chars.embed.W``, ...)."""
    module, _, leaf = name.rpartition(".")
    return array.ndim == 2 and array.dtype.kind == "f" and leaf == "W" and \
        module.rpartition(".")[2].endswith("embed")


def quantize_weights(weights: dict, embeddings: bool = False) -> tuple[dict, list, list]:
    """``(weights to store, names int8 per column, names int8 per row)``."""
    from ..nn.quant import quantize_columns, quantize_rows
    from ..train.checkpoint import SCALE_SUFFIX

    out, columns, rows = {}, [], []
    for name, a in weights.items():
        if quantizable(name, a):
            out[name], out[name + SCALE_SUFFIX] = quantize_columns(a)
            columns.append(name)
        elif embeddings and is_embedding(name, a):
            out[name], out[name + SCALE_SUFFIX] = quantize_rows(a)
            rows.append(name)
        else:
            out[name] = a
    return out, columns, rows


def quantize_checkpoint(checkpoint, out, embeddings: bool = False) -> Path:
    """Write the int8 form of ``checkpoint`` (a checkpoint or run directory) to the new
    directory ``out``; returns ``out``.  ``embeddings``: the embedding tables too (one scale
    per row).  The training state is not copied."""
    from ..train.checkpoint import QUANTIZATION, load_checkpoint, save_checkpoint

    out = Path(out)
    if out.exists():
        raise ValueError(f"--out: {out} already exists; give a new directory")
    ck = load_checkpoint(checkpoint, weights_only=True)
    if ck.kind == "ngram":
        raise RnnkitError(f"{ck.path}: an n-gram model holds counts, not weight matrices; "
                          "there is nothing to quantise")
    if ck.quantized:
        raise RnnkitError(f"{ck.path}: already quantised")
    weights, columns, rows = quantize_weights(ck.weights, embeddings)
    if not columns and not rows:
        raise RnnkitError(f"{ck.path}: no weight matrix to quantise")
    spec = {"scheme": "int8-per-output", "weights": columns}
    if rows:
        spec["rows"] = rows
    config = {**ck.config, QUANTIZATION: spec}
    return save_checkpoint(out, kind=ck.kind, config=config, weights=weights, vocab=ck.vocab)
