// An edgeft text-classification bundle, run in the browser: the JavaScript twin of
// edgeft.runtime.predictor (runtime/predictor.py). Every step mirrors the Python runtime, so the
// page gives the labels and probabilities `edgeft predict` gives (a pytest test checks this in
// headless Chromium, within 1e-4):
//   verify   edgeft.json's format version, and the sha256 of model.onnx and tokenizer.json;
//   tokenize tokenizer.json with tokenizers.js (the tokenizers of transformers.js), no padding,
//            truncated to max_length the way `tokenizers` truncates (the text's tokens are cut,
//            the special tokens kept);
//   run      batch 1, int64 input_ids / attention_mask (all ones) / token_type_ids (zeros);
//            a text with no token at all becomes one pad token, as in Predictor.forward. One text
//            per call gives the answers of either batching a bundle records (edgeft.json
//            "batching": "rows" for dynamic INT8, "padded" otherwise; read as batchingOf does);
//   softmax  in float64 (JS numbers) over the first output; the label is the first maximum.
//
// ONNX Runtime comes from `ort.wasm.min.js` (the WASM-only build, loaded by index.html as the
// global `ort`): the default `ort.min.js` also wants the WebGPU/JSEP files and fails with
// "no available backend found" when only the WASM files are served.

import { Tokenizer } from "./vendor/tokenizers.min.mjs";

export const FORMAT_VERSION = 1; // the newest edgeft.json format this page reads (runtime/manifest.py)
const LONE_SURROGATE = /\p{Cs}/gu; // valid in a JS string, not in UTF-8; Python replaces them with U+FFFD

/**
 * Fetch, verify and load the bundle served under `base` (edgeft serve-web serves it at "bundle/").
 * Returns {manifest, classify(text), ...}; throws an Error whose message says what is wrong.
 */
export async function loadClassifier(base = "bundle/", ort = globalThis.ort) {
  if (!ort) throw new Error("onnxruntime-web did not load (vendor/ort.wasm.min.js)");
  const manifest = await fetchJson(new URL("edgeft.json", new URL(base, location.href)));
  checkManifest(manifest);
  const batching = batchingOf(manifest);
  const url = (name) => new URL(name, new URL(base, location.href));
  const [model, tokenizerBytes] = await Promise.all([fetchBytes(url(manifest.model_file)),
                                                     fetchBytes(url(manifest.tokenizer_file))]);
  await checkDigest(manifest, manifest.model_file, model);
  await checkDigest(manifest, manifest.tokenizer_file, tokenizerBytes);

  // tokenizer.json alone, as the Python runtime's Tokenizer.from_str: no tokenizer_config.json.
  const tokenizer = new Tokenizer(JSON.parse(new TextDecoder().decode(tokenizerBytes)), {});
  const encode = makeEncoder(tokenizer, manifest.max_length);

  ort.env.wasm.numThreads = 1; // no worker threads: needs no cross-origin isolation (COOP/COEP) headers
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href;
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"],
                                                             graphOptimizationLevel: "all" });
  checkSession(manifest, session);

  /** One text → {label, score, scores, truncated, tokens, ms}, as Predictor.predict gives. */
  async function classify(text) {
    const t0 = performance.now();
    const { ids, truncated } = encode(text);
    const seq = ids.length ? ids : [manifest.pad_token_id]; // (seq,) never empty
    const n = seq.length;
    const inputs = {
      input_ids: BigInt64Array.from(seq, BigInt), // (1, seq) int64
      attention_mask: new BigInt64Array(n).fill(1n), // 1 = real token; batch 1 has no padding
      token_type_ids: new BigInt64Array(n), // one segment: zeros
    };
    const feeds = {};
    for (const name of manifest.inputs) feeds[name] = new ort.Tensor("int64", inputs[name], [1, n]);
    const out = (await session.run(feeds, [manifest.outputs[0]]))[manifest.outputs[0]];
    const labels = manifest.labels;
    if (out.dims.length !== 2 || out.dims[0] !== 1 || out.dims[1] !== labels.length) {
      throw new Error(`the model returned logits of shape [${out.dims}], expected [1,${labels.length}]; ` +
                      "the manifest does not match the model");
    }
    const probs = softmax(Array.from(out.data)); // float32 logits → float64 probabilities
    let best = 0;
    probs.forEach((p, i) => { if (p > probs[best]) best = i; }); // first maximum, as numpy's argmax
    const scores = Object.fromEntries(labels.map((label, i) => [label, probs[i]]));
    return { label: labels[best], score: probs[best], scores, truncated, tokens: n,
             ms: performance.now() - t0 };
  }

  return { manifest, batching, tokenizer, session, encode, classify, modelBytes: model.byteLength };
}

