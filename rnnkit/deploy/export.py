"""ONNX graphs of rnnkit checkpoints (opset 17): ``export_checkpoint(path, "model.onnx")``.

One ``.onnx`` file per graph; ``docs/export.md`` lists every input and output:

    language model  model.onnx (ids -> log_probs, h_n[, c_n])
                    model.step.onnx (token, h[, c] -> log_probs, h_out[, c_out])
    classifier      model.onnx (ids, lengths -> probs)
    tagger          model.onnx (ids, lengths[, char_ids, char_lengths, char_index] -> probs)
    seq2seq         model.encoder.onnx (src, src_lengths -> memory, keys, h0[, c0])
                    model.decoder.onnx (token, h[, c][, feed], memory, keys, src_lengths ->
                                        log_probs, h_out[, c_out][, feed_out][, attention])

Beside them ``model.json`` holds the kind, the files and the checkpoint's vocabulary (the
tokenizers' dictionaries, as in ``vocab.json``).  Evaluation mode throughout: no dropout.
Weights are float32 (a float64 model is exported in float32), or int8 with ``DequantizeLinear``
for the weights a quantised checkpoint stores as int8 (an int8 embedding table: its rows and
scales gathered, then multiplied).

The n-gram model, the output-recurrent language model and the conditioned language model are
not exported (a :class:`~rnnkit.errors.RnnkitError` says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import RnnkitError
from .graph import OPSET, Graph, recurrent_stack

F32, I64 = "float32", "int64"


def export_checkpoint(checkpoint, out) -> list[Path]:
    """Write the ONNX graphs of ``checkpoint`` (a checkpoint or run directory) next to ``out``
    (``model.onnx``) and ``model.json``; returns the paths written.  Every graph is built and
    checked before anything is written, and each file is written whole or not at all."""
    from ..tasks import load_model

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out: expected a file name ending in .onnx, got {str(out)!r}")
    loaded = load_model(checkpoint)
    graphs = build_graphs(loaded.model, loaded.kind, loaded.checkpoint.quantized)
    stem = str(out.with_suffix(""))
    blobs, files = {}, {}
    for i, (role, model) in enumerate(graphs.items()):  # the first graph is `out`
        path = out if i == 0 else Path(f"{stem}.{role}.onnx")
        blobs[path] = model.SerializeToString()
        files[role] = path.name
    meta = {"format": "rnnkit-onnx", "opset": OPSET, "kind": loaded.kind, "files": files,
            "config": loaded.checkpoint.config.get("model", {}),
            "quantized": sorted(loaded.checkpoint.quantized),
            "vocab": loaded.checkpoint.vocab}
    blobs[Path(f"{stem}.json")] = (json.dumps(meta, indent=2) + "\n").encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, data in blobs.items():
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return list(blobs)


def build_graphs(model, kind: str, quantized: dict | None = None) -> dict:
    """``{role: onnx.ModelProto}`` for a loaded model of ``kind``."""
    if kind == "ngram":
        raise RnnkitError("the n-gram model has no ONNX export (it is a count table, not a "
                          "network); use it through rnnkit eval or the Python API")
    if kind == "conditioned" or type(model).__name__ == "OutputRecurrentLM":
        raise RnnkitError(f"ONNX export covers the lm, classifier, tagger and seq2seq models, "
                          f"not {type(model).__name__}")
    builders = {"lm": _lm, "classifier": _classifier, "tagger": _tagger, "seq2seq": _seq2seq}
    if kind not in builders:
        raise RnnkitError(f"no ONNX export for checkpoints of kind {kind!r}")
    params = model.parameters()
    return builders[kind](model, lambda name: Graph(name, params, quantized))


def _meta(kind: str, role: str) -> dict:
    return {"rnnkit_kind": kind, "rnnkit_graph": role}


def _embed(g: Graph, table: str, ids: str) -> str:
    return g.lookup(table, ids)


def _time_major(g: Graph, x: str) -> str:
    return g.op("Transpose", [x], perm=[1, 0, 2])


def _linear(g: Graph, x: str, prefix: str) -> str:
    y = g.op("MatMul", [x, g.matrix(f"{prefix}.W")])
    return g.op("Add", [y, g.const(g.vector(f"{prefix}.b"), "b")])


def _stack_states(g: Graph, states: list[str]) -> str:
    return states[0] if len(states) == 1 else g.op("Concat", states, axis=0)


# -- language model ---------------------------------------------------------------------------


def _lm_log_probs(g: Graph, model, h: str) -> str:
    """Log-probabilities (..., V) of the next token from the stack's output ``h`` (..., H)."""
    if getattr(model, "asm", None) is not None:
        return _adaptive_log_probs(g, model.asm, h)
    if model.out is None:  # tied: h @ E^T + b_out
        ET = g.op("Transpose", [g.table("embed.W")], perm=[1, 0])
        logits = g.op("Add", [g.op("MatMul", [h, ET]), g.const(g.vector("b_out"), "b")])
    else:
        logits = _linear(g, h, "out")
    return g.op("LogSoftmax", [logits], axis=-1)


