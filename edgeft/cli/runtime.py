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
from edgeft.cli.options import examples
from edgeft.errors import ConfigError, DataError
from edgeft.writable import atomic_file, atomic_write_text, write_json

BUNDLE_HELP = "Bundle folder (model.onnx, tokenizer.json, edgeft.json) or a .zip of it; verified before use."
THREADS_HELP = ("onnxruntime intra-op threads (default: the bundle target's, at most this machine's cores; "
                "else physical cores, at most 4).")
BATCH_HELP = ("Texts per model call for bundles that batch padded texts (FP32, static INT8); dynamic-INT8 "
              "bundles run one text per call (see `edgeft inspect`: batching).")


@app.command(
    "predict",
    epilog=examples(
        "edgeft predict runs/bundle \"a gripping, beautiful film\" \"dull\"",
        "edgeft predict runs/bundle --input reviews.jsonl --output predictions.jsonl",
        "tail -n 0 -F inbox.txt | edgeft predict runs/bundle --input - --chunk 1   # lines as they arrive",
        "edgeft predict runs/qa --question \"Who won?\" --context \"The Broncos beat the Panthers 24-10.\"",
        "edgeft predict runs/qa --input pairs.jsonl   # rows {\"question\", \"context\"}",
        "edgeft predict runs/lm \"Tell me a joke\"   # text generation: prints the reply",
        "edgeft predict runs/lm --input prompts.jsonl --output replies.jsonl   # rows {\"prompt\"} or {\"messages\": "
        "[{\"role\", \"content\"}, ...]}; a prompt goes through the chat template as one user turn when the model has one. "
        "Replies: {\"line\", \"text\", \"finish_reason\", \"token_ids\", \"prompt_tokens\", \"ttft_s\", \"decode_tokens_per_s\"}, each "
        "generated on its own (the same reply alone or in any file).",
        after="Output rows: {\"line\", \"label\", \"score\", \"scores\", \"truncated\"}; NER: {\"line\", \"entities\": [{\"label\", \"score\", "
              "\"start\", \"end\", \"text\"}], \"truncated\"} with character offsets; QA: {\"line\", \"answer\", \"score\", \"start\", \"end\", "
              "\"truncated\"} (start/end: characters of the context).",
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
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Text-generation bundles: at most "
                                                 "this many new tokens per reply (default 128)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Text-generation bundles: 0 = greedy "
                                                "(default); > 0 samples, each row with its own --seed sampler."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Text-generation bundles: sampler seed of every row."),
):
    """Label texts (classification), find their entities (NER), answer questions (QA) or reply to prompts."""
    from edgeft.runtime.bundle import load_bundle
    from edgeft.runtime.predictor import Predictor

    pair = question is not None or context is not None
    if bool(texts) + bool(input) + pair != 1:
        raise ConfigError("give texts as arguments, --question with --context, or one --input file (one of them)")
    if pair and (question is None or context is None):
        raise ConfigError("--question and --context go together")
    if chunk < 1:
        raise ConfigError(f"--chunk must be ≥ 1, not {chunk}")
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    if load_bundle(bundle).manifest.task == "text-generation":
        if pair:
            raise ConfigError(f"--question/--context are for question-answering bundles; {bundle} generates text: "
                              f"give prompts as arguments or --input prompts.jsonl (rows {{\"prompt\"}})")
        return _generate(bundle, texts, input, output, threads, {k: v for k, v in sampling.items() if v is not None})
    given = [f"--{k.replace('_', '-')}" for k, v in sampling.items() if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: for text-generation bundles; {bundle} is not one")
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


def _generate(bundle: Path, prompts: Optional[list[str]], path: Optional[Path], output: Optional[Path],
              threads: Optional[int], sampling: dict) -> None:
    """predict on a text-generation bundle: the reply to each prompt (edgeft.runtime.generate_eval)."""
    import io

    from edgeft.runtime.generate import Generator
    from edgeft.runtime.generate_eval import generate_rows
    from edgeft.runtime.stream import check_input

    g = Generator.load(bundle, threads=threads)
    if prompts:
        lines = [json.dumps({"prompt": p}).encode() for p in prompts]
        buf = io.StringIO()
        done = generate_rows(g, lines, Path("<arguments>.jsonl"), buf, **sampling)
        for row in buf.getvalue().splitlines():
            typer.echo(json.loads(row)["text"])
        if output:
            atomic_write_text(output, buf.getvalue())
    else:
        stdin = str(path) == "-"
        if not stdin:
            check_input(path)
        with (atomic_file(output) if output else contextlib.nullcontext(None)) as tmp, \
                (open(tmp, "w", encoding="utf-8") if tmp else contextlib.nullcontext(sys.stdout)) as out, \
                (contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb")) as raw, \
                (contextlib.nullcontext(None) if stdin else
                 typer.progressbar(length=path.stat().st_size, label="generating", file=sys.stderr)) as bar:
            lines = raw if bar is None else _counted(raw, bar)
            done = generate_rows(g, lines, Path("<stdin>") if stdin else path, out, **sampling)
    where = f" → {output}" if output else ""
    typer.echo(f"replied to {done['rows']} prompt(s) with {done['new_tokens']} new tokens in {done['seconds']:.2f} s"
               f"{where}", err=True)


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
    epilog=examples(
        "edgeft eval runs/bundle --data test.jsonl --json runs/bundle-eval.json",
        "edgeft eval runs/lm --data test.jsonl   # text generation: perplexity over the reply tokens (all tokens of "
        "plain text), as training computes it; exact match and token F1 of greedy replies",
    ),
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
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Text-generation bundles: at most "
                                                 "this many tokens per greedy reply (default 64)."),
):
    """Score a bundle on a labeled file with the same metrics as training (accuracy/macro-F1, entity F1, SQuAD EM/F1, perplexity)."""
    from edgeft.metrics import headline
    from edgeft.runtime.bundle import load_bundle
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    if load_bundle(bundle).manifest.task == "text-generation":
        if label_column != "label":
            raise ConfigError(f"--label-column: {bundle} generates text; its data has prompt/response, messages or "
                              f"text rows (name the text column with --text-column)")
        return _eval_generation(bundle, data, json_out, text_column, threads, skip_bad_rows, max_new_tokens or 64)
    if max_new_tokens is not None:
        raise ConfigError(f"--max-new-tokens: for text-generation bundles; {bundle} is not one")
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


