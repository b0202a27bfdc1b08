"""Text-generation bundles in ``edgeft predict`` and ``edgeft eval``, torch-free.

* predict: one reply per prompt row (``{"prompt"}`` or ``{"messages": [...]}``), each row generated on
  its own from an empty cache with its own sampler seeded by ``seed``: a prompt's reply never depends
  on the other rows of the file (greedy, or the same seed).
* eval: the numbers ``edgeft train --task text-generation`` reports on its test split, so a bundle is
  comparable with its PyTorch model: perplexity = exp(total NLL / total scored tokens) over the reply
  tokens (prompt/response and chat rows: the spans between the chat template rendered up to each
  assistant turn and to its end, as train/causal_lm.py finds them) or over every token then EOS (plain
  text); exact match and token F1 (SQuAD normalisation, edgeft.squad) of the greedy reply vs the
  reference reply. A reply row's prompt is prefilled once, for both (``score_row``): the prompt is most of
  a row, and the build evaluates every variant this way.

numpy, onnxruntime, tokenizers, stdlib (jinja2 for chat templates).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from edgeft.errors import ConfigError, DataError
from edgeft.runtime.generate import Prefill, token_nll
from edgeft.runtime.stream import decode_line, json_line

PROMPT_ROW = 'expected an object with a string \'prompt\' or a \'messages\' list of {"role", "content"} objects'


def as_prompt(generator, prompt: str | list[dict]) -> str | list[dict]:
    """A plain prompt becomes one user turn when the model has a chat template (as training formats a
    prompt/response pair), else stays plain text; chat messages are kept."""
    if isinstance(prompt, str) and generator.chat_template:
        return [{"role": "user", "content": prompt}]
    return prompt


def read_prompt(path: Path, n: int, line: bytes) -> str | list[dict] | None:
    """One ``--input`` line → its prompt (None for a blank line); DataError naming file:line otherwise."""
    from edgeft.data import ROLES

    text = decode_line(path, n, line)
    if path.suffix.lower() == ".txt" or str(path) == "<stdin>":
        return text.rstrip("\r\n") or None
    if not text.strip():
        return None
    row = json_line(path, n, text)
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return row["prompt"]
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{path}:{n}: {PROMPT_ROW}, e.g. {{\"prompt\": \"Tell me a joke\"}}")
    for k, m in enumerate(messages, 1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{path}:{n}: message {k} must be an object with string 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(f"{path}:{n}: message {k} has the unknown role {m['role']!r}; roles are {', '.join(ROLES)}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def generate_rows(generator, lines: Iterable[bytes], source: Path, out: TextIO, **sampling) -> dict:
    """Reply to every prompt line and write ``{"line", "text", "finish_reason", "token_ids", ...}`` per row.

    Args:
        lines: raw lines of a .jsonl/.txt file or stdin; source: its name for messages.
        sampling: Generator.stream's keyword arguments (max_new_tokens, temperature, seed, ...).
    Returns:
        {"rows", "new_tokens", "seconds"}.
    Raises:
        DataError naming ``source:line`` for a bad row or a prompt too long for the context window.
    """
    rows = tokens = 0
    t0 = time.perf_counter()
    for n, line in enumerate(lines, 1):
        prompt = read_prompt(source, n, line)
        if prompt is None:
            continue
        try:
            r = generator.generate(as_prompt(generator, prompt), **sampling)
        except ConfigError as e:
            raise DataError(f"{source}:{n}: {e}") from None
        out.write(json.dumps({"line": n, **r.to_dict()}, ensure_ascii=False) + "\n")
        out.flush()
        rows, tokens = rows + 1, tokens + len(r.token_ids)
    return {"rows": rows, "new_tokens": tokens, "seconds": time.perf_counter() - t0}


def scored_tokens(generator, ex) -> tuple[list[int], list[bool]]:
    """(token ids, which positions are scored) of one edgeft.data GenerationExample, as training labels
    them: the reply spans of a chat, or every token of plain text then EOS."""
    tok = generator.tokenizer
    if not ex.messages:
        ids = tok.encode(ex.text).ids
        eos = sorted(generator.eos_ids)[:1]
        ids = ids + eos if eos and ids[-1:] != eos else ids
        return ids, [True] * len(ids)
    chat = [{"role": role, "content": content} for role, content in ex.messages]
    text = generator.render(chat, add_generation_prompt=False)
    spans = []
    for i, (role, _) in enumerate(ex.messages):
        if role == "assistant":
            start = generator.render(chat[:i], add_generation_prompt=True) if i else ""
            spans.append((len(start), len(generator.render(chat[:i + 1], add_generation_prompt=False))))
    enc = tok.encode(text, add_special_tokens=False)  # the template writes BOS itself, if any
    return list(enc.ids), [any(a <= s < b for a, b in spans) for s, _ in enc.offsets]


def score_row(generator, ids: list[int], scored: list[bool], prompt: list[int]) -> tuple[float, int, Prefill | None]:
    """(summed NLL of the scored tokens of ``ids``, their count, the prefill of ``prompt`` or None). When the
    reply follows ``prompt``, the prompt is prefilled once as generation does and the reference reply fed after
    its cache; that prefill then also serves the greedy reply (``stream(prefilled=...)``)."""
    prefill, start = None, 0
    if prompt and ids[:len(prompt)] == prompt and not any(scored[:len(prompt)]):
        prefill, start = generator.forward(prompt, generator.empty_cache(), last=True), len(prompt) - 1
        rest = [generator.forward(ids[len(prompt):-1], prefill[1])[0]] if len(ids) > len(prompt) + 1 else []
        logits = np.concatenate([prefill[0], *rest])  # logits[i] predicts ids[start + 1 + i]
    elif len(ids) > 1 and any(scored[1:]):
        logits = generator.forward(ids, generator.empty_cache())[0]
    else:
        return 0.0, 0, None
    mask = np.asarray(scored[start + 1:], dtype=bool)
    return token_nll(logits, ids[start + 1:], mask), int(mask.sum()), prefill


def evaluate_generation(generator, data: str | Path, max_new_tokens: int = 64, skip_bad_rows: bool = False,
                        text_column: str = "text", keep_replies: bool = False) -> dict:
    """Perplexity and generation metrics of a text-generation bundle on ``data`` (edgeft.data's rows).

    Returns:
        {"perplexity", "loss" (mean NLL per scored token), "tokens", "n", "truncated" (rows cut to the
        context length), "skipped" (bad rows), "exact_match", "f1", "generated" (rows with a reference
        reply), "samples" (the first 5), "seconds", "task", "data", "bundle"}; with ``keep_replies``, also
        "replies" (every greedy reply, in row order: edgeft build compares variants with FP32 on them).
    """
    from edgeft.data import read_dataset
    from edgeft.squad import squad_metrics

    ds = read_dataset(data, task="text-generation", text_column=text_column, skip_bad_rows=skip_bad_rows)
    t0 = time.perf_counter()
    nll, tokens, truncated, replies = 0.0, 0, 0, []
    for ex in ds.examples:
        ids, scored = scored_tokens(generator, ex)
        if len(ids) > generator.context_length:
            ids, scored, truncated = ids[: generator.context_length], scored[: generator.context_length], truncated + 1
        prompt = generator.encode([{"role": r, "content": c} for r, c in ex.prompt]) if ex.response is not None else []
        budget = min(max_new_tokens, generator.context_length - len(prompt))
        if prompt and budget < 1:
            raise DataError(f"{data}:{ex.line}: the prompt is {len(prompt)} tokens, the whole context window of "
                            f"{generator.context_length}; shorten it, or pass --skip-bad-rows")
        row_nll, row_tokens, prefill = score_row(generator, ids, scored, prompt)
        nll, tokens = nll + row_nll, tokens + row_tokens
        if ex.response is not None:
            replies.append(generator.generate(prompt, max_new_tokens=budget, prefilled=prefill).text.strip())
    loss = nll / max(tokens, 1)
    metrics = {"n": len(ds.examples), "loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}
    asked = [ex for ex in ds.examples if ex.response is not None]
    if asked:
        scores = squad_metrics([(ex.response,) for ex in asked], replies)
        scores.pop("n")  # = "generated"; "n" stays the examples scored by perplexity
        metrics.update(scores)
        metrics["generated"] = len(asked)
        metrics["samples"] = [{"prompt": ex.prompt[-1][1] if ex.prompt else "", "reference": ex.response,
                                "generated": reply} for ex, reply in list(zip(asked, replies))[:5]]
        if keep_replies:
            metrics["replies"] = replies
    return {**metrics, "truncated": truncated, "skipped": len(ds.skipped), "seconds": time.perf_counter() - t0,
            "task": "text-generation", "data": str(data), "bundle": str(generator.bundle.source)}


def bench_prompt(generator, tokens: int) -> list[int]:
    """A prompt of exactly ``tokens`` ids: real English text, repeated, cut to length."""
    text = ("Super Bowl 50 was an American football game to determine the champion of the National Football "
            "League for the 2015 season. The Denver Broncos defeated the Carolina Panthers 24-10. ")
    ids: list[int] = []
    while len(ids) < tokens:
        ids += generator.tokenizer.encode(text, add_special_tokens=False).ids
    return ids[:tokens]


def time_generation(generator, prompt: list[int], new_tokens: int) -> dict:
    """One timed greedy generation of exactly ``new_tokens`` (EOS ignored): TTFT (ms), prefill and decode
    tokens/s."""
    t = time.perf_counter()
    generator.forward(prompt, generator.empty_cache(), last=True)
    prefill = time.perf_counter() - t
    r = generator.generate(prompt, max_new_tokens=new_tokens, ignore_eos=True)
    return {"ttft_ms": r.ttft_s * 1e3, "prefill_tokens_per_s": len(prompt) / prefill,
            "decode_tokens_per_s": r.decode_tokens_per_s}


def run_generation_bench(specs: list, threads: list[int], prompt_tokens: int = 128, new_tokens: int = 64,
                         runs: int = 5, warmup: int = 1, progress: Callable[[str], None] = lambda _: None) -> dict:
    """``edgeft bench`` for text-generation bundles, the way edgeft.runtime.bench times encoders: one worker
    process per bundle and thread count (its peak RSS is its own), cold starts one after another, and the
    ``runs`` timed generations interleaved one at a time in rotating order, so load on the machine hits
    every bundle alike. Each figure is the median over the runs.

    Returns:
        {"machine", "versions", "settings", "models", "rows"}: a row per (model, threads) with
        ttft_ms, prefill_tokens_per_s, decode_tokens_per_s (medians), and peak_rss_mb.
    """
    from edgeft.runtime import bench

    if runs < 1 or warmup < 0 or prompt_tokens < 1 or new_tokens < 2:
        raise ConfigError(f"--runs must be >= 1, --warmup >= 0, --prompt-tokens >= 1 and --new-tokens >= 2 "
                          f"(got {runs}, {warmup}, {prompt_tokens}, {new_tokens})")
    models = [{"name": s.name, "kind": "generation", "path": s.path, "cold": {},  # graph + external weights
               "size_bytes": sum(f.stat().st_size for f in Path(s.path).glob("model.onnx*"))} for s in specs]
    rows = []
    for t in threads:
        workers = []
        try:
            for spec, model in zip(specs, models):
                progress(f"starting {spec.name} (threads={t})")
                w = bench.Worker(replace(spec, kind="generation"), t, [prompt_tokens, new_tokens, warmup], 0)
                workers.append(w)
                model["cold"][str(t)] = w.ready
            times: list[list[dict]] = [[] for _ in workers]
            for r in range(runs):
                progress(f"threads={t} run {r + 1}/{runs}")
                for k in range(len(workers)):  # rotate who goes first, against position bias
                    i = (k + r) % len(workers)
                    times[i].append(workers[i].ask({"cmd": "run"}))
            for spec, w, ts in zip(specs, workers, times):
                rss = w.ask({"cmd": "exit"})["peak_rss_mb"]
                rows.append({"model": spec.name, "threads": t, "runs": len(ts), "peak_rss_mb": rss,
                             **{k: float(np.median([x[k] for x in ts])) for k in ts[0]}})
        finally:
            for w in workers:
                w.close()
    return {"machine": bench.machine_info(),
            "versions": {pkg: bench._version(pkg) for pkg in ("edgeft", "numpy", "onnxruntime", "tokenizers")},
            "settings": {"task": "text-generation", "threads": threads, "prompt_tokens": prompt_tokens,
                         "new_tokens": new_tokens, "runs": runs, "warmup": warmup, "sampling": "greedy, EOS ignored"},
            "models": models, "rows": rows}


def serve_worker(args: dict, send: Callable[[dict], None], messages: Iterable[str]) -> None:
    """The worker side of ``run_generation_bench`` (python -m edgeft.runtime.bench --worker)."""
    from edgeft.runtime.bench import peak_rss_mb
    from edgeft.runtime.generate import Generator

    prompt_tokens, new_tokens, warmup = args["texts"]
    t = time.perf_counter()
    g = Generator.load(args["path"], threads=args["threads"])
    load_ms = (time.perf_counter() - t) * 1e3
    if prompt_tokens + new_tokens > g.context_length:
        raise ConfigError(f"--prompt-tokens {prompt_tokens} + --new-tokens {new_tokens} > the context length of "
                          f"{args['path']} ({g.context_length}); lower them")
    prompt = bench_prompt(g, prompt_tokens)
    g.generate(prompt, max_new_tokens=1, ignore_eos=True)
    first_ms = (time.time() - args["t0"]) * 1e3  # process start -> first token
    for _ in range(warmup):
        time_generation(g, prompt, new_tokens)
    send({"load_ms": load_ms, "first_token_ms": first_ms})
    for line in messages:
        if json.loads(line)["cmd"] == "run":
            send(time_generation(g, prompt, new_tokens))
        else:
            send({"peak_rss_mb": peak_rss_mb()})
            return


def render_generation_bench(report: dict, markdown: bool = False) -> str:
    """The tables of ``run_generation_bench``'s report (edgeft.runtime.bench's layout)."""
    from edgeft.runtime.bench import describe_machine, table

    st, sizes = report["settings"], {m["name"]: m["size_bytes"] for m in report["models"]}
    rows = [[r["model"], f"{sizes[r['model']] / 1e6:.1f} MB", r["threads"], f"{r['ttft_ms']:.1f}",
             f"{r['prefill_tokens_per_s']:.0f}", f"{r['decode_tokens_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}"]
            for r in report["rows"]]
    return (describe_machine(report) + f"\n{st['prompt_tokens']}-token prompt, {st['new_tokens']} greedy tokens, "
            f"median of {st['runs']} interleaved runs\n"
            + table(["model", "size", "threads", "TTFT ms", "prefill tok/s", "decode tok/s", "peak RSS MB"], rows,
                    markdown=markdown))
