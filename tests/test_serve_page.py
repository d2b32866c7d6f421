"""The page ``rnnkit serve`` shows: self-contained, and in headless Chromium (driven over the
DevTools protocol on a pipe) it loads without console errors and shows what the model
answers: the streamed continuation of a prompt, labels, tags, a translation and its
attention heatmap."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_helpers import CHECKPOINTS, RunningServer  # noqa: E402

from rnnkit.serve import Limits, create_app  # noqa: E402
from rnnkit.serve.page import PAGE  # noqa: E402

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)


def test_page_is_self_contained():
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(|https?://""", PAGE)
    assert "innerHTML" not in PAGE  # model and user text go in as text


def test_page_is_served_with_a_strict_policy():
    server = RunningServer(create_app(CHECKPOINTS["lm-char"]))
    try:
        r = httpx.get(server.url + "/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text == PAGE
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert httpx.get(server.url + "/favicon.ico").status_code == 204
    finally:
        server.stop()


# -- in a real browser ----------------------------------------------------------------------
class DevTools:
    """Chromium run headless with ``--remote-debugging-pipe``: DevTools protocol messages,
    NUL-terminated JSON, go in on the child's fd 3 and come out on its fd 4."""

    def __init__(self, profile):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        cmd_r, out_w = _above(cmd_r, 10), _above(out_w, 10)  # clear of the 3 and 4 to fill
        args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        # a small Python puts the two pipe ends on fds 3 and 4 (no preexec_fn: tests run
        # threads), then becomes the browser
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(cmd_r), str(out_w), *args],
            pass_fds=(cmd_r, out_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(out_r, "rb", buffering=0)
        self._next = 0
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                self.messages.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self.messages.put(json.loads(msg))

    def send(self, method, params=None, session=None, timeout=30.0):
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if got is None:
                raise RuntimeError("chromium closed the pipe")
            if got.get("id") == self._next:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got["result"]
            self.events.append(got)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, queue.Empty, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_TRAMPOLINE = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.execv(sys.argv[3], sys.argv[3:])")


def _above(fd: int, low: int) -> int:
    """``fd`` moved to a descriptor number >= ``low``."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return new


class Page:
    def __init__(self, tools: DevTools, url: str):
        self.tools = tools
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = tools.send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            tools.send(f"{domain}.enable", session=self.session)
        tools.send("Page.navigate", {"url": url}, session=self.session)

    def eval(self, expression: str):
        r = self.tools.send("Runtime.evaluate", {"expression": expression,
                                                 "returnByValue": True}, session=self.session)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for_state(self, states, seconds=60.0) -> str:
        deadline = time.monotonic() + seconds
        while True:
            state = self.eval("document.body ? document.body.dataset.state : ''")
            if state in states:
                return state
            assert time.monotonic() < deadline, f"the page stayed {state!r}"
            time.sleep(0.05)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors (a
        blocked or failed fetch) seen so far on this page."""
        out = []
        for e in self.tools.events:
            if e.get("sessionId") != self.session:
                continue
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning",
                                                                        "assert"):
                out.append(json.dumps(p["args"])[:300])
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(p["entry"]["text"])
        return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if BROWSER is None:
        pytest.skip("no chromium to run the page in")
    try:
        tools = DevTools(tmp_path_factory.mktemp("profile"))
        tools.send("Browser.getVersion", timeout=60)
    except (OSError, RuntimeError, queue.Empty) as e:
        pytest.skip(f"chromium did not start: {e}")
    yield tools
    tools.close()


@pytest.fixture(scope="module")
def servers():
    limits = Limits(max_length=300, concurrency=2)
    running = {name: RunningServer(create_app(CHECKPOINTS[name], limits))
               for name in ("lm-char", "classifier", "tagger", "seq2seq")}
    yield {name: r.url for name, r in running.items()}
    for r in running.values():
        r.stop()


SUBMIT = """(function (text, fields) {{
  var $ = function (id) {{ return document.getElementById(id); }};
  $("input").value = text;
  Object.keys(fields).forEach(function (k) {{ $(k).value = fields[k]; }});
  $("submit").click();
  return true;
}})({text}, {fields})"""


