"""Sequence layers ``RNN``, ``GRU`` and ``LSTM``: stacked, bidirectional, variable lengths.

The public API is batch-first, like ``torch.nn.LSTM(batch_first=True)``::

    lstm = LSTM(32, 64, num_layers=2, bidirectional=True, rng=0)
    out, state, cache = lstm.forward(x, lengths=lengths)   # x (B, T, 32) -> out (B, T, 128)
    dx, dstate0 = lstm.backward(dout, cache)               # accumulates into lstm.grads()

It computes the same thing as this plain loop (per layer and direction)::

    for t in range(T):                      # reversed order within each row for "bwd"
        h = cell(x[:, t] @ W_x + b, h, W_h) # state carried unchanged past a row's length
        out[:, t] = h                       # 0 at padded steps

State layout follows PyTorch: ``h`` is (L * dirs, B, H), index ``layer * dirs + direction``;
the LSTM state is ``LSTMState(h, c)``.  Pitfall: for a bidirectional layer the final state of
the backward direction is its state after reading the *first* step, so it is not
``out[:, -1, H:]``; and with ``lengths`` the forward final state is the state at each row's last
real step, not at step T.

Regularisation in training (all off in ``eval()``): ``dropout`` between layers, a fresh mask
per step or, with ``locked=True``, one mask per call reused at every step; ``weight_drop``:
DropConnect on every ``W_h``, one mask per layer and direction per call, the cells run with
``W_h * M / (1 - p)`` (AWD-LSTM's WeightDrop; docs/derivations.md#weight-drop).  The masks are
drawn from the ``rng`` passed to ``forward``.

Inside, buffers are time-major so every step is a contiguous slice; the input projections of a
layer are one multiply before the time loop and ``dW_x``, ``db``, ``dX`` one multiply each after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..checks import check_array, check_lengths, config_from_dict
from ..errors import ConfigError
from . import init as initializers
from .cells import OPTIONS
from .cells.activations import gate_slice, num_gates
from .cells.dispatch import cell_module
from .cells.lstm import LSTMState
from .layers.dropout import dropout_mask
from .module import Module

_DIRS = ("fwd", "bwd")


@dataclass
class RecurrentConfig:
    """Construction arguments of a sequence layer; saved in checkpoints as JSON."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    weight_drop: float = 0.0  # DropConnect on every W_h, one mask per forward call (training)
    locked: bool = False  # the between-layer dropout mask is drawn once per call, reused at every
    #                       step (variational / locked dropout)
    nonlinearity: str = "tanh"  # RNN only: "tanh" | "relu"
    reset_after: bool = True  # GRU only: PyTorch/cuDNN placement of the reset gate
    peephole: bool = False  # LSTM only
    init: str = "default"  # "default" | "uniform" | "pytorch" | "identity" (RNN)
    init_scale: float | None = None  # "uniform": a of U(-a, a), default 0.1;
    # "identity": the scale of I, default 1.0 (Le, Jaitly & Hinton 2015)
    forget_bias: float = 1.0  # LSTM only, with init "default"
    dtype: str = "float32"

    def __post_init__(self):
        if self.cell not in ("rnn", "gru", "lstm"):
            raise ConfigError(f"cell must be 'rnn', 'gru' or 'lstm', got {self.cell!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.weight_drop < 1.0:
            raise ConfigError(f"weight_drop must be in [0, 1), got {self.weight_drop!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.init not in ("default", "uniform", "pytorch", "identity"):
            raise ConfigError(
                f"init must be 'default', 'uniform', 'pytorch' or 'identity', got {self.init!r}"
            )
        if self.init == "identity" and self.cell != "rnn":
            raise ConfigError("init='identity' is for the vanilla RNN only")
        if self.peephole and self.cell != "lstm":
            raise ConfigError("peephole=True is for the LSTM only")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @classmethod
    def from_dict(cls, d: dict) -> RecurrentConfig:
        return config_from_dict(cls, d, "recurrent")


class Direction(Module):
    """The parameters of one layer and direction: ``W_x`` (D, G*H), ``W_h`` (H, G*H), ``b``."""

    def __init__(self, cfg: RecurrentConfig, input_size: int, rng: np.random.Generator):
        super().__init__()
        H, G, dt = cfg.hidden_size, num_gates(cfg.cell), np.dtype(cfg.dtype)
        D = input_size
        if cfg.init == "uniform":
            a = 0.1 if cfg.init_scale is None else cfg.init_scale
            W_x = initializers.uniform(rng, (D, G * H), a, dt)
            W_h = initializers.uniform(rng, (H, G * H), a, dt)
            b = initializers.uniform(rng, (G * H,), a, dt)
        elif cfg.init == "pytorch":
            a = 1.0 / np.sqrt(H)
            W_x = initializers.uniform(rng, (D, G * H), a, dt)
            W_h = initializers.uniform(rng, (H, G * H), a, dt)
            b = initializers.uniform(rng, (G * H,), a, dt)
        else:
            W_x = np.concatenate([initializers.xavier_uniform(rng, D, H, dt) for _ in range(G)], 1)
            if cfg.init == "identity":
                W_h = initializers.identity(
                    H, dt, 1.0 if cfg.init_scale is None else cfg.init_scale)
            else:
                W_h = np.concatenate([initializers.orthogonal(rng, H, dt) for _ in range(G)], 1)
            b = np.zeros(G * H, dt)
            if cfg.cell == "lstm":
                b[gate_slice("lstm", "f", H)] = cfg.forget_bias
        self.add_param("W_x", W_x)
        self.add_param("W_h", W_h)
        self.add_param("b", b)
        if cfg.cell == "gru" and cfg.reset_after:
            if cfg.init in ("uniform", "pytorch"):
                a = (0.1 if cfg.init_scale is None else cfg.init_scale) if cfg.init == "uniform" \
                    else 1.0 / np.sqrt(H)
                b_hn = initializers.uniform(rng, (H,), a, dt)
            else:
                b_hn = np.zeros(H, dt)
            self.add_param("b_hn", b_hn)
        if cfg.peephole:
            for k in ("p_i", "p_f", "p_o"):
                self.add_param(k, np.zeros(H, dt))


class Recurrent(Module):
    """A stack of recurrent layers of one cell type.  Use :class:`RNN`, :class:`GRU` or
    :class:`LSTM`."""

    cell = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, dropout: float = 0.0, dtype="float32",
                 rng=None, **options):
        super().__init__()
        self.cfg = RecurrentConfig(
            cell=self.cell, input_size=input_size, hidden_size=hidden_size,
            num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
            dtype=np.dtype(dtype).name, **options,
        )
        rng = initializers.as_rng(rng)
        self.dropout_rng = rng
        self.dirs: list[list[Direction]] = []
        for layer in range(num_layers):
            D = input_size if layer == 0 else hidden_size * self.cfg.dirs
            row = []
            for d in range(self.cfg.dirs):
                row.append(self.add_module(f"layers.{layer}.{_DIRS[d]}",
                                           Direction(self.cfg, D, rng)))
            self.dirs.append(row)

    @classmethod
    def from_config(cls, cfg: RecurrentConfig | dict, rng=None) -> Recurrent:
        cfg = cfg if isinstance(cfg, RecurrentConfig) else RecurrentConfig.from_dict(cfg)
        klass = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[cfg.cell]
        extra = {k: v for k, v in asdict(cfg).items() if k not in (
            "cell", "input_size", "hidden_size", "num_layers", "bidirectional", "dropout",
            "dtype")}
        if cfg.cell != "rnn":
            extra.pop("nonlinearity")
        if cfg.cell != "gru":
            extra.pop("reset_after")
        if cfg.cell != "lstm":
            extra.pop("peephole")
            extra.pop("forget_bias")
        return klass(cfg.input_size, cfg.hidden_size, cfg.num_layers,
                     bidirectional=cfg.bidirectional, dropout=cfg.dropout, dtype=cfg.dtype,
                     rng=rng, **extra)

    def config(self) -> dict:
        return asdict(self.cfg)

    # -- the cell functions, NumPy or compiled (rnnkit.nn.cells.dispatch) -----------------
    @property
    def _options(self) -> dict:
        """The cell's equation options, as its functions take them."""
        return {k: getattr(self.cfg, k) for k in OPTIONS[self.cell]}

    def _cell(self, dtype):
        return cell_module(self.cell, dtype, **self._options)

    def _cell_forward(self, xp, state0, p, mask, full, grad=True):
        return self._cell(xp.dtype).forward(xp, state0, p, mask, full, grad=grad,
                                            **self._options)

    def _cell_backward(self, dhs, dT, cache, consume=False):
        return self._cell(dhs.dtype).backward(dhs, dT, cache, consume)

    def _cell_step(self, xp, state, p):
        return self._cell(xp.dtype).step(xp, state, p, **self._options)

    # -- helpers ------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @property
    def output_size(self) -> int:
        return self.cfg.hidden_size * self.cfg.dirs

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.cfg.dtype)

    def initial_state(self, B: int):
        """Zeros in the layout ``forward`` takes and returns."""
        shape = (self.cfg.num_layers * self.cfg.dirs, B, self.cfg.hidden_size)
        h = np.zeros(shape, self.np_dtype)
        return LSTMState(h, np.zeros_like(h)) if self.cell == "lstm" else h

    def _check_state(self, state, B: int, finite: bool = True):
        name = type(self).__name__
        shape = (self.cfg.num_layers * self.cfg.dirs, B, self.cfg.hidden_size)
        dt = self.np_dtype
        if self.cell == "lstm":
            if not (isinstance(state, tuple) and len(state) == 2):
                raise ValueError(f"{name}: expected the state as a tuple (h, c) of arrays of "
                                 f"shape {shape}, got {type(state).__name__}")
            h = check_array(name, "h0", state[0], shape, finite=finite).astype(dt, copy=False)
            c = check_array(name, "c0", state[1], shape, finite=finite).astype(dt, copy=False)
            return LSTMState(h, c)
        return check_array(name, "h0", state, shape, finite=finite).astype(dt, copy=False)

    def _cell_state(self, state, k: int):
        return (state.h[k], state.c[k]) if self.cell == "lstm" else state[k]

    # -- forward ------------------------------------------------------------------------
    def forward(self, x, state=None, lengths=None, *, rng: np.random.Generator | None = None,
                grad: bool = True, scratch: dict | None = None):
        """Run the stack over ``x`` (B, T, D).

        Returns ``(out, state, cache)``: ``out`` (B, T, dirs*H), zero at padded steps; the final
        state of every layer and direction; the cache for :meth:`backward`.  ``grad=False``
        says no backward will follow (evaluation): the LSTM then keeps no history for one, and
        the cache is ``None``; outputs and states are the same.

        ``scratch`` (a dict the caller keeps between calls, empty at first) lends this call the
        largest arrays of the caller's previous call (input projections, dropout draws) to
        write into instead of fresh memory, whose page faults cost a few percent at large
        sizes.  Only for callers that never keep a cache or output across calls, as
        ``LanguageModel.loss`` does: the previous call's cache is overwritten.
        """
        name = type(self).__name__
        cfg = self.cfg
        asked, grad = grad, grad or any(hasattr(h, "forward") for h in self._hooks)
        x = check_array(name, "x", x, ("B", "T", cfg.input_size))
        B, T, _ = x.shape
        if T == 0 or B == 0:
            raise ValueError(f"{name}: expected at least one step and one row, got x of shape "
                             f"{x.shape}")
        state = self.initial_state(B) if state is None else self._check_state(state, B)
        mask = full = gather = None
        if lengths is not None:
            lengths = check_lengths(name, lengths, B, T)
            full = int(lengths.min())
            if full < T:
                mask = (np.arange(T)[:, None] < lengths[None, :])[..., None]  # (T, B, 1)
                if cfg.bidirectional:
                    t = np.arange(T)[:, None]
                    rev = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
                    gather = (rev, np.arange(B)[None, :])  # (T, B): an involution
            else:
                full = None
        inp = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=self.np_dtype)  # (T, B, D)
        rng = self.dropout_rng if rng is None else rng
        layers, finals = [], []
        for layer in range(cfg.num_layers):
            if layer > 0 and cfg.dropout > 0 and self.training:
                keep = 1.0 - cfg.dropout
                # locked: one (B, dirs*H) mask shared by every step
                shape = (1, *inp.shape[1:]) if cfg.locked else inp.shape  # (T|1, B, dirs*H)
                drop = np.empty(shape, self.np_dtype)
                draw = lend(scratch, ("drop", layer), shape, np.float64)
                np.less(rng.random(out=draw), keep, out=drop)  # 1 where kept, else 0
                drop /= keep
                inp = inp * drop
            else:
                drop = None
            outs, caches, wmasks = [], [], []
            for d, unit in enumerate(self.dirs[layer]):
                wmask = self._weight_mask(unit, rng)
                hs, final, cache = self._run_direction(unit, inp, self._cell_state(
                    state, layer * cfg.dirs + d), d, mask, full, gather, grad,
                    lend(scratch, ("xp", layer, d), (T * B, unit.param["W_x"].shape[1]),
                          self.np_dtype), wmask)
                outs.append(hs)
                finals.append(final)
                caches.append(cache)
                wmasks.append(wmask)
            layers.append({"inp": inp, "drop": drop, "dirs": caches, "wdrop": wmasks})
            inp = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)  # (T, B, dirs*H)
            if mask is not None:
                inp = inp * mask  # never in place: outs[0] may be a view of the cache
        out = np.ascontiguousarray(inp.transpose(1, 0, 2))  # (B, T, dirs*H), owned by caller
        final_state = _stack_states(finals, self.cell == "lstm", copy=True)
        if not grad:
            return out, final_state, None
        cache = {"layers": layers, "mask": mask, "gather": gather, "B": B, "T": T,
                 "owner": self, "used": False}
        self._call_hooks("forward", cache)
        return out, final_state, cache if asked else None

    def _weight_mask(self, unit: Direction, rng: np.random.Generator):
        """The DropConnect mask of ``unit.W_h`` for one forward call (``None`` when off):
        ``M_ij ~ Bernoulli(1 - p) / (1 - p)``, as AWD-LSTM's WeightDrop draws it."""
        p = self.cfg.weight_drop
        if not self.training or p == 0.0:
            return None
        W_h = unit.param["W_h"]
        return dropout_mask(W_h.shape, p, rng, W_h.dtype)  # (H, G*H)

    def _run_direction(self, unit: Direction, inp, state0, d, mask, full, gather, grad=True,
                       out=None, wmask=None):
        T, B, D = inp.shape
        p = unit.param
        if wmask is not None:  # the cell sees (and its cache keeps) the dropped matrix
            p = {**p, "W_h": p["W_h"] * wmask}
        # (T*B, G*H): every input projection at once
        xp = np.matmul(inp.reshape(T * B, D), p["W_x"], out=out)
        xp += p["b"]
        xp = xp.reshape(T, B, -1)  # (T, B, G*H)
        if d == 1:
            xp = xp[::-1] if gather is None else xp[gather]
        steps = grad and any(hasattr(h, "backward") for h in self._hooks)
        run = self._steps_forward if steps else self._cell_forward
        Hs, final, cache = run(xp, state0, p, mask, full, grad)
        hs = Hs[1:]
        if d == 1:
            hs = hs[::-1] if gather is None else hs[gather]
        return hs, final, cache

    # -- backward -----------------------------------------------------------------------
    def backward(self, dout, cache, dstate=None, *, consume_cache: bool = False):
        """Backpropagate ``dout`` (B, T, dirs*H) and optionally ``dstate`` (gradient w.r.t. the
        final state, same layout as the state).  Accumulates parameter gradients; returns
        ``(dx, dstate0)``: the gradients w.r.t. the input and the initial state.

        ``consume_cache=True`` lets the cells work inside the cache's arrays instead of new
        ones (the LSTM does).  A cache serves one backward: a second call with it raises
        ``ValueError`` instead of adding the parameter gradients twice; run ``forward`` again."""
        name = type(self).__name__
        cfg = self.cfg
        self._check_cache(cache)
        B, T = cache["B"], cache["T"]
        dout = check_array(name, "dout", dout, (B, T, self.output_size))
        dout = np.array(dout.transpose(1, 0, 2), dtype=self.np_dtype, order="C")  # (T,B,dH) copy
        mask, gather = cache["mask"], cache["gather"]
        if dstate is not None:
            dstate = self._check_state(dstate, B)
        H = self.output_size // cfg.dirs  # width of one direction's output
        dstate0 = [None] * (cfg.num_layers * cfg.dirs)
        records = [[None] * cfg.dirs for _ in range(cfg.num_layers)]
        for layer in range(cfg.num_layers - 1, -1, -1):
            lc = cache["layers"][layer]
            if mask is not None:
                dout *= mask
            dinp = None
            for d in range(cfg.dirs):
                k = layer * cfg.dirs + d
                dT = None if dstate is None else self._cell_state(dstate, k)
                dhs = dout[..., d * H:(d + 1) * H]
                if d == 1:
                    dhs = dhs[::-1] if gather is None else dhs[gather]
                unit = self.dirs[layer][d]
                dxp, ds0, dparams, records[layer][d] = self._direction_backward(
                    dhs, dT, lc["dirs"][d], consume_cache)
                dstate0[k] = ds0
                if d == 1:
                    dxp = dxp[::-1] if gather is None else dxp[gather]
                    if records[layer][d] is not None:  # back to input time order
                        records[layer][d] = {key: v[::-1] if gather is None else v[gather]
                                             for key, v in records[layer][d].items()}
                G = dxp.shape[-1]
                dxp2 = np.ascontiguousarray(dxp).reshape(T * B, G)
                inp2 = lc["inp"].reshape(T * B, -1)
                unit.grad["W_x"] += inp2.T @ dxp2
                unit.grad["b"] += dxp2.sum(axis=0)
                for key, g in dparams.items():
                    if key == "W_h" and lc["wdrop"][d] is not None:
                        g *= lc["wdrop"][d]  # d(W_h * M)/dW_h: the same mask
                    unit.grad[key] += g
                dx = dxp2 @ unit.param["W_x"].T  # (T*B, D)
                if dinp is None:
                    dinp = dx
                else:
                    dinp += dx
            dout = dinp.reshape(T, B, -1)
            if lc["drop"] is not None:
                dout *= lc["drop"]
        cache["used"] = True
        dx = dout.transpose(1, 0, 2)  # (B, T, D)
        if records[0][0] is not None:
            self._call_hooks("backward", records)
        if self.cell == "lstm":
            return dx, LSTMState(np.stack([s[0] for s in dstate0]),
                                 np.stack([s[1] for s in dstate0]))
        return dx, np.stack(dstate0)

    def _check_cache(self, cache) -> None:
        name = type(self).__name__
        if not isinstance(cache, dict) or "owner" not in cache:
            got = "None (forward(grad=False) keeps none)" if cache is None else \
                type(cache).__name__
            raise ValueError(f"{name}: expected the cache forward() returned, got {got}")
        if cache["owner"] is not self:
            raise ValueError(f"{name}: the cache comes from another layer's forward()")
        if cache.get("used"):
            raise ValueError(f"{name}: this cache was already used by backward(); run forward() "
                             "again (a second backward would add the gradients twice)")

    # -- hooks ----------------------------------------------------------------------------
    _hooks: tuple = ()

    def add_hook(self, hook) -> HookHandle:
        """Let ``hook`` observe every forward and backward pass of this stack; returns a handle
        whose ``remove()`` (or the end of a ``with`` block) takes it away again.

        ``hook.forward(layer, cache)``, if defined, is called after each forward pass with its
        cache (``cache["layers"][l]["dirs"][d]`` holds the cells' caches, whose gate
        activations :mod:`rnnkit.inspect.gates` reads), also when ``grad=False``.
        ``hook.backward(layer, records)``, if defined, is called after each backward pass with
        ``records[l][d] = {"h": (T, B, H), "c": (T, B, H)}`` (``"c"``: LSTM only) in input time
        order: ``h[t]`` is the total ``dL/dh_t`` (from the output at ``t`` and from step
        ``t + 1``), ``c[t]`` the ``dL/dc_t`` that step ``t + 1`` passes back along the cell
        state.  To see those, a stack with a backward hook runs the same cell functions one
        step at a time (:meth:`_steps_forward`); outputs and gradients are the same up to
        rounding, at the cost of a Python loop over the steps.  It sees the backward passes
        whose forward pass ran after it was added.
        """
        self._hooks = (*self._hooks, hook)
        return HookHandle(self, hook)

    def _call_hooks(self, kind: str, arg) -> None:
        for hook in self._hooks:
            if hasattr(hook, kind):
                getattr(hook, kind)(self, arg)

    def _steps_forward(self, xp, state0, p, mask, full, grad=True):
        """The cell's forward one step at a time, keeping one cache per step."""
        steps, hs, state = [], [], state0
        for t in range(xp.shape[0]):
            m = None if mask is None else mask[t : t + 1]
            f = None if mask is None else int(full is None or t < full)
            Hs, state, cache = self._cell_forward(xp[t : t + 1], state, p, m, f, grad)
            steps.append(cache)
            hs.append(Hs[1])
        first = state0[0] if isinstance(state0, tuple) else state0
        return np.stack([first, *hs]), state, {"steps": steps}  # (T+1, B, H)

    def _direction_backward(self, dhs, dT, cache, consume):
        """``(dxp, dstate0, dparams, records or None)`` of one direction, in processing order."""
        if "steps" in cache:  # a backward hook: one step at a time
            return self._steps_backward(dhs, dT, cache, consume)
        return (*self._cell_backward(dhs, dT, cache, consume), None)

    def _steps_backward(self, dhs, dT, cache, consume=False):
        """The cell's backward one step at a time over a :meth:`_steps_forward` cache:
        ``(dxp, dstate0, dparams, records)``, records in processing order."""
        lstm = self.cell == "lstm"
        T = dhs.shape[0]
        seen_h = np.empty_like(dhs)  # (T, B, H)
        seen_c = np.zeros((T, dhs.shape[1], self.cfg.hidden_size), dhs.dtype) if lstm else None
        dxps, dparams, ds = [None] * T, {}, dT
        for t in range(T - 1, -1, -1):
            seen_h[t] = dhs[t] if ds is None else dhs[t] + (ds[0] if lstm else ds)
            if lstm and ds is not None:
                seen_c[t] = ds[1]
            dxps[t], ds, dp = self._cell_backward(dhs[t : t + 1], ds, cache["steps"][t],
                                                  consume)
            for key, g in dp.items():
                dparams[key] = g if key not in dparams else dparams[key] + g
        return np.concatenate(dxps), ds, dparams, {"h": seen_h, **({"c": seen_c} if lstm else {})}

    # -- one step, for generation --------------------------------------------------------
    def step(self, x_t, state=None):
        """One time step of a unidirectional stack, for generation: ``x_t`` (B, D) ->
        ``(out_t (B, H), state)``.  No cache; O(1) work per token.  ``state`` as for
        :meth:`forward`: ``None`` (zeros), an array, or for the LSTM ``(h, c)``; ``x_t`` is
        checked for shape and NaN and cast to the layer's dtype (the state only for shape)."""
        name = type(self).__name__
        if self.cfg.bidirectional:
            raise ValueError(f"{name}: step() needs a unidirectional layer")
        x_t = check_array(name, "x_t", x_t, ("B", self.cfg.input_size))
        B = x_t.shape[0]
        state = self.initial_state(B) if state is None else \
            self._check_state(state, B, finite=False)
        inp = x_t.astype(self.np_dtype, copy=False)
        new = []
        for layer in range(self.cfg.num_layers):
            p = self.dirs[layer][0].param
            xp = inp @ p["W_x"]
            xp += p["b"]
            s = self._cell_step(xp, self._cell_state(state, layer), p)
            new.append(s)
            inp = s[0] if self.cell == "lstm" else s
        return inp, _stack_states(new, self.cell == "lstm")


