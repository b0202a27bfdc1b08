"""CLI commands of the runtime: predict, eval, inspect, bench (see edgeft.runtime).

Nothing heavy is imported at module level: ``edgeft --help`` must stay fast, and these commands
must run on a device where torch is not installed. numpy/onnxruntime/tokenizers are imported
inside the commands, through edgeft.runtime.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.errors import ConfigError, DataError
from edgeft.writable import atomic_write_text, write_json

BUNDLE_HELP = "Bundle folder (model.onnx, tokenizer.json, edgeft.json) or a .zip of it; verified before use."
THREADS_HELP = ("onnxruntime intra-op threads (default: the bundle target's, at most this machine's cores; "
                "else physical cores, at most 4).")
BATCH_HELP = ("Texts per model call for bundles that batch padded texts (FP32, static INT8); dynamic-INT8 "
              "bundles run one text per call (see `edgeft inspect`: batching).")


@app.command(
    "predict",
    epilog=(
        "Examples:\n\n"
        '  edgeft predict runs/bundle "a gripping, beautiful film" "dull"\n\n'
        "  edgeft predict runs/bundle --input reviews.jsonl --output predictions.jsonl\n\n"
        "  tail -n 0 -F inbox.txt | edgeft predict runs/bundle --input - --chunk 1   # lines as they arrive\n\n"
        '  edgeft predict runs/qa --question "Who won?" --context "The Broncos beat the Panthers 24-10."\n\n'
        "  edgeft predict runs/qa --input pairs.jsonl   # rows {\"question\", \"context\"}\n\n"
        "Output rows: {\"line\", \"label\", \"score\", \"scores\", \"truncated\"}; NER: {\"line\", \"entities\": "
        "[{\"label\", \"score\", \"start\", \"end\", \"text\"}], \"truncated\"} with character offsets; QA: "
        "{\"line\", \"answer\", \"score\", \"start\", \"end\", \"truncated\"} (start/end: characters of the context)."
    ),
)
def predict_command(
    bundle: Path = typer.Argument(..., help=BUNDLE_HELP),
    texts: Optional[list[str]] = typer.Argument(None, help="Texts to classify (or use --input)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i",
                                         help=".jsonl (rows with a 'text' field; QA: 'question' and 'context') "
                                              "or .txt (one text per line), streamed in chunks: any size, constant "
                                              "memory. '-': stdin, one text (QA: one JSON row) per line."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write one JSON object per line here (default with --input: stdout)."),
    batch_size: int = typer.Option(32, help=BATCH_HELP),
    chunk: int = typer.Option(512, help="Texts read from --input per step (memory stays constant); "
                                         "--chunk 1 answers each stdin line as soon as it arrives."),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    question: Optional[str] = typer.Option(None, "--question", help="QA bundles: the question (with --context)."),
    context: Optional[str] = typer.Option(None, "--context", help="QA bundles: the text to find the answer in."),
):
    """Label texts (classification), find their entities (NER) or answer questions (QA) with a bundle."""
    from edgeft.runtime.predictor import Predictor

    pair = question is not None or context is not None
    if bool(texts) + bool(input) + pair != 1:
        raise ConfigError("give texts as arguments, --question with --context, or one --input file (one of them)")
    if pair and (question is None or context is None):
        raise ConfigError("--question and --context go together")
    if chunk < 1:
        raise ConfigError(f"--chunk must be ≥ 1, not {chunk}")
    predictor = Predictor.load(bundle, threads=threads, batch_size=batch_size)
    if predictor.is_qa and texts:
        raise ConfigError(f"{bundle} answers questions: give --question and --context, or --input pairs.jsonl "
                          f"(rows with 'question' and 'context')")
    if pair and not predictor.is_qa:
        raise ConfigError(f"--question/--context are for question-answering bundles; {bundle} does "
                          f"{predictor.manifest.task}: give texts")
    t0 = time.perf_counter()
    if texts or pair:
        texts = [(question, context)] if pair else texts
        results = predictor.predict(texts)
        out = open(output, "w", encoding="utf-8") if output else None
        try:
            for n, (text, result) in enumerate(zip(texts, results), 1):
                typer.echo(_describe(text, result))
                if out:
                    out.write(json.dumps({"line": n, **result.to_dict()}, ensure_ascii=False) + "\n")
        finally:
            if out:
                out.close()
        count, truncated = len(results), sum(r.truncated for r in results)
    else:
        count, truncated = _predict_file(predictor, input, output, chunk)
    seconds = time.perf_counter() - t0
    where = f" → {output}" if output else ""
    cut = (f"{truncated} question(s) cut to {predictor.manifest.qa['max_question_tokens']} tokens" if predictor.is_qa
           else f"{truncated} truncated to {predictor.manifest.max_length} tokens")
    typer.echo(f"{'answered' if predictor.is_qa else 'predicted'} {count} {'question' if predictor.is_qa else 'text'}(s) "
               f"in {seconds:.2f} s ({count / max(seconds, 1e-9):.0f}/s); {cut}{where}", err=bool(input))


def _predict_file(predictor, path: Path, output: Optional[Path], chunk: int) -> tuple[int, int]:
    """Stream ``path`` (stdin for '-') through the predictor in chunks (edgeft.runtime.stream), with a
    progress bar on stderr for a file; returns (count, truncated)."""
    from edgeft.runtime.stream import check_input, predict_stream, read_rows

    stdin = str(path) == "-"
    if not stdin:
        check_input(path, predictor.is_qa)
    # typer.progressbar, not click's: typer ≥ 0.23 vendors click, so `import click` fails on a lean install
    with (open(output, "w", encoding="utf-8") if output else contextlib.nullcontext(sys.stdout)) as out, \
            (contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb")) as raw, \
            (contextlib.nullcontext(None) if stdin else
             typer.progressbar(length=path.stat().st_size, label="predicting", file=sys.stderr)) as bar:
        lines = raw if bar is None else _counted(raw, bar)  # a pipe yields each line as soon as it is complete
        rows = read_rows(lines, Path("<stdin>") if stdin else path, txt=stdin and not predictor.is_qa,
                         qa=predictor.is_qa)
        return predict_stream(predictor, rows, out, chunk)


def _counted(lines, bar):
    for line in lines:
        bar.update(len(line))
        yield line


def _describe(text, result) -> str:
    """One human-readable line per text (entities on indented lines below it); QA: the answer, its
    score and character span, then the question."""
    if isinstance(text, tuple):  # (question, context)
        question = text[0] if len(text[0]) <= 60 else text[0][:57] + "…"
        found = f"{result.answer}\t{result.score:.4f}\t{result.start}-{result.end}" if result.start is not None \
            else "(no answer)"
        return f"{found}\t{question}" + ("  (question cut)" if result.truncated else "")
    short = text if len(text) <= 60 else text[:57] + "…"
    cut = "  (truncated)" if result.truncated else ""
    if hasattr(result, "label"):
        return f"{result.label}\t{result.score:.4f}\t{short}{cut}"
    spans = [f"\n  {e.label}\t{e.score:.4f}\t{e.start}-{e.end}\t{e.text}" for e in result.entities]
    return f"{short}{cut}" + ("".join(spans) if spans else "\n  (no entities)")


@app.command(
    "eval",
    epilog="Example:\n\n  edgeft eval runs/bundle --data test.jsonl --json runs/bundle-eval.json",
)
def eval_command(
    bundle: Path = typer.Argument(..., help=BUNDLE_HELP),
    data: Path = typer.Option(..., "--data", help="Labeled test file: .csv/.tsv/.jsonl (text + label), "
                                                  ".jsonl/.conll (tokens + BIO tags) for NER bundles, or SQuAD "
                                                  ".jsonl/.json for QA bundles."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics here as JSON."),
    text_column: str = typer.Option("text", help="Column holding the text."),
    label_column: str = typer.Option("label", help="Column holding the label (string or integer)."),
    batch_size: int = typer.Option(32, help=BATCH_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count bad rows instead of stopping."),
):
    """Score a bundle on a labeled file with the same metrics as training (accuracy/macro-F1, entity F1, SQuAD EM/F1)."""
    from edgeft.metrics import headline
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    predictor = Predictor.load(bundle, threads=threads, batch_size=batch_size)
    metrics = evaluate(predictor, data, text_column=text_column, label_column=label_column, skip_bad_rows=skip_bad_rows)
    if json_out:
        write_json(json_out, metrics)
    name, value = headline(metrics)
    other = (f"exact match {metrics['exact_match']:.4f}" if "exact_match" in metrics
             else f"precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}" if name == "f1"
             else f"macro-F1 {metrics['macro_f1']:.4f}")
    where = f" → {json_out}" if json_out else ""
    typer.echo(f"{name} {value:.4f}  {other}  on {metrics['n']} examples ({metrics['truncated']} truncated, "
               f"{metrics['skipped']} skipped, {metrics['seconds']:.2f} s){where}")
    typer.echo(f"batching: {describe_batching(predictor)}")


def describe_batching(predictor) -> str:
    """How the bundle's texts share model calls, in words (the same answers as one text at a time)."""
    if predictor.settings.batching == "rows":
        return "rows (one text per model call: dynamic INT8 scales span the whole input)"
    return f"padded (up to {predictor.batch_size} length-sorted texts per model call)"