def _submit(page, text, **fields):
    page.wait_for_state({"ready", "done", "error"})
    assert page.eval("document.getElementById('submit').disabled") is False
    page.eval(SUBMIT.format(text=json.dumps(text), fields=json.dumps(fields)))
    return page.wait_for_state({"done", "error"})


@pytest.mark.slow
def test_a_prompt_shows_its_streamed_continuation(browser, servers):
    page = Page(browser, servers["lm-char"] + "/")
    assert _submit(page, "def f", length="120", seed="3", temperature="0.8") == "done"
    shown = page.eval("document.getElementById('generated').textContent")
    assert page.eval("document.getElementById('prompt').textContent") == "def f"
    want = httpx.post(servers["lm-char"] + "/api/generate", timeout=30, content=json.dumps(
        {"prompt": "def f", "length": 120, "seed": 3, "temperature": 0.8, "top_k": 0,
         "top_p": 1})).json()["text"]
    assert shown == want and len(shown) == 120
    assert page.eval("document.body.dataset.mode") == "generate"
    assert page.eval("document.getElementById('status').className") == ""
    # a request the server refuses shows its message, and the page goes on working
    assert _submit(page, "def", length="301") == "error"
    assert "length must be an integer in 0..300" in page.eval(
        "document.getElementById('status').textContent")
    assert _submit(page, "def", length="5", seed="1") == "done"
    names = page.eval("performance.getEntriesByType('resource').map(function (e) "
                      "{ return new URL(e.name).pathname; })")
    assert set(names) <= {"/api/info", "/api/generate"}
    # the refused request is the one error the browser reports (the 400 response)
    assert any("400" in p for p in page.problems())
    assert [p for p in page.problems() if "400" not in p] == []


@pytest.mark.slow
def test_sentences_show_their_labels_and_tags(browser, servers):
    page = Page(browser, servers["classifier"] + "/")
    assert _submit(page, "very plot good\nbad was quite was film") == "done"
    labels = page.eval("[].map.call(document.querySelectorAll('.prediction .label'), "
                       "function (e) { return e.textContent; })")
    want = httpx.post(servers["classifier"] + "/api/predict", content=json.dumps(
        {"text": ["very plot good", "bad was quite was film"]})).json()["predictions"]
    assert labels == [p["label"] for p in want]
    assert page.eval("document.querySelectorAll('.prediction .bar').length") == 4
    assert page.problems() == []

    page = Page(browser, servers["tagger"] + "/")
    assert _submit(page, "Bob saw <b>the</b> story") == "done"
    tags = page.eval("[].map.call(document.querySelectorAll('.tagged'), function (e) "
                     "{ return [e.querySelector('.word').textContent, "
                     "e.querySelector('.tag').textContent]; })")
    want = httpx.post(servers["tagger"] + "/api/predict", content=json.dumps(
        {"text": "Bob saw <b>the</b> story"})).json()["predictions"][0]
    assert tags == [list(x) for x in zip(want["tokens"], want["tags"])]
    assert page.eval("document.querySelectorAll('#result b').length") == 0  # text, not HTML
    assert page.problems() == []


@pytest.mark.slow
def test_a_translation_shows_its_attention_heatmap(browser, servers):
    page = Page(browser, servers["seq2seq"] + "/?text=69%2B69&run=1")
    assert page.wait_for_state({"done", "error"}) == "done"
    want = httpx.post(servers["seq2seq"] + "/api/translate", content=json.dumps(
        {"text": "69+69", "beam": 5})).json()
    assert page.eval("document.getElementById('translation').textContent") == \
        want["translation"]
    cells = page.eval("[].map.call(document.querySelectorAll('table.heatmap tbody tr'), "
                      "function (r) { return r.querySelectorAll('td').length; })")
    assert cells == [len(want["source_tokens"])] * len(want["output_tokens"])
    first = page.eval("document.querySelector('table.heatmap tbody td').style.background")
    assert first.startswith("rgba(58, 110, 165")
    assert page.problems() == []
