"""Every INT8 recipe of ``edgeft quantize`` side by side on your fine-tuned model, plus what the
auto search picks, measured in one interleaved run.

    python benchmarks/compress.py runs/sst2 edgeft/samples/sst2_test.jsonl                 # x86_64 preset
    python benchmarks/compress.py runs/sst2 dev.jsonl --target rpi5 --rounds 10 --calls 25

For each variant (FP32 export, each recipe of compress.quantize.RECIPES that applies, and the
bundle the auto search writes) it reports:
* size on disk (MB), the headline metric on DATA at batch 1 and real length (serving shape), the
  change vs FP32 in points, and agreement with the FP32 predictions;
* latency p50/p90/p99 in ms, model time only (pre-tokenized), batch 1, for 1 and 2 intra-op threads,
  at real sentence length ("real") and padded to 128 tokens ("len128"). All variants × threads ×
  shapes run in one process, interleaved: ``--rounds`` rounds in a fresh random order, ``--calls``
  consecutive calls per cell and round, after warm-up. The 1-minute load average is recorded at the
  start and end; 2-thread numbers mean little when it is above ~1 on a 2-core machine;
* the wall time of the auto search itself (``edgeft quantize``: build + evaluate + time).

Writes benchmarks/results/compress-<model>-<target>.json and .md (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(variants: dict[str, Path], manifest, tokenizer: Path, examples: list, texts: list[str], rounds: int,
            calls: int, threads=(1, 2), shapes=("real", "len128"), reference: str | None = None,
            disabled: dict[str, list[str]] | None = None) -> list[dict]:
    """Size, accuracy, agreement and interleaved latency of ONNX files.

    Args:
        variants: name → ONNX path; the first (or ``reference``) is the FP32 reference.
        manifest: gives task, labels, inputs, pad id, max_length (runtime.manifest.Manifest); one for all,
            or a dict name → manifest (with ``tokenizer`` a dict too) when the variants tokenize differently,
            e.g. a student with a trimmed vocabulary.
        examples: labeled rows (edgeft.data) for accuracy; texts: sentences for timing.
        disabled: name → onnxruntime optimizers its sessions run without (a bundle's manifest says).
    Returns:
        one row per variant.
    """
    from edgeft.compress.evaluate import agreement, evaluate_onnx, summary, time_interleaved, timing_feeds
    from edgeft.runtime.session import SessionSettings, open_session

    reference = reference or next(iter(variants))
    tokenizers = tokenizer if isinstance(tokenizer, dict) else dict.fromkeys(variants, tokenizer)
    base = manifest if isinstance(manifest, dict) else dict.fromkeys(variants, manifest)
    rows, preds, manifests = {}, {}, {}
    for name, path in variants.items():
        print(f"evaluating {name}", file=sys.stderr)
        # each file's own input names (Optimum's BERT export also takes token_type_ids)
        manifests[name] = replace(base[name], inputs=[i.name for i in open_session(path, SessionSettings()).get_inputs()])
        # batch 1: these variants are plain ONNX files (no manifest says how they batch), and one row
        # per call is exact for every kind (edgeft.runtime.session)
        preds[name], scores = evaluate_onnx(path, tokenizers[name], manifests[name], examples, batch_size=1)
        rows[name] = {"variant": name, "size_mb": path.stat().st_size / 1e6, **summary(scores)}
    for name in variants:
        rows[name]["change_pt"] = (rows[name]["value"] - rows[reference]["value"]) * 100
        rows[name]["agreement"] = agreement(preds[name], preds[reference])
    runs = {}
    for name, path in variants.items():
        feeds = {"real": timing_feeds(tokenizers[name], manifests[name], texts),
                 "len128": timing_feeds(tokenizers[name], manifests[name], texts,
                                        pad_to=min(128, manifests[name].max_length))}
        for t in threads:
            sess = open_session(path, SessionSettings(threads=t, disabled_optimizers=tuple((disabled or {}).get(name, ()))))
            for shape in shapes:
                inputs = feeds[shape]
                runs[name, t, shape] = lambda i, s=sess, f=inputs: s.run(None, f[i % len(f)])
    load_start = os.getloadavg()[0]
    print(f"timing {len(runs)} cells × {rounds} rounds × {calls} calls", file=sys.stderr)
    stats = time_interleaved({f"{k[0]}|{k[1]}|{k[2]}": run for k, run in runs.items()}, rounds, calls, warmup=20)
    for (name, t, shape) in runs:
        s = stats[f"{name}|{t}|{shape}"]
        rows[name][f"{t}thr_{shape}"] = {k: s[k] for k in ("p50", "p90", "p99")}
    for row in rows.values():
        row["loadavg_1min"] = [load_start, os.getloadavg()[0]]
    return list(rows.values())


def table(rows: list[dict], threads=(1, 2), shapes=("real", "len128")) -> str:
    """Markdown: one line per variant, latency cells as p50 / p90 / p99 ms."""
    cells = [f"{t} thr {s}" for t in threads for s in shapes]
    metric = rows[0]["metric"]
    out = [f"| variant | size MB | {metric} | Δ pt | agree | " + " | ".join(cells) + " |",
           "|---" * (5 + len(cells)) + "|"]
    for r in rows:
        lat = [r[f"{t}thr_{s}"] for t in threads for s in shapes]
        out.append(f"| {r['variant']} | {r['size_mb']:.1f} | {r['value']:.2%} | {round(r['change_pt'], 2) + 0.0:+.2f} | "
                   f"{r['agreement']:.1%} | " + " | ".join(f"{x['p50']:.2f} / {x['p90']:.2f} / {x['p99']:.2f}"
                                                         for x in lat) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="fine-tuned HF folder (what `edgeft train` wrote)")
    ap.add_argument("data", type=Path, help="labeled validation/test file")
    ap.add_argument("--target", default="x86_64", help="preset whose types and reduce_range the recipes use")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--max-rows", type=int, default=2000, help="validation rows used at most (seeded sample)")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.005, help="budget of the auto search")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/compress-…json)")
    args = ap.parse_args(argv)

    from edgeft.compress.evaluate import encode, feeds, load_tokenizer
    from edgeft.compress.quantize import RECIPES, QuantizeConfig, sample_rows, build, fused_unsupported, open_source, quantize
    from edgeft.stage import Splits
    from edgeft.data import read_dataset
    from edgeft.runtime.bench import machine_info
    from edgeft.targets import resolve_target

    target = resolve_target(args.target)
    out = args.out or HERE / "results" / f"compress-{args.model_dir.name}-{args.target}.json"
    with tempfile.TemporaryDirectory(prefix="edgeft-bench-") as tmp:
        work = Path(tmp)
        cfg = QuantizeConfig(target=args.target, max_eval_rows=args.max_rows,
                             max_accuracy_drop=args.max_accuracy_drop)
        t0 = time.perf_counter()
        auto = quantize(args.model_dir, work / "auto-bundle", Splits(validation=args.data), cfg, progress=lambda m: print(m, file=sys.stderr))
        search_seconds = time.perf_counter() - t0

        (work / "src").mkdir()
        src = open_source(args.model_dir, work / "src", cfg, target, [], lambda m: None)  # FP32 export + parity
        m = src.manifest
        ds = read_dataset(args.data, task=m.task)
        examples = sample_rows(ds.examples, args.max_rows, cfg.seed)
        texts = [ex.text if m.task == "text-classification" else " ".join(ex.tokens) for ex in examples][:200]
        tok = load_tokenizer(src.tokenizer, m.max_length)
        calib_rows = sample_rows(ds.examples, cfg.calibration_rows, cfg.seed + 1)
        calibration = [feeds([e], m) for e in encode(tok, calib_rows, m.task)]
        variants = {"fp32": src.fp32}
        for recipe in RECIPES.values():
            if recipe.weight_type == "uint8" and not target.reduce_range:
                continue  # u8u8 is an AVX2-only candidate
            if recipe.graph == "fused" and fused_unsupported(src):
                continue
            print(f"building {recipe.name}", file=sys.stderr)
            variants[recipe.name] = build(recipe, target, src, work / f"{recipe.name}.onnx", calibration)
        variants[f"auto ({auto.chosen.name})"] = auto.bundle / "model.onnx"
        rows = measure(variants, m, src.tokenizer, examples, texts, args.rounds, args.calls)
    report = {"model": str(args.model_dir), "data": str(args.data), "rows": len(examples), "target": target.to_dict(),
              "machine": machine_info(), "auto": {"chosen": auto.chosen.name, "verdict": auto.verdict,
                                                  "search_seconds": search_seconds,
                                                  "candidates": [c.to_dict() for c in auto.candidates]},
              "setup": {"rounds": args.rounds, "calls": args.calls, "batch": 1, "latency": "model time only, ms"},
              "variants": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = table(rows)
    out.with_suffix(".md").write_text(f"{md}\n\nauto search: {auto.chosen.name}, {auto.verdict}, "
                                      f"{search_seconds:.0f} s\n")
    print(md)
    print(f"\nauto search chose {auto.chosen.name} ({auto.verdict}) in {search_seconds:.0f} s; wrote {out}")
    return report


if __name__ == "__main__":
    main()
