"""CLI commands of the compression stage: export, quantize, targets (see edgeft.compress).

A thin layer: parse flags into ``ExportConfig`` / ``QuantizeConfig``, call the stage function,
print progress on stderr and a short summary on stdout. Errors are ``EdgeftError`` subclasses
raised by the library; the group in ``edgeft.cli`` prints them as one line with exit code 2.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import QUIET, app
from edgeft.cli.options import config_options, examples
from edgeft.compress.export import ExportConfig
from edgeft.compress.quantize import QuantizeConfig
from edgeft.stage import Splits
from edgeft.errors import require

DATA_HELP = ".csv/.tsv/.jsonl (text + label), .jsonl/.conll (tokens + BIO tags) or SQuAD .jsonl/.json (QA)."


def _progress(quiet: bool):
    """A progress callback printing ``[  3.2s] message`` on stderr (nothing with --quiet)."""
    start = time.perf_counter()

    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {message}", err=True)

    return say


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


@app.command(
    "export",
    epilog=examples(
        "edgeft export runs/sst2 --out runs/sst2-fp32",
        "edgeft export runs/ner --out runs/ner-fp32.zip --zip --data ner_dev.jsonl --max-length 64",
        "edgeft export runs/sst2 --out runs/sst2-fp32 --android android_demo/app/src/main/assets/bundle",
    ),
)
@config_options(cfg=ExportConfig, splits=Splits)
def export_command(
    model_dir: Path = typer.Argument(..., help="Fine-tuned HF model folder (what `edgeft train` wrote)."),
    out: Path = typer.Option(..., "--out", help="Bundle to write (folder, or .zip with --zip)."),
    data: Optional[Path] = typer.Option(None, "--data",
                                        help=f"Real inputs for the parity check and FP32 accuracy: {DATA_HELP}"),
    quiet: bool = QUIET,
    android: Optional[Path] = typer.Option(None, "--android", help="Also write the Android demo's assets here: "
                                           "a string-in model with the tokenizer in the graph, model.ort, labels."),
    cfg: ExportConfig = None,
    splits: Splits = None,
):
    """Export a fine-tuned model to ONNX (dynamic batch and length) and check parity with PyTorch."""
    require("torch", "export")
    require("onnx", "export")
    if android:
        require("onnxruntime_extensions", "export --android")
    from edgeft.compress.export import export

    result = export(model_dir, out, replace(splits, validation=data), cfg, progress=_progress(quiet))
    m, p = result.manifest, result.parity
    heads = (f"windows with stride {m.qa['doc_stride']}, answers up to {m.qa['max_answer_tokens']} tokens" if m.qa
             else f"{len(m.labels)} labels")
    typer.echo(f"  model       {m.architecture} {m.task}, {heads}, inputs {', '.join(m.inputs)}, "
               f"max_length {m.max_length}, opset {m.opset}")
    typer.echo(f"  parity      {len(p.shapes)} shapes (batch x seq: {', '.join(f'{b}x{s}' for b, s in p.shapes)})")
    for line in p.lines():
        typer.echo(f"              {line}")
    if m.metrics:
        v = m.metrics["fp32"]
        em = f" (exact match {v['exact_match']:.4f})" if "exact_match" in v else ""
        typer.echo(f"  fp32        {v['metric']} {v['value']:.4f}{em} on {v['n']} rows of {data}")
    typer.echo(f"  files       model.onnx {m.files['model.onnx']['size'] / 1e6:.2f} MB, tokenizer.json, edgeft.json")
    diff = max(p.max_abs_diff.values())
    typer.echo(f"exported {result.bundle}: max |Δlogit| {diff:.1e} (atol {p.atol:.0e}), "
               f"argmax agreement {p.argmax_agreement:.2%}")
    if android:
        from edgeft.compress.android_assets import write_android_assets

        a = write_android_assets(result.bundle, android, progress=_progress(quiet))
        check = json.loads((a / "edgeft.json").read_text(encoding="utf-8"))["android"]["parity"]
        typer.echo(f"android assets {a}: text_model.onnx (tokenizer in the graph), model.ort, labels.txt; token ids "
                   f"equal the runtime's on {check['ids_equal']:.0%} of {check['rows']} check texts")


@app.command(
    "quantize",
    epilog=examples(
        "edgeft quantize runs/sst2 --target rpi5 --data dev.jsonl --out runs/sst2-rpi5",
        "edgeft quantize runs/sst2-fp32 --target x86_64 --data dev.jsonl --mode dynamic --out runs/sst2-x86",
        "edgeft quantize runs/ner --target android-arm64 --data ner_dev.jsonl --max-accuracy-drop 0.01 --out "
        "runs/ner-android.zip --zip",
    ),
)
@config_options(cfg=QuantizeConfig, splits=Splits)
def quantize_command(
    source: Path = typer.Argument(..., help="Fine-tuned HF model folder, or an FP32 bundle from `edgeft export`."),
    out: Path = typer.Option(..., "--out", help="Bundle to write (folder, or .zip with --zip)."),
    data: Path = typer.Option(..., "--data", help=f"Validation file every candidate is scored on: {DATA_HELP}"),
    calibration_data: Optional[Path] = typer.Option(None, help="Rows for static calibration (default: --data)."),
    quiet: bool = QUIET,
    cfg: QuantizeConfig = None,
    splits: Splits = None,
):
    """Quantize to INT8 for a target: keep the fastest candidate within the accuracy budget."""
    require("onnx", "quantize")
    from edgeft.compress.quantize import format_table, quantize

    if (source / "config.json").is_file():
        require("torch", "quantize")  # a model folder is exported first
    r = quantize(source, out, replace(splits, train=calibration_data, validation=data), cfg, progress=_progress(quiet))
    c, name = r.chosen, r.fp32.metrics["metric"]
    typer.echo(format_table(r))
    typer.echo("")
    typer.echo(f"  target      {r.manifest.target['name']}: {r.manifest.target['summary']}")
    typer.echo(f"  measured    {r.manifest.metrics['rows']} rows of {data}; latency at batch 1, 1 thread, real "
               f"sentences, interleaved")
    for note in r.notes:
        typer.echo(f"  note        {note}")
    speedup = r.fp32.latency_ms["p50"] / c.latency_ms["p50"]
    typer.echo(f"  chosen      {c.name}: {name} {c.metrics['value']:.2%} (FP32 {r.fp32.metrics['value']:.2%}), "
               f"agreement {c.agreement:.1%}, p50 {c.latency_ms['p50']:.3f} ms (x{speedup:.2f} vs FP32), "
               f"{c.size_bytes / 1e6:.2f} MB")
    typer.echo(f"  wrote       {r.bundle} (candidates table: candidates.json in the bundle)")
    typer.echo(f"verdict: {r.verdict} (max drop {cfg.max_accuracy_drop * 100:.1f} pt)")


@app.command("targets")
def targets_command(
    as_json: bool = typer.Option(False, "--json", help="Print the presets as JSON (resolved for this CPU)."),
):
    """List the target presets, one line each."""
    from edgeft.targets import TARGETS, resolve_target

    if as_json:
        typer.echo(json.dumps({name: resolve_target(name).to_dict() for name in TARGETS}, indent=2))
        return
    for name, target in TARGETS.items():
        typer.echo(target.line())
    resolved = resolve_target("x86_64")
    typer.echo(f"\nx86_64 on this machine: {resolved.summary.split('. ')[0]}.")
