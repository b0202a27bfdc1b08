"""Cold start and memory of the device runtime against the PyTorch path, on your bundle.

    python benchmarks/runtime.py runs/bundle --pytorch runs/ft              # bundle vs its HF model
    python benchmarks/runtime.py runs/int8 runs/fp32 --pytorch runs/ft --repeats 10 --threads 1
    python benchmarks/runtime.py runs/int8 --pytorch runs/ft --optimum-venv ~/.cache/edgeft/venv-optimum \
        --optimum-model optimum_int8/model_quantized.onnx     # + Optimum's ORTModel (one process each)
    python benchmarks/runtime.py --batching runs/fp32 runs/dyn runs/static runs/fused   # predict --input, per batching

Each repeat starts a fresh Python process per model (one after another, never overlapping) and
measures, in that process:
* time to first prediction: process start → first result of one sentence (interpreter, imports,
  bundle verification or HF loading, session creation, tokenization, one forward), ms wall clock;
* load: verification + session creation (runtime) or from_pretrained of model + tokenizer (PyTorch), ms;
* peak RSS of the process at that point, MB — what a device needs to serve.
For the first bundle it also times whole processes as users start them (`edgeft predict BUNDLE
"text"` and `python -c` with the Python API), and the runtime's overhead at batch 1: predict()
(tokenize, pad, softmax: its wall time minus its own session.run), and predict against a bare
session.run on the same pre-tokenized sentences.
The models take turns within each repeat (rotating who goes first), so background load hits all
of them alike. Reported: median and min over the repeats; peak RSS as the median.

``--batching`` measures instead the throughput of ``edgeft predict BUNDLE --input`` (the real CLI,
one process per run) on 10,000 sentences for each bundle twice: as recorded in the bundle, and
with the other batching written into a copy of its manifest ("padded" = the batched path every
bundle took before dynamic-INT8 bundles ran one row per call), and counts the rows whose label or
probabilities differ from predicting each sentence alone. Writes benchmarks/results/runtime_batching.json.

Prints a table and writes benchmarks/results/runtime.json (or --out). The PyTorch column needs the
``train`` extra; the runtime columns never import torch (each model has its own process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from edgeft.runtime.bench import ModelSpec, Worker, machine_info, model_specs, sample_texts
from edgeft.runtime.bundle import load_bundle

HERE = Path(__file__).resolve().parent


def cold_starts(specs, repeats: int, threads: int, texts: list[str], max_length: int) -> dict[str, list[dict]]:
    """name → one {"load_ms", "first_prediction_ms", "peak_rss_mb"} per repeat."""
    runs: dict[str, list[dict]] = {s.name: [] for s in specs}
    for r in range(repeats):
        for k in range(len(specs)):
            spec = specs[(k + r) % len(specs)]  # rotate the order against position bias
            worker = Worker(spec, threads, texts[:1], max_length)  # returns once the first prediction is done
            try:
                rss = worker.ask({"cmd": "exit"})["peak_rss_mb"]
            finally:
                worker.close()
            runs[spec.name].append({**worker.ready, "peak_rss_mb": rss})
        print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
    return runs


def summarize(specs, runs: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for spec in specs:
        first = [x["first_prediction_ms"] for x in runs[spec.name]]
        rows.append({"model": spec.name, "kind": spec.kind, "size_mb": spec.size_bytes / 1e6,
                     "first_prediction_ms_median": statistics.median(first), "first_prediction_ms_min": min(first),
                     "load_ms_median": statistics.median(x["load_ms"] for x in runs[spec.name]),
                     "peak_rss_mb_median": statistics.median(x["peak_rss_mb"] for x in runs[spec.name])})
    return rows


def table(rows: list[dict]) -> str:
    ref = rows[0]
    width = max(len(r["model"]) for r in rows) + 2
    lines = [(f"{'model':<{width}}{'size MB':>8} {'first pred ms (median/min)':>27} {'load ms':>9} "
              f"{'peak RSS MB':>12} {'vs first: time':>15} {'RSS':>6}")]
    for r in rows:
        lines.append(f"{r['model']:<{width}}{r['size_mb']:>8.1f} {r['first_prediction_ms_median']:>18.0f} / "
                     f"{r['first_prediction_ms_min']:<6.0f} {r['load_ms_median']:>9.0f} {r['peak_rss_mb_median']:>12.1f}"
                     f" {r['first_prediction_ms_median'] / ref['first_prediction_ms_median']:>14.2f}×"
                     f" {r['peak_rss_mb_median'] / ref['peak_rss_mb_median']:>5.2f}×")
    return "\n".join(lines)


OPTIMUM_CHILD = r"""
import json, resource, sys, time
t0 = float(sys.argv[3])  # wall clock just before this process was spawned
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer
t1 = time.time()
model = ORTModelForSequenceClassification.from_pretrained(sys.argv[1], file_name=sys.argv[2])
tok = AutoTokenizer.from_pretrained(sys.argv[1])
t2 = time.time()
model(**tok([sys.argv[4]], return_tensors="pt")).logits.argmax(-1)
print(json.dumps({"first_prediction_ms": 1000 * (time.time() - t0), "load_ms": 1000 * (t2 - t1),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def optimum_cold_starts(python: Path, model: Path, repeats: int, text: str) -> list[dict]:
    """Optimum's ``ORTModelForSequenceClassification`` (which imports torch and transformers) in its own
    venv (Optimum pins transformers < 4.58): process start → first prediction, load, peak RSS."""
    import subprocess

    runs = []
    for _ in range(repeats):
        t0 = time.time()
        out = subprocess.run([str(python), "-c", OPTIMUM_CHILD, str(model.parent), model.name, str(t0), text],
                             check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def wall_starts(bundle: Path, repeats: int, text: str) -> dict:
    """Wall time of a whole fresh process that predicts one sentence, as a user runs it: through the
    ``edgeft`` CLI, and through ``python -c`` with the Python API (median / min, ms)."""
    import subprocess

    api = (f"from edgeft.runtime.predictor import Predictor; "
           f"Predictor.load({str(bundle)!r}, threads=1).predict([{text!r}])")
    commands = {"cli": [sys.executable, "-m", "edgeft", "predict", str(bundle), text],
                "python_c": [sys.executable, "-c", api]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(repeats):
        for name in (list(commands) if r % 2 == 0 else list(reversed(commands))):  # alternate who goes first
            t0 = time.perf_counter()
            subprocess.run(commands[name], check=True, capture_output=True)
            times[name].append(1000 * (time.perf_counter() - t0))
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v)} for k, v in times.items()}


def overhead(bundle: Path, texts: list[str], rounds: int = 3) -> dict:
    """Runtime overhead at batch 1: what Predictor.predict spends outside the model.

    The issue's definition — tokenize + pre/post-processing against model time — is measured inside
    each call: the session is wrapped so that its own ``run`` is timed, and overhead = predict's wall
    time − that run. A second figure compares predict with a bare ``session.run`` on the same
    pre-tokenized input (interleaved, sentence by sentence); it also counts the model running slower
    after the tokenizer has evicted some of its weights from the CPU caches.
    """
    import dataclasses

    import numpy as np
    from edgeft.runtime.predictor import Predictor

    p = Predictor.load(bundle, threads=1, batch_size=1)
    m = p.manifest
    model_seconds: list[float] = []

    class TimedSession:  # the real session, with each run timed
        def run(self, names, feeds):
            t0 = time.perf_counter()
            out = p.session.run(names, feeds)
            model_seconds.append(time.perf_counter() - t0)
            return out

    timed = dataclasses.replace(p, session=TimedSession())
    feeds = []
    for text in texts:
        enc = p.tokenizer.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)  # (1, seq)
        cols = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feeds.append({name: cols[name] for name in m.inputs})
    for text, feed in zip(texts[:20], feeds[:20]):  # warm-up
        timed.predict([text])
        p.session.run(None, feed)
    outside, inside, total, bare = [], [], [], []
    for _ in range(rounds):
        for text, feed in zip(texts, feeds):
            t0 = time.perf_counter()
            p.session.run(None, feed)
            t1 = time.perf_counter()
            timed.predict([text])
            t2 = time.perf_counter()
            bare.append(t1 - t0)
            total.append(t2 - t1)
            inside.append(model_seconds[-1])
            outside.append(t2 - t1 - model_seconds[-1])
    ms = {k: 1000 * statistics.median(v) for k, v in
          {"outside": outside, "inside": inside, "total": total, "bare": bare}.items()}
    return {"model_ms_median": ms["inside"], "outside_model_ms_median": ms["outside"],
            "overhead_fraction": statistics.median(o / i for o, i in zip(outside, inside)),
            "predict_ms_median": ms["total"], "bare_run_ms_median": ms["bare"],
            "vs_bare_run_fraction": (ms["total"] - ms["bare"]) / ms["bare"],
            "sentences": len(texts), "rounds": rounds}


def batching_throughput(bundles: list[Path], n: int, threads: int, out: Path) -> dict:
    """``edgeft predict B --input`` sentences/s with each batching (module docstring), and whether
    each batching gives every sentence the answer it gets alone."""
    import shutil
    import subprocess
    import tempfile

    from edgeft.runtime.predictor import Predictor
    from edgeft.runtime.session import BATCHINGS, batching_of

    texts = sample_texts(None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeft-batching-") as tmp:
        sentences = Path(tmp) / "sentences.txt"
        sentences.write_text("".join(f"{texts[i % len(texts)]}\n" for i in range(n)), encoding="utf-8")
        alone_of = {}
        for bundle in bundles:
            recorded = batching_of(load_bundle(bundle).manifest)
            p = Predictor.load(bundle, threads=threads)
            alone_of[bundle] = [p.predict([t])[0].scores for t in texts]  # each distinct sentence by itself
            for batching in (recorded, *(b for b in BATCHINGS if b != recorded)):
                copy = Path(tmp) / f"{bundle.name}-{batching}"
                shutil.copytree(bundle, copy)
                manifest = json.loads((copy / "edgeft.json").read_text(encoding="utf-8"))
                (copy / "edgeft.json").write_text(json.dumps({**manifest, "batching": batching}), encoding="utf-8")
                result = Path(tmp) / "out.jsonl"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "edgeft", "predict", str(copy), "--input", str(sentences),
                                "--output", str(result), "--threads", str(threads)], check=True, capture_output=True)
                seconds = time.perf_counter() - t0  # whole process: start, load, tokenize, model, write
                got = [json.loads(line)["scores"] for line in result.read_text(encoding="utf-8").splitlines()]
                alone = alone_of[bundle]
                delta = max(abs(g[k] - alone[i % len(alone)][k]) for i, g in enumerate(got) for k in g)
                flips = sum(max(g, key=g.get) != max(alone[i % len(alone)], key=alone[i % len(alone)].get)
                            for i, g in enumerate(got))
                rows.append({"bundle": str(bundle), "candidate": p.manifest.quantization.get("candidate", "fp32"),
                             "batching": batching, "recorded": batching == recorded, "sentences": n,
                             "seconds": seconds, "per_second": n / seconds, "max_delta_prob_vs_alone": delta,
                             "label_flips_vs_alone": flips})
                print(f"{bundle.name:<16} {batching:<7}{' (bundle)' if batching == recorded else '         '} "
                      f"{n / seconds:7.0f} sentences/s  max|Δprob| vs alone {delta:.2g}, {flips} label flips",
                      file=sys.stderr)
    import os

    report = {"machine": machine_info(), "threads": threads, "loadavg_1min_after": os.getloadavg()[0], "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {out}")
    return report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="+", type=Path, help="bundle folders or .zip files (the first is the reference)")
    ap.add_argument("--pytorch", type=Path, help="the HF model folder the bundle was exported from")
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per model")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (onnxruntime and torch)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "runtime.json")
    ap.add_argument("--optimum-model", type=Path, help="an .onnx file exported/quantized by Optimum, in its folder "
                    "(config + tokenizer beside it): adds Optimum's ORTModel as a row")
    ap.add_argument("--optimum-venv", type=Path, help="the venv with optimum-onnx (see benchmarks/vs_optimum.py)")
    ap.add_argument("--batching", action="store_true", help="only the predict --input throughput per batching")
    ap.add_argument("--sentences", type=int, default=10_000, help="--batching: sentences per predict run")
    args = ap.parse_args(argv)
    if args.batching:
        return batching_throughput(args.bundles, args.sentences, args.threads,
                                   args.out.with_name("runtime_batching.json") if args.out.name == "runtime.json"
                                   else args.out)

    specs = model_specs(args.bundles, args.pytorch)
    max_length = load_bundle(args.bundles[0]).manifest.max_length
    t0 = time.perf_counter()
    runs = cold_starts(specs, args.repeats, args.threads, sample_texts(None), max_length)
    if args.optimum_model:
        name = f"{args.optimum_model.parent.name} (optimum ORTModel)"
        runs[name] = optimum_cold_starts(args.optimum_venv / "bin" / "python", args.optimum_model, args.repeats,
                                         sample_texts(None)[0])
        specs.append(ModelSpec(name, "optimum", str(args.optimum_model), args.optimum_model.stat().st_size))
    rows = summarize(specs, runs)
    print(table(rows))
    texts = sample_texts(None)
    walls = wall_starts(args.bundles[0], args.repeats, texts[0])
    cost = overhead(args.bundles[0], texts[:300])
    print(f"{args.bundles[0]}: whole process to first prediction: CLI {walls['cli']['median_ms']:.0f} ms, "
          f"python -c {walls['python_c']['median_ms']:.0f} ms (median of {args.repeats}); runtime overhead at "
          f"batch 1: {100 * cost['overhead_fraction']:.1f}% of model time "
          f"({cost['outside_model_ms_median']:.3f} ms outside the model, {cost['model_ms_median']:.3f} ms in it); "
          f"predict vs a bare session.run: {cost['predict_ms_median']:.3f} vs {cost['bare_run_ms_median']:.3f} ms "
          f"({100 * cost['vs_bare_run_fraction']:+.1f}%)")
    report = {"machine": machine_info(), "threads": args.threads, "repeats": args.repeats, "rows": rows, "runs": runs,
              "process_wall": walls, "overhead": cost, "seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {args.out}")
    return report


if __name__ == "__main__":
    main()
