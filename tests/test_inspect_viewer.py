"""The activation viewer: activations, text features, correlations, and the page in a browser."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from rnnkit.inspect.viewer import (
    activation_page,
    build_page,
    collect_activations,
    correlated_units,
    text_features,
)
from rnnkit.nn.module import Module
from rnnkit.nn.recurrent import GRU
from rnnkit.tasks import load_model
from rnnkit.tasks.lm.inference import inspect_forward
from rnnkit.tasks.lm.model import LanguageModel, LMConfig
from rnnkit.text.tokenizers import CharTokenizer, WordTokenizer
from rnnkit.train.checkpoint import save_checkpoint

TEXT = ('def f(a, b):\n    """Say "hi" [twice]."""\n    if a < b and "</script>" in s:\n'
        '        return (a + b) * 2\n    return {"k": [1, 2]}\n') * 3


def _checkpoint(tmp_path, cell="lstm", tokenizer=None, text=TEXT, layers=2):
    tok = (tokenizer or CharTokenizer()).fit(text)
    cfg = LMConfig(vocab_size=len(tok.vocab), cell=cell, embed_size=6, hidden_size=8,
                   num_layers=layers)
    lm = LanguageModel(cfg, rng=0)
    path = save_checkpoint(tmp_path / "ck", kind="lm", config={"model": cfg.to_dict()},
                           weights=lm.state_dict(), vocab=tok.to_dict())
    (tmp_path / "text.py").write_text(text)
    return path, lm, tok


def test_activations_are_those_of_the_model():
    tok = CharTokenizer().fit(TEXT)
    lm = LanguageModel(LMConfig(vocab_size=len(tok.vocab), cell="lstm", embed_size=5,
                                hidden_size=6, num_layers=2, dtype="float64"), rng=0)
    ids = tok.encode(TEXT[:40])
    layers = collect_activations(lm, inspect_forward, ids)
    assert [lay["name"] for lay in layers] == ["rnn.layers.0", "rnn.layers.1"]
    assert list(layers[1]["values"]) == ["h", "c", "i", "f", "g", "o"]
    out, state, _ = lm.rnn.forward(lm.embed.forward(ids[None])[0])
    np.testing.assert_allclose(layers[1]["values"]["h"], out[0], rtol=1e-12)
    np.testing.assert_allclose(layers[1]["values"]["c"][-1], np.tanh(state.c[1, 0]), rtol=1e-12)
    f = layers[0]["values"]["f"]
    assert f.shape == (40, 6) and f.min() > 0 and f.max() < 1
    assert "forward" not in vars(lm.rnn)


class _Toy(Module):
    kind = "toy"

    def __init__(self):
        super().__init__()
        self.rnn = self.add_module("enc", GRU(2, 3, bidirectional=True, dtype="float64", rng=0))


def test_backward_direction_comes_back_in_time_order(monkeypatch):
    toy = _Toy()
    x = np.random.default_rng(0).standard_normal((1, 5, 2))
    layers = collect_activations(toy, lambda m, ids: m.rnn.forward(x),
                                 np.zeros(5, dtype=np.int64))
    assert [lay["name"] for lay in layers] == ["enc.layers.0", "enc.layers.0.bwd"]
    out, _, _ = toy.rnn.forward(x)
    np.testing.assert_allclose(layers[0]["values"]["h"], out[0, :, :3])
    np.testing.assert_allclose(layers[1]["values"]["h"], out[0, :, 3:])


def test_text_features():
    f = text_features(list('ab("c)")\n  x\n'), "char")
    assert f["position in line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3]
    assert f["to line end"].tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0, 3, 2, 1, 0]
    assert f["inside quotes"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert f["inside brackets"].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert f["indentation"].tolist() == [0] * 9 + [1, 1, 0, 0]
    w = text_features(["the", "cat", "<eos>", "a", "dog", "<eos>"], "word")
    assert w["position in line"].tolist() == [0, 1, 2, 0, 1, 2]


def test_correlated_units_find_a_planted_unit():
    rng = np.random.default_rng(0)
    feats = text_features(list(TEXT), "char")
    V = rng.standard_normal((len(TEXT), 10))
    V[:, 7] = -0.5 * feats["bracket depth"] + 0.01 * rng.standard_normal(len(TEXT))
    layers = [{"name": "a", "cell": "rnn", "values": {"h": rng.standard_normal(V.shape)}},
              {"name": "b", "cell": "rnn", "values": {"h": V}}]
    best = correlated_units(layers, feats, top=3)["bracket depth"][0]
    assert (best["layer"], best["quantity"], best["unit"]) == (1, "h", 7)
    assert best["r"] < -0.99
    assert "digit" in correlated_units(layers, feats)  # 1, 2 in the text
    assert "uppercase" in correlated_units(layers, feats)


def test_page_is_self_contained_and_escapes_the_text(tmp_path):
    path, _, _ = _checkpoint(tmp_path)
    page = activation_page(load_model(path), tmp_path / "text.py",
                           tmp_path / "page.html").read_text()
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(|https?://""", page)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>',
                                page, re.DOTALL).group(1))
    assert "".join(data["tokens"]) == TEXT
    q = data["layers"][0]["quantities"]
    assert [x["name"] for x in q] == ["h", "c", "i", "f", "g", "o"]
    assert (q[3]["lo"], q[3]["hi"], q[0]["lo"]) == (0.0, 1.0, -1.0)
    word_path, _, _ = _checkpoint(tmp_path / "w", cell="gru", tokenizer=WordTokenizer(),
                                  layers=1)
    page = activation_page(load_model(word_path), tmp_path / "w" / "text.py", tmp_path / "w.html",
                           max_tokens=10).read_text()
    assert '"level": "word"' in page


