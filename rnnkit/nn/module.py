"""Parameter containers.

A :class:`Module` holds named parameters, their gradients and child modules -- nothing else.
The math lives in pure functions that take arrays and return arrays plus a cache; a module's
``forward`` returns ``(output, cache)`` and its ``backward(dout, cache)`` *accumulates* into
``self.grad`` and returns the gradient with respect to its input.

``parameters()`` and ``grads()`` give flat, ordered ``{dotted.name: array}`` views that the
optimisers, gradient clipping and checkpoints use.  The arrays in those views are the live
arrays: optimisers update them in place.

:meth:`flat_grad` puts every gradient into one contiguous buffer (each entry of ``grads()`` then
a view into it), so that a data-parallel step can sum all of them across processes in one call.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import CheckpointError


class Module:
    """Base class: named parameters (``self.param``), gradients (``self.grad``), children."""

    def __init__(self) -> None:
        self.param: dict[str, np.ndarray] = {}
        self.grad: dict[str, np.ndarray] = {}
        self._children: dict[str, Module] = {}
        self.training = True

    # -- construction -------------------------------------------------------------------
    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        value = np.ascontiguousarray(value)
        self.param[name] = value
        self.grad[name] = np.zeros_like(value)
        return value

    def add_module(self, name: str, module: Module) -> Module:
        self._children[name] = module
        return module

    def children(self) -> Iterator[tuple[str, Module]]:
        yield from self._children.items()

    # -- views --------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter, keyed by a stable dotted name (``layers.0.fwd.W_h``)."""
        out: dict[str, np.ndarray] = {}
        for prefix, mod in self.named_modules():
            for name, value in mod.param.items():
                out[f"{prefix}.{name}" if prefix else name] = value
        return out

    def grads(self) -> dict[str, np.ndarray]:
        """Gradient arrays, same keys and order as :meth:`parameters`."""
        out: dict[str, np.ndarray] = {}
        for prefix, mod in self.named_modules():
            for name, value in mod.grad.items():
                out[f"{prefix}.{name}" if prefix else name] = value
        return out

    def flat_grad(self, extra: int = 0) -> np.ndarray:
        """One contiguous 1-D buffer holding every gradient, in the order of :meth:`grads`,
        followed by ``extra`` free elements for the caller's own figures.

        The first call moves the gradients into the buffer (values kept) and rebinds each
        module's ``grad`` entries to views of it; later calls return the same buffer while it
        has room for ``extra``.  Arrays taken from :meth:`grads` *before* the first call are no
        longer the live gradients, so call it before holding on to them.

        >>> from rnnkit.nn.layers import Linear
        >>> layer = Linear(3, 2, rng=np.random.default_rng(0))
        >>> flat = layer.flat_grad()
        >>> layer.grad["W"] += 1.0
        >>> float(flat.sum()), flat.size == layer.num_parameters()
        (6.0, True)
        """
        flat = getattr(self, "_flat_grad", None)
        size = self.num_parameters()
        if flat is not None and flat.size >= size + extra:
            return flat
        dtypes = {g.dtype for g in self.grads().values()}
        if len(dtypes) > 1:
            raise ValueError(f"{type(self).__name__}: one gradient buffer needs one dtype, "
                             f"got {sorted(map(str, dtypes))}")
        flat = np.zeros(size + extra, dtypes.pop() if dtypes else np.float64)
        views: dict[int, np.ndarray] = {}  # an array shared by two modules stays shared
        offset = 0
        for _, mod in self.named_modules():
            for name, g in mod.grad.items():
                if id(g) not in views:
                    view = flat[offset: offset + g.size].reshape(g.shape)
                    view[...] = g
                    views[id(g)] = view
                    offset += g.size
                mod.grad[name] = views[id(g)]
        self._flat_grad = flat
        return flat

    def zero_grad(self) -> None:
        for g in self.grads().values():
            g.fill(0)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters().values()))

    # -- mode ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for _, mod in self.named_modules():
            mod.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter (safe to keep while training goes on)."""
        return {k: v.copy() for k, v in self.parameters().items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the live parameters, checking names, shapes and finiteness."""
        params = self.parameters()
        if strict:
            missing = sorted(set(params) - set(state))
            unexpected = sorted(set(state) - set(params))
            if missing or unexpected:
                raise CheckpointError(
                    f"{type(self).__name__}: weights do not match the model "
                    f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})"
                )
        for name, value in state.items():
            if name not in params:
                continue
            target = params[name]
            value = np.asarray(value)
            if value.shape != target.shape:
                raise CheckpointError(
                    f"{type(self).__name__}: weight {name!r} expected shape {target.shape}, "
                    f"got {value.shape}"
                )
            target[...] = value

    @property
    def dtype(self) -> np.dtype:
        for p in self.parameters().values():
            return p.dtype
        return np.dtype(np.float32)
