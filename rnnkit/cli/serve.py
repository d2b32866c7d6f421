"""Serve a checkpoint over HTTP: a JSON API and a page to try the model in a browser.

The server listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise; to
reach it from elsewhere, put it behind a reverse proxy (see docs/serve.md).  Language models
answer ``POST /api/generate``, classifiers and taggers ``/api/predict``, seq2seq models
``/api/translate``; every kind answers ``GET /api/info`` and ``GET /`` (the page).
Needs the ``deploy`` extra: ``pip install rnnkit[deploy]``.
"""

from __future__ import annotations

import ipaddress
import sys

from ..serve.api import Limits

_D = Limits()


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="checkpoint directory or run directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface; only behind a "
                        "reverse proxy)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--max-body", type=int, default=_D.max_body,
                   help="largest request body, in bytes")
    p.add_argument("--max-text", type=int, default=_D.max_text,
                   help="longest prompt or text, in characters")
    p.add_argument("--max-texts", type=int, default=_D.max_texts,
                   help="most texts in one /api/predict request")
    p.add_argument("--max-length", type=int, default=_D.max_length,
                   help="most tokens one /api/generate request may ask for")
    p.add_argument("--max-beam", type=int, default=_D.max_beam, help="widest beam")
    p.add_argument("--concurrency", type=int, default=_D.concurrency,
                   help="model calls running at once; more are refused with 503")
    p.add_argument("--timeout", type=float, default=_D.timeout,
                   help="seconds a request's model work may take (longer: 504)")
    p.add_argument("--max-connections", type=int, default=_D.max_connections,
                   help="open connections accepted; more are refused with 503")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")


def limits_from(args) -> Limits:
    names = ["max_body", "max_text", "max_texts", "max_length", "max_beam", "concurrency",
             "timeout", "max_connections"]
    for n in names:
        v = getattr(args, n)
        if not v > 0:
            raise ValueError(f"--{n.replace('_', '-')} must be > 0, got {v}")
    return Limits(**{n: getattr(args, n) for n in names})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    limits = limits_from(args)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ValueError(f"rnnkit serve needs starlette and uvicorn ({e}); install them with "
                         "pip install 'rnnkit[deploy]'") from None
    from ..serve import serve

    def ready(app):
        s = app.state.server
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"rnnkit serve: {s.kind} model from {args.checkpoint} at "
              f"http://{host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
        if not _is_loopback(args.host):
            print(f"rnnkit serve: warning: listening on {args.host}: anyone who can reach "
                  "this machine can use the model; put it behind a reverse proxy",
                  file=sys.stderr)

    serve(args.checkpoint, args.host, args.port, limits, log_level=args.log_level,
          on_ready=ready)
    return 0
