"""The HTML page of the activation viewer (see :mod:`rnnkit.inspect.viewer`).

One self-contained file: no external script, style sheet, font or image.  ``@@TITLE@@`` and
``@@INFO@@`` are replaced by HTML-escaped text and ``@@DATA@@`` by the JSON data (with every ``<``
written ``\u003c``, so nothing in it can close the script element).  Tokens are inserted with
``textContent``, never as HTML.  ``window.rnnkitViewer`` exposes
``select(layer, quantity, unit)`` and ``colours()`` for scripted checks; a URL ending in
``#layer=0&show=f&unit=3`` opens on that selection.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
         color: #222; background: #fafafa; }
  header { padding: 10px 16px 4px; }
  h1 { font-size: 18px; margin: 0; }
  .info { color: #666; margin: 2px 0 0; font-size: 12px; }
  #controls { position: sticky; top: 0; z-index: 2; background: #fafafa; padding: 8px 16px;
              border-bottom: 1px solid #ddd; display: flex; gap: 16px; flex-wrap: wrap;
              align-items: center; }
  #controls label { display: inline-flex; gap: 6px; align-items: center; }
  #unit { width: 5em; }
  #legend { display: inline-flex; align-items: center; gap: 6px; font-size: 12px; }
  #bar { width: 160px; height: 12px; border: 1px solid #ccc; }
  #hover { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; color: #444;
           min-width: 22em; }
  main { display: flex; gap: 16px; padding: 12px 16px; align-items: flex-start; }
  #text { flex: 1; font: 13px/1.55 ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
          white-space: pre-wrap; word-break: break-all; background: #fff;
          border: 1px solid #ddd; padding: 10px; min-width: 0; }
  #text span.nl { color: #aaa; }
  #text span.cur { outline: 1px solid #000; }
  aside { width: 300px; flex: none; font-size: 13px; }
  aside h2 { font-size: 14px; margin: 0 0 6px; }
  aside h3 { font-size: 13px; margin: 10px 0 2px; color: #444; }
  aside ol { margin: 0; padding-left: 22px; }
  aside a { color: #1f5fa8; text-decoration: none; cursor: pointer; }
  aside a:hover { text-decoration: underline; }
  aside li.sel a { font-weight: bold; }
  .muted { color: #888; }
</style>
</head>
<body>
<header>
  <h1>@@TITLE@@</h1>
  <p class="info">@@INFO@@</p>
</header>
<div id="controls">
  <label>Layer <select id="layer"></select></label>
  <label>Show <select id="quantity"></select></label>
  <label>Unit
    <button id="prev" type="button" title="previous unit (j)">&minus;</button>
    <input id="unit" type="number" min="0" value="0">
    <button id="next" type="button" title="next unit (k)">+</button>
    <span id="of" class="muted"></span>
  </label>
  <span id="legend"><span id="lo"></span><span id="bar"></span><span id="hi"></span></span>
  <span id="hover"></span>
</div>
<main>
  <div id="text"></div>
  <aside>
    <h2>Units that track features</h2>
    <div class="muted">Pearson r of a unit's h (or tanh c) with a feature of the text;
      click to show it.</div>
    <div id="corr"></div>
  </aside>
</main>
<script type="application/json" id="data">@@DATA@@</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var layerSel = $("layer"), qSel = $("quantity"), unitIn = $("unit");
  var state = { layer: 0, quantity: 0, unit: 0 };
  var decoded = {};

  function decode(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function values(li, qi) {
    var key = li + "/" + qi;
    if (!decoded[key]) decoded[key] = decode(data.layers[li].quantities[qi].data);
    return decoded[key];
  }

  // 256-entry palettes: diverging blue-white-red for signed values, white-green for [0, 1].
  function mix(a, b, t) {
    return "rgb(" + [0, 1, 2].map(function (k) {
      return Math.round(a[k] + (b[k] - a[k]) * t);
    }).join(",") + ")";
  }
  var WHITE = [255, 255, 255], RED = [214, 47, 39], BLUE = [49, 104, 190],
      GREEN = [26, 140, 70];
  var SIGNED = [], UNIT = [];
  for (var k = 0; k < 256; k++) {
    var v = k / 255, x = 2 * v - 1;
    SIGNED.push(x < 0 ? mix(WHITE, BLUE, -x * 0.85) : mix(WHITE, RED, x * 0.85));
    UNIT.push(mix(WHITE, GREEN, v * 0.8));
  }

  // The text, one span per token.
  var textEl = $("text"), spans = [], frag = document.createDocumentFragment();
  data.tokens.forEach(function (tok, t) {
    var s = document.createElement("span");
    s.dataset.t = t;
    if (tok === data.newline) {
      s.textContent = "\u21b5";
      s.className = "nl";
      frag.appendChild(s);
      frag.appendChild(document.createTextNode("\n"));
    } else {
      s.textContent = tok;
      frag.appendChild(s);
      if (data.level !== "char") frag.appendChild(document.createTextNode(" "));
    }
    spans.push(s);
  });
  textEl.appendChild(frag);

  function quantity() { return data.layers[state.layer].quantities[state.quantity]; }
  function valueAt(t) {
    var q = quantity(), v = values(state.layer, state.quantity)[t * q.H + state.unit];
    return q.lo + (q.hi - q.lo) * v / 255;
  }

  function render() {
    var q = quantity(), H = q.H;
    state.unit = Math.max(0, Math.min(H - 1, state.unit | 0));
    unitIn.value = state.unit;
    unitIn.max = H - 1;
    $("of").textContent = "of 0\u2013" + (H - 1);
    var vals = values(state.layer, state.quantity), pal = q.signed ? SIGNED : UNIT;
    for (var t = 0; t < spans.length; t++) {
      spans[t].style.backgroundColor = pal[vals[t * H + state.unit]];
    }
    $("lo").textContent = q.lo.toFixed(2);
    $("hi").textContent = q.hi.toFixed(2);
    $("bar").style.background = "linear-gradient(to right, " + pal[0] + ", " + pal[128] +
      ", " + pal[255] + ")";
    document.body.dataset.selection = [data.layers[state.layer].name, q.name,
                                       state.unit].join(" ");
    var items = document.querySelectorAll("#corr li");
    for (var i = 0; i < items.length; i++) {
      var c = items[i].dataset;
      items[i].className = (+c.layer === state.layer && c.q === q.name &&
                            +c.unit === state.unit) ? "sel" : "";
    }
  }

  function fillQuantities(keep) {
    qSel.innerHTML = "";
    var qs = data.layers[state.layer].quantities, idx = 0;
    qs.forEach(function (q, i) {
      var o = document.createElement("option");
      o.value = i;
      o.textContent = q.name === "c" ? "c (as tanh c)" : q.name === "h" ? "h (hidden)" :
        "gate " + q.name;
      qSel.appendChild(o);
      if (q.name === keep) idx = i;
    });
    state.quantity = idx;
    qSel.value = idx;
  }

  function select(layer, qname, unit) {
    state.layer = Math.max(0, Math.min(data.layers.length - 1, layer | 0));
    layerSel.value = state.layer;
    fillQuantities(qname);
    state.unit = unit | 0;
    render();
  }

  data.layers.forEach(function (l, i) {
    var o = document.createElement("option");
    o.value = i;
    o.textContent = l.name + " (" + l.cell.toUpperCase() + ")";
    layerSel.appendChild(o);
  });
  layerSel.addEventListener("change", function () {
    select(+layerSel.value, quantity().name, state.unit);
  });
  qSel.addEventListener("change", function () { state.quantity = +qSel.value; render(); });
  unitIn.addEventListener("change", function () { state.unit = +unitIn.value; render(); });
  unitIn.addEventListener("input", function () {
    if (unitIn.value !== "") { state.unit = +unitIn.value; render(); }
  });
  $("prev").addEventListener("click", function () { state.unit -= 1; render(); });
  $("next").addEventListener("click", function () { state.unit += 1; render(); });
  document.addEventListener("keydown", function (e) {
    if (e.target === unitIn) return;
    if (e.key === "j") { state.unit -= 1; render(); }
    if (e.key === "k") { state.unit += 1; render(); }
  });

  var current = null;
  textEl.addEventListener("mouseover", function (e) {
    var s = e.target;
    if (!s.dataset || s.dataset.t === undefined) return;
    if (current) current.classList.remove("cur");
    current = s;
    s.classList.add("cur");
    var t = +s.dataset.t;
    $("hover").textContent = "token " + t + " " + JSON.stringify(data.tokens[t]) + ": " +
      valueAt(t).toFixed(3);
  });

  // Units most correlated with simple features.
  var corr = $("corr"), names = Object.keys(data.correlations);
  if (!names.length) corr.textContent = "(no feature varies over this text)";
  names.forEach(function (f) {
    var h = document.createElement("h3");
    h.textContent = f;
    corr.appendChild(h);
    var ol = document.createElement("ol");
    data.correlations[f].forEach(function (c) {
      var li = document.createElement("li"), a = document.createElement("a");
      li.dataset.layer = c.layer;
      li.dataset.q = c.quantity;
      li.dataset.unit = c.unit;
      a.textContent = data.layers[c.layer].name + " " + c.quantity + " unit " + c.unit +
        "  r = " + (c.r >= 0 ? "+" : "") + c.r.toFixed(2);
      a.addEventListener("click", function (e) {
        e.preventDefault();
        select(c.layer, c.quantity, c.unit);
      });
      li.appendChild(a);
      ol.appendChild(li);
    });
    corr.appendChild(ol);
  });

  window.rnnkitViewer = {
    data: data,
    state: state,
    select: select,
    colours: function () {
      return spans.map(function (s) { return s.style.backgroundColor; });
    }
  };
  // Start from the URL (#layer=0&show=f&unit=3), else the best-correlated unit.
  var want = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
    var p = kv.split("=");
    if (p.length === 2) want[p[0]] = decodeURIComponent(p[1]);
  });
  var first = names.length && data.correlations[names[0]][0];
  if (want.unit !== undefined) select(+(want.layer || 0), want.show || "h", +want.unit);
  else if (first) select(first.layer, first.quantity, first.unit);
  else select(0, "h", 0);
})();
</script>
</body>
</html>
"""
