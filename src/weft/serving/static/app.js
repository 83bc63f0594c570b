// weft playground: talks to the JSON API of `weft serve` (docs/serving.md). No build step,
// no libraries; server text is only ever inserted as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SLIDERS = ["temperature", "top_k", "top_p", "max_new_tokens", "repetition_penalty"];
const SVG = "http://www.w3.org/2000/svg";

const state = {
  models: new Map(),   // name -> summary from GET /api/models
  limits: {},
  controller: null,    // AbortController of the generation in progress
  xAxis: "step",       // or "elapsed"
  metrics: null,       // {name, records} of the selected run
};

// ---- errors ------------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; }

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${body.detail} (HTTP ${response.status})`;
  } catch (_) { /* not JSON */ }
  return `the server answered HTTP ${response.status}`;
}

// ---- the API key (weft serve --api-key) -------------------------------------------------
// Asked for once, when the server first answers 401, and kept for this tab's session.
const KEY_ITEM = "weft-api-key";

function withKey(options) {
  const key = sessionStorage.getItem(KEY_ITEM);
  const headers = { ...(options.headers || {}) };
  if (key) headers.authorization = `Bearer ${key}`;
  return { ...options, headers };
}

async function api(url, options = {}) {
  let response = await fetch(url, withKey(options));
  if (response.status === 401) {
    const key = window.prompt("This weft server needs its API key:");
    if (key) {
      sessionStorage.setItem(KEY_ITEM, key.trim());
      response = await fetch(url, withKey(options));
    }
  }
  return response;
}

async function getJSON(url) {
  const response = await api(url);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

// ---- models --------------------------------------------------------------------------------
async function loadModels() {
  const data = await getJSON("/api/models");
  state.limits = data.limits;
  const select = $("model");
  select.replaceChildren();
  for (const model of data.models) {
    state.models.set(model.name, model);
    const option = document.createElement("option");
    option.value = model.name;
    option.textContent = model.kind === "language-model" ? model.name : `${model.name} (${model.kind})`;
    if (!model.ready) option.textContent += ` — ${model.not_ready || "not ready"}`;
    select.append(option);
  }
  if (!data.models.length) showError("No runs found in the served folder: train one with `weft train`.");
  $("max_new_tokens").max = String(state.limits.max_new_tokens || 1000);
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && state.models.has(wanted)) select.value = wanted;
  selectModel();
}

function current() { return state.models.get($("model").value); }

function selectModel() {
  const model = current();
  if (!model) return;
  const tagger = model.kind === "tagger";
  $("controls").hidden = tagger;
  $("stop").hidden = tagger;
  $("panel-generate").classList.toggle("tagging", tagger);
  $("prompt-label").textContent = tagger ? "Text to tag" : "Prompt";
  $("run").textContent = tagger ? "Tag" : "Generate";
  $("output").hidden = tagger;
  $("tags").hidden = !tagger;
  const defaults = model.generation || {};
  for (const name of SLIDERS) {
    if (defaults[name] === undefined) continue;
    let value = defaults[name];
    if (name === "max_new_tokens") value = Math.min(value, Number($("max_new_tokens").max));
    $(name).value = String(value);
  }
  showSliderValues();
  showLabels(tagger ? [] : (model.labels || []));
  if (!$("panel-training").hidden) loadMetrics();
}

// The copy meter: the longest span of the text found verbatim in the training corpus.
function copied(copy) {
  if (!copy) return "";
  const chars = `${copy.chars} character${copy.chars === 1 ? "" : "s"}`;
  return copy.chars ? `; longest copy from the corpus ${chars}: "${copy.text}"`
    : "; nothing copied from the corpus";
}

// One drop-down per label column of the run (runs trained with --label-column).
function showLabels(columns) {
  const box = $("labels");
  box.replaceChildren();
  for (const column of columns) {
    const label = document.createElement("label");
    label.textContent = `Label ${column.name} `;
    const select = document.createElement("select");
    select.dataset.column = column.name;
    select.add(new Option("any (as in the data)", ""));
    for (const [value, count] of Object.entries(column.counts)) {
      select.add(new Option(`${value} (${count})`, value));
    }
    label.append(select);
    box.append(label);
  }
}

function showSliderValues() {
  for (const name of SLIDERS) {
    const value = Number($(name).value);
    const off = (name === "top_k" && value === 0) || (name === "top_p" && value === 1)
      || (name === "repetition_penalty" && value === 1);
    $(`${name}-value`).textContent = off ? "off" : (name === "temperature" && value === 0 ? "0 (greedy)" : String(value));
  }
}

// ---- generation ----------------------------------------------------------------------------
function request() {
  const body = { model: $("model").value, prompt: $("prompt").value, stream: true };
  body.temperature = Number($("temperature").value);
  body.top_k = Number($("top_k").value);
  body.top_p = Number($("top_p").value);
  body.max_new_tokens = Number($("max_new_tokens").value);
  body.repetition_penalty = Number($("repetition_penalty").value);
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("max_copy").value !== "") body.max_copy = Number($("max_copy").value);
  const labels = {};
  for (const select of $("labels").querySelectorAll("select")) {
    if (select.value !== "") labels[select.dataset.column] = select.value;
  }
  if (Object.keys(labels).length) body.labels = labels;
  body.copy_meter = true;
  return body;
}

function setRunning(running) {
  $("run").disabled = running;
  $("stop").disabled = !running;
  $("output").classList.toggle("running", running);
}

// Reads a text/event-stream body and calls onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

async function generate() {
  clearError();
  const body = request();
  $("out-prompt").textContent = body.prompt;
  $("out-text").textContent = "";
  $("status").textContent = "starting…";
  const controller = new AbortController();
  state.controller = controller;
  setRunning(true);
  const started = performance.now();
  let pieces = 0;
  try {
    const response = await api("/api/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (event, data) => {
      if (event === "token") {
        $("out-text").textContent += data.text;
        pieces += 1;
        const seconds = (performance.now() - started) / 1000;
        $("status").textContent = `${pieces} pieces, ${(pieces / seconds).toFixed(0)}/s`;
      } else if (event === "done") {
        $("out-prompt").textContent = data.prompt;  // as the model saw it (maybe lowercased)
        const { completion_tokens } = data.usage;
        const limit = `${body.max_copy} character${body.max_copy === 1 ? "" : "s"}`;
        const ended = (data.cut || [])[0] ? `cut before a copy of ${limit}`
          : data.finish_reasons[0] === "length" ? "cut at the length limit" : "ended";
        const tags = Object.entries((data.labels || [])[0] || {}).map(([k, v]) => `${k}=${v}`);
        $("status").textContent = `done: ${completion_tokens} tokens in ${data.elapsed.toFixed(2)} s`
          + ` (${(completion_tokens / Math.max(data.elapsed, 1e-6)).toFixed(0)} tokens/s), ${ended}`
          + (tags.length ? `; labels ${tags.join(" ")}` : "")
          + copied((data.longest_copy || [])[0]);
      } else if (event === "error") {
        throw new Error(data.detail);
      }
    });
  } catch (error) {
    if (error.name === "AbortError") {
      $("status").textContent = "stopped";
    } else {
      $("status").textContent = "";
      showError(error instanceof TypeError ? "Cannot reach the weft server." : error.message);
    }
  } finally {
    state.controller = null;
    setRunning(false);
  }
}

async function tag() {
  clearError();
  setRunning(true);
  $("tags").replaceChildren();
  try {
    const response = await api("/api/tag", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: $("model").value, text: $("prompt").value }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const data = await response.json();
    for (const sentence of data.sentences) {
      if (sentence.spans) {  // a span (named-entity) tagger: its spans, not B-/I- tags
        showSpans(sentence);
        continue;
      }
      sentence.words.forEach((word, i) => {
        const chip = document.createElement("span");
        chip.className = "tag";
        const label = document.createElement("small");
        label.textContent = sentence.tags[i];
        chip.append(word, label);
        $("tags").append(chip);
      });
    }
    $("status").textContent = `${data.sentences.length} sentence(s)`;
  } catch (error) {
    showError(error.message);
  } finally {
    setRunning(false);
  }
}

// A span tagger's sentence: each span one chip labelled with its type, other words plain.
function showSpans(sentence) {
  const starts = new Map(sentence.spans.map((span) => [span.tokens[0], span]));
  for (let i = 0; i < sentence.words.length;) {
    const span = starts.get(i);
    const chip = document.createElement("span");
    if (span) {
      chip.className = "tag entity";
      chip.title = `${span.type}, characters ${span.start}-${span.end}`;
      const label = document.createElement("small");
      label.textContent = span.type;
      chip.append(span.text, label);
      i = span.tokens[1];
    } else {
      chip.className = "tag outside";
      chip.append(sentence.words[i]);
      i += 1;
    }
    $("tags").append(chip);
  }
}

// ---- training curves -----------------------------------------------------------------------
async function loadMetrics() {
  const name = $("model").value;
  if (!name) return;
  clearError();
  try {
    state.metrics = await getJSON(`/api/runs/${name.split("/").map(encodeURIComponent).join("/")}/metrics`);
  } catch (error) {
    showError(error.message);
    return;
  }
  drawChart();
  showConfig(current());
}

function finite(value) { return typeof value === "number" && Number.isFinite(value); }

function niceTicks(low, high, count) {
  if (high <= low) high = low + 1;
  const raw = (high - low) / count;
  const step = [1, 2, 5, 10].map((m) => m * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function formatX(value) {
  if (state.xAxis === "step") return value >= 10000 ? `${value / 1000}k` : String(value);
  if (value < 120) return `${Math.round(value)}s`;
  if (value < 7200) return `${(value / 60).toFixed(value < 600 ? 1 : 0)}m`;
  return `${(value / 3600).toFixed(1)}h`;
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.append(node);
  return node;
}

// What the training tab plots: losses on one chart, accuracies (a tagger's dev_accuracy, and a
// span tagger's dev_f1) on a second; each entry is [record field, label, CSS class].
const LOSSES = [["train_loss", "train loss", "train"], ["val_loss", "validation loss", "val"]];

function drawChart() {
  const records = (state.metrics && state.metrics.records) || [];
  const x = state.xAxis;
  const points = (field) => records.filter((r) => finite(r[field]) && finite(r[x])).map((r) => [r[x], r[field]]);
  const accuracies = [...new Set(records.flatMap((r) => Object.keys(r)))]
    .filter((key) => key.endsWith("accuracy") || key.endsWith("_f1"))  // a span tagger's dev_f1
    .map((key) => [key, key.replace(/_/g, " "), "acc"]);
  const box = $("chart");
  box.replaceChildren();
  $("chart-title").textContent = `Training of ${$("model").value}`;
  const notes = [];
  for (const [group, label] of [[LOSSES, "loss"], [accuracies, "accuracy"]]) {
    const series = group.map(([field, name, cls]) => ({ name, cls, points: points(field) }))
      .filter((s) => s.points.length);
    if (!series.length) continue;
    box.append(plot(series, label));
    const held = series.find((s) => s.cls !== "train");
    if (held) {
      const values = held.points.map((p) => p[1]);
      const best = label === "loss" ? Math.min(...values) : Math.max(...values);
      notes.push(`best ${held.name} ${best.toFixed(4)}`);
    }
  }
  if (!box.children.length) {
    $("chart-note").textContent = "This run has no metrics yet.";
    return;
  }
  const last = records[records.length - 1];
  $("chart-note").textContent = [`${records.length} evaluations`, `last step ${last.step}`, ...notes].join("; ");
}

// One SVG line chart of `series` ({name, cls, points: [[x, y]]}) against the chosen x axis.
function plot(series, yLabel) {
  const W = 720, H = 340, L = 52, R = 16, T = 14, B = 40;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 5);
  const [x0, x1] = [Math.min(xTicks[0], ...xs), Math.max(xTicks[xTicks.length - 1], ...xs)];
  const [y0, y1] = [Math.min(yTicks[0], ...ys), Math.max(yTicks[yTicks.length - 1], ...ys)];
  const sx = (v) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - T - B);
  // Enough decimals to tell neighbouring ticks apart.
  const decimals = Math.max(0, -Math.floor(Math.log10((yTicks[1] - yTicks[0]) || 1)));

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  el("title", {}, svg).textContent = series.map((s) => s.name).join(" and ");
  for (const t of yTicks) {
    el("line", { x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid" }, svg);
    el("text", { x: L - 6, y: sy(t) + 4, "text-anchor": "end" }, svg).textContent = t.toFixed(decimals);
  }
  for (const t of xTicks) {
    el("line", { x1: sx(t), x2: sx(t), y1: T, y2: H - B, class: "grid" }, svg);
    el("text", { x: sx(t), y: H - B + 16, "text-anchor": "middle" }, svg).textContent = formatX(t);
  }
  el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, svg).textContent =
    state.xAxis === "step" ? "step" : "training time";
  el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
               transform: `rotate(-90 12 ${(T + H - B) / 2})` }, svg).textContent = yLabel;
  const path = (points) => points.map(([a, b], i) => `${i ? "L" : "M"}${sx(a).toFixed(1)},${sy(b).toFixed(1)}`).join("");
  series.forEach(({ name, cls, points }, i) => {
    el("path", { d: path(points), class: cls }, svg);
    // Evaluations are sparse: mark each held-out point.
    if (cls !== "train") for (const [a, b] of points) el("circle", { cx: sx(a), cy: sy(b), r: 2.5, class: `${cls}-dot` }, svg);
    const y = T + 12 + i * 18;  // legend, top right
    el("line", { x1: W - R - 150, x2: W - R - 128, y1: y, y2: y, class: cls }, svg);
    el("text", { x: W - R - 122, y: y + 4 }, svg).textContent = name;
  });
  return svg;
}

function flatten(value, prefix, rows) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, rows);
  } else {
    rows.push([prefix, Array.isArray(value) ? value.join(", ") : String(value)]);
  }
  return rows;
}

function showConfig(model) {
  const body = $("config").tBodies[0];
  body.replaceChildren();
  if (!model) return;
  for (const [key, value] of flatten({ kind: model.kind, ...model.config }, "", [])) {
    const row = body.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = value;
  }
}

// ---- wiring --------------------------------------------------------------------------------
function showTab(name) {
  for (const tab of ["generate", "training"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`panel-${tab}`).hidden = tab !== name;
  }
  if (name === "training") loadMetrics();
}

function setXAxis(axis) {
  state.xAxis = axis;
  $("x-step").setAttribute("aria-pressed", String(axis === "step"));
  $("x-time").setAttribute("aria-pressed", String(axis === "elapsed"));
  drawChart();
}

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", selectModel);
  $("controls").addEventListener("input", showSliderValues);
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("run").addEventListener("click", () => (current() && current().kind === "tagger" ? tag() : generate()));
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("run").disabled) $("run").click();
  });
  $("tab-generate").addEventListener("click", () => showTab("generate"));
  $("tab-training").addEventListener("click", () => showTab("training"));
  $("x-step").addEventListener("click", () => setXAxis("step"));
  $("x-time").addEventListener("click", () => setXAxis("elapsed"));
  showSliderValues();
  loadModels().catch((error) => showError(`Cannot list the models: ${error.message}`));
});
