"""The JSON API's requests: the limits, and the checks that turn a request body into the
arguments of a model call or into an :class:`ApiError` naming the field at fault.

Nothing here imports the web stack, so the checks are tested without a server:

>>> generate_args(parse_body(b'{"prompt": "def ", "length": 20}'), Limits())["length"]
20
>>> try:
...     generate_args({"length": -1}, Limits())
... except ApiError as e:
...     print(e.status, e.field, e.message)
400 length length must be an integer in 0..1000, got -1
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much runs at once.

    ``max_body`` bytes of request body; ``max_text`` characters of a prompt or text;
    ``max_texts`` texts in one ``/api/predict`` request; ``max_length`` generated tokens;
    ``max_beam`` beam width; ``concurrency`` model calls running at once (more get 503);
    ``timeout`` seconds a model call may take (longer gets 504); ``max_connections`` open
    connections the server accepts (more get 503 from uvicorn)."""

    max_body: int = 64 * 1024
    max_text: int = 2000
    max_texts: int = 32
    max_length: int = 1000
    max_beam: int = 10
    concurrency: int = 2
    timeout: float = 30.0
    max_connections: int = 64

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or not math.isfinite(v):
                raise ValueError(f"Limits: {f.name} must be a positive number, got {v!r}")


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a one-line ``message`` and the request
    ``field`` it is about (``None`` if none).  The response body is :meth:`body`."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.message, "field": self.field}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict:
    """The JSON object in a request body (UTF-8); NaN and Infinity are refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body: not UTF-8 (byte {e.start})", "body") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"body: not valid JSON ({e.msg} at line {e.lineno} column "
                            f"{e.colno})", "body") from None
    except ValueError as e:  # NaN, Infinity
        raise ApiError(400, f"body: {e}", "body") from None
    except RecursionError:
        raise ApiError(400, "body: JSON nested too deeply", "body") from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"body: expected a JSON object, got {_json_type(obj)}", "body")
    return obj


def _json_type(v) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(v), type(v).__name__)


def _show(v) -> str:
    """A short rendering of a client's value for an error message."""
    if isinstance(v, (list, dict)):
        return _json_type(v)
    text = json.dumps(v) if not isinstance(v, float) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _only(obj: dict, allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            raise ApiError(400, f"unknown field {_show(key)} (this endpoint takes: "
                                f"{', '.join(allowed)})", str(key)[:40])


def _int(obj: dict, name: str, default, lo: int, hi: int) -> int:
    v = obj.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(400, f"{name} must be an integer in {lo}..{hi}, got {_show(v)}", name)
    return v


def _float(obj: dict, name: str, default: float, lo: float, hi: float,
           lo_open: bool = False) -> float:
    v = obj.get(name, default)
    ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
          and (lo < v if lo_open else lo <= v) and v <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ApiError(400, f"{name} must be a number in {interval}, got {_show(v)}", name)
    return float(v)


_FROM_OBJ = object()


def _text(obj: dict, name: str, limits: Limits, *, default=None, where: str | None = None,
          value=_FROM_OBJ) -> str:
    v = obj.get(name, default) if value is _FROM_OBJ else value
    where = where or name
    if not isinstance(v, str):
        raise ApiError(400, f"{where} must be a string, got {_show(v)}", name)
    if len(v) > limits.max_text:
        raise ApiError(400, f"{where} is {len(v)} characters long; the limit is "
                            f"{limits.max_text}", name)
    if "\x00" in v:
        raise ApiError(400, f"{where} contains a NUL character", name)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate ("\ud800"), valid JSON but not text
        raise ApiError(400, f"{where} is not Unicode text (character {e.start})", name) \
            from None
    return v


GENERATE_FIELDS = ("prompt", "length", "temperature", "top_k", "top_p", "seed", "stream")


def generate_args(obj: dict, limits: Limits) -> dict:
    """``/api/generate``: ``prompt`` (default ""), ``length`` (tokens, default 200 or the
    limit), ``temperature`` (0 is greedy), ``top_k``, ``top_p``, ``seed`` (null: random) and
    ``stream`` (server-sent events)."""
    _only(obj, GENERATE_FIELDS)
    seed = obj.get("seed")
    if seed is not None:
        seed = _int(obj, "seed", None, 0, 2**63 - 1)
    stream = obj.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {_show(stream)}", "stream")
    return {"prompt": _text(obj, "prompt", limits, default=""),
            "length": _int(obj, "length", min(200, limits.max_length), 0, limits.max_length),
            "temperature": _float(obj, "temperature", 1.0, 0.0, 100.0),
            "top_k": _int(obj, "top_k", 0, 0, 1_000_000),
            "top_p": _float(obj, "top_p", 1.0, 0.0, 1.0, lo_open=True),
            "seed": seed, "stream": stream}


def predict_texts(obj: dict, limits: Limits) -> list[str]:
    """``/api/predict``: ``text``, a string or a list of 1 to ``max_texts`` strings, none
    blank."""
    _only(obj, ("text",))
    if "text" not in obj:
        raise ApiError(400, "text is missing (a string or a list of strings)", "text")
    v = obj["text"]
    if isinstance(v, list):
        if not 1 <= len(v) <= limits.max_texts:
            raise ApiError(400, f"text must hold 1..{limits.max_texts} strings, got "
                                f"{len(v)}", "text")
        texts = [_text(obj, "text", limits, where=f"text[{i}]", value=t)
                 for i, t in enumerate(v)]
    else:
        texts = [_text(obj, "text", limits)]
    for i, t in enumerate(texts):
        if not t.split():
            where = f"text[{i}]" if isinstance(v, list) else "text"
            raise ApiError(400, f"{where} has no words", "text")
    return texts


def translate_args(obj: dict, limits: Limits) -> dict:
    """``/api/translate``: ``text`` (required) and ``beam`` (default 5 or the limit)."""
    _only(obj, ("text", "beam"))
    if "text" not in obj:
        raise ApiError(400, "text is missing", "text")
    text = _text(obj, "text", limits)
    if not text.strip():
        raise ApiError(400, "text is empty", "text")
    return {"text": text, "beam": _int(obj, "beam", min(5, limits.max_beam), 1,
                                       limits.max_beam)}
