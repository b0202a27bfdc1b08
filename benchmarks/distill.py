"""Distillation benchmark: a fine-tuned teacher → 3- and 2-layer students → trimmed vocabulary →
FP32 ONNX → INT8 ONNX, every variant scored on the same test split.

    python benchmarks/distill.py runs/sst2 --data train.jsonl --validation dev.jsonl --test test.jsonl
    python benchmarks/distill.py runs/sst2 --data train.jsonl --test test.jsonl --layers 3,2 --epochs 3 \\
        --unlabeled unlabeled.txt --augment 1
    python benchmarks/distill.py runs/tiny --data cue.jsonl --layers 1 --epochs 2 --quick   # a smoke run

For each student size it runs the library calls the CLI makes: ``distill`` (the student's test
score next to the teacher's), ``trim_vocab`` on the transfer set (the student's
``data/transfer.jsonl``; accuracy before/after on the test split), and, when the export and quantize
stages are installed (edgeft.compress.export / .quantize), ``export`` + ``quantize`` of the trimmed
student, whose bundles are scored with the device runtime (``edgeft.runtime``). Missing stages are
skipped with a message. Writes benchmarks/results/distill.json (or --results) and prints a table:
accuracy, drop vs the teacher (FP32, PyTorch), size of the weights file, parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from edgeft.compress.distill import DistillConfig, distill
from edgeft.compress.trim_vocab import TrimConfig, trim_vocab
from edgeft.stage import Splits
from edgeft.train.config import TrainConfig
from edgeft.versions import versions

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vs_optimum  # noqa: E402  (the Optimum/INC venv helpers, shared with benchmarks/vs_optimum.py)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions(),
            "load_average": os.getloadavg()[0]}


def compress_stages():
    """(export, ExportConfig, quantize, QuantizeConfig) or None when those stages are not installed."""
    try:
        from edgeft.compress.export import ExportConfig, export
        from edgeft.compress.quantize import QuantizeConfig, quantize
    except ImportError as e:
        print(f"export/quantize skipped: {e} (edgeft.compress.export / .quantize are not in this tree)", file=sys.stderr)
        return None
    return export, ExportConfig, quantize, QuantizeConfig


def score_bundle(bundle: Path, test: str) -> tuple[float, int]:
    """(headline metric on the test file through the device runtime, bytes of model.onnx)."""
    from edgeft.metrics import headline
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    return headline(evaluate(Predictor.load(bundle), test))[1], (bundle / "model.onnx").stat().st_size


def run(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = None if args.no_export else compress_stages()
    train = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                        max_train_samples=args.max_train_samples, seed=args.seed, force=True,
                        precision=args.precision, patience=args.patience)
    rows, runs, teacher = [], [], None
    for k in args.layers:
        name = f"kd{k}"
        print(f"[{name}] distilling {args.teacher} into {k} layers", file=sys.stderr)
        cfg = DistillConfig(train=train, layers=k, temperature=args.temperature, alpha=args.alpha,
                            hidden_loss=args.hidden_loss, unlabeled=args.unlabeled, augment=args.augment)
        t0 = time.perf_counter()
        m = distill(args.teacher, work / name, Splits(args.data, args.validation, args.test), cfg).metrics
        c = m["comparison"]
        if teacher is None:  # the reference row: the teacher, FP32 PyTorch, on the same split
            teacher = c["teacher"]
            rows.append({"variant": "teacher (FP32, PyTorch)", "layers": c["layers"]["teacher"],
                         "metric": c["teacher"], "size_bytes": c["size_bytes"]["teacher"],
                         "parameters": c["parameters"]["teacher"], "flops_per_token": c["flops_per_token"]["teacher"]})
        base = {"layers": k, "parameters": c["parameters"]["student"], "flops_per_token": c["flops_per_token"]["student"]}
        rows.append({"variant": f"{name} student (FP32, PyTorch)", **base, "metric": c["student"],
                     "size_bytes": c["size_bytes"]["student"], "agreement": c["agreement"]})

        print(f"[{name}] trimming the vocabulary to the transfer set", file=sys.stderr)
        trim = trim_vocab(work / name, work / f"{name}-trim",
                          Splits(work / name / "data" / "transfer.jsonl", args.test or work / name / "data" / "test.jsonl"),
                          TrimConfig(max_length=args.max_length, force=True)).metrics
        rows.append({"variant": f"{name} trimmed (FP32, PyTorch)", **base, "parameters": trim["parameters"]["after"],
                     "metric": trim["validation"]["after"], "size_bytes": trim["size_bytes"]["after"],
                     "vocab": trim["vocab"]["after"]})
        record = {"name": name, "distill": {k2: m[k2] for k2 in ("comparison", "train", "config")},
                  "trim": {k2: trim[k2] for k2 in ("vocab", "parameters", "size_bytes", "corpus_check", "validation")}}

        if stages:
            export, ExportConfig, quantize, QuantizeConfig = stages
            test_file = str(args.test or work / name / "data" / "test.jsonl")
            val_file = str(args.validation or work / name / "data" / "validation.jsonl")
            print(f"[{name}] exporting and quantizing the trimmed student", file=sys.stderr)
            fp32 = export(work / f"{name}-trim", work / f"{name}-fp32", Splits(validation=test_file))
            metric, size = score_bundle(fp32.bundle, test_file)
            rows.append({"variant": f"{name} trimmed (FP32, ONNX)", **base, "parameters": trim["parameters"]["after"],
                         "metric": metric, "size_bytes": size})
            qcfg = QuantizeConfig(mode=args.quantize_mode, max_accuracy_drop=args.max_accuracy_drop,
                                  **({"timing_rounds": 1, "timing_calls": 2} if args.quick else {}))
            q = quantize(work / f"{name}-trim", work / f"{name}-int8", Splits(validation=val_file), qcfg)  # the folder: fused candidates too
            metric, size = score_bundle(q.bundle, test_file)
            rows.append({"variant": f"{name} trimmed (INT8 {q.chosen.name}, ONNX)", **base,
                         "parameters": trim["parameters"]["after"], "metric": metric, "size_bytes": size})
            record["quantize"] = {"chosen": q.chosen.name, "verdict": q.verdict, "latency_ms": q.chosen.latency_ms}
        record["seconds"] = round(time.perf_counter() - t0, 1)
        runs.append(record)
    for row in rows:
        row["drop_vs_teacher"] = teacher - row["metric"]  # fraction; > 0 = worse than the teacher
    timing = time_variants(args, work, runs) if stages and not args.no_timing else None
    return {"timing": timing, "teacher": str(args.teacher), "data": {"train": args.data, "validation": args.validation,
                                                   "test": args.test, "unlabeled": args.unlabeled},
            "metric": m["metric"], "rows": rows, "runs": runs, "machine": machine(), "args": vars(args)}


def time_variants(args, work: Path, runs: list[dict]) -> dict:
    """One interleaved timing run (batch 1, 1 thread, real length and padded to 128) of the teacher's FP32
    and INT8 bundles, the best anchor (INC dynamic per-channel on Optimum's export of the teacher, made in
    their own venvs by benchmarks/vs_optimum.py's code) and every trimmed INT8 student, each with its own
    tokenizer; accuracy of each on the test split through the same code."""
    from edgeft.compress.export import export
    from edgeft.compress.quantize import QuantizeConfig, quantize
    from edgeft.data import read_dataset
    from edgeft.runtime.bundle import load_bundle

    bench = vs_optimum.load_bench_compress()
    test_file = args.test or str(work / runs[0]["name"] / "data" / "test.jsonl")
    print("[timing] exporting and quantizing the teacher", file=sys.stderr)
    t_fp32 = export(args.teacher, work / "teacher-fp32", Splits(validation=test_file)).bundle
    val_file = args.validation or str(work / runs[0]["name"] / "data" / "validation.jsonl")
    t_int8 = quantize(args.teacher, work / "teacher-int8",  # the students' accuracy budget, for a like-for-like row
                      Splits(validation=val_file), QuantizeConfig(max_accuracy_drop=args.max_accuracy_drop)).bundle
    bundles = {"teacher FP32": t_fp32, "teacher INT8": t_int8}
    bundles.update({f"{r['name']} trimmed INT8": work / f"{r['name']}-int8" for r in runs})
    variants = {name: b / "model.onnx" for name, b in bundles.items()}
    manifests = {name: load_bundle(b).manifest for name, b in bundles.items()}
    tokenizers = {name: b / "tokenizer.json" for name, b in bundles.items()}
    anchor = {"missing": "--no-anchor"}
    if not args.no_anchor:
        anchor = best_anchor(Path(args.teacher), work / "anchor", manifests["teacher FP32"].task,
                             (args.optimum_venv, args.inc_venv))
        if "missing" not in anchor:
            name = "anchor: INC dynamic per-channel"
            variants[name], manifests[name] = Path(anchor["model"]), manifests["teacher FP32"]
            tokenizers[name] = tokenizers["teacher FP32"]
    examples = read_dataset(test_file, task=manifests["teacher FP32"].task).examples
    texts = [ex.text for ex in examples][:200]
    disabled = {name: (m.quantization or {}).get("disabled_optimizers", []) for name, m in manifests.items()}
    rows = bench.measure(variants, manifests, tokenizers, examples, texts, args.rounds, args.calls,
                         threads=(1,), reference="teacher FP32", disabled=disabled)
    for row in rows:
        row["size_mb"] = vs_optimum.onnx_bytes(variants[row["variant"]]) / 1e6  # INC keeps weights beside
    return {"anchor": anchor, "rows": rows, "markdown": bench.table(rows, threads=(1,))}


def best_anchor(teacher: Path, work: Path, task: str, venvs: tuple[Path, Path]) -> dict:
    """INC dynamic per-channel (the anchor baseline's best) of the teacher: Optimum's TorchScript export,
    then INC, in the venvs benchmarks/vs_optimum.py makes; on failure, why."""
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    try:
        python = vs_optimum.ensure_venv(venvs[0])
        subprocess.run([str(python), "-c", vs_optimum.CHILD, str(teacher.resolve()), str(work), task], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return {"missing": f"Optimum export failed: {e}"}
    model = work / "inc" / "model.onnx"
    inc = vs_optimum.run_inc(venvs[1], work / "optimum_fp32" / "model.onnx", model)
    return inc if "missing" in inc else {**inc, "model": str(model)}


def table(result: dict) -> str:
    """The rows as a fixed-width table."""
    lines = [f"{'variant':<40} {result['metric']:>9} {'drop pt':>8} {'size MB':>8} {'params':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['variant']:<40} {r['metric']:>9.4f} {100 * r['drop_vs_teacher']:>+8.2f} "
                     f"{r['size_bytes'] / 1e6:>8.2f} {r['parameters'] / 1e6:>9.2f}M")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="fine-tuned teacher folder (edgeft train's output)")
    p.add_argument("--data", required=True, help="training file")
    p.add_argument("--validation", help="validation file (default: carved out of --data)")
    p.add_argument("--test", help="test file (default: carved out of --data)")
    p.add_argument("--layers", default="3,2", type=lambda s: [int(x) for x in s.split(",")], help="student sizes")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--precision", default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--hidden-loss", action="store_true")
    p.add_argument("--unlabeled")
    p.add_argument("--augment", type=int, default=0)
    p.add_argument("--quantize-mode", default="auto", help="auto | dynamic | static")
    p.add_argument("--max-accuracy-drop", type=float, default=0.01)
    p.add_argument("--no-export", action="store_true", help="stop after trimming")
    p.add_argument("--quick", action="store_true", help="1 timing round of 2 calls per quantization candidate")
    p.add_argument("--work", default=str(HERE / "work" / "distill"), help="folder for every run's outputs")
    p.add_argument("--results", default=str(HERE / "results" / "distill.json"))
    p.add_argument("--no-timing", action="store_true", help="skip the one-run timing of teacher, anchor and students")
    p.add_argument("--no-anchor", action="store_true", help="time without the INC anchor (no venvs are made)")
    p.add_argument("--optimum-venv", type=Path, default=vs_optimum.HOME / "venv-optimum")
    p.add_argument("--inc-venv", type=Path, default=vs_optimum.HOME / "venv-inc")
    p.add_argument("--rounds", type=int, default=10, help="timing: interleaved rounds …")
    p.add_argument("--calls", type=int, default=25, help="… of this many batch-1 calls per model and shape")
    args = p.parse_args(argv)
    result = run(args)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    print(table(result))
    if result["timing"]:
        print(result["timing"]["markdown"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
