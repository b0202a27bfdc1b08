"""edgeft against the Optimum path on your fine-tuned model: same data, same tokenizer, one timing run.

    python benchmarks/vs_optimum.py runs/sst2 edgeft/samples/sst2_test.jsonl
    python benchmarks/vs_optimum.py runs/sst2 dev.jsonl --venv ~/.cache/edgeft/venv-optimum --rounds 10

Optimum cannot share our environment: optimum-onnx 0.1.0 (the only Optimum ONNX exporter) pins
transformers < 4.58, while edgeft uses transformers 5 (README "Against Optimum and Intel Neural Compressor"). So this
script makes its own venv (``python -m venv``, then ``pip install torch==2.13.0 "transformers<4.58"
optimum-onnx onnxruntime``; reused when it exists) and runs there, in a child process:
* ``optimum.exporters.onnx.main_export`` (TorchScript exporter) → ``optimum_fp32``;
* ``ORTQuantizer`` + ``AutoQuantizationConfig.arm64(is_static=False, per_channel=True/False)`` →
  ``optimum_arm64_pc`` / ``optimum_arm64_pt`` — the documented default path (byte-identical to the
  ``avx512_vnni`` preset in our pre-project baseline).
Intel Neural Compressor, the best anchor of the baseline (its graph was the leanest and the
fastest, and INC's own autotune picks it), is one more column: INC 3.x moved ONNX to
onnx-neural-compressor 1.0, which forces numpy < 2 and needs prettytable and scipy it does not declare,
so it gets a second venv (``--inc-venv``; ``pip install "onnx-neural-compressor==1.0"
"numpy<2" prettytable scipy onnx onnxruntime``) and a second child, which runs
``quantize(optimum_fp32, DynamicQuantConfig(per_channel=True))`` (MatMul-only, INC's default) on the
FP32 model Optimum exported, as the baseline did → ``inc_dynamic_pc``. INC writes the weights as
external data (``model.onnx_data`` next to ``model.onnx``); the size column counts it. When that venv
cannot be made or INC fails, the other columns still run and the report says why INC is missing
(``--no-inc`` leaves it out).
Back in this environment, ``edgeft export`` builds ``edgeft_fp32`` and ``edgeft quantize MODEL_DIR
--target TARGET`` (the auto search, from the model folder as inside ``edgeft build``, so the
candidates that re-export from PyTorch are in it) builds ``edgeft_auto``; then every model is scored and timed with the same code
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
INC_PACKAGES = ["onnx-neural-compressor==1.0", "numpy<2", "prettytable", "scipy", "onnx", "onnxruntime"]
HOME = Path(os.environ.get("EDGEFT_HOME") or Path.home() / ".cache" / "edgeft")

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

INC_CHILD = r'''
import json, sys, time
from importlib.metadata import version
from pathlib import Path

src, dst = sys.argv[1], Path(sys.argv[2])
dst.parent.mkdir(parents=True, exist_ok=True)
from onnx_neural_compressor.quantization import quantize  # the function, not the module of the same name
from onnx_neural_compressor.quantization.config import DynamicQuantConfig

t0 = time.perf_counter()
quantize(src, str(dst), DynamicQuantConfig(per_channel=True))
print(json.dumps({"versions": {p: version(p) for p in ("onnx-neural-compressor", "onnxruntime", "numpy")},
                  "inc_dynamic_pc_seconds": time.perf_counter() - t0}))
'''


def ensure_venv(venv: Path, packages: list[str] = PACKAGES) -> Path:
    """The venv's python, creating the venv and installing the pinned stack the first time."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (a few minutes: {' '.join(packages)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def run_inc(venv: Path, fp32: Path, dst: Path) -> dict:
    """INC dynamic per-channel of ``fp32`` into ``dst`` in its own venv; on any failure, why instead.

    INC is one column among others, so a venv that cannot be built (no network, no wheel for this
    Python) or an INC error must not cost the Optimum and edgeft numbers: the reason goes in the report.
    """
    try:
        python = ensure_venv(venv, INC_PACKAGES)
    except (OSError, subprocess.CalledProcessError) as e:
        return {"missing": f"could not create INC venv {venv}: {e}"}
    print("running INC in its venv", file=sys.stderr)
    # cwd: INC releases have written workspaces into the current directory
    child = subprocess.run([str(python), "-c", INC_CHILD, str(fp32), str(dst)], capture_output=True, text=True,
                           cwd=dst.parent.parent)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not dst.exists() or not lines:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        return {"missing": f"INC quantize failed in {venv} (exit {child.returncode}): {tail}"}
    return json.loads(lines[-1])


def onnx_bytes(path: Path) -> int:
    """Size of an ONNX model with the external data files it references (INC writes ``model.onnx_data``)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files)


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
                    default=HOME / "venv-optimum")
    ap.add_argument("--inc-venv", type=Path, help="where INC's venv lives (default: $EDGEFT_HOME/venv-inc)",
                    default=HOME / "venv-inc")
    ap.add_argument("--no-inc", action="store_true", help="leave out the Intel Neural Compressor column")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--max-rows", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from edgeft.compress.export import export
    from edgeft.compress.quantize import QuantizeConfig, sample_rows, quantize
    from edgeft.stage import Splits
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
        inc_model = work / "inc_dynamic_pc" / "model.onnx"
        inc = ({"missing": "--no-inc"} if args.no_inc
               else run_inc(args.inc_venv.resolve(), work / "optimum_fp32" / "model.onnx", inc_model))
        if "missing" in inc:
            print(f"no INC column: {inc['missing']}", file=sys.stderr)
        t0 = time.perf_counter()
        auto = quantize(args.model_dir, work / "edgeft_auto", Splits(validation=args.data),  # the folder, as build does
                        QuantizeConfig(target=args.target, max_eval_rows=args.max_rows),
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
            **({} if "missing" in inc else {"inc_dynamic_pc": inc_model}),
            f"edgeft_auto ({auto.chosen.name})": auto.bundle / "model.onnx",
        }
        served_without = {f"edgeft_auto ({auto.chosen.name})": auto.manifest.quantization.get("disabled_optimizers", [])}
        rows = bench.measure(variants, m, fp32.bundle / "tokenizer.json", examples, texts, args.rounds, args.calls,
                             disabled=served_without)
        for row in rows:  # measure counts the .onnx file only; INC's weights are in model.onnx_data
            row["size_mb"] = onnx_bytes(variants[row["variant"]]) / 1e6
    report = {"model": str(args.model_dir), "data": str(args.data), "rows": len(examples), "machine": machine_info(),
              "optimum": optimum, "inc": inc,
              "edgeft": {"target": args.target, "chosen": auto.chosen.name, "verdict": auto.verdict,
                         "search_seconds": search_seconds},
              "setup": {"rounds": args.rounds, "calls": args.calls, "batch": 1, "latency": "model time only, ms"},
              "variants": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = bench.table(rows)
    inc_line = (f"no INC column: {inc['missing']}" if "missing" in inc
                else f"INC dynamic per-channel {inc['inc_dynamic_pc_seconds']:.0f} s")
    out.with_suffix(".md").write_text(f"{md}\n\n{inc_line}\n")
    print(md)
    print(f"\nedgeft auto chose {auto.chosen.name} ({auto.verdict}) in {search_seconds:.0f} s; Optimum export "
          f"{optimum['export_seconds']:.0f} s; {inc_line}; wrote {out}")
    return report


if __name__ == "__main__":
    main()
