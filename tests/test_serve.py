"""``rnnkit serve``: real HTTP requests to a server on a free port, for every kind of
checkpoint it serves; the answers equal the library's, and bad, over-limit, adversarial and
concurrent requests get JSON errors without taking the server down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_helpers import CHECKPOINTS, RunningServer, free_port, sse_events  # noqa: E402

from rnnkit.serve import ApiError, Limits, create_app, load_service  # noqa: E402
from rnnkit.serve.api import generate_args, parse_body, predict_texts  # noqa: E402

_client = None  # the module's httpx client (the `client` fixture)
LIMITS = Limits(max_body=4096, max_text=100, max_texts=4, max_length=50, max_beam=4,
                concurrency=4, timeout=20.0)


@pytest.fixture(scope="module")
def servers():
    running = {name: RunningServer(create_app(path, LIMITS)) for name, path in CHECKPOINTS.items()}
    yield {name: r.url for name, r in running.items()}
    for r in running.values():
        r.stop()


@pytest.fixture(scope="module", autouse=True)
def client():
    global _client
    with httpx.Client(timeout=30) as _client:  # one client: no new TLS context per request
        yield _client


def post(url, path, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return _client.post(url + path, content=data, **kw)


def assert_error(r, status, field):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["field"] == field and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text
    return body["error"]


# -- every endpoint, every kind -------------------------------------------------------------
@pytest.mark.parametrize("name, endpoints, vocab", [
    ("lm-char", ["generate"], 28), ("lm-word", ["generate"], 15),
    ("classifier", ["predict"], 12), ("tagger", ["predict"], 13),
    ("seq2seq", ["translate"], {"source": 15, "target": 14})])
def test_info(servers, name, endpoints, vocab):
    r = httpx.get(servers[name] + "/api/info")
    assert r.status_code == 200
    info = r.json()
    service, kind, config = load_service(CHECKPOINTS[name])
    assert info["kind"] == kind and info["endpoints"] == endpoints
    assert info["vocab_size"] == vocab and info["config"] == config
    assert info["limits"]["max_length"] == LIMITS.max_length


@pytest.mark.parametrize("name, prompt", [("lm-char", "def f"), ("lm-word", "the cat")])
def test_generate_equals_the_library(servers, name, prompt):
    from rnnkit.tasks.lm.inference import load_lm, sample_pieces

    model, tok, _ = load_lm(CHECKPOINTS[name])
    for opts in [{"seed": 3}, {"seed": 4, "temperature": 0.7, "top_k": 5, "top_p": 0.9},
                 {"temperature": 0}]:
        r = post(servers[name], "/api/generate", {"prompt": prompt, "length": 30, **opts})
        assert r.status_code == 200, r.text
        want = "".join(sample_pieces(model, tok, prompt, 30, rng=opts.get("seed"),
                                     temperature=opts.get("temperature", 1.0),
                                     top_k=opts.get("top_k", 0), top_p=opts.get("top_p", 1.0)))
        assert r.json() == {"text": want, "warnings": []}
    # the same seed gives the same text; none gives different ones
    again = post(servers[name], "/api/generate", {"prompt": prompt, "length": 30, "seed": 3})
    first = post(servers[name], "/api/generate", {"prompt": prompt, "length": 30, "seed": 3})
    assert again.json() == first.json()
    texts = {post(servers[name], "/api/generate", {"length": 30}).json()["text"]
             for _ in range(3)}
    assert len(texts) > 1


def test_generate_streams_server_sent_events(servers):
    body = {"prompt": "def ", "length": 40, "seed": 7}
    whole = post(servers["lm-char"], "/api/generate", body).json()["text"]
    with httpx.stream("POST", servers["lm-char"] + "/api/generate",
                      content=json.dumps({**body, "stream": True}), timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = list(r.iter_text())
    events = sse_events("".join(chunks))
    tokens = [d["token"] for e, d in events if e == "token"]
    assert len(tokens) == 40 and [e for e, _ in events] == ["token"] * 40 + ["done"]
    assert "".join(tokens) == whole == events[-1][1]["text"]


def test_generate_reports_unknown_prompt_characters(servers):
    r = post(servers["lm-char"], "/api/generate", {"prompt": "déf€", "length": 3, "seed": 0})
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        "2 of 4 tokens are not in the vocabulary and became <unk>, first: 'é', '€'"]


def test_predict_classifier_equals_the_library(servers):
    from rnnkit.tasks.classify.inference import load_classifier, predict_proba

    model, vocab, _ = load_classifier(CHECKPOINTS["classifier"])
    texts = ["very plot good", "bad was quite was film", "an unseen word"]
    r = post(servers["classifier"], "/api/predict", {"text": texts})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    probs = predict_proba(model, vocab, [t.split() for t in texts])
    for p, want, text in zip(preds, probs, texts):
        got = [p["probabilities"][lab] for lab in vocab.labels]
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert p["label"] == vocab.labels[int(want.argmax())]
        assert p["probability"] == pytest.approx(want.max()) and p["tokens"] == text.split()
    one = post(servers["classifier"], "/api/predict", {"text": texts[1]}).json()
    assert one["predictions"] == [preds[1]]


def test_predict_tagger_equals_the_library(servers):
    from rnnkit.tasks.tag.inference import load_tagger, tag_probabilities, tag_sentences

    model, vocab, _ = load_tagger(CHECKPOINTS["tagger"])
    texts = ["Bob saw the story", "Cara", "Ann and an unseen Name"]
    r = post(servers["tagger"], "/api/predict", {"text": texts})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    sents = [t.split() for t in texts]
    tags = tag_sentences(model, vocab, sents)
    probs = tag_probabilities(model, vocab, sents)
    for p, s, t, q in zip(preds, sents, tags, probs):
        assert p["tokens"] == s and p["tags"] == t
        np.testing.assert_allclose(p["probabilities"], q.max(axis=1), atol=1e-6)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)


def test_translate_equals_the_library(servers):
    from rnnkit.tasks.seq2seq.inference import load_seq2seq, translate_texts

    model, src, tgt, ck = load_seq2seq(CHECKPOINTS["seq2seq"])
    for text, beam in [("65+3", 1), ("69+69", 3), (" 8+5 ", 4)]:
        r = post(servers["seq2seq"], "/api/translate", {"text": text, "beam": beam})
        assert r.status_code == 200, r.text
        got = r.json()
        want = translate_texts(model, src, tgt, [text.strip()], beam=beam,
                               max_len=ck.config.get("max_len", 50),
                               alpha=ck.config.get("alpha", 1.0))[0]
        assert got["translation"] == want.text and got["source_tokens"] == want.src_tokens
        att = np.array(got["attention"])
        assert att.shape == (len(got["output_tokens"]), len(want.src_tokens))
        np.testing.assert_allclose(att, want.weights, atol=1e-6)
        np.testing.assert_allclose(att.sum(axis=1), 1.0, atol=1e-5)
    default = post(servers["seq2seq"], "/api/translate", {"text": "65+3"}).json()
    assert default["translation"] == translate_texts(
        model, src, tgt, ["65+3"], beam=4, max_len=ck.config.get("max_len", 50),
        alpha=ck.config.get("alpha", 1.0))[0].text  # default beam: min(5, --max-beam)


@pytest.mark.parametrize("name, missing", [
    ("lm-char", ["predict", "translate"]), ("classifier", ["generate", "translate"]),
    ("tagger", ["generate", "translate"]), ("seq2seq", ["generate", "predict"])])
def test_endpoints_a_kind_does_not_serve(servers, name, missing):
    for endpoint in missing:
        r = post(servers[name], f"/api/{endpoint}", {"text": "a", "prompt": "a"})
        assert f"has no /api/{endpoint}" in assert_error(r, 404, None)


# -- errors ---------------------------------------------------------------------------------
BAD_GENERATE = [
    (b"{", "body"), (b"", "body"), (b"[1, 2]", "body"), (b'"text"', "body"),
    (b"\xff\xfe{}", "body"), ('{"prompt": "a"}'.encode("utf-16"), "body"),
    (b'{"length": NaN}', "body"), (b'{"temperature": Infinity}', "body"),
    (b'{"temperature": -Infinity}', "body"), (b'{"temperature": 1e999}', "temperature"),
    ({"length": -1}, "length"), ({"length": 51}, "length"), ({"length": 2.5}, "length"),
    ({"length": "10"}, "length"), ({"length": True}, "length"), ({"length": None}, "length"),
    ({"length": 10**400}, "length"), ({"temperature": -0.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"prompt": 5}, "prompt"), ({"prompt": ["a"]}, "prompt"), ({"prompt": {"$ne": 1}}, "prompt"),
    ({"prompt": "x" * 101}, "prompt"), ({"prompt": "a\x00b"}, "prompt"),
    ({"stream": "yes"}, "stream"), ({"promt": "typo"}, "promt"),
]


@pytest.mark.parametrize("body, field", BAD_GENERATE)
def test_bad_generate_requests_name_the_field(servers, body, field):
    r = post(servers["lm-char"], "/api/generate", body)
    message = assert_error(r, 400, field)
    if field != "body":
        assert message.startswith(field) or f"'{field}'" in message or f'"{field}"' in message


@pytest.mark.parametrize("body, field", [
    ({}, "text"), ({"text": ""}, "text"), ({"text": "   "}, "text"), ({"text": 3}, "text"),
    ({"text": []}, "text"), ({"text": ["a"] * 5}, "text"), ({"text": ["a", 2]}, "text"),
    ({"text": ["a", " "]}, "text"), ({"text": ["a", None]}, "text"),
    ({"text": ["x" * 101]}, "text"), ({"text": "a", "beam": 2}, "beam")])
def test_bad_predict_requests(servers, body, field):
    for name in ("classifier", "tagger"):
        assert_error(post(servers[name], "/api/predict", body), 400, field)


@pytest.mark.parametrize("body, field", [
    ({}, "text"), ({"text": ""}, "text"), ({"text": None}, "text"), ({"text": ["1+1"]}, "text"),
    ({"text": "1+1", "beam": 0}, "beam"), ({"text": "1+1", "beam": 5}, "beam"),
    ({"text": "1+1", "beam": 1.0}, "beam")])
def test_bad_translate_requests(servers, body, field):
    assert_error(post(servers["seq2seq"], "/api/translate", body), 400, field)


def test_unknown_routes_and_methods_are_json(servers):
    url = servers["lm-char"]
    assert_error(httpx.get(url + "/api/nothing"), 404, None)
    assert_error(httpx.get(url + "/api/generate"), 405, None)
    assert_error(httpx.put(url + "/api/info"), 405, None)


def test_over_limit_bodies_get_413(servers):
    url = servers["lm-char"] + "/api/generate"
    big = json.dumps({"prompt": "a" * 5000}).encode()
    assert "4096-byte limit" in assert_error(httpx.post(url, content=big), 413, "body")

    def chunked():  # no Content-Length: the limit is counted while reading
        for _ in range(10):
            yield b" " * 1000

    assert_error(httpx.post(url, content=chunked()), 413, "body")
    # a body far over the limit: refused, or the connection closed, and the server lives on
    try:
        r = httpx.post(url, content=b"[" * (20 << 20), timeout=30)
        assert_error(r, 413, "body")
    except httpx.TransportError:
        pass
    assert httpx.get(servers["lm-char"] + "/api/info").status_code == 200


def test_adversarial_requests_never_take_the_server_down(servers):
    url = servers["lm-char"]
    rng = np.random.default_rng(0)
    bodies = [b"[" * 4000, b'{"a":' * 800 + b"1" + b"}" * 800, b'{"prompt": "\\ud800"}',
              b'{"prompt": "\\u0000"}', b'{"length": 1e308}', b'{"length": -0.0}',
              b'{"seed": 18446744073709551616}', b'{"top_k": 99999999999999999999}',
              b"\x00" * 100, b'{"prompt": "a", "prompt": 5}', b"{}" * 1000,
              *[rng.integers(0, 256, 300, dtype=np.uint8).tobytes() for _ in range(5)]]
    for body in bodies:
        for path in ("/api/generate", "/api/predict", "/api/translate"):
            r = post(url, path, body)
            assert 400 <= r.status_code < 500 and r.json()["error"], (body[:30], r.text)
    for headers in [{"content-type": "text/plain"}, {"content-type": "application/x-www-form"
                                                    "-urlencoded"}]:
        r = post(url, "/api/generate", {"length": 2, "seed": 0}, headers=headers)
        assert r.status_code == 200
    assert post(url, "/api/generate", {"length": 5, "seed": 1}).status_code == 200


def test_a_lone_surrogate_is_refused(servers):
    # valid JSON, but not text: it could not be written back in a UTF-8 response
    r = post(servers["lm-char"], "/api/generate", b'{"prompt": "a\\ud800", "length": 3}')
    assert "not Unicode text" in assert_error(r, 400, "prompt")
    r = post(servers["classifier"], "/api/predict", b'{"text": ["a", "b\\udc00"]}')
    assert "text[1] is not Unicode text" in assert_error(r, 400, "text")


# -- concurrency and time limits ------------------------------------------------------------
class GatedLM:
    """A language-model service whose generations wait at the gate (or sleep ``delay`` per
    token), to hold the server's slots for as long as a test needs."""

    endpoints = ("generate",)

    def __init__(self, delay: float = 0.0):
        self.inner, _, _ = load_service(CHECKPOINTS["lm-char"])
        self.checkpoint = self.inner.checkpoint
        self.gate = threading.Event()
        self.delay = delay
        self.running = 0
        self._lock = threading.Lock()

    def info(self):
        return self.inner.info()

    def generate(self, prompt, length, **kw):
        pieces = self.inner.generate(prompt, length, **kw)

        def gated():
            with self._lock:
                self.running += 1
            try:
                for piece in pieces:
                    if self.delay:
                        time.sleep(self.delay)
                    else:
                        self.gate.wait(30)
                    yield piece
            finally:
                with self._lock:
                    self.running -= 1

        return gated()


