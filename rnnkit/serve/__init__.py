"""Serve a checkpoint over HTTP: a JSON API and a page to try the model (``rnnkit serve``).

* ``GET /``: the page (self-contained: no external assets);
* ``GET /api/info``: the model's kind, configuration, vocabulary size and the limits;
* ``POST /api/generate`` (language models): ``{"prompt", "length", "temperature", "top_k",
  "top_p", "seed", "stream"}`` -> ``{"text"}``, or server-sent events with ``"stream": true``;
* ``POST /api/predict`` (classifiers, taggers): ``{"text": str or [str, ...]}`` ->
  ``{"predictions": [...]}``, labels or tags with their probabilities;
* ``POST /api/translate`` (seq2seq): ``{"text", "beam"}`` -> ``{"translation", "attention",
  ...}``.

What each kind serves comes from its task (``serve`` in :data:`rnnkit.tasks.REGISTRY`); the
web stack (Starlette, uvicorn: ``pip install rnnkit[deploy]``) is imported only when an app is
built.

>>> # from rnnkit.serve import create_app, Limits
>>> # app = create_app("runs/chars", Limits(concurrency=4))   # any ASGI server runs it
>>> # serve("runs/chars", port=8000)                         # or uvicorn, on 127.0.0.1
"""

from __future__ import annotations

from .api import ApiError, Limits

__all__ = ["ApiError", "Limits", "create_app", "load_service", "serve"]


def load_service(checkpoint):
    """``(service, kind, config)`` for a checkpoint or run directory of a kind that can be
    served; any other kind is a ``ValueError`` naming the kinds that can."""
    from ..tasks import REGISTRY, checkpoint_task

    path, kind, make = checkpoint_task(checkpoint, "serve")
    if make is None:
        kinds = ", ".join(k for k, spec in REGISTRY.items() if spec.serve)
        raise ValueError(f"{path}: rnnkit serve serves checkpoints of kind {kinds}, not "
                         f"{kind!r}")
    service = make(path)
    return service, kind, service.checkpoint.config


def create_app(checkpoint, limits: Limits | None = None):
    """The ASGI app (Starlette) serving a checkpoint or run directory."""
    from .app import build_app

    service, kind, config = load_service(checkpoint)
    return build_app(service, kind, config, limits)


def serve(checkpoint, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          *, log_level: str = "info", on_ready=None) -> None:
    """Run the server with uvicorn until interrupted.  ``on_ready(app)`` is called once the
    model is loaded, before the server starts listening."""
    import uvicorn

    limits = limits or Limits()
    app = create_app(checkpoint, limits)
    if on_ready is not None:
        on_ready(app)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            limit_concurrency=limits.max_connections, timeout_keep_alive=5,
                            server_header=False)
    uvicorn.Server(config).run()
