"""A real ``rnnkit serve`` server for the tests: uvicorn in a thread on a free port, and the
server-sent events of a streamed response read back."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
CHECKPOINTS = {name: FIXTURES / name / "ckpt"
               for name in ("lm-char", "lm-word", "classifier", "tagger", "seq2seq")}


class RunningServer:
    """``app`` served by uvicorn in a daemon thread on 127.0.0.1 and a free port (a socket
    bound before the server starts, so no other process can take the port)."""

    def __init__(self, app, max_connections: int = 64):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        config = uvicorn.Config(app, log_level="warning", limit_concurrency=max_connections,
                                timeout_keep_alive=5, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def alive(self) -> bool:
        """The server still answers ``/api/info``."""
        import httpx

        return httpx.get(self.url + "/api/info", timeout=10).status_code == 200


def sse_events(text: str) -> list[tuple[str, dict]]:
    """``(event, data)`` for each server-sent event in a response body."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