def _adaptive_log_probs(g: Graph, asm, h: str) -> str:
    """The adaptive softmax's exact log-probabilities (:mod:`rnnkit.nn.adaptive_softmax`):
    the head's shortlist, then each cluster's ``log p(cluster) + log_softmax((h P_i) O_i)``."""
    S = asm.cutoffs[0]
    head = g.op("LogSoftmax", [_linear(g, h, "asm.head")], axis=-1)  # (..., S + n)

    def cols(x, lo, hi):
        return g.op("Slice", [x, g.ints([lo]), g.ints([hi]), g.ints([-1])])

    parts = [cols(head, 0, S)]
    for i in range(len(asm.tails)):
        proj = g.op("MatMul", [h, g.matrix(f"asm.tail.{i}.proj.W")])
        tail = g.op("LogSoftmax", [g.op("MatMul", [proj, g.matrix(f"asm.tail.{i}.out.W")])],
                    axis=-1)
        parts.append(g.op("Add", [tail, cols(head, S + i, S + i + 1)]))
    return g.op("Concat", parts, axis=-1)


def _lm(model, new) -> dict:
    cfg = model.cfg
    L, V, lstm = cfg.num_layers, cfg.vocab_size, cfg.cell == "lstm"  # minlstm: h only
    H, Hc = getattr(cfg, "output_size", cfg.hidden_size), cfg.hidden_size  # h, c widths
    seq = new("lm")
    ids = seq.input("ids", I64, ["B", "T"])
    x = _time_major(seq, _embed(seq, "embed.W", ids))  # (T, B, E)
    y, hs, cs = recurrent_stack(seq, model.rnn, "rnn", x)
    logp = _time_major(seq, _lm_log_probs(seq, model, y))
    seq.output(logp, "log_probs", F32, ["B", "T", V])
    seq.output(_stack_states(seq, hs), "h_n", F32, [L, "B", H])
    if lstm:
        seq.output(_stack_states(seq, cs), "c_n", F32, [L, "B", Hc])

    step = new("lm_step")
    tok = step.input("token", I64, ["B"])
    h0 = step.input("h", F32, [L, "B", H])
    c0 = step.input("c", F32, [L, "B", Hc]) if lstm else None
    x = step.op("Unsqueeze", [_embed(step, "embed.W", tok), step.ints([0])])  # (1, B, E)
    y, hs, cs = recurrent_stack(step, model.rnn, "rnn", x, h0=h0, c0=c0)
    y = step.op("Squeeze", [y, step.ints([0])])  # (B, H)
    step.output(_lm_log_probs(step, model, y), "log_probs", F32, ["B", V])
    step.output(_stack_states(step, hs), "h_out", F32, [L, "B", H])
    if lstm:
        step.output(_stack_states(step, cs), "c_out", F32, [L, "B", Hc])
    return {"model": seq.to_model("rnnkit language model: log-probabilities of every next "
                                  "token", _meta("lm", "model")),
            "step": step.to_model("rnnkit language model: one step with explicit state",
                                  _meta("lm", "step"))}


# -- classifier and tagger -----------------------------------------------------------------------


def _word_trunk(g: Graph, model, extra: str | None = None):
    """ids (B, T), lengths (B,) -> (rnn outputs (T, B, dirs*H), final h per layer, lengths
    as int32, mask (T, B, 1) of real steps, ids)."""
    ids = g.input("ids", I64, ["B", "T"])
    lengths = g.input("lengths", I64, ["B"])
    x = _embed(g, "embed.W", ids)  # (B, T, E)
    if extra is not None:
        x = g.op("Concat", [x, extra], axis=-1)
    lens32 = g.op("Cast", [lengths], to=6)  # int32, as sequence_lens wants
    y, hs, _ = recurrent_stack(g, model.rnn, "rnn", _time_major(g, x), lens32)
    T = g.op("Gather", [g.op("Shape", [ids]), g.ints(1)], axis=0)
    steps = g.op("Range", [g.ints(0), T, g.ints(1)])  # (T,)
    mask = g.op("Less", [g.op("Unsqueeze", [steps, g.ints([1])]),
                         g.op("Unsqueeze", [lengths, g.ints([0])])])  # (T, B)
    return y, hs, lengths, g.op("Unsqueeze", [mask, g.ints([2])])