def _stack_states(finals: list, lstm: bool, copy: bool = False):
    """The final states of every layer and direction as one (L*dirs, B, H) array (a pair for
    the LSTM).  A single one becomes a (1, B, H) view, copied where ``copy`` (states that are
    views of a cache: the caller may change the state it gets in place)."""
    if len(finals) == 1:
        one = finals[0]
        if lstm:
            return LSTMState(*(np.array(a[None]) if copy else a[None] for a in one))
        return np.array(one[None]) if copy else one[None]
    if lstm:
        return LSTMState(np.stack([f[0] for f in finals]), np.stack([f[1] for f in finals]))
    return np.stack(finals)


class HookHandle:
    """Returned by :meth:`Recurrent.add_hook`: ``remove()`` takes the hook away again."""

    def __init__(self, layer: Recurrent, hook) -> None:
        self.layer, self.hook = layer, hook

    def remove(self) -> None:
        self.layer._hooks = tuple(h for h in self.layer._hooks if h is not self.hook)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class RNN(Recurrent):
    """Elman RNN: ``h_t = phi(x_t W_x + h_{t-1} W_h + b)``, ``nonlinearity`` "tanh" or "relu".

    >>> rnn = RNN(3, 5, nonlinearity="relu", rng=0)
    >>> out, h, cache = rnn.forward(np.ones((2, 4, 3)))
    >>> out.shape, h.shape
    ((2, 4, 5), (1, 2, 5))
    """

    cell = "rnn"


