"""Optimisers and gradient clipping (NumPy only).

Learning-rate schedules are in :mod:`rnnkit.train.schedules`, the weight average in
:mod:`rnnkit.train.ema`.

The optimisers update the parameter arrays *in place* (the live arrays from
``Module.parameters()``) and reproduce ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` step for step.
Their state lives in buffers allocated once at construction; a step is a handful of in-place
NumPy operations per parameter and no Python loop over elements.

Training-loop order (as :class:`rnnkit.train.Trainer` runs it)::

    schedule.apply(opt, epoch)              # rnnkit.train.schedules
    model.zero_grad(); loss = forward/backward
    norm = clip_grad_norm(model.grads(), max_norm=5.0)   # raises NonFiniteError on NaN/inf
    opt.step(model.grads())

Example:

>>> import numpy as np
>>> from rnnkit.train.optim import SGD, clip_grad_norm
>>> params = {"w": np.array([1.0, 2.0])}
>>> grads = {"w": np.array([3.0, 4.0])}
>>> opt = SGD(params, lr=0.1, momentum=0.9)
>>> clip_grad_norm(grads, max_norm=10.0)   # the norm before clipping
5.0
>>> opt.step(grads)
>>> params["w"]                            # the same array, updated in place
array([0.7, 1.6])
>>> meta, arrays = opt.state_dict()
>>> meta["step"], sorted(arrays)
(1, ['momentum.w'])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..checks import _fmt, check_flag, check_int, check_real
from ..errors import CheckpointError, NonFiniteError, ShapeError

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "clip_grad_norm",
    "clip_grad_value",
    "global_norm",
    "make_optimizer",
]

OPTIMIZERS = ("sgd", "adam", "adamw")


# -- parameter dict -------------------------------------------------------------------------
def _check_params(owner: str, params) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{owner}: expected params as a dict of name -> array (model.parameters()), "
            f"got {type(params).__name__}"
        )
    if not params:
        raise ValueError(f"{owner}: got an empty parameter dict; nothing to optimise")
    seen: dict[int, str] = {}
    for name, p in params.items():
        if not isinstance(name, str):
            raise TypeError(f"{owner}: expected parameter names to be str, got {name!r}")
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            what = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise ValueError(
                f"{owner}: expected parameter {name!r} to be a floating-point numpy array, "
                f"got {what}"
            )
        if not p.flags.writeable:
            raise ValueError(f"{owner}: parameter {name!r} is read-only; it is updated in place")
        if id(p) in seen:
            raise ValueError(
                f"{owner}: parameters {seen[id(p)]!r} and {name!r} are the same array; "
                "it would be updated twice per step"
            )
        seen[id(p)] = name
    return dict(params)


# -- optimisers -------------------------------------------------------------------------------
class _Optimizer:
    """Shared plumbing: parameters, ``lr``, step count, state buffers, scratch, checkpoints.

    ``self.state[kind][param name]`` holds the per-parameter buffers that a checkpoint saves
    (saved as ``"<kind>.<param name>"``); ``self._scratch`` holds reusable work arrays that
    are never saved.  Only ``lr`` is meant to change between steps.
    """

    _HYPER: tuple[str, ...] = ()

    def __init__(self, params, lr: float) -> None:
        owner = type(self).__name__
        self.params = _check_params(owner, params)
        self.lr = lr
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self._scratch: dict[tuple[str, int], np.ndarray] = {}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_real(type(self).__name__, "lr", value)

    name: str  # the make_optimizer name: "sgd", "adam" or "adamw"

    def _state_kinds(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _allocate(self) -> None:
        """Zeroed state buffers for the current hyperparameters (drops any others)."""
        self.state = {
            kind: {n: np.zeros_like(p) for n, p in self.params.items()}
            for kind in self._state_kinds()
        }

    def _work(self, name: str, p: np.ndarray, k: int) -> np.ndarray:
        buf = self._scratch.get((name, k))
        if buf is None:
            buf = self._scratch[(name, k)] = np.empty_like(p)
        return buf

    def _gather(self, grads, check_finite: bool = True) -> list[tuple[str, np.ndarray, np.ndarray]]:
        owner = type(self).__name__
        if not isinstance(grads, Mapping):
            raise TypeError(
                f"{owner}: expected grads as a dict of name -> array (model.grads()), "
                f"got {type(grads).__name__}"
            )
        out = []
        for name, p in self.params.items():
            if name not in grads:
                raise ValueError(f"{owner}: no gradient for parameter {name!r}")
            g = np.asarray(grads[name])
            if g.shape != p.shape:
                raise ShapeError(
                    f"{owner}: expected gradient {name!r} of shape {_fmt(p.shape)}, "
                    f"got {_fmt(g.shape)}"
                )
            if check_finite and g.dtype.kind == "f" and g.size:
                flat = g.reshape(-1)
                if not math.isfinite(float(flat @ flat)):  # one BLAS pass; NaN/inf propagate
                    raise NonFiniteError(
                        f"{owner}: gradient {name!r} contains NaN or inf (or overflows); the "
                        "weights were not changed: exploding gradients or a learning rate too "
                        "high; lower the learning rate or clip gradients")
            out.append((name, p, g))
        return out

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)``: JSON-able scalars, and copies of the state buffers.

        ``meta`` holds ``optimizer`` (a :func:`make_optimizer` name), ``lr``, ``step``, the
        hyperparameters and ``param_names``; ``arrays`` is keyed ``"<kind>.<param name>"``
        (``momentum.W_h``, ``exp_avg.W_h``, ...).
        """
        meta = {"optimizer": self.name, "lr": self.lr, "step": self.step_count}
        for key in self._HYPER:
            value = getattr(self, key)
            meta[key] = list(value) if isinstance(value, tuple) else value
        meta["param_names"] = list(self.params)
        arrays = {
            f"{kind}.{n}": buf.copy()
            for kind, bufs in self.state.items()
            for n, buf in bufs.items()
        }
        return meta, arrays

    def load_state_dict(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Restore ``lr``, step count, hyperparameters and buffers from :meth:`state_dict`.

        Everything is checked before anything changes; problems raise ``CheckpointError``.
        """
        owner = type(self).__name__
        kind = meta.get("optimizer") if isinstance(meta, Mapping) else None
        if kind not in self._accepts():
            raise CheckpointError(
                f"{owner}: checkpoint holds optimiser state of kind {kind!r}, "
                f"expected one of {list(self._accepts())}"
            )
        names = list(meta.get("param_names", []))
        if set(names) != set(self.params):
            missing = sorted(set(self.params) - set(names))
            unexpected = sorted(set(names) - set(self.params))
            raise CheckpointError(
                f"{owner}: optimiser state does not match the parameters "
                f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})"
            )
        try:
            hyper = self._validate(**{k: meta[k] for k in ("lr", *self._HYPER)})
            step = check_int(owner, "step", meta["step"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{owner}: bad optimiser state: {e}") from None

        old = {k: getattr(self, k) for k in ("lr", *self._HYPER)}
        for k, v in hyper.items():
            setattr(self, k, v)
        want = {f"{kd}.{n}": p for kd in self._state_kinds() for n, p in self.params.items()}
        problem = None
        if step > 0 and set(arrays) != set(want):
            problem = (
                f"missing: {sorted(set(want) - set(arrays))[:5]}, "
                f"unexpected: {sorted(set(arrays) - set(want))[:5]}"
            )
        else:
            for key, p in want.items():
                a = np.asarray(arrays[key]) if key in arrays else None
                if a is not None and a.shape != p.shape:
                    problem = f"{key!r} expected shape {_fmt(p.shape)}, got {_fmt(a.shape)}"
                elif a is not None and not np.isfinite(a).all():
                    problem = f"{key!r} contains NaN or inf"
                if problem:
                    break
        if problem:
            for k, v in old.items():
                setattr(self, k, v)
            raise CheckpointError(f"{owner}: optimiser state arrays do not match ({problem})")

        self.step_count = step
        self._allocate()
        for kd, bufs in self.state.items():
            for n, buf in bufs.items():
                if f"{kd}.{n}" in arrays:
                    buf[...] = arrays[f"{kd}.{n}"]

    def _accepts(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _validate(self, **kw) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr", *self._HYPER))
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


class SGD(_Optimizer):
    r"""Stochastic gradient descent with momentum, the same update as ``torch.optim.SGD``.

    For each parameter θ with gradient g, learning rate η, weight decay λ, momentum μ and
    dampening τ::

        g ← g + λ·θ                          (if λ ≠ 0)
        b ← g                                 (first step)
        b ← μ·b + (1 − τ)·g                   (later steps; if μ ≠ 0)
        g ← g + μ·b   (nesterov)   or   g ← b
        θ ← θ − η·g

    ``params`` is a ``{name: array}`` dict of the live arrays; :meth:`step` takes gradients
    with the same names (extra names are ignored) and updates those arrays in place.
    Nesterov momentum needs ``momentum > 0`` and ``dampening == 0``, as in PyTorch.
    """

    _HYPER = ("momentum", "weight_decay", "nesterov", "dampening")

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        hyper = self._validate(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            dampening=dampening,
        )
        for k, v in hyper.items():
            setattr(self, k, v)
        self._allocate()

    name = "sgd"

    def _accepts(self) -> tuple[str, ...]:
        return ("sgd",)

    def _state_kinds(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0 else ()

    def _validate(self, lr, momentum, weight_decay, nesterov, dampening) -> dict:
        o = "SGD"
        out = {
            "lr": check_real(o, "lr", lr),
            "momentum": check_real(o, "momentum", momentum),
            "weight_decay": check_real(o, "weight_decay", weight_decay),
            "dampening": check_real(o, "dampening", dampening, 0.0, 1.0, hi_open=False),
        }
        nesterov = check_flag(o, "nesterov", nesterov)
        if nesterov and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(
                f"{o}: nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )
        out["nesterov"] = nesterov
        return out

    def step(self, grads: dict[str, np.ndarray], *, check_finite: bool = True) -> None:
        """One update of every parameter, in place.  A NaN or inf gradient raises
        :class:`NonFiniteError` before any weight changes (``check_finite=False`` skips the
        test, for callers that did it already, as the trainer's clipping does)."""
        pairs = self._gather(grads, check_finite)
        lr, mu, wd, damp = self.lr, self.momentum, self.weight_decay, self.dampening
        first = self.step_count == 0
        for name, p, g in pairs:
            if wd != 0:
                gw = self._work(name, p, 0)
                np.multiply(p, wd, out=gw)
                gw += g
                g = gw
            if mu != 0:
                buf = self.state["momentum"][name]
                if first:
                    np.copyto(buf, g)
                else:
                    buf *= mu
                    if damp != 0:
                        # nesterov excludes dampening, so g may be overwritten here
                        tmp = self._work(name, p, 0)
                        np.multiply(g, 1.0 - damp, out=tmp)
                        buf += tmp
                    else:
                        buf += g
                if self.nesterov:
                    tmp = self._work(name, p, 1)
                    np.multiply(buf, mu, out=tmp)
                    tmp += g
                    g = tmp
                else:
                    g = buf
            tmp = self._work(name, p, 1)
            np.multiply(g, lr, out=tmp)
            p -= tmp
        self.step_count += 1


class Adam(_Optimizer):
    r"""Adam, or AdamW with ``decoupled=True``; the same update as ``torch.optim.Adam/AdamW``.

    At step t = 1, 2, ... for each parameter θ with gradient g, learning rate η, weight decay
    λ, betas (β₁, β₂) and ε::

        θ ← θ·(1 − η·λ)                      (decoupled=True: AdamW)
        g ← g + λ·θ                          (decoupled=False: L2 penalty, classic Adam)
        m ← β₁·m + (1 − β₁)·g                first moment  (exp_avg)
        v ← β₂·v + (1 − β₂)·g²               second moment (exp_avg_sq)
        v̂ ← max(v̂, v)                        (amsgrad; max_exp_avg_sq), else v̂ = v
        θ ← θ − η/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε)

    The bias corrections 1 − βᵗ undo the zero initialisation of m and v.  Note that ε is added
    *after* the √(1 − β₂ᵗ) correction, exactly as PyTorch does.  ``make_optimizer("adamw")``
    defaults ``weight_decay`` to 0.01 like ``torch.optim.AdamW``; this class defaults it to 0.
    """

    _HYPER = ("betas", "eps", "weight_decay", "amsgrad", "decoupled")

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        decoupled: bool = False,
    ) -> None:
        super().__init__(params, lr)
        hyper = self._validate(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            decoupled=decoupled,
        )
        for k, v in hyper.items():
            setattr(self, k, v)
        self._allocate()

    @property
    def name(self) -> str:
        return "adamw" if self.decoupled else "adam"

    def _accepts(self) -> tuple[str, ...]:
        return ("adam", "adamw")

    def _state_kinds(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _validate(self, lr, betas, eps, weight_decay, amsgrad, decoupled) -> dict:
        o = "AdamW" if decoupled else "Adam"
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(
                f"{o}: expected betas as a pair (beta1, beta2), got {betas!r}"
            ) from None
        return {
            "lr": check_real(o, "lr", lr),
            "betas": (check_real(o, "beta1", b1, 0.0, 1.0), check_real(o, "beta2", b2, 0.0, 1.0)),
            "eps": check_real(o, "eps", eps),
            "weight_decay": check_real(o, "weight_decay", weight_decay),
            "amsgrad": check_flag(o, "amsgrad", amsgrad),
            "decoupled": check_flag(o, "decoupled", decoupled),
        }

    def step(self, grads: dict[str, np.ndarray], *, check_finite: bool = True) -> None:
        """One update of every parameter, in place.  A NaN or inf gradient raises
        :class:`NonFiniteError` before any weight changes (``check_finite=False`` skips the
        test, for callers that did it already, as the trainer's clipping does)."""
        pairs = self._gather(grads, check_finite)
        lr, (b1, b2), eps, wd = self.lr, self.betas, self.eps, self.weight_decay
        t = self.step_count + 1
        step_size = lr / (1.0 - b1**t)
        bc2_sqrt = (1.0 - b2**t) ** 0.5
        m_all, v_all = self.state["exp_avg"], self.state["exp_avg_sq"]
        for name, p, g in pairs:
            if wd != 0:
                if self.decoupled:
                    p *= 1.0 - lr * wd
                else:
                    gw = self._work(name, p, 0)
                    np.multiply(p, wd, out=gw)
                    gw += g
                    g = gw
            m, v, tmp = m_all[name], v_all[name], self._work(name, p, 1)
            np.subtract(g, m, out=tmp)  # m ← m + (1 − β₁)(g − m), torch's lerp_
            tmp *= 1.0 - b1
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            if self.amsgrad:
                v = self.state["max_exp_avg_sq"][name]
                np.maximum(v, v_all[name], out=v)
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp
        self.step_count = t


def make_optimizer(name: str, params: dict[str, np.ndarray], **kw) -> SGD | Adam:
    """Build an optimiser by name: ``"sgd"``, ``"adam"`` or ``"adamw"`` (case-insensitive).

    ``"adamw"`` is ``Adam(decoupled=True)`` with ``weight_decay`` defaulting to 0.01, as in
    ``torch.optim.AdamW``.  Keyword arguments go to the constructor; unknown ones raise
    ``ValueError`` listing the accepted ones.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")
    cls = SGD if key == "sgd" else Adam
    accepted = [p for p in inspect.signature(cls).parameters if p != "params"]
    if key == "adamw":
        if not kw.pop("decoupled", True):
            raise ValueError("make_optimizer: 'adamw' always has decoupled=True; use 'adam'")
        accepted.remove("decoupled")
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(
            f"make_optimizer: {key!r} does not take {', '.join(unknown)}; "
            f"options: {', '.join(accepted)}"
        )
    if key == "sgd" and "lr" not in kw:
        raise ValueError("make_optimizer: 'sgd' needs a learning rate (lr=...)")
    if key == "adamw":
        kw = {"weight_decay": 1e-2, **kw, "decoupled": True}
    return cls(params, **kw)


# -- gradient clipping ------------------------------------------------------------------------
def _named(grads) -> list[tuple[str, np.ndarray]]:
    if isinstance(grads, np.ndarray):
        return [("#0", grads)]
    if isinstance(grads, Mapping):
        return [(str(k), v) for k, v in grads.items()]
    return [(f"#{i}", g) for i, g in enumerate(grads)]


def _norm(g) -> float:
    """L2 norm of one array; rescales instead of overflowing when the squares exceed float."""
    x = np.asarray(g).ravel()
    with np.errstate(over="ignore"):
        s = float(np.dot(x, x))
    if math.isfinite(s) or not np.isfinite(x).all():
        return math.sqrt(s)
    big = float(np.max(np.abs(x)))
    y = x.astype(np.float64) / big
    return big * math.sqrt(float(np.dot(y, y)))


def global_norm(grads: Mapping[str, np.ndarray] | Iterable[np.ndarray]) -> float:
    """√(Σ‖g‖²) over every gradient array: the norm :func:`clip_grad_norm` clips.

    NaN or inf in any gradient gives a NaN or inf result (no error is raised here).
    """
    return math.hypot(*(_norm(g) for _, g in _named(grads)))


def clip_grad_norm(
    grads: Mapping[str, np.ndarray] | Iterable[np.ndarray], max_norm: float
) -> float:
    """Scale all gradients together, in place, so their global L2 norm is at most ``max_norm``.

    With n = :func:`global_norm` (grads) the arrays are multiplied by
    c = max_norm / (n + 1e-6) when c < 1 -- the same rule as
    ``torch.nn.utils.clip_grad_norm_`` -- so the direction of the update is kept.  Returns n,
    the norm *before* clipping (worth logging).  ``max_norm=math.inf`` only measures.

    Raises ``NonFiniteError`` when n is NaN or inf: the gradients have exploded and the step
    must not be taken.
    """
    max_norm = check_real("clip_grad_norm", "max_norm", max_norm, lo_open=True, hi_open=False)
    named = _named(grads)
    norms = [_norm(g) for _, g in named]
    total = math.hypot(*norms)
    if not math.isfinite(total):
        bad = next((n for (n, _), v in zip(named, norms) if not math.isfinite(v)), None)
        where = f" (first non-finite gradient: {bad!r})" if bad is not None else ""
        raise NonFiniteError(
            f"gradient norm is {total}{where}: exploding gradients. Try a smaller learning "
            "rate (--lr) or clip gradients with --clip (e.g. --clip 5)"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for _, g in named:
            g *= coef
    return total


def clip_grad_value(
    grads: Mapping[str, np.ndarray] | Iterable[np.ndarray], clip_value: float
) -> None:
    """Clamp every gradient element to [−clip_value, clip_value], in place (NaN stays NaN)."""
    c = check_real("clip_grad_value", "clip_value", clip_value, hi_open=False)
    for name, g in _named(grads):
        if not isinstance(g, np.ndarray):
            raise TypeError(
                f"clip_grad_value: gradient {name} must be a numpy array to clip it in place, "
                f"got {type(g).__name__}"
            )
        np.clip(g, -c, c, out=g)