def _eval_generation(bundle, data, json_out, text_column, threads, skip_bad_rows, max_new_tokens) -> None:
    from edgeft.runtime.generate import Generator
    from edgeft.runtime.generate_eval import evaluate_generation

    metrics = evaluate_generation(Generator.load(bundle, threads=threads), data, max_new_tokens=max_new_tokens,
                                  skip_bad_rows=skip_bad_rows, text_column=text_column)
    if json_out:
        write_json(json_out, metrics)
    replies = (f"  exact match {metrics['exact_match']:.4f}  F1 {metrics['f1']:.4f} on {metrics['generated']} replies"
               if "f1" in metrics else "  (no reference replies: perplexity only)")
    where = f" → {json_out}" if json_out else ""
    typer.echo(f"perplexity {metrics['perplexity']:.4f} over {metrics['tokens']} tokens{replies}; {metrics['n']} "
               f"examples ({metrics['truncated']} truncated, {metrics['skipped']} skipped, {metrics['seconds']:.2f} s)"
               f"{where}")


def describe_batching(predictor) -> str:
    """How the bundle's texts share model calls, in words (the same answers as one text at a time)."""
    if predictor.settings.batching == "rows":
        return "rows (one text per model call: dynamic INT8 scales span the whole input)"
    return f"padded (up to {predictor.batch_size} length-sorted texts per model call)"


