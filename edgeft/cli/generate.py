"""CLI commands of generative models: export-lm, generate, chat (see edgeft.compress.export_lm and
edgeft.runtime.generate). generate and chat never import torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import QUIET, app
from edgeft.cli.options import config_options
from edgeft.compress.export_lm import ExportLMConfig
from edgeft.errors import require

MAX_NEW = typer.Option(128, "--max-new-tokens", help="At most this many new tokens.")
TEMPERATURE = typer.Option(0.0, "--temperature", help="0 = greedy; > 0 samples.")
TOP_P = typer.Option(1.0, "--top-p", help="Nucleus sampling: keep the smallest set of tokens reaching this probability.")
TOP_K = typer.Option(0, "--top-k", help="Sample among the k likeliest tokens (0 = all).")
SEED = typer.Option(None, "--seed", help="Sampler seed: the same seed gives the same text.")
PENALTY = typer.Option(1.0, "--repetition-penalty", help="> 1 discourages tokens already seen.")
STOP = typer.Option(None, "--stop", help="A string that ends the reply (repeatable).")
THREADS = typer.Option(None, "--threads", help="Intra-op threads (default: the bundle's target or the cores).")


@app.command("export-lm")
@config_options(cfg=ExportLMConfig)
def export_lm_command(
    model_dir: Path = typer.Argument(..., help="Causal LM folder (what `edgeft train --task text-generation` wrote)."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    eval_text: Optional[Path] = typer.Option(None, "--eval-text", help="Text file (paragraphs split by blank lines) "
                                             "or .jsonl with a text/context field, for perplexity."),
    quiet: bool = QUIET,
    cfg: ExportLMConfig = None,
):
    """Export a causal LM to a text-generation bundle (KV-cache decoder, INT4/INT8/FP32), parity checked."""
    require("torch", "export-lm")
    require("onnx", "export-lm")
    from edgeft.cli.compress import _progress
    from edgeft.compress.export_lm import export_lm

    r = export_lm(model_dir, out, cfg, progress=_progress(quiet), eval_texts=read_texts(eval_text) if eval_text else ())
    p, m = r.parity, r.metrics
    size = sum(f["size"] for f in r.manifest.files.values()) / 1e6
    typer.echo(f"  parity      max |Δlogit| {p['max_abs_diff']:.1e}, greedy identical {p['greedy_identical']}/"
               f"{p['greedy_prompts']} prompts x {p['new_tokens']} tokens")
    weights = cfg.weights
    typer.echo(f"  {weights:<11} agreement with fp32: greedy {m['greedy_token_agreement']:.0%}, "
               f"top-1 on fp32's prefix {m['top1_agreement']:.0%}")
    if "variant" in m:
        typer.echo(f"  perplexity  fp32 {m['fp32']['perplexity']:.3f}, {weights} {m['variant']['perplexity']:.3f} "
                   f"({m['variant']['change']:+.1%})")
    typer.echo(f"exported {r.bundle}: {weights}, {size:.1f} MB")


def read_texts(path: Path) -> list[str]:
    """Paragraphs of a .txt, or the text/context field of a .jsonl (deduplicated, in order)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        texts = [r.get("text") or r.get("context") or "" for r in rows]
    else:
        texts = [t.strip() for t in raw.split("\n\n")]
    return [t for t in dict.fromkeys(texts) if t]


@app.command("generate")
def generate_command(
    bundle: Path = typer.Argument(..., help="A text-generation bundle (`edgeft export-lm`)."),
    prompt: str = typer.Argument(..., help="The prompt (plain text; --chat formats it as one user message)."),
    chat: bool = typer.Option(False, "--chat", help="Format the prompt with the model's chat template."),
    stream: bool = typer.Option(False, "--stream", help="Print the reply as it is generated."),
    max_new_tokens: int = MAX_NEW, temperature: float = TEMPERATURE, top_p: float = TOP_P, top_k: int = TOP_K,
    seed: Optional[int] = SEED, repetition_penalty: float = PENALTY, stop: Optional[list[str]] = STOP,
    threads: Optional[int] = THREADS,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the reply and timings as JSON here."),
):
    """Generate a reply from a prompt, torch-free."""
    from edgeft.runtime.generate import Generator

    g = Generator.load(bundle, threads=threads)
    s = g.stream([{"role": "user", "content": prompt}] if chat else prompt, max_new_tokens=max_new_tokens,
                 temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, repetition_penalty=repetition_penalty,
                 stop=stop or ())
    for piece in s:
        if stream:
            typer.echo(piece, nl=False)
    r = s.result
    typer.echo("" if stream else r.text)
    typer.echo(f"generated {len(r.token_ids)} tokens ({r.finish_reason}): TTFT {r.ttft_s * 1e3:.0f} ms, "
               f"decode {r.decode_tokens_per_s:.1f} tokens/s", err=True)
    if json_out:
        json_out.write_text(json.dumps({"prompt": prompt, **r.to_dict()}, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")


@app.command("chat")
def chat_command(
    bundle: Path = typer.Argument(..., help="A text-generation bundle with a chat template."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message."),
    max_new_tokens: int = MAX_NEW, temperature: float = TEMPERATURE, top_p: float = TOP_P, top_k: int = TOP_K,
    seed: Optional[int] = SEED, threads: Optional[int] = THREADS,
):
    """Chat interactively (streaming). /reset forgets the history, /exit or Ctrl-D leaves, Ctrl-C stops one answer."""
    from edgeft.runtime.generate import Generator

    g = Generator.load(bundle, threads=threads)
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if line.strip() in ("/exit", "/quit"):
            return
        if line.strip() == "/reset":
            history = list(start)
            typer.echo("(history cleared)")
            continue
        history.append({"role": "user", "content": line})
        while len(history) > len(start) + 1 and len(g.encode(history)) + max_new_tokens > g.context_length:
            del history[len(start): len(start) + 2]  # the oldest exchange goes first
        reply = ""
        try:
            for piece in g.stream(history, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  top_k=top_k, seed=seed):
                reply += piece
                typer.echo(piece, nl=False)
        except KeyboardInterrupt:  # stops this answer only; what was said so far stays in the history
            typer.echo(" [stopped]", nl=False)
        typer.echo("")
        history.append({"role": "assistant", "content": reply})
