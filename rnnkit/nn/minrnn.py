"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates and candidate are
functions of ``x_t`` alone, so a whole window is one linear recurrence ``h_t = a_t h_{t-1} + b_t``
with every ``a_t, b_t`` known in advance, evaluated by a log-space parallel scan (Heinsen
2023): a cumulative sum and a cumulative log-sum-exp, no Python time loop.  Where numba runs
the cells (``RNNKIT_KERNELS``), the same recurrence runs as one compiled pass over the window
instead (:mod:`rnnkit.nn.cells.kernels.scan`, several times faster than NumPy's
``logaddexp.accumulate``); the log-space scan stays the reference both are tested against.

::

    minGRU:   z = sigma(v)                 h_t = (1 - z) h_{t-1} + z g(u)
    minLSTM:  f, i = sigma(v_f), sigma(v_i)
              f' = f / (f + i)             h_t = f' h_{t-1} + (1 - f') g(u)
    g(u) = u + 1/2 for u >= 0, sigma(u) for u < 0   (positive, continuous, g(0) = 1/2)

with ``[v, u] = x W_x + b`` (minGRU, G = 2; minLSTM ``[v_f, v_i, u]``, G = 3; no ``W_h``).
``g`` keeps every candidate positive, so the sum of the inputs ``b_k`` carried to step ``t`` is
positive and the scan runs on its logarithm: with ``A_t = sum_{k<=t} log a_k``::

    h_t = exp(A_t) h_0 + exp(A_t + logsumexp(log b_1 - A_1, ..., log b_t - A_t))

``log a`` and ``log b`` come straight from the pre-activations (``log sigma(v) = -softplus(-v)``;
minLSTM: ``f' = sigma(d)`` with ``d = softplus(-v_i) - softplus(-v_f)``), so nothing underflows
where the plain product ``a_1 ... a_t`` would (``0.5 ** 1100 == 0`` in float64).  A padded step
has ``a = 1, b = 0`` (``log a = 0``, ``log b = -inf``): the state is carried.

Backward (docs/derivations.md#mingru-and-minlstm) is the adjoint recurrence
``g_t = dHs_t + a_{t+1} g_{t+1}``, itself a reversed scan, run on logarithms of the positive
and negative parts of ``dHs``; then ``da_t = g_t h_{t-1}``, ``db_t = g_t``, ``dh_0 = a_1 g_1``.

The layer computes the same as this loop (what ``step()`` does for generation)::

    for t in range(T):
        h = a(x[:, t]) * h + b(x[:, t])

>>> gru = MinGRU(3, 5, num_layers=2, rng=0)
>>> out, h, cache = gru.forward(np.ones((2, 4, 3)))
>>> out.shape, h.shape, bool((out > 0).all())
((2, 4, 5), (2, 2, 5), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..checks import config_from_dict
from ..errors import ConfigError
from . import init as initializers
from .module import Module
from .recurrent import Recurrent

# gate order inside W_x and b; nothing else in this module spells it out
GATES = {"mingru": ("z", "h"), "minlstm": ("f", "i", "h")}
_DIRS = ("fwd", "bwd")


@dataclass
class MinRNNConfig:
    """Construction arguments of a :class:`MinGRU` / :class:`MinLSTM` stack (JSON in
    checkpoints)."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    locked: bool = False  # one between-layer dropout mask per call, reused at every step
    weight_drop: float = 0.0  # must be 0: there is no W_h to drop
    init: str = "default"  # "default" (Xavier, zero bias) | "uniform" | "pytorch"
    init_scale: float | None = None
    dtype: str = "float32"

    def __post_init__(self):
        if self.cell not in GATES:
            raise ConfigError(f"cell must be 'mingru' or 'minlstm', got {self.cell!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.weight_drop != 0.0:
            raise ConfigError(f"weight_drop acts on recurrent weights, which {self.cell} does "
                              f"not have; got {self.weight_drop!r}")
        if self.init not in ("default", "uniform", "pytorch"):
            raise ConfigError(f"init must be 'default', 'uniform' or 'pytorch' for "
                              f"{self.cell}, got {self.init!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @classmethod
    def from_dict(cls, d: dict) -> MinRNNConfig:
        return config_from_dict(cls, d, "recurrent")


# -- the scan ---------------------------------------------------------------------------------
def softplus(x):
    """``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``, without overflow (NumPy's
    ``logaddexp(0, x)`` gives the same, several times slower)."""
    r = np.abs(x)
    np.negative(r, out=r)
    np.exp(r, out=r)
    np.log1p(r, out=r)
    r += np.maximum(x, 0)
    return r


def log_g(u):
    """``log g(u)``: ``log(u + 1/2)`` for ``u >= 0``, ``log sigma(u) = -softplus(-u)`` below."""
    with np.errstate(invalid="ignore", divide="ignore"):  # the branch not taken
        return np.where(u >= 0, np.log(np.maximum(u, 0) + 0.5), -softplus(-u))


def log_coefficients(xp, cell: str, mask=None):
    """``(log a, log b)`` (T, B, H) of the recurrence from the pre-activations ``xp``
    (T, B, G*H); at padded steps ``log a = 0`` and ``log b = -inf`` (the state is carried)."""
    H = xp.shape[-1] // len(GATES[cell])
    u = xp[..., -H:]
    if cell == "mingru":
        v = xp[..., :H]
        log_a, log_b = -softplus(v), -softplus(-v)  # log(1 - z), log z
    else:
        d = softplus(-xp[..., H : 2 * H]) - softplus(-xp[..., :H])  # log f - log i
        log_a, log_b = -softplus(-d), -softplus(d)  # log f', log(1 - f')
    log_b += log_g(u)
    if mask is not None:
        log_a = np.where(mask, log_a, 0.0)
        log_b = np.where(mask, log_b, -np.inf)
    return log_a, log_b


def scan(log_a, log_b, h0):
    """``Hs`` (T+1, B, H) of ``h_t = a_t h_{t-1} + b_t``, and ``A`` the cumulative sums of
    ``log a``: ``h_t = exp(A_t) h_0 + exp(A_t + logcumsumexp_k(log b_k - A_k))``.  The initial
    state enters through its own term, so it may have any sign (a gradient check moves it
    across 0); the second term is positive."""
    A = np.cumsum(log_a, axis=0)  # (T, B, H)
    L = np.logaddexp.accumulate(log_b - A, axis=0)
    L += A
    Hs = np.empty((A.shape[0] + 1, *A.shape[1:]), A.dtype)  # (T+1, B, H)
    Hs[0] = h0
    np.exp(L, out=Hs[1:])
    Hs[1:] += np.exp(A) * h0
    return Hs, A


def _reverse_logcumsumexp(x):
    return np.logaddexp.accumulate(x[::-1], axis=0)[::-1]


def scan_backward(dHs, dhT, A, log_a, Hs, a=None):
    """Gradients of the recurrence: ``(da, db, dh0)``.  ``g_t = dHs_t + a_{t+1} g_{t+1}`` is
    ``exp(-A_t) sum_{k>=t} exp(A_k) d_k``, summed in log space for ``d > 0`` and ``d < 0``
    apart.  ``A`` may be None (a compiled forward does not form it); ``a`` is ``exp(log_a)``
    where the caller has it (the compiled recurrence uses it)."""
    d = np.array(dHs, dtype=log_a.dtype)  # (T, B, H)
    if dhT is not None:
        d[-1] += dhT
    if _compiled(d.dtype):
        from .cells.kernels import scan as kscan

        a = np.exp(log_a) if a is None else a
        G = kscan.backward(d, a)
        return G * Hs[:-1], G, a[0] * G[0]
    if A is None:
        A = np.cumsum(log_a, axis=0)
    with np.errstate(divide="ignore"):
        ld = np.log(np.abs(d)) + A
    neg = -np.inf
    P = _reverse_logcumsumexp(np.where(d > 0, ld, neg))
    N = _reverse_logcumsumexp(np.where(d < 0, ld, neg))
    G = np.exp(P - A)
    G -= np.exp(N - A)  # (T, B, H): g_t
    da = G * Hs[:-1]
    dh0 = np.exp(log_a[0]) * G[0]
    return da, G, dh0


def _dsigmoid(x):
    s = 0.5 * np.tanh(0.5 * x) + 0.5
    return s, s * (1 - s)


def _compiled(dtype) -> bool:
    """Whether the recurrence runs compiled (:mod:`rnnkit.nn.cells.kernels.scan`): the
    ``RNNKIT_KERNELS`` choice, for float32 and float64."""
    from .cells.dispatch import backend

    return np.dtype(dtype) in (np.float32, np.float64) and backend() == "numba"


def forward(xp, h0, cell: str, mask=None):
    """Run the recurrence over ``xp`` (T, B, G*H) from ``h0`` (B, H); ``(Hs, cache)``.  The
    log-space :func:`scan` on NumPy, the same recurrence in one compiled pass where numba runs
    the cells (``A`` is then left out of the cache)."""
    log_a, log_b = log_coefficients(xp, cell, mask)
    if _compiled(log_a.dtype):
        from .cells.kernels import scan as kscan

        Hs, A = kscan.forward(log_a, log_b, h0), None
    else:
        Hs, A = scan(log_a, log_b, h0)
    return Hs, {"xp": xp, "log_a": log_a, "A": A, "Hs": Hs, "mask": mask, "cell": cell}


def backward(dHs, dhT, cache):
    """``(dxp (T, B, G*H), dh0, {})`` (no recurrent weights)."""
    xp, log_a, cell, mask = cache["xp"], cache["log_a"], cache["cell"], cache["mask"]
    a = np.exp(log_a)
    da, db, dh0 = scan_backward(dHs, dhT, cache["A"], log_a, cache["Hs"], a)
    H = dHs.shape[-1]
    u = xp[..., -H:]
    su, dsu = _dsigmoid(u)
    cand = np.where(u >= 0, u + 0.5, su)  # g(u)
    dxp = np.empty(xp.shape, da.dtype)  # (T, B, G*H)
    if cell == "mingru":  # a = 1 - z, b = z g(u)
        z = 1 - a
        dxp[..., :H] = (db * cand - da) * z * a
        dxp[..., H:] = db * z * np.where(u >= 0, 1.0, dsu)
    else:  # a = f' = sigma(d), b = (1 - f') g(u), d = softplus(-v_i) - softplus(-v_f)
        dd = (da - db * cand) * a * (1 - a)
        sf, _ = _dsigmoid(xp[..., :H])
        si, _ = _dsigmoid(xp[..., H : 2 * H])
        dxp[..., :H] = dd * (1 - sf)
        dxp[..., H : 2 * H] = -dd * (1 - si)
        dxp[..., 2 * H :] = db * (1 - a) * np.where(u >= 0, 1.0, dsu)
    if mask is not None:
        dxp *= mask
    return dxp, dh0, {}


def step(xp_t, h, cell: str):
    """One step for generation: ``xp_t`` (B, G*H), ``h`` (B, H) -> the new ``h``."""
    log_a, log_b = log_coefficients(xp_t[None], cell)
    return np.exp(log_a[0]) * h + np.exp(log_b[0])


# -- the layer --------------------------------------------------------------------------------
class MinDirection(Module):
    """One layer and direction: ``W_x`` (D, G*H), ``b`` (G*H,); no recurrent weights."""

    def __init__(self, cfg: MinRNNConfig, input_size: int, rng: np.random.Generator):
        super().__init__()
        H, G, D, dt = cfg.hidden_size, len(GATES[cfg.cell]), input_size, np.dtype(cfg.dtype)
        if cfg.init in ("uniform", "pytorch"):
            a = (0.1 if cfg.init_scale is None else cfg.init_scale) if cfg.init == "uniform" \
                else 1.0 / np.sqrt(H)
            W_x = initializers.uniform(rng, (D, G * H), a, dt)
            b = initializers.uniform(rng, (G * H,), a, dt)
        else:
            W_x = np.concatenate([initializers.xavier_uniform(rng, D, H, dt) for _ in range(G)], 1)
            b = np.zeros(G * H, dt)
        self.add_param("W_x", W_x)
        self.add_param("b", b)


class _MinRNN(Recurrent):
    """The stack: the driver of :class:`~rnnkit.nn.recurrent.Recurrent` (stacking, dropout
    between layers, bidirectional, lengths) around the scan.  Use :class:`MinGRU` or
    :class:`MinLSTM`.  From a state ``>= 0`` (zero, or any state the layer returns) every
    output is positive."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, dropout: float = 0.0, dtype="float32",
                 rng=None, **options):
        Module.__init__(self)
        self.cfg = MinRNNConfig(cell=self.cell, input_size=input_size, hidden_size=hidden_size,
                                num_layers=num_layers, bidirectional=bidirectional,
                                dropout=dropout, dtype=np.dtype(dtype).name, **options)
        rng = initializers.as_rng(rng)
        self.dropout_rng = rng
        self.dirs: list[list[MinDirection]] = []
        for layer in range(num_layers):
            D = input_size if layer == 0 else hidden_size * self.cfg.dirs
            self.dirs.append([self.add_module(f"layers.{layer}.{_DIRS[d]}",
                                              MinDirection(self.cfg, D, rng))
                              for d in range(self.cfg.dirs)])

    @classmethod
    def from_config(cls, cfg: MinRNNConfig | dict, rng=None) -> _MinRNN:
        cfg = cfg if isinstance(cfg, MinRNNConfig) else MinRNNConfig.from_dict(cfg)
        klass = {"mingru": MinGRU, "minlstm": MinLSTM}[cfg.cell]
        d = asdict(cfg)
        for k in ("cell", "input_size", "hidden_size", "num_layers"):
            d.pop(k)
        return klass(cfg.input_size, cfg.hidden_size, cfg.num_layers, rng=rng, **d)

    def _cell_forward(self, xp, h0, p, mask, full, grad=True):
        Hs, cache = forward(xp, h0, self.cell, mask)
        return Hs, Hs[-1], cache

    def _cell_backward(self, dhs, dT, cache, consume=False):
        return backward(dhs, dT, cache)

    def _cell_step(self, xp, h, p):
        return step(xp, h, self.cell)


class MinGRU(_MinRNN):
    """minGRU: ``h_t = (1 - z_t) h_{t-1} + z_t g(u_t)``, ``[v, u] = x_t W_x + b``,
    ``z = sigma(v)``."""

    cell = "mingru"


class MinLSTM(_MinRNN):
    """minLSTM: ``h_t = f'_t h_{t-1} + i'_t g(u_t)`` with ``f', i'`` the forget and input gates
    ``sigma(v_f), sigma(v_i)`` normalised to sum to 1."""

    cell = "minlstm"
