/* The exported page: reads model.json and weights.bin, runs the model in a Web Worker
 * (worker.js), and streams what it writes. Stop terminates the worker and starts a fresh one
 * from the weights already downloaded. `window.weftPage` is for scripts (and the tests):
 * `await weftPage.logprobs(prompt, labels)` gives the next token's log-probabilities (labels:
 * one value per label column), `await weftPage.encode(text)` the token ids of a text, and
 * `weftPage.kernel` says how the products run ("wasm-simd" or "js"). */
"use strict";

const $ = (id) => document.getElementById(id);
const SLIDERS = ["temperature", "top_k", "top_p", "repetition_penalty"];
let manifest = null, weights = null, worker = null, ready = null, busy = false;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function startWorker() {
  worker = new Worker("worker.js");
  ready = new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      if (event.data.type === "ready") { window.weftPage.kernel = event.data.kernel; resolve(); }
      else if (event.data.type === "error") reject(new Error(event.data.message));
    };
    worker.onerror = (event) => reject(new Error(event.message || "the worker failed"));
  });
  const copy = weights.slice(0);  // the worker takes this copy; the page keeps its own
  // ?kernel=js runs the products in plain JavaScript (to compare; WebAssembly is faster)
  const kernel = new URLSearchParams(location.search).get("kernel");
  worker.postMessage({ type: "load", manifest, buffer: copy, kernel }, [copy]);
  return ready;
}

function decodeStops(text) {
  return text.split("\n").filter((s) => s !== "")
    .map((s) => s.replace(/\\n/g, "\n").replace(/\\t/g, "\t"));
}

function chosenLabels() {  // per column a value, or null: drawn as often as in training
  return (manifest.labels || []).map((column) => $(`label-${column.index}`).value || null);
}

function options() {
  const seed = $("seed").value.trim();
  const opts = Object.fromEntries(SLIDERS.map((name) => [name, Number($(name).value)]));
  opts.max_new_tokens = Math.max(0, Math.floor(Number($("max_new_tokens").value) || 0));
  opts.seed = seed === "" ? null : Number(seed);
  opts.stop = decodeStops($("stops").value);
  return opts;
}

function setRunning(running) {
  busy = running;
  $("run").disabled = running;
  $("stop").disabled = !running;
  $("output").classList.toggle("running", running);
}

function generate() {
  showError("");
  const prompt = $("prompt").value;
  $("out-prompt").textContent = prompt;
  $("out-text").textContent = "";
  $("status").textContent = "generating…";
  setRunning(true);
  worker.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "text") {
      $("out-text").textContent += msg.text;
    } else if (msg.type === "done") {
      setRunning(false);
      const speed = msg.seconds > 0 ? Math.round(msg.tokens / msg.seconds) : 0;
      const why = msg.reason === "stop" ? "ended by the model or a stop string"
        : "cut at the length limit";
      const labels = msg.labels.length ? `, ${msg.labels.join(" ")}` : "";
      $("status").textContent = `done: ${msg.tokens} tokens, ${speed} tokens/s, ${why} ` +
        `(seed ${msg.seed}${labels})`;
    } else if (msg.type === "error") {
      setRunning(false);
      $("status").textContent = "";
      showError(msg.message);
    }
  };
  worker.postMessage({ type: "generate", prompt, labels: chosenLabels(), options: options() });
}

async function stop() {
  worker.terminate();  // stops at once, even in the middle of a step
  setRunning(false);
  $("run").disabled = true;
  $("status").textContent = "stopped";
  await startWorker();
  $("run").disabled = false;
}

function ask(message, answer) {  // one request to an idle worker, and the value it answers
  if (busy) return Promise.reject(new Error("generating"));
  return ready.then(() => new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      if (event.data.type === answer) resolve(event.data);
      else if (event.data.type === "error") reject(new Error(event.data.message));
    };
    worker.postMessage(message);
  }));
}

const logprobs = (prompt, labels = []) =>
  ask({ type: "logprobs", prompt, labels }, "logprobs").then((m) => m.values);
const encode = (text) => ask({ type: "encode", text }, "encoded").then((m) => m.ids);

function setupControls() {
  const defaults = manifest.generation;
  for (const name of SLIDERS) {
    const input = $(name), shown = $(`${name}-value`);
    input.value = String(defaults[name]);
    const show = () => { shown.textContent = input.value; };
    input.addEventListener("input", show);
    show();
  }
  $("max_new_tokens").value = String(defaults.max_new_tokens);
  if (defaults.seed !== null) $("seed").value = String(defaults.seed);
  $("stops").value = defaults.stop.map((s) => s.replace(/\n/g, "\\n")).join("\n");
  for (const column of manifest.labels || []) {
    const label = document.createElement("label");
    label.textContent = column.name;
    const select = document.createElement("select");
    select.id = `label-${column.index}`;
    select.add(new Option("any (as often as in training)", ""));
    for (const value of Object.keys(column.counts)) select.add(new Option(value, value));
    label.append(select);
    $("labels").append(label);
  }
}

async function main() {
  try {
    manifest = await (await fetch("model.json")).json();
    $("model-name").textContent = manifest.name;
    document.title = `weft: ${manifest.name}`;
    setupControls();
    const response = await fetch(manifest.weights.file);
    if (!response.ok) throw new Error(`could not load ${manifest.weights.file}`);
    weights = await response.arrayBuffer();
    await startWorker();
    $("run").disabled = false;
    $("status").textContent = "ready";
  } catch (error) {
    $("status").textContent = "";
    // Browsers do not let a file:// page fetch its files or start a worker from them.
    const hint = location.protocol === "file:" ? " (open this folder through a web server, "
      + "e.g. python -m http.server -d FOLDER, not as a file)" : "";
    showError(`The model could not be loaded: ${error.message}${hint}`);
  }
}

$("run").addEventListener("click", generate);
$("prompt").addEventListener("keydown", (event) => {  // Ctrl+Enter generates, as in the playground
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("run").disabled) generate();
});
$("stop").addEventListener("click", stop);
window.weftPage = { logprobs, encode, kernel: null };
main();