class GRU(Recurrent):
    """Gated recurrent unit; ``reset_after=True`` is the PyTorch/cuDNN form (weights interchange
    with ``torch.nn.GRU``), ``False`` the original form of Cho et al. (2014).

    >>> gru = GRU(3, 5, bidirectional=True, rng=0)
    >>> out, h, cache = gru.forward(np.ones((2, 4, 3)), lengths=[4, 2])
    >>> out.shape, h.shape, float(abs(out[1, 2:]).max())
    ((2, 4, 10), (2, 2, 5), 0.0)
    """

    cell = "gru"


class LSTM(Recurrent):
    """Long short-term memory, gates ``i, f, g, o``; optional diagonal ``peephole`` weights.

    >>> lstm = LSTM(3, 5, num_layers=2, rng=0)
    >>> out, (h, c), cache = lstm.forward(np.ones((2, 4, 3)))
    >>> out.shape, h.shape, c.shape
    ((2, 4, 5), (2, 2, 5), (2, 2, 5))
    """

    cell = "lstm"


def lend(scratch: dict | None, key, shape, dtype):
    """An array of ``shape`` from ``scratch[key]`` (made and kept there if missing or of
    another shape), or a fresh one without ``scratch``; its contents are garbage."""
    if scratch is None:
        return np.empty(shape, dtype)
    a = scratch.get(key)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = scratch[key] = np.empty(shape, dtype)
    return a


def make_recurrent(cell: str, *args, **kwargs) -> Recurrent:
    """``make_recurrent("lstm", 32, 64, num_layers=2)``: the layer class by name."""
    try:
        klass = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[cell]
    except KeyError:
        raise ConfigError(f"cell must be 'rnn', 'gru' or 'lstm', got {cell!r}") from None
    return klass(*args, **kwargs)