def test_text_cannot_break_out_of_the_data_element():
    from rnnkit.inspect.viewer_page import PAGE

    layers = [{"name": "x", "cell": "rnn", "values": {"h": np.zeros((3, 2))}}]
    page = build_page(["</script>", "<!--", "<b>"], layers, title="<i>t</i>", info="a & b")
    assert page.count("</script>") == PAGE.count("</script>")
    assert "<!--" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;i&gt;t&lt;/i&gt;" in page and "a &amp; b" in page
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.DOTALL).group(1))
    assert data["tokens"] == ["</script>", "<!--", "<b>"]


def test_quantisation_round_trip():
    v = np.linspace(-1, 1, 11)[:, None]
    layers = [{"name": "x", "cell": "rnn", "values": {"h": v}}]
    page = build_page(list("abcdefghijk"), layers)
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.DOTALL).group(1))
    import base64

    q = np.frombuffer(base64.b64decode(data["layers"][0]["quantities"][0]["data"]), np.uint8)
    np.testing.assert_allclose(-1 + 2 * q.astype(float) / 255, v[:, 0], atol=1 / 255)


# -- in a real browser ----------------------------------------------------------------------------

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)

CAPTURE = """<script>window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
(function () { var ce = console.error; console.error = function () {
  window.__errors.push([].join.call(arguments, " ")); ce.apply(console, arguments); }; })();
</script>"""

SELFTEST = """<script>
(function () {
  var r = { errors: window.__errors.slice() };
  function diff(a, b) { var n = 0; for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
                        return n; }
  function change(el, v) { el.value = v; el.dispatchEvent(new Event("change")); }
  try {
    var V = window.rnnkitViewer, $ = function (id) { return document.getElementById(id); };
    r.spans = document.querySelectorAll("#text span").length;
    r.text = $("text").textContent;
    change($("layer"), "0");
    change($("quantity"), "0");
    change($("unit"), "0");
    var a = V.colours();
    r.sel0 = document.body.dataset.selection;
    $("next").click();
    var b = V.colours();
    r.sel1 = document.body.dataset.selection;
    change($("quantity"), String($("quantity").options.length - 1));
    var c = V.colours();
    r.sel2 = document.body.dataset.selection;
    change($("layer"), "1");
    r.sel3 = document.body.dataset.selection;
    r.changedUnit = diff(a, b);
    r.changedGate = diff(b, c);
    r.distinct = new Set(a).size;
    r.coloured = a.filter(function (x) { return x && x !== "rgb(255, 255, 255)"; }).length;
    var link = document.querySelector("#corr li:nth-of-type(2) a");
    link.click();
    r.linkText = link.textContent;
    r.afterLink = document.body.dataset.selection;
    var s = document.querySelectorAll("#text span")[5];
    s.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
    r.hover = $("hover").textContent;
    r.resources = performance.getEntriesByType("resource").length;
  } catch (e) { r.errors.push("selftest: " + e); }
  var pre = document.createElement("pre");
  pre.id = "selftest";
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium(args, tmp_path, timeout=90):
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium to run the page in")
def test_page_in_a_headless_browser(tmp_path):
    path, _, _ = _checkpoint(tmp_path)
    page = activation_page(load_model(path), tmp_path / "text.py",
                           tmp_path / "page.html").read_text()
    page = page.replace("<head>", "<head>" + CAPTURE, 1).replace("</body>", SELFTEST + "</body>")
    (tmp_path / "test.html").write_text(page)
    try:
        run = _chromium(["--virtual-time-budget=5000", "--dump-dom",
                         (tmp_path / "test.html").as_uri()], tmp_path)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"chromium did not run: {e}")
    m = re.search(r'<pre id="selftest">(.*?)</pre>', run.stdout, re.DOTALL)
    if m is None and not run.stdout.strip():
        pytest.skip(f"chromium printed nothing (rc {run.returncode}): {run.stderr[-300:]}")
    import html

    r = json.loads(html.unescape(m.group(1)))
    assert r["errors"] == []
    assert "Uncaught" not in run.stderr
    assert r["resources"] == 0  # nothing fetched
    assert r["spans"] == len(TEXT)
    assert '"</script>" in s:' in r["text"]  # the text is shown as text
    assert r["sel0"] == "rnn.layers.0 h 0" and r["sel1"] == "rnn.layers.0 h 1"
    assert r["sel2"] == "rnn.layers.0 o 1" and r["sel3"] == "rnn.layers.1 o 1"
    assert r["changedUnit"] > len(TEXT) // 2 and r["changedGate"] > len(TEXT) // 2
    assert r["distinct"] > 10 and r["coloured"] > len(TEXT) // 2
    unit = re.search(r"unit (\d+)", r["linkText"]).group(1)
    assert r["afterLink"].endswith(" " + unit)
    assert r["hover"].startswith('token 5 "(": ')
