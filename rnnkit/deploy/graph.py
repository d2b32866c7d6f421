"""A small ONNX graph builder, and rnnkit's recurrent stacks as ONNX ``LSTM``/``GRU``/``RNN``.

:class:`Graph` collects nodes, initialisers, inputs and outputs and turns them into an
``onnx.ModelProto`` (``import onnx`` happens there, and only there).  Weights come from a
model's parameters by their checkpoint names; a weight the checkpoint stores as int8 (see
:mod:`rnnkit.nn.quant`) becomes an int8 initialiser and a ``DequantizeLinear`` with one scale
per output unit, every other one a float32 initialiser.

The recurrent weights are rearranged for ONNX, whose layout is ``W (dirs, G*H, D)``,
``R (dirs, G*H, H)``, ``B (dirs, 2*G*H)`` (input biases, then recurrent ones), with the gates
in another order than rnnkit's (PyTorch's)::

    LSTM  rnnkit i, f, g, o   ->  ONNX i, o, f, c     peepholes P = [p_i, p_o, p_f]
    GRU   rnnkit r, z, n      ->  ONNX z, r, h        reset_after: linear_before_reset=1, Rb_h=b_hn
    RNN   one gate                                    relu: activations ["Relu"]

ONNX's operators take ``sequence_lens`` and, like rnnkit, leave the state of a row unchanged
past its length (the final state is the one at its last real step), give zeros at its padded
steps, and run the backward direction over each row's real steps only.
"""

from __future__ import annotations

import numpy as np

OPSET = 17

_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}  # rnnkit blocks, ONNX order


def gate_permutation(cell: str, H: int) -> np.ndarray:
    """Column indices of rnnkit's packed gates (G*H,) in ONNX's gate order.

    >>> gate_permutation("gru", 2).tolist()      # r r z z n n  ->  z z r r h h
    [2, 3, 0, 1, 4, 5]
    >>> gate_permutation("lstm", 1).tolist()     # i f g o  ->  i o f c
    [0, 3, 1, 2]
    """
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in _GATE_ORDER[cell]])


class Graph:
    """Nodes, initialisers, inputs and outputs of one ONNX graph.

    ``params``: the model's float parameters by name; ``quantized``: ``{name: (q, scale,
    axis)}`` of the int8 ones (a quantised checkpoint's ``Checkpoint.quantized``).
    """

    def __init__(self, name: str, params: dict, quantized: dict | None = None,
                 prefix: str = ""):
        self.name, self.params, self.quantized = name, params, quantized or {}
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.prefix = prefix  # of every name made here: a subgraph's never shadow the outer's
        self._count = 0
        self._cache: dict = {}

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def op(self, op_type: str, inputs, hint: str | None = None, outputs: int = 1, **attrs):
        """Add a node; returns its output name (or a list of ``outputs`` names)."""
        from onnx import helper

        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array, hint: str = "const") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(values, np.int64), hint)

    def input(self, name: str, dtype, shape) -> str:
        from onnx import helper

        self.inputs.append(helper.make_tensor_value_info(name, _elem(dtype), list(shape)))
        return name

    def output(self, tensor: str, name: str, dtype, shape) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node("Identity", [tensor], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, _elem(dtype), list(shape)))

    # -- weights ------------------------------------------------------------------------------
    def matrix(self, name: str, transpose: bool = False, perm=None) -> str:
        """The parameter ``name`` (D_in, D_out) as a float32 tensor: as it is (for ``x @ W``),
        or transposed (D_out, D_in) with its output units reordered by ``perm``."""
        key = (name, transpose, None if perm is None else tuple(perm))
        if key in self._cache:
            return self._cache[key]
        if name in self.quantized:
            q, scale, _ = self.quantized[name]
            q, scale = (q.T, scale) if transpose else (q, scale)
            if perm is not None:
                q, scale = q[perm], scale[perm]
            out = self.op("DequantizeLinear", [
                self.const(q, "q"), self.const(scale.astype(np.float32), "scale"),
                self.const(np.zeros(len(scale), np.int8), "zero")], "W",
                axis=0 if transpose else 1)
        else:
            W = self.params[name].astype(np.float32)
            W = W.T if transpose else W
            out = self.const(W if perm is None else W[perm], "W")
        self._cache[key] = out
        return out

    def table(self, name: str) -> str:
        """The embedding table ``name`` (V, E) as a float32 tensor (dequantised per row if it
        is int8)."""
        if name not in self.quantized:
            return self.const(self.params[name].astype(np.float32), "E")
        if name not in self._cache:
            q, scale, _ = self.quantized[name]
            self._cache[name] = self.op("DequantizeLinear", [
                self.const(q, "q"), self.const(scale.astype(np.float32), "scale"),
                self.const(np.zeros(len(scale), np.int8), "zero")], "E", axis=0)
        return self._cache[name]

    def lookup(self, name: str, ids: str) -> str:
        """Rows ``ids`` (any shape) of the embedding table ``name``: a ``Gather``; of an int8
        table, the int8 rows and their scales gathered, then multiplied (the table is never
        dequantised whole)."""
        if name not in self.quantized:
            return self.op("Gather", [self.table(name), ids], axis=0)
        q, scale, _ = self.quantized[name]
        rows = self.op("Cast", [self.op("Gather", [self.const(q, "q"), ids], axis=0)], to=1)
        s = self.op("Gather", [self.const(scale.astype(np.float32), "scale"), ids], axis=0)
        return self.op("Mul", [rows, self.op("Unsqueeze", [s, self.ints([-1])])])

    def vector(self, name: str, perm=None) -> np.ndarray:
        v = self.params[name].astype(np.float32)
        return v if perm is None else v[perm]

    def subgraph(self):
        """The ``onnx.GraphProto`` of a loop body (``Scan``)."""
        from onnx import helper

        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)

    def to_model(self, doc: str = "", metadata: dict | None = None):
        """The ``onnx.ModelProto``, checked by ``onnx.checker``."""
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="rnnkit", doc_string=doc)
        model.ir_version = 8  # the newest IR that every onnxruntime since 1.14 reads
        helper.set_model_props(model, {k: str(v) for k, v in (metadata or {}).items()})
        onnx.checker.check_model(model, full_check=True)
        return model


