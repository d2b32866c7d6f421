"""The web application behind ``rnnkit serve``: a Starlette app around a task's service (see
:mod:`rnnkit.serve`).  Model calls run in worker threads, never on the event loop; at most
``limits.concurrency`` run at once (more get 503) and each has ``limits.timeout`` seconds
(longer gets 504).  Every refusal is a JSON body ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .api import ApiError, Limits, generate_args, parse_body, predict_texts, translate_args
from .page import PAGE

log = logging.getLogger("rnnkit.serve")

PAGE_HEADERS = {
    # the page is self-contained: nothing may be fetched but the API on this server
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                               "style-src 'unsafe-inline'; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Slots:
    """At most ``n`` model calls at once; a call that finds none free is refused at once
    (503) rather than queued, so a busy server answers quickly."""

    def __init__(self, n: int):
        self.n = n
        self._sem = threading.BoundedSemaphore(n)

    def take(self) -> None:
        if not self._sem.acquire(blocking=False):
            raise ApiError(503, f"busy: {self.n} model call(s) already running; try again",
                           None, {"Retry-After": "1"})

    def give(self) -> None:
        self._sem.release()

    def hold(self) -> _Held:
        """A slot taken now and given back by :meth:`_Held.release` (once), or when the
        holder is dropped without releasing it (a stream that never started)."""
        self.take()
        return _Held(self)


class _Held:
    def __init__(self, slots: _Slots):
        self._slots = slots
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._slots.give()

    __del__ = release


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


async def _read_json(request: Request, limits: Limits) -> dict:
    """The request's JSON object, read up to ``limits.max_body`` bytes."""
    declared = request.headers.get("content-length")
    too_big = ApiError(413, f"body: over the {limits.max_body}-byte limit", "body")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "body: Content-Length is not a number", "body")
        if int(declared) > limits.max_body:
            raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body:
            raise too_big
        chunks.append(chunk)
    return parse_body(b"".join(chunks))


class Server:
    """The endpoints of one loaded model: ``service`` (a task's service object, see
    :data:`rnnkit.tasks.REGISTRY`), its checkpoint ``kind`` and ``config``."""

    def __init__(self, service, kind: str, config: dict, limits: Limits):
        self.service, self.kind, self.config, self.limits = service, kind, config, limits
        self.slots = _Slots(limits.concurrency)

    def _supports(self, endpoint: str) -> None:
        if endpoint not in self.service.endpoints:
            served = ", ".join(f"/api/{e}" for e in self.service.endpoints)
            raise ApiError(404, f"this {self.kind} model has no /api/{endpoint} (it serves "
                                f"{served})", None)

    async def _call(self, fn, field: str):
        """``fn()`` in a worker thread, holding a slot until it returns (even past the
        timeout: a thread cannot be stopped, so its slot stays taken until it ends)."""
        self.slots.take()

        def work():
            try:
                return fn()
            finally:
                self.slots.give()

        task = asyncio.ensure_future(run_in_threadpool(work))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.limits.timeout)
        except asyncio.TimeoutError:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise ApiError(504, f"the model took longer than the {self.limits.timeout:g} s "
                                "limit", None) from None
        except ValueError as e:  # the model's own check of a value (an empty sentence)
            raise ApiError(400, f"{field}: {e}", field) from None

    # -- endpoints ---------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def info(self, request: Request) -> Response:
        return JSONResponse({"kind": self.kind, "endpoints": list(self.service.endpoints),
                             **self.service.info(), "config": self.config,
                             "limits": asdict(self.limits)})

    async def generate(self, request: Request) -> Response:
        self._supports("generate")
        args = generate_args(await _read_json(request, self.limits), self.limits)
        stream = args.pop("stream")
        warnings: list[str] = []
        deadline = time.monotonic() + self.limits.timeout

        def start():
            return self.service.generate(args.pop("prompt"), args.pop("length"), **args,
                                         warn=warnings.append)

        if not stream:
            def whole():
                out = []
                for piece in start():
                    if time.monotonic() > deadline:
                        break  # the waiting request has already answered 504
                    out.append(piece)
                return "".join(out)

            text = await self._call(whole, "prompt")
            return JSONResponse({"text": text, "warnings": warnings})
        slot = self.slots.hold()
        try:
            pieces = await run_in_threadpool(start)  # runs the prompt
        except ValueError as e:
            slot.release()
            raise ApiError(400, f"prompt: {e}", "prompt") from None
        except BaseException:
            slot.release()
            raise
        return StreamingResponse(self._events(pieces, warnings, deadline, slot),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _events(self, pieces, warnings: list[str], deadline: float, slot: _Held):
        """Server-sent events: ``token`` per piece, then ``done`` with the whole text (or
        ``error``).  Holds a slot until the generation ends or the client goes away."""
        out = []
        try:
            while True:
                if time.monotonic() > deadline:
                    yield _sse("error", {"error": f"generation took longer than the "
                                                  f"{self.limits.timeout:g} s limit",
                                         "field": None})
                    return
                piece = await run_in_threadpool(next, pieces, None)
                if piece is None:
                    break
                out.append(piece)
                yield _sse("token", {"token": piece})
            yield _sse("done", {"text": "".join(out), "warnings": warnings})
        except Exception:  # the status line has gone: report in the stream
            log.exception("generation failed")
            yield _sse("error", {"error": "internal error (see the server's log)",
                                 "field": None})
        finally:
            pieces.close()
            slot.release()

    async def predict(self, request: Request) -> Response:
        self._supports("predict")
        texts = predict_texts(await _read_json(request, self.limits), self.limits)
        out = await self._call(lambda: self.service.predict(texts), "text")
        return JSONResponse({"predictions": out})

    async def translate(self, request: Request) -> Response:
        self._supports("translate")
        args = translate_args(await _read_json(request, self.limits), self.limits)
        out = await self._call(lambda: self.service.translate(args["text"], args["beam"]),
                               "text")
        return JSONResponse(out)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _wrap(endpoint):
    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as e:
            return _error(e)
    return handle


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail, "field": None}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse({"error": "internal error (see the server's log)", "field": None},
                        status_code=500)


def build_app(service, kind: str, config: dict, limits: Limits | None = None) -> Starlette:
    """The Starlette app serving ``service`` (see :func:`rnnkit.serve.create_app`)."""
    s = Server(service, kind, config, limits or Limits())
    post = ["POST"]
    routes = [Route("/", _wrap(s.page)), Route("/favicon.ico", _wrap(s.favicon)),
              Route("/api/info", _wrap(s.info)),
              Route("/api/generate", _wrap(s.generate), methods=post),
              Route("/api/predict", _wrap(s.predict), methods=post),
              Route("/api/translate", _wrap(s.translate), methods=post)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error,
                                                       Exception: _internal_error})
    app.state.server = s
    return app