def _classifier(model, new) -> dict:
    cfg = model.cfg
    g = new("classifier")
    y, hs, lengths, mask = _word_trunk(g, model)
    if cfg.pooling == "last":  # the top layer's final state of each direction
        top = g.op("Transpose", [hs[-1]], perm=[1, 0, 2])  # (B, dirs, H)
        v = g.op("Reshape", [top, g.ints([0, -1])])  # (B, dirs*H)
    elif cfg.pooling == "mean":
        total = g.op("ReduceSum", [g.op("Mul", [y, g.op("Cast", [mask], to=1)]), g.ints([0])],
                     keepdims=0)  # (B, F)
        n = g.op("Cast", [g.op("Unsqueeze", [lengths, g.ints([1])])], to=1)  # (B, 1)
        v = g.op("Div", [total, n])
    else:
        neg = g.const(np.array(-np.inf, np.float32), "neg_inf")
        v = g.op("ReduceMax", [g.op("Where", [mask, y, neg])], axes=[0], keepdims=0)
    g.output(g.op("Softmax", [_linear(g, v, "out")], axis=-1), "probs", F32,
             ["B", cfg.num_classes])
    return {"model": g.to_model("rnnkit classifier: class probabilities",
                                _meta("classifier", "model"))}


def _tagger(model, new) -> dict:
    cfg = model.cfg
    g = new("tagger")
    extra = None
    if model.chars is not None:
        ids = g.input("char_ids", I64, ["U", "Lc"])
        lens = g.op("Cast", [g.input("char_lengths", I64, ["U"])], to=6)
        index = g.input("char_index", I64, ["B", "T"])
        x = _time_major(g, _embed(g, "chars.embed.W", ids))  # (Lc, U, Ec)
        _, hs, _ = recurrent_stack(g, model.chars.rnn, "chars.rnn", x, lens)
        c = g.op("Reshape", [g.op("Transpose", [hs[0]], perm=[1, 0, 2]), g.ints([0, -1])])
        extra = g.op("Gather", [c, index], axis=0)  # (B, T, 2Hc)
    y, _, _, _ = _word_trunk(g, model, extra)
    probs = g.op("Softmax", [_time_major(g, _linear(g, y, "out"))], axis=-1)
    g.output(probs, "probs", F32, ["B", "T", cfg.num_tags])
    return {"model": g.to_model("rnnkit tagger: tag probabilities at every step (padded "
                                "steps meaningless)", _meta("tagger", "model"))}


# -- seq2seq --------------------------------------------------------------------------------------


def _seq2seq(model, new) -> dict:
    return {"encoder": _encoder(model, new("seq2seq_encoder")).to_model(
                "rnnkit seq2seq encoder: memory, attention keys, decoder initial state",
                _meta("seq2seq", "encoder")),
            "decoder": _decoder(model, new("seq2seq_decoder")).to_model(
                "rnnkit seq2seq decoder: one step with attention", _meta("seq2seq", "decoder"))}


def _encoder(model, g: Graph) -> Graph:
    cfg = model.cfg
    L, dirs, Hd, Hm = cfg.num_layers, cfg.dirs, cfg.decoder_hidden_size, cfg.memory_size
    src = g.input("src", I64, ["B", "S"])
    lens = g.op("Cast", [g.input("src_lengths", I64, ["B"])], to=6)
    x = _time_major(g, _embed(g, "src_embed.W", src))
    y, hs, cs = recurrent_stack(g, model.encoder, "encoder", x, lens)
    memory = _time_major(g, y)  # (B, S, Hm)
    g.output(memory, "memory", F32, ["B", "S", Hm])
    keys = memory
    if cfg.attention == "general":
        keys = g.op("MatMul", [memory, g.matrix("attention.W_a")])
    elif cfg.attention == "additive":
        keys = g.op("Add", [g.op("MatMul", [memory, g.matrix("attention.W_k")]),
                            g.const(g.vector("attention.b"), "b")])
    if cfg.attention != "none":
        g.output(keys, "keys", F32, ["B", "S", model.attention.attention_size
                                     if cfg.attention == "additive" else Hd])
    final_h = _stack_states(g, hs)  # (L*dirs, B, H)
    finals = [("h0", final_h, "bridge_h", True)]
    if cfg.cell == "lstm":
        finals.append(("c0", _stack_states(g, cs), "bridge_c", False))
    for name, s, lin, squash in finals:
        if cfg.bridge == "zero":
            B = g.op("Gather", [g.op("Shape", [src]), g.ints([0])], axis=0)
            shape = g.op("Concat", [g.ints([L]), B, g.ints([Hd])], axis=0)
            s0 = g.op("ConstantOfShape", [shape])
        elif cfg.bridge == "concat":  # (L*dirs, B, H) -> (L, B, dirs*H)
            s = g.op("Reshape", [s, g.ints([L, dirs, -1, cfg.hidden_size])])
            s = g.op("Transpose", [s], perm=[0, 2, 1, 3])
            s0 = g.op("Reshape", [s, g.ints([0, 0, -1])])
        else:  # tanh([all final states] W + b), no tanh on the LSTM's c
            flat = g.op("Reshape", [g.op("Transpose", [s], perm=[1, 0, 2]), g.ints([0, -1])])
            y = _linear(g, flat, lin)
            if squash:
                y = g.op("Tanh", [y])
            s0 = g.op("Transpose", [g.op("Reshape", [y, g.ints([0, L, Hd])])], perm=[1, 0, 2])
        g.output(s0, name, F32, [L, "B", Hd])
    return g