def _elem(dtype) -> int:
    from onnx import TensorProto

    return {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[np.dtype(dtype).name]


# -- recurrent stacks ----------------------------------------------------------------------------


def recurrent_stack(g: Graph, rnn, prefix: str, x: str, lengths: str | None = None,
                    h0: str | None = None, c0: str | None = None):
    """Run the rnnkit layer ``rnn`` (a :class:`~rnnkit.nn.recurrent.Recurrent` whose weights
    are ``prefix.layers.<l>.<fwd|bwd>.*``) over ``x`` (T, B, D), time-major.

    ``lengths``: int32 (B,) or None; ``h0``/``c0``: initial states (L*dirs, B, H) or None
    (zeros).  Returns ``(out (T, B, dirs*H), [h_n per layer (dirs, B, H)], [c_n ...])``.
    """

    cfg = rnn.cfg
    if getattr(cfg, "layer_norm", False):
        return _layernorm_stack(g, rnn, prefix, x, lengths, h0, c0)
    if getattr(cfg, "proj_size", 0):
        return _projection_stack(g, rnn, prefix, x, lengths, h0, c0)
    if cfg.cell in ("mingru", "minlstm"):
        return _min_stack(g, rnn, prefix, x, lengths, h0)
    cell, H, dirs = cfg.cell, cfg.hidden_size, cfg.dirs
    perm = gate_permutation(cell, H)
    hs, cs = [], []
    for layer in range(cfg.num_layers):
        names = [f"{prefix}.layers.{layer}.{d}" for d in ("fwd", "bwd")[:dirs]]
        W = _stacked(g, [g.matrix(f"{n}.W_x", True, perm) for n in names])
        R = _stacked(g, [g.matrix(f"{n}.W_h", True, perm) for n in names])
        B = g.const(np.stack([_biases(g, n, cfg, perm) for n in names]), "B")
        state = []
        for s in (h0, c0 if cell == "lstm" else None):
            state.append("" if s is None else g.op(
                "Slice", [s, g.ints([layer * dirs]), g.ints([(layer + 1) * dirs]), g.ints([0])]))
        inputs = [x, W, R, B, lengths or "", state[0]]
        attrs = {"hidden_size": H, "direction": "bidirectional" if dirs == 2 else "forward"}
        if cell == "lstm":
            inputs.append(state[1])
            if cfg.peephole:
                inputs.append(g.const(np.stack([np.concatenate(
                    [g.vector(f"{n}.p_i"), g.vector(f"{n}.p_o"), g.vector(f"{n}.p_f")])
                    for n in names]), "P"))
            y, h, c = g.op("LSTM", inputs, "lstm", outputs=3, **attrs)
            cs.append(c)
        else:
            if cell == "gru":
                attrs["linear_before_reset"] = int(cfg.reset_after)
            elif cfg.nonlinearity == "relu":
                attrs["activations"] = ["Relu"] * dirs
            y, h = g.op(cell.upper(), inputs, cell, outputs=2, **attrs)
        hs.append(h)
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3])  # (T, B, dirs, H)
        x = g.op("Reshape", [y, g.ints([0, 0, dirs * H])])  # (T, B, dirs*H)
    return x, hs, cs