/**
 * Token ids with truncation as the `tokenizers` library does it for one text (enable_truncation:
 * longest-first, right side, stride 0): keep the first max_length − (number of special tokens)
 * tokens of the text, then the special tokens around them. tokenizers.js has no truncation of its
 * own, so the positions of the specials are read once from a probe text.
 */
export function makeEncoder(tokenizer, maxLength) {
  const probe = tokenizer.encode("a", { add_special_tokens: false }).ids;
  const full = tokenizer.encode("a").ids;
  const before = full.findIndex((_, i) => probe.every((id, j) => full[i + j] === id));
  const after = full.length - before - probe.length; // specials after the text
  const room = maxLength - before - after; // text tokens that fit
  if (before < 0 || room < 1) throw new Error(`cannot place the special tokens within max_length ${maxLength}`);
  return (text) => {
    const ids = tokenizer.encode(text.replace(LONE_SURROGATE, "\ufffd")).ids;
    if (ids.length <= maxLength) return { ids, truncated: false };
    return { ids: [...ids.slice(0, before + room), ...ids.slice(ids.length - after)], truncated: true };
  };
}

/** Softmax in float64, minus the maximum first (as runtime/predictor.py). */
export function softmax(logits) {
  const top = Math.max(...logits);
  const exps = logits.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** The q-th percentile (0..100) with linear interpolation, numpy.percentile's default. */
export function percentile(values, q) {
  const v = [...values].sort((a, b) => a - b);
  const pos = (v.length - 1) * q / 100;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

/**
 * How the bundle batches texts, read as the Python runtime reads it (runtime/session.py batching_of):
 * edgeft.json's "batching", else, for bundles written before the field, "rows" for dynamic INT8 and
 * "padded" otherwise. An unknown value is refused, as a newer format version is.
 */
export function batchingOf(m) {
  const recorded = m.batching || "";
  if (!recorded) return m.quantization?.mode === "dynamic" ? "rows" : "padded";
  if (recorded !== "padded" && recorded !== "rows") {
    throw new Error(`edgeft.json: batching "${recorded}" is not padded or rows; this page is older than the bundle`);
  }
  return recorded;
}

export function checkManifest(m) {
  if (!Number.isInteger(m.format_version)) throw new Error("edgeft.json has no integer format_version");
  if (m.format_version > FORMAT_VERSION) {
    throw new Error(`edgeft.json has format version ${m.format_version}; this page reads up to ${FORMAT_VERSION}`);
  }
  if (m.task !== "text-classification") {
    throw new Error(`this page classifies text; the bundle's task is ${m.task} (use \`edgeft predict\` for it)`);
  }
  for (const key of ["labels", "inputs", "outputs", "max_length", "pad_token_id", "files"]) {
    if (!(key in m)) throw new Error(`edgeft.json lacks the field ${key}`);
  }
}

function checkSession(m, session) {
  const have = [...session.inputNames].sort().join(", ");
  if (have !== [...m.inputs].sort().join(", ")) {
    throw new Error(`the model's inputs are [${have}] but edgeft.json lists [${m.inputs}]; rebuild the bundle`);
  }
  if (!session.outputNames.includes(m.outputs[0])) {
    throw new Error(`the model has no output ${m.outputs[0]} (it has ${session.outputNames})`);
  }
}

async function checkDigest(manifest, name, bytes) {
  const want = manifest.files?.[name];
  if (!want) throw new Error(`edgeft.json does not list ${name}`);
  const got = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  if (bytes.byteLength !== want.size || got !== want.sha256) {
    throw new Error(`${name} differs from edgeft.json (size ${bytes.byteLength} vs ${want.size}, ` +
                    `sha256 ${got.slice(0, 12)}… vs ${String(want.sha256).slice(0, 12)}…); rebuild the bundle`);
  }
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function fetchJson(url) {
  const bytes = await fetchBytes(url);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${url.pathname} is not valid JSON (${e.message})`);
  }
}