def _decoder(model, g: Graph) -> Graph:
    cfg = model.cfg
    L, Hd, Hm, V = cfg.num_layers, cfg.decoder_hidden_size, cfg.memory_size, cfg.tgt_vocab_size
    lstm = cfg.cell == "lstm"
    tok = g.input("token", I64, ["B"])
    h0 = g.input("h", F32, [L, "B", Hd])
    c0 = g.input("c", F32, [L, "B", Hd]) if lstm else None
    feed = g.input("feed", F32, ["B", Hd]) if cfg.input_feed else None
    x = _embed(g, "tgt_embed.W", tok)  # (B, E)
    if feed is not None:
        x = g.op("Concat", [x, feed], axis=-1)
    y, hs, cs = recurrent_stack(g, model.decoder, "decoder", g.op("Unsqueeze", [x, g.ints([0])]),
                                h0=h0, c0=c0)
    h = g.op("Squeeze", [y, g.ints([0])])  # (B, Hd)
    ht, weights = h, None
    if cfg.attention != "none":
        A = model.attention.attention_size if cfg.attention == "additive" else Hd
        memory = g.input("memory", F32, ["B", "S", Hm])
        keys = g.input("keys", F32, ["B", "S", A])
        lengths = g.input("src_lengths", I64, ["B"])
        if cfg.attention == "additive":  # v . tanh(h W_q + keys)
            q = g.op("Unsqueeze", [g.op("MatMul", [h, g.matrix("attention.W_q")]),
                                   g.ints([1])])  # (B, 1, A)
            E = g.op("Tanh", [g.op("Add", [q, keys])])  # (B, S, A)
            scores = g.op("MatMul", [E, g.const(g.vector("attention.v")[:, None], "v")])
        else:  # h . keys_s
            scores = g.op("MatMul", [keys, g.op("Unsqueeze", [h, g.ints([2])])])  # (B, S, 1)
        scores = g.op("Squeeze", [scores, g.ints([2])])  # (B, S)
        S = g.op("Gather", [g.op("Shape", [memory]), g.ints(1)], axis=0)
        steps = g.op("Range", [g.ints(0), S, g.ints(1)])
        mask = g.op("Less", [g.op("Unsqueeze", [steps, g.ints([0])]),
                             g.op("Unsqueeze", [lengths, g.ints([1])])])  # (B, S)
        neg = g.const(np.array(-np.inf, np.float32), "neg_inf")
        weights = g.op("Softmax", [g.op("Where", [mask, scores, neg])], axis=-1)  # (B, S)
        ctx = g.op("MatMul", [g.op("Unsqueeze", [weights, g.ints([1])]), memory])  # (B, 1, Hm)
        ctx = g.op("Squeeze", [ctx, g.ints([1])])  # (B, Hm)
        ht = g.op("Tanh", [_linear(g, g.op("Concat", [ctx, h], axis=-1), "combine")])
    g.output(g.op("LogSoftmax", [_linear(g, ht, "out")], axis=-1), "log_probs", F32, ["B", V])
    g.output(_stack_states(g, hs), "h_out", F32, [L, "B", Hd])
    if lstm:
        g.output(_stack_states(g, cs), "c_out", F32, [L, "B", Hd])
    if feed is not None:
        g.output(ht, "feed_out", F32, ["B", Hd])
    if weights is not None:
        g.output(weights, "attention", F32, ["B", "S"])
    return g