def _stacked(g: Graph, mats: list[str]) -> str:
    """(G*H, D) per direction -> (dirs, G*H, D)."""
    parts = [g.op("Unsqueeze", [m, g.ints([0])]) for m in mats]
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=0)


def _biases(g: Graph, name: str, cfg, perm) -> np.ndarray:
    """ONNX's ``[Wb ; Rb]`` (2*G*H,) of one direction: rnnkit's single bias goes to the input
    side; the recurrent side is zero but for the GRU's ``b_hn`` (reset_after)."""
    Wb = g.vector(f"{name}.b", perm)
    Rb = np.zeros_like(Wb)
    if cfg.cell == "gru" and cfg.reset_after:
        Rb[2 * cfg.hidden_size:] = g.vector(f"{name}.b_hn")
    return np.concatenate([Wb, Rb])


def _projection_stack(g: Graph, rnn, prefix: str, x: str, lengths, h0, c0):
    """A projection LSTM (:mod:`rnnkit.nn.lstmp`), which ONNX's LSTM cannot express, as a
    ``Scan`` over time whose body is one step in plain operators::

        a = xp_t + r W_h;  i, f, g, o = sigma(a_i), sigma(a_f), tanh(a_g), sigma(a_o)
        c' = f c + i g;    r' = (o tanh(c')) W_hr

    Unidirectional, without lengths (the language model's use)."""

    from ..errors import RnnkitError

    cfg = rnn.cfg
    if cfg.bidirectional or lengths is not None:
        raise RnnkitError("ONNX export of a projection LSTM covers unidirectional layers "
                          "without lengths")
    H, P = cfg.hidden_size, cfg.proj_size
    B = _batch(g, x)
    hs, cs = [], []
    for layer in range(cfg.num_layers):
        n = f"{prefix}.layers.{layer}.fwd"
        xp = g.op("Add", [g.op("MatMul", [x, g.matrix(f"{n}.W_x")]),
                          g.const(g.vector(f"{n}.b"), "b")])  # (T, B, 4H)
        W_h, W_hr = g.matrix(f"{n}.W_h"), g.matrix(f"{n}.W_hr")
        init = [_initial(g, s, layer, B, width) for s, width in ((h0, P), (c0, H))]
        body = Graph(f"{n}.step", {}, prefix=f"{g.fresh('scan')}/")
        r = body.input(body.fresh("r"), "float32", ["B", P])
        c = body.input(body.fresh("c"), "float32", ["B", H])
        a = body.input(body.fresh("xp"), "float32", ["B", 4 * H])
        a = body.op("Add", [a, body.op("MatMul", [r, W_h])])
        i, f, gg, o = body.op("Split", [a], "gate", outputs=4, axis=1)
        c2 = body.op("Add", [body.op("Mul", [body.op("Sigmoid", [f]), c]),
                             body.op("Mul", [body.op("Sigmoid", [i]), body.op("Tanh", [gg])])])
        m = body.op("Mul", [body.op("Sigmoid", [o]), body.op("Tanh", [c2])])
        r2 = body.op("MatMul", [m, W_hr])
        for t, name, width in ((r2, "r_out", P), (c2, "c_out", H), (r2, "y", P)):
            body.output(t, body.fresh(name), "float32", ["B", width])
        r_n, c_n, x = g.op("Scan", [*init, xp], "lstmp", outputs=3, num_scan_inputs=1,
                           body=body.subgraph())  # x: (T, B, P)
        hs.append(g.op("Unsqueeze", [r_n, g.ints([0])]))
        cs.append(g.op("Unsqueeze", [c_n, g.ints([0])]))
    return x, hs, cs