@app.command("inspect", epilog=examples(
    "edgeft inspect runs/bundle --json inspect.json",
))
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
    epilog=examples(
        "edgeft bench runs/fp32 runs/int8 --threads 1,4 --json bench.json   # ratios against runs/fp32",
        "edgeft bench runs/int8 --pytorch runs/ft --seq-len real,128         # vs PyTorch eager (needs [train])",
        "edgeft bench --compare x86.json arm64.json                           # two saved runs side by side",
        "edgeft bench runs/int8 --threads 1,2,3,4 --batch 1 --seq-len real --json pi.json --markdown pi.md",
    ),
)
def bench_command(
    paths: Optional[list[Path]] = typer.Argument(None, help="Bundles to compare (the first is the reference); "
                                                            "with --compare: two bench JSON files."),
    pytorch: Optional[Path] = typer.Option(None, "--pytorch", help="Also time this HF model folder in PyTorch eager "
                                                                   "(needs the 'train' extra)."),
    threads: str = typer.Option("1,2", "--threads", help="Thread counts, comma-separated."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, comma-separated (default 1,8)."),
    seq_len: Optional[str] = typer.Option(None, "--seq-len", help="'real' (sentences from --data, unpadded) and/or "
                                          "token counts (padded/truncated); default real,16,64,128."),
    runs: Optional[int] = typer.Option(None, help="Timed runs per configuration and model, interleaved in rounds "
                                       "(default 300; text generation: generations per model, default 5)."),
    warmup: Optional[int] = typer.Option(None, help="Untimed runs per configuration before timing (default 30; "
                                         "text generation: 1)."),
    prompt_tokens: Optional[int] = typer.Option(None, "--prompt-tokens", help="Text-generation bundles: prompt "
                                                "length of the time to first token and prefill (default 128)."),
    new_tokens: Optional[int] = typer.Option(None, "--new-tokens", help="Text-generation bundles: greedy tokens "
                                             "per timed generation, EOS ignored (default 64)."),
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
    generative = [s.task == "text-generation" for s in specs]
    if any(generative):
        if not all(generative) or pytorch is not None:
            raise ConfigError("text-generation bundles are benched among themselves: give only text-generation "
                              "bundles (and no --pytorch)")
        given = [f for f, v in (("--batch", batch), ("--seq-len", seq_len), ("--data", data)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: for encoder bundles; a text-generation bundle is timed on one "
                              f"--prompt-tokens prompt and --new-tokens greedy tokens")
        from edgeft.runtime.generate_eval import render_generation_bench, run_generation_bench

        report = run_generation_bench(specs, bench.parse_list(threads, "--threads"), prompt_tokens or 128,
                                      new_tokens or 64, runs=5 if runs is None else runs,
                                      warmup=1 if warmup is None else warmup,
                                      progress=lambda line: typer.echo(line, err=True))
        return _write_bench(report, render_generation_bench, json_out, markdown, len(specs), t0)
    given = [f for f, v in (("--prompt-tokens", prompt_tokens), ("--new-tokens", new_tokens)) if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: for text-generation bundles; use --seq-len and --batch for encoders")
    batch, seq_len = batch or "1,8", seq_len or "real,16,64,128"
    runs, warmup = 300 if runs is None else runs, 30 if warmup is None else warmup
    max_length = 128
    if paths:
        from edgeft.runtime.bundle import load_bundle

        max_length = load_bundle(paths[0]).manifest.max_length
    report = bench.run_bench(
        specs, bench.parse_list(threads, "--threads"), bench.parse_list(batch, "--batch"),
        bench.parse_list(seq_len, "--seq-len", allow_real=True), runs=runs, warmup=warmup, data=data,
        max_length=max_length, progress=lambda line: typer.echo(line, err=True))
    _write_bench(report, bench.render, json_out, markdown, len(specs), t0)


def _write_bench(report: dict, render, json_out: Optional[Path], markdown: Optional[Path], models: int,
                 t0: float) -> None:
    typer.echo(render(report))
    if json_out:
        write_json(json_out, report)
    if markdown:
        atomic_write_text(markdown, render(report, markdown=True) + "\n")
    written = [str(p) for p in (json_out, markdown) if p]
    where = f" → {', '.join(written)}" if written else ""
    typer.echo(f"benchmarked {models} model(s) × {len(report['rows']) // models} configuration(s) "
               f"in {time.perf_counter() - t0:.1f} s{where}")


def _read_json(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read a bench report ({e})") from None
    if not isinstance(report, dict) or not {"machine", "models", "rows"} <= report.keys():
        raise DataError(f"{path}: not a bench report (write one with `edgeft bench … --json {path.name}`)")
    return report