@app.command("inspect", epilog="Example:\n\n  edgeft inspect runs/bundle --json inspect.json")
def inspect_command(
    bundle: Path = typer.Argument(..., help=BUNDLE_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here as JSON."),
):
    """Show a bundle: manifest, file sizes, ONNX op histogram, opset, quantization, parity and accuracy."""
    from edgeft.runtime.inspect import inspect_bundle, render

    report = inspect_bundle(bundle)
    typer.echo(render(report))
    if json_out:
        write_json(json_out, report)
        typer.echo(f"report → {json_out}")


@app.command(
    "bench",
    epilog=(
        "Examples:\n\n"
        "  edgeft bench runs/fp32 runs/int8 --threads 1,4 --json bench.json   # ratios against runs/fp32\n\n"
        "  edgeft bench runs/int8 --pytorch runs/ft --seq-len real,128         # vs PyTorch eager (needs [train])\n\n"
        "  edgeft bench --compare x86.json arm64.json                           # two saved runs side by side\n\n"
        "  edgeft bench runs/int8 --threads 1,2,3,4 --batch 1 --seq-len real --json pi.json --markdown pi.md"
    ),
)
def bench_command(
    paths: Optional[list[Path]] = typer.Argument(None, help="Bundles to compare (the first is the reference); "
                                                            "with --compare: two bench JSON files."),
    pytorch: Optional[Path] = typer.Option(None, "--pytorch", help="Also time this HF model folder in PyTorch eager "
                                                                   "(needs the 'train' extra)."),
    threads: str = typer.Option("1,2", "--threads", help="Thread counts, comma-separated."),
    batch: str = typer.Option("1,8", "--batch", help="Batch sizes, comma-separated."),
    seq_len: str = typer.Option("real,16,64,128", "--seq-len",
                                help="'real' (sentences from --data, unpadded) and/or token counts (padded/truncated)."),
    runs: int = typer.Option(300, help="Timed runs per configuration and model (interleaved in rounds)."),
    warmup: int = typer.Option(30, help="Untimed runs per configuration before timing."),
    data: Optional[Path] = typer.Option(None, "--data", help="Sentences for 'real' (.jsonl/.txt/.csv); "
                                                             "default: the shipped SST-2 sample."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report (machine, versions, rows) here."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the tables (or, with --compare, "
                                                                     "the comparison) here as markdown, to share."),
    compare: bool = typer.Option(False, "--compare", help="Print two bench JSON files side by side; runs nothing."),
):
    """Latency p50/p90/p99, throughput, peak RSS, load time and cold start of bundles, side by side."""
    from edgeft.runtime import bench

    paths = paths or []
    if compare:
        if len(paths) != 2:
            raise ConfigError(f"--compare needs exactly two bench JSON files, got {len(paths)}")
        reports = [_read_json(p) for p in paths]
        typer.echo(bench.compare(*reports))
        if markdown:
            atomic_write_text(markdown, f"# edgeft bench: {paths[0].name} (a) vs {paths[1].name} (b)\n\n"
                                  + bench.compare(*reports, markdown=True) + "\n")
            typer.echo(f"comparison → {markdown}")
        return
    if not paths and pytorch is None:
        raise ConfigError("give at least one bundle (or --pytorch MODEL_DIR) to benchmark")
    t0 = time.perf_counter()
    specs = bench.model_specs(paths, pytorch)
    max_length = 128
    if paths:
        from edgeft.runtime.bundle import load_bundle

        max_length = load_bundle(paths[0]).manifest.max_length
    report = bench.run_bench(
        specs, bench.parse_list(threads, "--threads"), bench.parse_list(batch, "--batch"),
        bench.parse_list(seq_len, "--seq-len", allow_real=True), runs=runs, warmup=warmup, data=data,
        max_length=max_length, progress=lambda line: typer.echo(line, err=True))
    typer.echo(bench.render(report))
    if json_out:
        write_json(json_out, report)
    if markdown:
        atomic_write_text(markdown, bench.render(report, markdown=True) + "\n")
    written = [str(p) for p in (json_out, markdown) if p]
    where = f" → {', '.join(written)}" if written else ""
    typer.echo(f"benchmarked {len(specs)} model(s) × {len(report['rows']) // len(specs)} configuration(s) "
               f"in {time.perf_counter() - t0:.1f} s{where}")


def _read_json(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read a bench report ({e})") from None
    if not isinstance(report, dict) or not {"machine", "models", "rows"} <= report.keys():
        raise DataError(f"{path}: not a bench report (write one with `edgeft bench … --json {path.name}`)")
    return report