def _batch(g: Graph, x: str) -> str:
    """B of a time-major ``x`` (T, B, D), as a 1-element tensor."""
    return g.op("Gather", [g.op("Shape", [x]), g.ints([1])], axis=0)


def _initial(g: Graph, state: str | None, layer: int, B: str, width: int) -> str:
    """Layer ``layer``'s (B, width) slice of ``state`` (L, B, width), or zeros."""
    if state is None:
        return g.op("ConstantOfShape", [g.op("Concat", [B, g.ints([width])], axis=0)])
    return g.op("Squeeze", [g.op("Slice", [state, g.ints([layer]), g.ints([layer + 1]),
                                           g.ints([0])]), g.ints([0])])


def _min_stack(g: Graph, rnn, prefix: str, x: str, lengths, h0):
    """minGRU / minLSTM (:mod:`rnnkit.nn.minrnn`): the coefficients of ``h_t = a_t h_{t-1} +
    b_t`` for every step from the input projections in plain operators, then a ``Scan`` whose
    body is that one multiply-add::

        minGRU   [v, u]:       a = sigma(-v),  b = sigma(v) g(u)
        minLSTM  [v_f, v_i, u]: d = softplus(-v_i) - softplus(-v_f),  a = sigma(d),
                                b = sigma(-d) g(u)
        g(u) = u + 1/2 (u >= 0), sigma(u) (u < 0)

    Unidirectional, without lengths (the language model's use)."""
    from ..errors import RnnkitError

    cfg = rnn.cfg
    if cfg.bidirectional or lengths is not None:
        raise RnnkitError(f"ONNX export of {cfg.cell} covers unidirectional layers without "
                          "lengths")
    H, G = cfg.hidden_size, 2 if cfg.cell == "mingru" else 3
    B = _batch(g, x)
    hs = []
    for layer in range(cfg.num_layers):
        n = f"{prefix}.layers.{layer}.fwd"
        xp = g.op("Add", [g.op("MatMul", [x, g.matrix(f"{n}.W_x")]),
                          g.const(g.vector(f"{n}.b"), "b")])  # (T, B, G*H)
        parts = g.op("Split", [xp], "gate", outputs=G, axis=2)
        u = parts[-1]
        half = g.const(np.array(0.5, np.float32), "half")
        gu = g.op("Where", [g.op("GreaterOrEqual", [u, g.const(np.array(0, np.float32))]),
                            g.op("Add", [u, half]), g.op("Sigmoid", [u])])
        if cfg.cell == "mingru":
            d = parts[0]
        else:
            d = g.op("Sub", [g.op("Softplus", [g.op("Neg", [parts[1]])]),
                             g.op("Softplus", [g.op("Neg", [parts[0]])])])
        a = g.op("Sigmoid", [g.op("Neg", [d]) if cfg.cell == "mingru" else d])
        b = g.op("Mul", [g.op("Sigmoid", [d if cfg.cell == "mingru" else g.op("Neg", [d])]),
                         gu])
        body = Graph(f"{n}.step", {}, prefix=f"{g.fresh('scan')}/")
        h = body.input(body.fresh("h"), "float32", ["B", H])
        at = body.input(body.fresh("a"), "float32", ["B", H])
        bt = body.input(body.fresh("b"), "float32", ["B", H])
        h2 = body.op("Add", [body.op("Mul", [at, h]), bt])
        body.output(h2, body.fresh("h_out"), "float32", ["B", H])
        body.output(h2, body.fresh("y"), "float32", ["B", H])
        h_n, x = g.op("Scan", [_initial(g, h0, layer, B, H), a, b], "minrnn", outputs=2,
                      num_scan_inputs=2, body=body.subgraph())  # x: (T, B, H)
        hs.append(g.op("Unsqueeze", [h_n, g.ints([0])]))
    return x, hs, []


