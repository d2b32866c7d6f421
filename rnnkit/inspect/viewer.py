"""Activation viewer: a text coloured by one hidden unit or gate, as in Karpathy, Johnson &
Fei-Fei (2015), "Visualizing and understanding recurrent networks".

:func:`activation_page` runs a checkpoint over a text file and writes one self-contained HTML
page (inline CSS, JS and data; nothing fetched) where every character (or word) is coloured by
the value of a chosen unit of a chosen layer: the hidden state ``h``, the LSTM cell state (shown
as ``tanh(c)``) or a gate (``i f g o``, ``r z n``).  A side list names the units whose ``h`` or
``c`` correlates best (Pearson) with simple features of the text -- position in the line,
inside quotes, inside brackets, ... -- and clicking one selects it.

Values travel as bytes: each (layer, quantity) is a (T, H) array quantised to 0..255 over its
range ([-1, 1] for tanh-valued ones, [0, 1] for sigmoid gates, [0, max] for ReLU) and base64
encoded, so a page for T tokens costs about ``1.4 T H Q L`` bytes (Q quantities per layer).

>>> tokens = list('f(a, "b")\\n')
>>> feats = text_features(tokens, "char")
>>> feats["inside brackets"].astype(int).tolist()
[0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
>>> feats["inside quotes"].astype(int).tolist()
[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..nn.cells.activations import GATES, SIGMOID_GATES, gate_slice

OPEN, CLOSE = "([{", ")]}"


# -- activations ------------------------------------------------------------------------------


def collect_activations(model, forward, ids) -> list[dict]:
    """Run ``forward(model, ids[None])`` on one sequence ``ids`` (T,) and return, for every
    recurrent layer and direction inside it, ``{"name", "cell", "values": {quantity: (T, H)}}``
    in input time order.  Quantities: ``h``; for the LSTM ``c`` (as tanh(c)); every gate."""
    from .models import capture_forward

    if forward is None:
        raise DataError(f"the activation viewer cannot run a {type(model).__name__} on a text")
    ids = np.asarray(ids, dtype=np.int64)[None, :]  # (1, T)
    with capture_forward(model) as found:
        forward(model, ids)
    layers = []
    for name, layer, cache in found:
        cell, H = layer.cell, layer.cfg.hidden_size
        for li, lc in enumerate(cache["layers"]):
            for d, dc in enumerate(lc["dirs"]):
                flip = slice(None, None, -1) if d == 1 else slice(None)
                vals = {"h": dc["Hs"][1:, 0][flip]}
                if cell == "lstm":
                    vals["c"] = np.tanh(dc["Cs"][1:, 0])[flip]
                if cell != "rnn":
                    for g in GATES[cell]:
                        vals[g] = dc["A"][:, 0, gate_slice(cell, g, H)][flip]
                tag = f"{name}.layers.{li}" + (".bwd" if d == 1 else "")
                layers.append({"name": tag, "cell": cell,
                               "relu": cell == "rnn" and layer.cfg.nonlinearity == "relu",
                               "values": {k: np.asarray(v, np.float64) for k, v in vals.items()}})
    return layers


def _range(cell: str, quantity: str, values, relu: bool) -> tuple[float, float]:
    if quantity in SIGMOID_GATES.get(cell, ()):
        return 0.0, 1.0
    if relu and quantity == "h":
        return 0.0, float(max(values.max(), 1e-12))
    return -1.0, 1.0


def _quantise(values: np.ndarray, lo: float, hi: float) -> str:
    q = np.clip(np.rint((values - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


# -- features of the text ---------------------------------------------------------------------


def text_features(tokens: list[str], level: str = "char") -> dict[str, np.ndarray]:
    """Simple per-token features of a text, as float arrays (T,).

    ``position in line`` (tokens since the last newline), ``to line end`` (tokens left in the
    line), ``inside quotes`` (between a ``"`` or ``'`` and its partner on the same line, the
    quotes themselves excluded), ``inside brackets`` and ``bracket depth`` (``( [ {``, closing
    bracket excluded), ``whitespace``, ``indentation`` (leading spaces of a line), ``digit``,
    ``uppercase``.  At word level a newline is the ``<eos>`` token.
    """
    T = len(tokens)
    newline = "\n" if level == "char" else "<eos>"
    pos, depth, quote, indent, to_end = (np.zeros(T) for _ in range(5))
    p = dep = 0
    q: str | None = None
    leading = True
    line_start = 0
    for t, tok in enumerate(tokens):
        pos[t] = p
        if tok == newline:
            to_end[line_start : t + 1] = np.arange(t - line_start, -1, -1)
            p, q, leading, line_start = 0, None, True, t + 1
            depth[t] = dep
            continue
        p += 1
        if q is not None and tok == q:
            q = None
        elif q is not None:
            quote[t] = 1
        elif tok in ('"', "'"):
            q = tok
        if q is None and tok in CLOSE:
            dep = max(0, dep - 1)
        depth[t] = dep
        if q is None and tok in OPEN:
            dep += 1
        leading = leading and tok.isspace()
        indent[t] = float(leading)
    to_end[line_start:] = np.arange(T - line_start - 1, -1, -1)
    return {
        "position in line": pos,
        "to line end": to_end,
        "inside quotes": quote,
        "inside brackets": (depth > 0).astype(np.float64),
        "bracket depth": depth,
        "whitespace": np.array([float(tok.isspace()) for tok in tokens]),
        "indentation": indent,
        "digit": np.array([float(tok.isdigit()) for tok in tokens]),
        "uppercase": np.array([float(tok.isupper()) for tok in tokens]),
    }


def correlated_units(layers: list[dict], features: dict[str, np.ndarray], top: int = 5,
                     quantities=("h", "c")) -> dict[str, list[dict]]:
    """Per feature, the ``top`` units (over all layers, quantities ``h`` and ``c``) whose values
    correlate most with it: ``[{"layer": i, "quantity", "unit", "r"}]``, by decreasing |r|.
    Features that do not vary over the text are left out."""
    out = {}
    for fname, f in features.items():
        fc = f - f.mean()
        fn = np.sqrt((fc * fc).sum())
        if fn == 0:
            continue
        cands = []
        for i, lay in enumerate(layers):
            for q in quantities:
                if q not in lay["values"]:
                    continue
                V = lay["values"][q]  # (T, H)
                Vc = V - V.mean(axis=0)
                vn = np.sqrt((Vc * Vc).sum(axis=0))
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.where(vn > 0, fc @ Vc / (fn * vn), 0.0)  # (H,)
                for u in np.argsort(-np.abs(r))[:top]:
                    cands.append({"layer": i, "quantity": q, "unit": int(u), "r": float(r[u])})
        cands.sort(key=lambda c: -abs(c["r"]))
        out[fname] = cands[:top]
    return out


# -- the page -----------------------------------------------------------------------------------


def build_page(tokens: list[str], layers: list[dict], *, level: str = "char",
               correlations: dict | None = None, title: str = "rnnkit activations",
               info: str = "") -> str:
    """The self-contained HTML page (a string)."""
    from .viewer_page import PAGE

    data = {
        "tokens": tokens,
        "level": level,
        "newline": "\n" if level == "char" else "<eos>",
        "layers": [],
        "correlations": correlations or {},
    }
    for lay in layers:
        entry = {"name": lay["name"], "cell": lay["cell"], "quantities": []}
        for q, v in lay["values"].items():
            lo, hi = _range(lay["cell"], q, v, lay.get("relu", False))
            entry["quantities"].append({"name": q, "lo": lo, "hi": hi, "H": int(v.shape[1]),
                                        "signed": lo < 0, "data": _quantise(v, lo, hi)})
        data["layers"].append(entry)
    # "<" as \u003c: neither "</script>" nor "<!--" in the text can end the data element.
    blob = json.dumps(data, ensure_ascii=True).replace("<", "\\u003c")
    return (PAGE.replace("@@TITLE@@", html.escape(title))
                .replace("@@INFO@@", html.escape(info))
                .replace("@@DATA@@", blob))


def activation_page(loaded, file, out, *, max_tokens: int = 2000, top: int = 5,
                    encoding: str = "utf-8") -> Path:
    """Run a loaded checkpoint (:func:`rnnkit.tasks.load_model`) over the first ``max_tokens``
    tokens of ``file`` and write the page to ``out``.  Needs a checkpoint whose vocabulary
    holds a text tokenizer (language models, classifiers, taggers)."""
    from ..text.io import read_text

    tok = loaded.tokenizer
    if tok is None:
        raise DataError(f"{loaded.checkpoint.path}: the checkpoint holds no text tokenizer to "
                        f"read {file}")
    text = read_text(file, encoding)
    tokens = tok.tokenize(text)[:max_tokens]
    if not tokens:
        raise DataError(f"{file}: no tokens to show")
    ids = tok.vocab.encode(tokens, warn=False)
    try:
        layers = collect_activations(loaded.model, loaded.forward, ids)
    except DataError:
        raise
    except ValueError as e:  # e.g. a tagger whose character encoder needs more than ids
        raise DataError(f"{loaded.checkpoint.path}: cannot show the activations of this "
                        f"{loaded.kind} model on {file} ({e})") from None
    corr = correlated_units(layers, text_features(tokens, tok.level), top=top)
    first = layers[0]
    H = first["values"]["h"].shape[1]
    ck = Path(str(loaded.checkpoint.path))
    where = f"{ck.parent.name}/{ck.name}" if ck.name in ("best", "last") else ck.name
    info = (f"{where}: {loaded.kind}, {first['cell'].upper()}, "
            f"{len(layers)} layer(s) x {H} units; {len(tokens)} {tok.level} tokens of "
            f"{Path(file).name}")
    page = build_page(tokens, layers, level=tok.level, correlations=corr,
                      title=f"rnnkit activations: {Path(file).name}", info=info)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