def _gated_server(limits, delay=0.0):
    from rnnkit.serve.app import build_app

    service = GatedLM(delay)
    app = build_app(service, "lm", service.checkpoint.config, limits)
    return RunningServer(app), service


def _wait_for(cond, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_requests_over_the_concurrency_limit_get_503():
    server, service = _gated_server(Limits(concurrency=2, timeout=60))
    url = server.url + "/api/generate"
    try:
        results = {}

        def call(i, stream):
            body = {"length": 5, "seed": i, "stream": stream}
            results[i] = httpx.post(url, content=json.dumps(body), timeout=60)

        threads = [threading.Thread(target=call, args=(i, i == 1)) for i in range(2)]
        for t in threads:
            t.start()
        _wait_for(lambda: service.running == 2)  # both slots held, one by a stream
        for stream in (False, True):
            r = httpx.post(url, content=json.dumps({"length": 5, "stream": stream}), timeout=30)
            assert_error(r, 503, None)
            assert r.headers["retry-after"] == "1"
        assert httpx.get(server.url + "/api/info").status_code == 200  # info needs no slot
        service.gate.set()
        for t in threads:
            t.join(60)
        assert results[0].status_code == 200 and len(results[0].json()["text"]) == 5
        assert sse_events(results[1].text)[-1][0] == "done"
        _wait_for(lambda: service.running == 0)
        # the slots are free again: many requests at once, all answered
        answers = []

        def again(i):
            answers.append(httpx.post(url, content=json.dumps({"length": 3, "seed": i}),
                                      timeout=60).status_code)

        threads = [threading.Thread(target=again, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(answers)[0] == 200 and set(answers) <= {200, 503}
        assert post(server.url, "/api/generate", {"length": 3}).status_code == 200
    finally:
        service.gate.set()
        server.stop()


def test_a_stream_closed_by_the_client_gives_its_slot_back():
    server, service = _gated_server(Limits(concurrency=1, timeout=60), delay=0.05)
    try:
        body = json.dumps({"length": 1000, "stream": True})
        with httpx.stream("POST", server.url + "/api/generate", content=body,
                          timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_text())  # one token, then hang up
        _wait_for(lambda: service.running == 0)
        _wait_for(lambda: post(server.url, "/api/generate", {"length": 2}).status_code == 200)
    finally:
        server.stop()


def test_a_slow_generation_times_out():
    server, service = _gated_server(Limits(concurrency=2, timeout=0.5), delay=0.1)
    try:
        t0 = time.monotonic()
        r = post(server.url, "/api/generate", {"length": 200})
        assert "0.5 s limit" in assert_error(r, 504, None)
        assert time.monotonic() - t0 < 10
        r = post(server.url, "/api/generate", {"length": 200, "stream": True})
        events = sse_events(r.text)
        assert events[-1][0] == "error" and "0.5 s limit" in events[-1][1]["error"]
        assert len(events) - 1 < 200  # stopped early
        _wait_for(lambda: service.running == 0)  # the worker stopped at the deadline too
        assert post(server.url, "/api/generate", {"length": 2}).status_code == 200
    finally:
        server.stop()


# -- the request checks, without a server ---------------------------------------------------
def test_request_checks():
    assert generate_args({}, Limits(max_length=100))["length"] == 100
    assert generate_args({"temperature": 0}, Limits())["temperature"] == 0.0
    assert predict_texts({"text": "a b"}, Limits()) == ["a b"]
    with pytest.raises(ApiError, match="nested too deeply"):
        parse_body(b"[" * 100000)
    with pytest.raises(ValueError, match="concurrency must be a positive number"):
        Limits(concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=float("nan"))


def test_only_served_kinds_load():
    ngram = CHECKPOINTS["lm-char"].parent.parent / "ngram" / "ckpt"
    with pytest.raises(ValueError, match="serves checkpoints of kind lm, classifier, tagger, "
                                         "seq2seq, not 'ngram'"):
        load_service(ngram)


# -- the command ----------------------------------------------------------------------------
def test_rnnkit_serve_command(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "rnnkit.cli.main", "serve", str(CHECKPOINTS["lm-char"]),
           "--port", str(port), "--max-length", "20", "--concurrency", "1",
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(url + "/api/info", timeout=5).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert info["kind"] == "lm" and info["limits"]["max_length"] == 20
        assert info["limits"]["concurrency"] == 1
        assert_error(post(url, "/api/generate", {"length": 21}), 400, "length")
        assert len(post(url, "/api/generate", {"length": 20}).json()["text"]) == 20
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert f"rnnkit serve: lm model from {CHECKPOINTS['lm-char']} at http://127.0.0.1:{port}/" \
        in err
    assert "Traceback" not in err


def test_rnnkit_serve_errors_are_one_line(capsys):
    from rnnkit.cli.main import main

    ngram = CHECKPOINTS["lm-char"].parent.parent / "ngram" / "ckpt"
    assert main(["serve", str(ngram)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit serve: error: ") and "not 'ngram'" in err
    assert len(err.splitlines()) == 1
    for args, message in [(["--port", "70000"], "--port must be in 0..65535"),
                          (["--concurrency", "0"], "--concurrency must be > 0"),
                          (["--timeout", "-1"], "--timeout must be > 0")]:
        assert main(["serve", str(CHECKPOINTS["lm-char"]), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["serve", "no-such-run"]) == 2
    assert "no-such-run" in capsys.readouterr().err


class FaultyClassifier:
    """A classifier service that sleeps ``delay`` seconds and then fails (or answers)."""

    endpoints = ("predict",)

    def __init__(self, delay: float, fail: bool):
        self.inner, _, _ = load_service(CHECKPOINTS["classifier"])
        self.checkpoint = self.inner.checkpoint
        self.delay, self.fail = delay, fail

    def info(self):
        return self.inner.info()

    def predict(self, texts):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the model broke")
        return self.inner.predict(texts)


def test_model_failures_and_slow_predictions_are_json():
    from rnnkit.serve.app import build_app

    for delay, fail, status in [(0.0, True, 500), (2.0, False, 504)]:
        service = FaultyClassifier(delay, fail)
        server = RunningServer(build_app(service, "classifier", service.checkpoint.config,
                                         Limits(concurrency=1, timeout=0.5)))
        try:
            r = post(server.url, "/api/predict", {"text": "very good"})
            message = assert_error(r, status, None)
            assert "the model broke" not in r.text  # the details stay in the server's log
            assert ("internal error" in message) if fail else ("0.5 s limit" in message)
            if not fail:  # the slow call still holds the one slot until it ends
                assert_error(post(server.url, "/api/predict", {"text": "good"}), 503, None)
                _wait_for(lambda u=server.url: post(u, "/api/predict",
                                                    {"text": "good"}).status_code == 504)
            assert server.alive()
        finally:
            server.stop()


@pytest.mark.parametrize("name", ["lm-char", "classifier"])
def test_an_int8_checkpoint_is_served(tmp_path, name):
    quantize = pytest.importorskip("rnnkit.deploy.quantize")
    path = quantize.quantize_checkpoint(CHECKPOINTS[name], tmp_path / "int8")
    service, _, _ = load_service(path)
    server = RunningServer(create_app(path, LIMITS))
    try:
        if name == "lm-char":
            r = post(server.url, "/api/generate", {"prompt": "def", "length": 20, "seed": 2})
            assert r.json()["text"] == "".join(service.generate("def", 20, seed=2))
        else:
            r = post(server.url, "/api/predict", {"text": ["very good", "bad film"]})
            assert r.json()["predictions"] == service.predict(["very good", "bad film"])
    finally:
        server.stop()