def _layernorm_stack(g: Graph, rnn, prefix: str, x: str, lengths, h0, c0):
    """LayerNorm LSTM / GRU (:mod:`rnnkit.nn.layernorm_rnn`) with ONNX's
    ``LayerNormalization``: ``LN(x W_x; g_x) + b`` for every step before a ``Scan`` whose body
    is one step::

        LSTM  a = ax_t + LN(h W_h; g_h);  i, f, g, o;  c' = f c + i g;
              h' = o tanh(LN(c'; g_c) + b_c)
        GRU   ah = LN(h W_h; g_h);  r, z = sigma(ax + ah);  n = tanh(ax_n + r (ah_n + b_hn));
              h' = n + z (h - n)

    Unidirectional, without lengths (the language model's use)."""
    from ..errors import RnnkitError
    from ..nn.layernorm_rnn import EPS

    cfg = rnn.cfg
    lstm = cfg.cell == "lstm"
    if cfg.bidirectional or lengths is not None or (not lstm and not cfg.reset_after):
        raise RnnkitError("ONNX export of a LayerNorm layer covers unidirectional layers "
                          "without lengths (and the GRU with reset_after)")
    H, G = cfg.hidden_size, 4 if lstm else 3
    B = _batch(g, x)
    hs, cs = [], []
    for layer in range(cfg.num_layers):
        n = f"{prefix}.layers.{layer}.fwd"
        ax = g.op("LayerNormalization", [g.op("MatMul", [x, g.matrix(f"{n}.W_x")]),
                                         g.const(g.vector(f"{n}.g_x"), "g_x"),
                                         g.const(g.vector(f"{n}.b"), "b")],
                  axis=-1, epsilon=EPS)  # (T, B, G*H)
        W_h = g.matrix(f"{n}.W_h")
        g_h = g.const(g.vector(f"{n}.g_h"), "g_h")
        body = Graph(f"{n}.step", {}, prefix=f"{g.fresh('scan')}/")
        h = body.input(body.fresh("h"), "float32", ["B", H])
        c = body.input(body.fresh("c"), "float32", ["B", H]) if lstm else None
        a = body.input(body.fresh("ax"), "float32", ["B", G * H])
        ah = body.op("LayerNormalization", [body.op("MatMul", [h, W_h]), g_h], axis=-1,
                     epsilon=EPS)
        if lstm:
            i, f, gg, o = body.op("Split", [body.op("Add", [a, ah])], "gate", outputs=4, axis=1)
            c2 = body.op("Add", [body.op("Mul", [body.op("Sigmoid", [f]), c]),
                                 body.op("Mul", [body.op("Sigmoid", [i]), body.op("Tanh", [gg])])])
            cn = body.op("LayerNormalization", [c2, g.const(g.vector(f"{n}.g_c"), "g_c"),
                                                g.const(g.vector(f"{n}.b_c"), "b_c")],
                         axis=-1, epsilon=EPS)
            h2 = body.op("Mul", [body.op("Sigmoid", [o]), body.op("Tanh", [cn])])
            outs = ((h2, H), (c2, H), (h2, H))
        else:
            xr, xz, xn = body.op("Split", [a], "gate", outputs=3, axis=1)
            hr, hz, hn = body.op("Split", [ah], "gate", outputs=3, axis=1)
            r = body.op("Sigmoid", [body.op("Add", [xr, hr])])
            z = body.op("Sigmoid", [body.op("Add", [xz, hz])])
            hn = body.op("Add", [hn, g.const(g.vector(f"{n}.b_hn"), "b_hn")])
            nn = body.op("Tanh", [body.op("Add", [xn, body.op("Mul", [r, hn])])])
            h2 = body.op("Add", [nn, body.op("Mul", [z, body.op("Sub", [h, nn])])])
            outs = ((h2, H), (h2, H))
        for t, width in outs:
            body.output(t, body.fresh("out"), "float32", ["B", width])
        init = [_initial(g, h0, layer, B, H)] + ([_initial(g, c0, layer, B, H)] if lstm else [])
        res = g.op("Scan", [*init, ax], "lnrnn", outputs=len(outs), num_scan_inputs=1,
                   body=body.subgraph())
        hs.append(g.op("Unsqueeze", [res[0], g.ints([0])]))
        if lstm:
            cs.append(g.op("Unsqueeze", [res[1], g.ints([0])]))
        x = res[-1]  # (T, B, H)
    return x, hs, cs
