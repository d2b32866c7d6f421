"""Parameter containers.

A :class:`Module` holds named parameters, their gradients and child modules -- nothing else.
The math lives in pure functions that take arrays and return arrays plus a cache; a module's
``forward`` returns ``(output, cache)`` and its ``backward(dout, cache)`` *accumulates* into
``self.grad`` and returns the gradient with respect to its input.

``parameters()`` and ``grads()`` give flat, ordered ``{dotted.name: array}`` views that the
optimisers, gradient clipping and checkpoints use.  The arrays in those views are the live
arrays: optimisers update them in place.
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
