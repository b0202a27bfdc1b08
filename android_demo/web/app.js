// The page: wires classifier.js to the text box and buttons, and exposes `window.edgeft` so a
// test (check_page.mjs) can classify many texts through the same code path the buttons use.

import { loadClassifier, percentile } from "./classifier.js";

const $ = (id) => document.getElementById(id);
const WARMUP = 5; // untimed calls before the benchmark (first calls pay for allocation)
const CALLS = 100; // timed calls, as the Android app's benchmark button

function show(result) {
  $("result").hidden = false;
  $("label").textContent = result.label;
  $("score").textContent = `${(100 * result.score).toFixed(1)} %`;
  $("details").textContent = `${result.tokens} tokens${result.truncated ? " (truncated)" : ""} · ` +
                             `${result.ms.toFixed(1)} ms (tokenize + model + softmax)`;
  const rows = Object.entries(result.scores).map(([label, p]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td class='p'></td>";
    tr.children[0].textContent = label;
    tr.children[1].textContent = p.toFixed(6);
    return tr;
  });
  $("scores").tBodies[0].replaceChildren(...rows);
}

async function benchmark(model, text, calls = CALLS) {
  for (let i = 0; i < WARMUP; i++) await model.classify(text);
  const ms = [];
  for (let i = 0; i < calls; i++) ms.push((await model.classify(text)).ms);
  return { calls, p50: percentile(ms, 50), p90: percentile(ms, 90) };
}

async function main() {
  const model = await loadClassifier("bundle/");
  const m = model.manifest;
  const mb = (model.modelBytes / 1e6).toFixed(1);
  $("status").textContent = `ready: ${m.labels.length} labels (${m.labels.join(", ")}) · model ${mb} MB · ` +
                            `max ${m.max_length} tokens · onnxruntime-web ${globalThis.ort.env.versions.web} (wasm)`;
  $("classify").onclick = async () => show(await model.classify($("text").value));
  $("bench").onclick = async () => {
    $("bench-result").textContent = "running…";
    const b = await benchmark(model, $("text").value);
    $("bench-result").textContent = `${b.calls} calls: p50 ${b.p50.toFixed(2)} ms, p90 ${b.p90.toFixed(2)} ms`;
  };
  $("classify").disabled = $("bench").disabled = false;
  window.edgeft = {
    manifest: m,
    classify: (text) => model.classify(text),
    classifyAll: async (texts) => { const out = []; for (const t of texts) out.push(await model.classify(t)); return out; },
    benchmark: (text, calls) => benchmark(model, text, calls),
  };
  document.body.dataset.state = "ready";
}

main().catch((e) => {
  $("status").textContent = `error: ${e.message}`;
  document.body.dataset.state = "error";
  console.error(e);
});
