"""Extractive question answering end to end: MiniLM fine-tuned on SQuAD, then FP32 ONNX vs INT8 vs a
distilled INT8 student — test exact match / F1, size, and p50 latency at batch 1 on one thread.

    # the full run, training and distillation on a GPU (everything else on the CPU):
    python benchmarks/qa.py --device cuda --work runs/qa-bench
    # a smoke run on a CPU (a few minutes): tiny slices, a fraction of an epoch
    python benchmarks/qa.py --max-train-samples 64 --max-validation 32 --max-test 32 --epochs 0.05 \\
        --bench-runs 20 --quick --work /tmp/qa-smoke --results /tmp/qa-smoke/qa.json

Data: ``DATASETS/squad`` (default ../shared/datasets beside the checkout): the SQuAD v1.1 dev set
split by article into 7,380 train / 872 validation / 710 test questions (its README). Steps, each
the library call the CLI makes, each reused from ``--work`` when it finished before (``--force``
redoes them):

1. fine-tune the embedded all-MiniLM-L6-v2 (``edgeft.train.finetune``) on the training questions,
   384-token windows, stride 128, best validation F1 kept — on ``--device``;
2. distill a ``--student-layers`` student from it (start/end logits KD) — on ``--device``;
3. export the fine-tuned model to FP32 ONNX (parity checked) and quantize it and the student to
   INT8 for ``--target`` (the candidate search scores F1 on the validation split) — CPU;
4. score the three bundles on the test split through the device runtime (batch 1) — CPU;
5. time them in one interleaved ``edgeft bench`` run: batch 1, 1 thread, the test questions with
   their contexts cut to one 384-token window — CPU.

Targets (from the issue): INT8 F1 within 1.0 point of FP32's; INT8 p50 ≤ 0.5× FP32's in the same run.
Writes benchmarks/results/qa.json (or --results) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from edgeft.writable import write_json

HERE = Path(__file__).resolve().parent
DEFAULT_DATASETS = HERE.parent.parent / "shared" / "datasets"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS if DEFAULT_DATASETS.is_dir() else None,
                    help="folder holding squad/{train,validation,test}.jsonl (default ../shared/datasets)")
    ap.add_argument("--work", type=Path, default=Path("runs/qa-bench"), help="models, bundles and logs go here")
    ap.add_argument("--results", type=Path, default=HERE / "results" / "qa.json")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="for training and distillation only")
    ap.add_argument("--model", default=None, help="HF folder or hub id (default: the embedded all-MiniLM-L6-v2)")
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=6e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=384, help="tokens per window (question + context)")
    ap.add_argument("--doc-stride", type=int, default=128)
    ap.add_argument("--student-layers", type=int, default=3)
    ap.add_argument("--student-epochs", type=float, default=None, help="default: --epochs")
    ap.add_argument("--target", default="arm64", help="INT8 preset (edgeft targets)")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.01, help="F1 budget of the INT8 search (0.01 = 1 pt)")
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--max-validation", type=int, default=None, help="use the first N validation questions")
    ap.add_argument("--max-test", type=int, default=None, help="use the first N test questions")
    ap.add_argument("--bench-runs", type=int, default=300, help="timed batch-1 calls per bundle")
    ap.add_argument("--quick", action="store_true", help="smoke run: short candidate timing in the INT8 search")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--force", action="store_true", help="redo every step, even those finished in --work")
    args = ap.parse_args(argv)
    if args.datasets is None or not (args.datasets / "squad" / "train.jsonl").is_file():
        ap.error(f"--datasets {args.datasets}: no squad/train.jsonl there; pass the folder that holds squad/")
    return args


def prepare_device(device: str) -> None:
    """Training runs where --device says; the rest always runs on the CPU (ONNX Runtime's CPU provider)."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: the Trainer then uses the CPU
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device (install the CUDA build of torch, or use --device cpu)")


def data_files(args) -> dict[str, Path]:
    """The split files, cut to --max-validation / --max-test questions when asked (first N, file order)."""
    squad = args.datasets / "squad"
    files = {"train": squad / "train.jsonl"}
    for split, limit in (("validation", args.max_validation), ("test", args.max_test)):
        files[split] = squad / f"{split}.jsonl"
        if limit:
            cut = args.work / "data" / f"{split}-{limit}.jsonl"
            cut.parent.mkdir(parents=True, exist_ok=True)
            lines = files[split].read_text(encoding="utf-8").splitlines()[:limit]
            cut.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files[split] = cut
    return files


def step(name: str, done: Path, force: bool, fn):
    """Run ``fn`` unless ``done`` (its last output) exists; returns its seconds (0 when reused)."""
    if done.exists() and not force:
        print(f"[{name}] reused {done}", file=sys.stderr)
        return 0.0
    print(f"[{name}] running", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    fn()
    return round(time.perf_counter() - t0, 1)


def run(args) -> dict:
    from edgeft.compress.distill import DistillConfig, distill
    from edgeft.compress.export import ExportConfig, export
    from edgeft.compress.quantize import QuantizeConfig, quantize
    from edgeft.train.config import TrainConfig
    from edgeft.train.finetune import finetune
    from edgeft.stage import Splits

    work, files, seconds = args.work, data_files(args), {}
    train_cfg = TrainConfig(task="question-answering", epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, max_length=args.max_length, doc_stride=args.doc_stride,
                            max_train_samples=args.max_train_samples, seed=args.seed, force=True)
    ft, kd = work / "finetuned", work / f"student{args.student_layers}"
    seconds["train"] = step("train", ft / "metrics.json", args.force, lambda: finetune(
        args.model, ft, Splits(files["train"], files["validation"], files["test"]), train_cfg))
    kd_cfg = DistillConfig(train=replace(train_cfg, epochs=args.student_epochs or args.epochs),
                           layers=args.student_layers)
    seconds["distill"] = step("distill", kd / "metrics.json", args.force, lambda: distill(
        ft, kd, Splits(files["train"], files["validation"], files["test"]), kd_cfg))

    bundles = {"fp32": work / "fp32", "int8": work / "int8", "student-int8": work / f"student{args.student_layers}-int8"}
    seconds["export"] = step("export", bundles["fp32"] / "edgeft.json", args.force, lambda: export(
        ft, bundles["fp32"], Splits(validation=files["validation"]), ExportConfig(max_length=args.max_length)))
    quick = {"timing_rounds": 1, "timing_calls": 3, "max_eval_rows": 64} if args.quick else {}
    qcfg = QuantizeConfig(target=args.target, max_accuracy_drop=args.max_accuracy_drop,
                          max_length=args.max_length, seed=args.seed, **quick)
    for name, source in (("int8", ft), ("student-int8", kd)):
        seconds[f"quantize {name}"] = step(f"quantize {name}", bundles[name] / "edgeft.json", args.force,
                                           lambda s=source, n=name: quantize(s, bundles[n], Splits(validation=files["validation"]), qcfg))
    scores = score(bundles, files["test"])
    timing = time_bundles(bundles, files["test"], args)

    trained = {name: json.loads((path / "metrics.json").read_text()) for name, path in (("teacher", ft), ("student", kd))}
    fp32 = scores["fp32"], timing["fp32"]
    variants = []
    for name, bundle in bundles.items():
        m = json.loads((bundle / "edgeft.json").read_text())
        s, t = scores[name], timing[name]
        variants.append({
            "variant": name, "size_mb": round((bundle / "model.onnx").stat().st_size / 1e6, 2),
            "exact_match": s["exact_match"], "f1": s["f1"], "f1_drop_pt": round(100 * (fp32[0]["f1"] - s["f1"]), 2),
            "agreement_with_fp32": s["agreement"], "p50_ms": t["p50_ms"], "p90_ms": t["p90_ms"], "p99_ms": t["p99_ms"],
            "p50_vs_fp32": round(t["p50_ms"] / fp32[1]["p50_ms"], 3), "peak_rss_mb": t["peak_rss_mb"],
            "quantization": {k: m["quantization"][k] for k in ("candidate", "mode", "per_channel", "graph")}
            if m.get("quantization") else "fp32",
            "search_verdict": m.get("quantization", {}).get("search", {}).get("verdict"),
        })
    int8 = next(v for v in variants if v["variant"] == "int8")
    return {
        "what": "SQuAD v1.1 (dev split by article): fine-tuned MiniLM → FP32 ONNX / INT8 / distilled INT8 student; "
                "test EM/F1 through the device runtime (batch 1); latency batch 1, 1 thread, question + context "
                f"≤ {args.max_length} tokens, all bundles interleaved in one run",
        "data": {k: str(v) for k, v in files.items()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "variants": variants,
        "targets": {"int8_f1_within_1pt": int8["f1_drop_pt"] <= 1.0, "int8_p50_at_most_half_fp32": int8["p50_vs_fp32"] <= 0.5},
        "pytorch": {name: {"test": t["test"], "validation": t["validation"], "train": t["train"]}
                    for name, t in trained.items()},
        "distill_comparison": trained["student"].get("comparison"),
        "seconds": seconds,
        "machine": machine(),
    }


def score(bundles: dict[str, Path], test: Path) -> dict:
    """EM/F1 of every bundle on the test split through the device runtime at batch 1, and the share
    of answers equal to the first (FP32) bundle's."""
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    out, reference = {}, None
    for name, bundle in bundles.items():
        print(f"[evaluate] {name} on {test.name}", file=sys.stderr, flush=True)
        result = evaluate(Predictor.load(bundle, threads=1, batch_size=1), test, keep_predictions=True)
        reference = reference or result["predictions"]
        same = sum(a == b for a, b in zip(result["predictions"], reference, strict=True))
        out[name] = {"exact_match": result["exact_match"], "f1": result["f1"], "agreement": same / max(1, len(reference))}
    return out


def time_bundles(bundles: dict[str, Path], test: Path, args) -> dict:
    """p50/p90/p99 (ms) and peak RSS of every bundle, one interleaved run (edgeft bench's machinery)."""
    from edgeft.runtime.bench import model_specs, run_bench

    specs = model_specs(list(bundles.values()), None)
    report = run_bench(specs, threads=[1], batches=[1], seq_lens=["real"], runs=args.bench_runs,
                       warmup=min(30, args.bench_runs), data=test, max_length=args.max_length,
                       progress=lambda m: print(f"[benchmark] {m}", file=sys.stderr, flush=True))
    out = {}
    for name, spec, model in zip(bundles, specs, report["models"]):
        row = next(r for r in report["rows"] if r["model"] == spec.name)
        out[name] = {k: round(row[k], 3) for k in ("p50_ms", "p90_ms", "p99_ms")}
        out[name]["peak_rss_mb"] = round(model["cold"]["1"].get("peak_rss_mb", 0.0), 1)
    return out


def machine() -> dict:
    from edgeft.runtime.bench import machine_info
    from edgeft.versions import versions

    info = {**machine_info(), "load_average": os.getloadavg()[0], "versions": versions()}
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    info["platform"] = platform.platform()
    return info


def table(result: dict) -> str:
    lines = [f"{'variant':<14}{'size MB':>9}{'EM':>8}{'F1':>8}{'ΔF1 pt':>8}{'agree':>8}{'p50 ms':>9}{'× FP32':>8}"]
    for v in result["variants"]:
        lines.append(f"{v['variant']:<14}{v['size_mb']:>9.1f}{100 * v['exact_match']:>8.2f}{100 * v['f1']:>8.2f}"
                     f"{0.0 - v['f1_drop_pt']:>+8.2f}{100 * v['agreement_with_fp32']:>7.1f}%{v['p50_ms']:>9.2f}"
                     f"{v['p50_vs_fp32']:>8.2f}")
    t = result["targets"]
    lines.append(f"targets: INT8 within 1 pt F1 of FP32: {'met' if t['int8_f1_within_1pt'] else 'NOT met'}; "
                 f"INT8 p50 ≤ 0.5× FP32: {'met' if t['int8_p50_at_most_half_fp32'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    prepare_device(args.device)
    args.work.mkdir(parents=True, exist_ok=True)
    result = run(args)
    write_json(args.results, result)
    print(table(result))
    print(f"results → {args.results}")


if __name__ == "__main__":
    main()
