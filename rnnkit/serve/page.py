"""The page ``rnnkit serve`` shows at ``/``: one HTML file with its style and script inline,
which asks ``/api/info`` what the model does and shows the matching form: a prompt and the
streamed continuation (language model), a sentence and its label or tags (classifier, tagger),
a sentence, its translation and the attention heatmap (seq2seq).

Every text from the model or the user is put in the page with ``textContent``, never parsed
as HTML.  ``?text=...`` fills the input and ``&run=1`` submits it once the page has loaded
(a link to a result).
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rnnkit serve</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 56rem;
       padding: 1rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
#model { color: #666; font-size: .9rem; margin-bottom: 1rem; }
textarea { width: 100%; box-sizing: border-box; font: 14px/1.4 ui-monospace, monospace; }
.options { margin: .5rem 0; display: flex; flex-wrap: wrap; gap: .4rem 1rem; }
.options input { width: 5.5rem; }
button { font-size: 1rem; padding: .3rem 1rem; }
#status { min-height: 1.3rem; color: #555; }
#status.error { color: #b00020; }
#output { white-space: pre-wrap; font: 14px/1.4 ui-monospace, monospace; background: #f6f6f6;
          padding: .6rem; border-radius: 4px; min-height: 3rem; }
#output .prompt { color: #777; }
body:not([data-mode="generate"]) .generate, body:not([data-mode="translate"]) .translate,
body:not([data-mode="generate"]) #output { display: none; }
.prediction { margin: .6rem 0; padding: .4rem .6rem; border-left: 3px solid #3a6ea5; }
.bar { display: flex; align-items: center; gap: .5rem; font-size: .9rem; }
.bar span:first-child { min-width: 6rem; }
.bar .fill { height: .8rem; background: #3a6ea5; }
.tagged { display: inline-block; text-align: center; margin: 0 .35rem .4rem 0; }
.tagged .word { display: block; }
.tagged .tag { display: block; font-size: .75rem; color: #fff; background: #3a6ea5;
               border-radius: 3px; padding: 0 .3rem; }
#translation { font-size: 1.15rem; margin: .6rem 0; }
table.heatmap { border-collapse: collapse; font-size: .8rem; }
table.heatmap td { width: 1.8rem; height: 1.4rem; border: 1px solid #fff; }
table.heatmap th { font-weight: normal; padding: 0 .3rem; }
table.heatmap thead th { writing-mode: vertical-rl; transform: rotate(180deg); }
</style>
</head>
<body data-mode="" data-state="loading">
<h1>rnnkit</h1>
<div id="model">loading the model&hellip;</div>
<form id="form" novalidate>
  <label for="input" id="input-label">Text</label>
  <textarea id="input" rows="4" spellcheck="false"></textarea>
  <div class="options generate">
    <label>length <input id="length" type="number" min="0" value="200"></label>
    <label>temperature <input id="temperature" type="number" min="0" step="any" value="0.8">
    </label>
    <label>top-k <input id="top_k" type="number" min="0" value="0"></label>
    <label>top-p <input id="top_p" type="number" min="0" max="1" step="any" value="1">
    </label>
    <label>seed <input id="seed" type="number" min="0" placeholder="random"></label>
  </div>
  <div class="options translate">
    <label>beam <input id="beam" type="number" min="1" value="5"></label>
  </div>
  <button id="submit" type="submit" disabled>Run</button>
  <button id="stop" type="button" hidden>Stop</button>
</form>
<p id="status" role="status"></p>
<div id="output"><span class="prompt" id="prompt"></span><span id="generated"></span></div>
<section id="result"></section>
<script>
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var body = document.body, info = null, controller = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }
  function num(id) {
    var v = $(id).value.trim();
    return v === "" ? null : Number(v);
  }
  async function post(path, payload, signal) {
    var r = await fetch(path, { method: "POST", body: JSON.stringify(payload), signal: signal,
                                headers: { "Content-Type": "application/json" } });
    if (!r.ok) {
      var msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }

  // -- language model: the continuation arrives as server-sent events -------------------------
  async function generate(text) {
    var payload = { prompt: text, stream: true, length: num("length"),
                    temperature: num("temperature"), top_k: num("top_k"), top_p: num("top_p") };
    payload.seed = num("seed");
    Object.keys(payload).forEach(function (k) { if (payload[k] === null) delete payload[k]; });
    $("prompt").textContent = text;
    $("generated").textContent = "";
    controller = new AbortController();
    $("stop").hidden = false;
    var r = await post("/api/generate", payload, controller.signal);
    var reader = r.body.getReader(), decoder = new TextDecoder(), buf = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buf += decoder.decode(chunk.value, { stream: true });
      var cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        handleEvent(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
  }
  function handleEvent(block) {
    var event = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event: ") === 0) event = line.slice(7);
      else if (line.indexOf("data: ") === 0) data += line.slice(6);
    });
    var d = JSON.parse(data);
    if (event === "token") $("generated").textContent += d.token;
    else if (event === "error") throw new Error(d.error);
    else if (event === "done" && d.warnings.length) status(d.warnings.join("; "));
  }

  // -- classifier and tagger --------------------------------------------------------------------
  async function predict(text) {
    var lines = text.split("\n").filter(function (l) { return l.trim() !== ""; });
    var r = await (await post("/api/predict", { text: lines })).json();
    var out = $("result");
    r.predictions.forEach(function (p) {
      var box = el("div", "prediction");
      if (p.tags) {
        p.tokens.forEach(function (w, i) {
          var t = el("span", "tagged");
          t.title = p.tags[i] + " " + p.probabilities[i].toFixed(3);
          t.appendChild(el("span", "word", w));
          var tag = el("span", "tag", p.tags[i]);
          tag.style.opacity = String(0.35 + 0.65 * p.probabilities[i]);
          t.appendChild(tag);
          box.appendChild(t);
        });
      } else {
        box.appendChild(el("div", "sentence", p.tokens.join(" ")));
        box.appendChild(el("strong", "label", p.label));
        Object.keys(p.probabilities).forEach(function (lab) {
          var q = p.probabilities[lab], bar = el("div", "bar"), fill = el("span", "fill");
          fill.style.width = (q * 12).toFixed(2) + "rem";
          bar.appendChild(el("span", "", lab));
          bar.appendChild(fill);
          bar.appendChild(el("span", "", q.toFixed(3)));
          box.appendChild(bar);
        });
      }
      out.appendChild(box);
    });
  }

  // -- seq2seq: the translation and its attention heatmap ------------------------------------
  async function translate(text) {
    var r = await (await post("/api/translate", { text: text, beam: num("beam") })).json();
    var out = $("result");
    var t = el("div", "", r.translation);
    t.id = "translation";
    out.appendChild(t);
    if (r.warnings.length) status(r.warnings.join("; "));
    if (!r.attention) { out.appendChild(el("p", "", "(this model has no attention)")); return; }
    var table = el("table", "heatmap"), head = el("thead"), row = el("tr");
    row.appendChild(el("th"));
    r.source_tokens.forEach(function (s) { row.appendChild(el("th", "", s)); });
    head.appendChild(row);
    table.appendChild(head);
    var tbody = el("tbody");
    r.attention.forEach(function (weights, i) {
      var tr = el("tr");
      tr.appendChild(el("th", "", r.output_tokens[i]));
      weights.forEach(function (w, j) {
        var td = el("td");
        td.style.background = "rgba(58, 110, 165, " + w.toFixed(3) + ")";
        td.title = r.output_tokens[i] + " \u2190 " + r.source_tokens[j] + ": " + w.toFixed(3);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    out.appendChild(table);
  }

  async function submit(ev) {
    if (ev) ev.preventDefault();
    var text = $("input").value;
    $("result").textContent = "";
    status("");
    body.dataset.state = "running";
    $("submit").disabled = true;
    try {
      if (body.dataset.mode === "generate") await generate(text);
      else if (body.dataset.mode === "predict") await predict(text);
      else await translate(text);
      body.dataset.state = "done";
    } catch (e) {
      body.dataset.state = e.name === "AbortError" ? "done" : "error";
      if (e.name !== "AbortError") status(e.message, true);
    } finally {
      $("submit").disabled = false;
      $("stop").hidden = true;
      controller = null;
    }
  }

  async function start() {
    var r = await fetch("/api/info");
    info = await r.json();
    var mode = info.endpoints[0];
    body.dataset.mode = mode;
    var size = typeof info.vocab_size === "object"
      ? info.vocab_size.source + " source and " + info.vocab_size.target + " target tokens"
      : info.vocab_size + " tokens";
    $("model").textContent = info.kind + " model, vocabulary of " + size;
    $("input-label").textContent = { generate: "Prompt",
      predict: "Sentences (one per line)", translate: "Sentence" }[mode];
    $("input").maxLength = info.limits.max_text;
    $("length").max = info.limits.max_length;
    $("length").value = Math.min(200, info.limits.max_length);
    $("beam").max = info.limits.max_beam;
    $("beam").value = Math.min(5, info.limits.max_beam);
    $("submit").disabled = false;
    body.dataset.state = "ready";
    var q = new URLSearchParams(location.search);
    if (q.has("text")) $("input").value = q.get("text");
    if (q.get("run") === "1") submit();
  }

  $("form").addEventListener("submit", submit);
  $("stop").addEventListener("click", function () { if (controller) controller.abort(); });
  start().catch(function (e) {
    body.dataset.state = "error";
    status("cannot read /api/info: " + e.message, true);
  });
})();
</script>
</body>
</html>
"""
