"""edgeft against the Optimum path on your fine-tuned model: same data, same tokenizer, one timing run.

    python benchmarks/vs_optimum.py runs/sst2 edgeft/samples/sst2_test.jsonl
    python benchmarks/vs_optimum.py runs/sst2 dev.jsonl --venv ~/.cache/edgeft/venv-optimum --rounds 10

Optimum cannot share our environment: optimum-onnx 0.1.0 (the only Optimum ONNX exporter) pins
transformers < 4.58, while edgeft uses transformers 5 (shared/notes/anchor-baseline.md §1). So this
script makes its own venv (``python -m venv``, then ``pip install torch==2.13.0 "transformers<4.58"
optimum-onnx onnxruntime``; reused when it exists) and runs there, in a child process:
* ``optimum.exporters.onnx.main_export`` (TorchScript exporter) → ``optimum_fp32``;
* ``ORTQuantizer`` + ``AutoQuantizationConfig.arm64(is_static=False, per_channel=True/False)`` →
  ``optimum_arm64_pc`` / ``optimum_arm64_pt`` — the documented default path (byte-identical to the
  ``avx512_vnni`` preset, anchor §2).
Back in this environment, ``edgeft export`` and ``edgeft quantize --target TARGET`` (auto search)
build ``edgeft_fp32`` and ``edgeft_auto``; then every model is scored and timed with the same code
as benchmarks/compress.py (batch 1, 1 and 2 threads, real length and len128, interleaved).

A folder saved by transformers 5 names its tokenizer class ``TokenizersBackend``, which
transformers 4.57 does not know; the child works on a copy whose tokenizer_config says
``PreTrainedTokenizerFast`` (the same tokenizer.json).

Writes benchmarks/results/vs_optimum-<model>.json and .md (or --out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ["torch==2.13.0", "transformers<4.58", "optimum-onnx", "onnxruntime"]

CHILD = r'''
import json, shutil, sys, time
from pathlib import Path

model_dir, out, task = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
src = out / "model"
shutil.copytree(model_dir, src)
cfg = src / "tokenizer_config.json"
if cfg.exists():
    c = json.loads(cfg.read_text())
    if c.get("tokenizer_class") in (None, "TokenizersBackend"):
        c["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.write_text(json.dumps(c))

import optimum, transformers
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig

report = {"versions": {"optimum": getattr(optimum, "__version__", "?"), "transformers": transformers.__version__}}
t0 = time.perf_counter()
main_export(str(src), output=str(out / "optimum_fp32"), task=task)
report["export_seconds"] = time.perf_counter() - t0
for name, per_channel in (("optimum_arm64_pc", True), ("optimum_arm64_pt", False)):
    t0 = time.perf_counter()
    q = ORTQuantizer.from_pretrained(out / "optimum_fp32")
    q.quantize(save_dir=out / name, quantization_config=AutoQuantizationConfig.arm64(is_static=False,
                                                                                      per_channel=per_channel))
    report[name + "_seconds"] = time.perf_counter() - t0
print(json.dumps(report))
'''


def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing Optimum's pinned stack the first time."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (a few minutes: {' '.join(PACKAGES)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def load_bench_compress():
    """benchmarks/compress.py as a module (its name clashes with the top-level compress/ package)."""
    spec = importlib.util.spec_from_file_location("bench_compress", HERE / "compress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="fine-tuned HF folder (what `edgeft train` wrote)")
    ap.add_argument("data", type=Path, help="labeled validation/test file")
    ap.add_argument("--target", default="arm64", help="edgeft preset to compare with Optimum's arm64 config")
    ap.add_argument("--venv", type=Path, help="where Optimum's venv lives (default: $EDGEFT_HOME/venv-optimum)",
                    default=Path(os.environ.get("EDGEFT_HOME") or Path.home() / ".cache" / "edgeft") / "venv-optimum")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--max-rows", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from edgeft.compress.export import export
    from edgeft.compress.quantize import QuantizeConfig, sample_rows, quantize
    from edgeft.data import read_dataset
    from edgeft.runtime.bench import machine_info

    bench = load_bench_compress()
    python = ensure_venv(args.venv.resolve())
    out = args.out or HERE / "results" / f"vs_optimum-{args.model_dir.name}.json"
    with tempfile.TemporaryDirectory(prefix="edgeft-vs-optimum-") as tmp:
        work = Path(tmp)
        fp32 = export(args.model_dir, work / "edgeft_fp32", progress=lambda m: print(m, file=sys.stderr))
        m = fp32.manifest
        print("running Optimum in its venv", file=sys.stderr)
        child = subprocess.run([str(python), "-c", CHILD, str(args.model_dir.resolve()), str(work), m.task],
                               check=True, capture_output=True, text=True)
        optimum = json.loads(child.stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        auto = quantize(fp32.bundle, work / "edgeft_auto",
                        QuantizeConfig(data=str(args.data), target=args.target, max_eval_rows=args.max_rows),
                        progress=lambda msg: print(msg, file=sys.stderr))
        search_seconds = time.perf_counter() - t0
        ds = read_dataset(args.data, task=m.task)
        examples = sample_rows(ds.examples, args.max_rows, 0)
        texts = [ex.text if m.task == "text-classification" else " ".join(ex.tokens) for ex in examples][:200]
        variants = {
            "edgeft_fp32": fp32.bundle / "model.onnx",
            "optimum_fp32": work / "optimum_fp32" / "model.onnx",
            "optimum_arm64_pc": work / "optimum_arm64_pc" / "model_quantized.onnx",
            "optimum_arm64_pt": work / "optimum_arm64_pt" / "model_quantized.onnx",
            f"edgeft_auto ({auto.chosen.name})": auto.bundle / "model.onnx",
        }
        rows = bench.measure(variants, m, fp32.bundle / "tokenizer.json", examples, texts, args.rounds, args.calls)
    report = {"model": str(args.model_dir), "data": str(args.data), "rows": len(examples), "machine": machine_info(),
              "optimum": optimum, "edgeft": {"target": args.target, "chosen": auto.chosen.name, "verdict": auto.verdict,
                                             "search_seconds": search_seconds},
              "setup": {"rounds": args.rounds, "calls": args.calls, "batch": 1, "latency": "model time only, ms"},
              "variants": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = bench.table(rows)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    print(f"\nedgeft auto chose {auto.chosen.name} ({auto.verdict}) in {search_seconds:.0f} s; Optimum export "
          f"{optimum['export_seconds']:.0f} s; wrote {out}")
    return report


if __name__ == "__main__":
    main()
