/* weft web worker: generation off the page's main thread, so the page never freezes.
 *
 * Messages in: {type: "load", manifest, buffer, kernel} (kernel "js": no WebAssembly),
 * {type: "generate", prompt, labels, options}, {type: "logprobs", prompt, labels},
 * {type: "encode", text}. Messages out: "ready" (kernel), "text" (streamed pieces), "done"
 * (tokens, why it ended, seconds, seed, labels), "logprobs", "encoded", "error". The page
 * stops a generation by terminating this worker and starting another.
 */
"use strict";
importScripts("kernel.js", "runtime.js", "tokenizers.js");

const STREAM_EVERY_MS = 30;  // text is posted in pieces at most this often
let manifest = null, model = null, tokenizer = null;

function cleanPrompt(text) {  // the training text's cleaning (prepare.clean_like_training)
  const rules = manifest.prompt;
  if (rules.normalize) text = text.normalize(rules.normalize);
  return rules.lowercase ? text.toLowerCase() : text;
}

function primeIds(prompt, labelIds) {  // generate.start_ids and prime_rows
  const ids = prompt ? tokenizer.encode(cleanPrompt(prompt)) : [];
  if (manifest.bos_id !== null) return [manifest.bos_id, ...labelIds, ...ids];
  return ids.length ? ids : manifest.empty_prompt_ids;
}

function prime(ids) {
  const state = model.initialState();
  let logits = null;
  for (const id of ids) logits = model.step(id, state);
  return { state, logits: Float64Array.from(logits) };
}

function generate(msg) {
  const opts = msg.options, started = performance.now();
  const seed = opts.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  const random = weftRuntime.rng(seed);
  const labels = drawLabels(msg.labels || [], random);
  const ids = primeIds(msg.prompt, labels.map((l) => l.id));
  let { state, logits } = prime(ids);
  const banned = new Uint8Array(model.vocab);
  for (const id of manifest.never_generate) banned[id] = 1;
  const seen = new Uint8Array(model.vocab);
  for (const id of ids) seen[id] = 1;
  const text = new weftRuntime.TextState(tokenizer.decoder(ids), opts.stop || []);
  const eos = manifest.eos_id;
  let tokens = 0, lastPost = performance.now(), pending = "";
  const post = (force) => {
    pending += text.flush(force);
    if (pending && (force || performance.now() - lastPost >= STREAM_EVERY_MS)) {
      postMessage({ type: "text", text: pending });
      pending = ""; lastPost = performance.now();
    }
  };
  while (tokens < opts.max_new_tokens) {
    const token = weftRuntime.sample(logits, opts, banned, seen, random);
    seen[token] = 1;
    tokens++;
    text.push(token, eos);
    post(false);
    if (text.done) break;
    logits = model.step(token, state);
  }
  text.finish();
  post(true);
  const seconds = (performance.now() - started) / 1000;
  postMessage({ type: "done", tokens, reason: text.stopped ? "stop" : "length", seconds, seed,
                labels: labels.map((l) => `${l.name}=${l.value}`) });
}

/* One label token per column: the value chosen (a string), or for null one drawn as often as
   the training records had it (from the seeded generator, so a seed repeats it). */
function drawLabels(chosen, random) {
  return (manifest.labels || []).map((column, k) => {
    let value = chosen[k] ?? null;
    if (value === null) {
      const values = Object.entries(column.counts);
      let draw = random() * values.reduce((sum, [, n]) => sum + n, 0);
      value = (values.find(([, n]) => (draw -= n) < 0) || values[values.length - 1])[0];
    }
    if (!(value in column.ids)) throw new Error(`${column.name} has no value ${value}`);
    return { name: column.name, value, id: column.ids[value] };
  });
}

onmessage = (event) => {
  const msg = event.data;
  try {
    if (msg.type === "load") {
      manifest = msg.manifest;
      model = new weftRuntime.Model(manifest, msg.buffer, msg.kernel === "js");
      tokenizer = weftTokenizers.create(manifest.tokenizer);
      postMessage({ type: "ready", kernel: model.kernel });
    } else if (msg.type === "generate") {
      generate(msg);
    } else if (msg.type === "encode") {
      postMessage({ type: "encoded", ids: tokenizer.encode(msg.text) });
    } else if (msg.type === "logprobs") {
      const labels = drawLabels(msg.labels || [], weftRuntime.rng(0));
      const { logits } = prime(primeIds(msg.prompt, labels.map((l) => l.id)));
      postMessage({ type: "logprobs", values: weftRuntime.logSoftmax(logits) });
    }
  } catch (error) {
    postMessage({ type: "error", message: String(error && error.message || error) });
  }
};
