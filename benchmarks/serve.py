"""`edgeft serve` under load: N concurrent clients against the real server process, against a single
in-process loop of ``Predictor.predict`` over the same texts.

    python benchmarks/serve.py runs/arm64/bundle                       # concurrency 1, 8, 64; 20 s each
    python benchmarks/serve.py --make-bundle runs/serve-minilm         # build the INT8 MiniLM first, then run
    python benchmarks/serve.py BUNDLE --seconds 10 --concurrency 1 8 64 --threads 1 --queue 32
    python benchmarks/serve.py --make-lm-bundle runs/serve-smollm2 --concurrency 1 4 64   # text generation

The texts are the 872 SST-2 dev sentences (../shared/datasets/sst2/validation.jsonl, else the copy in
edgeft/samples). In order:
1. the reference: one Predictor in this process, ``predict([text])`` for every text once (each text's
   answer alone), then the same loop for ``--seconds`` → texts/s;
2. cold start, ``--cold`` times: ``python -m edgeft serve BUNDLE`` started → first 200 on /healthz;
3. one server process (``--threads``, ``--queue``); for each concurrency C, C clients on C keep-alive
   connections (asyncio, raw HTTP/1.1: the load generator must cost the 2 cores as little as
   possible) each send one text per request, walking the pool from their own offset, for
   ``--seconds``. Reported per C: requests/s, p50/p99 latency of the 200s, 503s (with Retry-After),
   other errors, timeouts (no answer within ``--timeout`` s), the server's RSS before and after (VmRSS of
   its process) and the answers that differ from the text's answer alone (label, score, every
   probability, exactly).

``--make-bundle DIR`` builds the bundle first (needs the train extra and the embedded MiniLM): the
embedded all-MiniLM-L6-v2 with a seeded random 2-label head (speed and batching do not depend on
the head), quantized with the recipe `edgeft build --target arm64` chooses (fused-ln-emb: dynamic
INT8, one text per model call), as tests/test_batch_invariance.py does.

A text-generation bundle (``--make-lm-bundle DIR``: the embedded SmolLM2-135M-Instruct at INT4) is driven
through the OpenAI-compatible ``/v1/chat/completions`` with ``"stream": true`` instead: the prompts are
the shipped SQuAD answer-from-the-passage test prompts, each reply ``--max-tokens`` greedy tokens
(``ignore_eos``, so every reply has the same length), and the reference is the in-process
``Generator.stream`` of each prompt. Reported per C: replies/s, generated tokens/s (all streams
together) against the in-process loop's, time to the first streamed piece (p50/p99), 503s, errors,
timeouts, RSS, and replies whose text differs from the in-process one. Written to serve_generate.json.
A reply admitted to a full queue waits for the ``--queue`` replies before it, so here a timeout is a
reply not finished within twice that wait (queue x the in-process seconds per reply x 2) unless
``--timeout`` says otherwise; and one warm-up pass at the highest concurrency comes before the measured
ones, whose RSS is reported apart (the first burst of 64 connections raises the server's high-water
mark once; repeated bursts must not move it).

Prints a table and writes benchmarks/results/serve.json (or --out). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgeft.writable import write_json

HERE = Path(__file__).resolve().parent
DATA = [HERE.parent.parent / "shared" / "datasets" / "sst2" / "validation.jsonl", HERE.parent / "edgeft" / "samples" / "sst2_test.jsonl"]


def texts() -> list[str]:
    path = next(p for p in DATA if p.is_file())
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def make_bundle(out: Path) -> Path:
    """The embedded MiniLM, random 2-label head, fused-ln-emb INT8 (module docstring); returns the bundle."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgeft.compress import quantize as q
    from edgeft.compress.quantize import RECIPES, QuantizeConfig
    from edgeft.stage import Splits
    from edgeft.train.model_source import embedded_model_dir

    src = embedded_model_dir()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(src, num_labels=2, id2label={0: "negative", 1: "positive"},
                                                          label2id={"negative": 0, "positive": 1})
    model.save_pretrained(out / "hf")
    AutoTokenizer.from_pretrained(src).save_pretrained(out / "hf")
    q.plan = lambda cfg, target: [RECIPES["fused-ln-emb"]]  # only the candidate the arm64 build chooses
    return q.quantize(out / "hf", out / "int8", Splits(validation=HERE.parent / "tests" / "data" / "sst2_300.jsonl"),
                      QuantizeConfig(target="arm64", timing_rounds=1, timing_calls=3)).bundle


def in_process(bundle: Path, pool: list[str], threads: int, seconds: float) -> tuple[dict[str, dict], dict]:
    """(each text's answer alone, {"texts_per_s", "p50_ms", "p99_ms"} of a predict([text]) loop)."""
    from edgeft.runtime.predictor import Predictor

    p = Predictor.load(bundle, threads=threads)
    alone = {t: p.predict([t])[0].to_dict() for t in pool}
    times, i, end = [], 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        p.predict([pool[i % len(pool)]])
        times.append(time.perf_counter() - t0)
        i += 1
    wall = time.perf_counter() - start
    return alone, {"texts_per_s": i / wall, "p50_ms": percentile(times, 0.5) * 1e3, "p99_ms": percentile(times, 0.99) * 1e3}


def start_server(bundle: Path, threads: int, queue: int) -> tuple[subprocess.Popen, int, float]:
    """(process, port, seconds from start to the first 200 on /healthz)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edgeft", "serve", str(bundle), "--port", "0", "--threads", str(threads),
                             "--queue", str(queue)], stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "serving … on http://127.0.0.1:PORT: …"
    if " on http://" not in line:
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    port = int(line.split(" on http://127.0.0.1:")[1].split(":")[0])
    asyncio.run(_until_healthy(port))
    return proc, port, time.perf_counter() - t0


async def _until_healthy(port: int) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.005)
            continue
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        status, _, _ = await _response(reader)
        writer.close()
        if status == 200:
            return


async def _response(reader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), headers, body


async def load(port: int, pool: list[str], concurrency: int, seconds: float, timeout: float) -> dict:
    """``concurrency`` clients for ``seconds``; every answer kept for the comparison."""
    stats = {"ok": [], "busy": 0, "retry_after": 0, "errors": 0, "timeouts": 0}
    answers: list[tuple[str, dict]] = []
    end = time.perf_counter() + seconds

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k * (len(pool) // concurrency)
        while time.perf_counter() < end:
            text = pool[i % len(pool)]
            i += 1
            body = json.dumps({"texts": [text]}).encode()
            writer.write(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            t0 = time.perf_counter()
            try:
                status, headers, raw = await asyncio.wait_for(_response(reader), timeout)
            except asyncio.TimeoutError:
                stats["timeouts"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if status == 200:
                stats["ok"].append(time.perf_counter() - t0)
                answers.append((text, json.loads(raw)["results"][0]))
            elif status == 503:
                stats["busy"] += 1
                stats["retry_after"] += "retry-after" in headers
                await asyncio.sleep(0.05)  # a polite client backs off (the header says 1 s; this keeps the pressure on)
            else:
                stats["errors"] += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall = time.perf_counter() - start
    ok = stats.pop("ok")
    return {**stats, "requests_ok": len(ok), "requests_per_s": len(ok) / wall, "p50_ms": percentile(ok, 0.5) * 1e3,
            "p99_ms": percentile(ok, 0.99) * 1e3, "answers": answers}


# ---- text generation: /v1/chat/completions, streamed ---------------------------------------------------
LM_PROMPTS = HERE.parent / "edgeft" / "samples" / "squad_answers_test.jsonl"


def make_lm_bundle(out: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct exported at INT4 (the README's generation bundle); returns it."""
    from edgeft.compress.export_lm import ExportLMConfig, export_lm
    from edgeft.train.model_source import embedded_lm_dir

    return export_lm(embedded_lm_dir(), out, ExportLMConfig(weights="int4")).bundle


def lm_in_process(bundle: Path, prompts: list[str], threads: int, max_tokens: int) -> tuple[dict[str, str], dict]:
    """(each prompt's reply, {"tokens_per_s", "ttft_p50_ms"} of one stream after another, 1 pass)."""
    from edgeft.runtime.generate import Generator

    g = Generator.load(bundle, threads=threads)
    replies, ttft, tokens = {}, [], 0
    start = time.perf_counter()
    for p in prompts:
        s = g.stream([{"role": "user", "content": p}], max_new_tokens=max_tokens, ignore_eos=True)
        replies[p] = "".join(s)
        ttft.append(s.result.ttft_s)
        tokens += len(s.result.token_ids)
    wall = time.perf_counter() - start
    return replies, {"tokens_per_s": tokens / wall, "replies_per_s": len(prompts) / wall,
                     "ttft_p50_ms": percentile(ttft, 0.5) * 1e3}


async def lm_load(port: int, prompts: list[str], concurrency: int, seconds: float, timeout: float, max_tokens: int) -> dict:
    """``concurrency`` streaming chat clients for ``seconds`` (each finishes the reply it is reading)."""
    import httpx

    stats = {"ttft": [], "tokens": 0, "busy": 0, "retry_after": 0, "errors": 0, "timeouts": 0}
    answers: list[tuple[str, str]] = []
    end = time.perf_counter() + seconds

    async def client(k: int, http) -> None:
        i = k
        while time.perf_counter() < end:
            prompt = prompts[i % len(prompts)]
            i += 1
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
            t0, first, text = time.perf_counter(), None, []
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body, timeout=timeout) as r:
                    if r.status_code == 503:
                        stats["busy"] += 1
                        stats["retry_after"] += "retry-after" in r.headers
                        await asyncio.sleep(0.05)
                        continue
                    if r.status_code != 200:
                        stats["errors"] += 1
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        event = json.loads(line[6:])
                        for c in event.get("choices", []):
                            if c["delta"].get("content"):
                                first = first or time.perf_counter()
                                text.append(c["delta"]["content"])
                        if event.get("usage"):
                            stats["tokens"] += event["usage"]["completion_tokens"]
            except httpx.TimeoutException:
                stats["timeouts"] += 1
                continue
            stats["ttft"].append((first or time.perf_counter()) - t0)
            answers.append((prompt, "".join(text)))

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
    wall = time.perf_counter() - start
    ttft = stats.pop("ttft")
    return {**stats, "replies_ok": len(answers), "replies_per_s": len(answers) / wall, "tokens_per_s": stats["tokens"] / wall,
            "ttft_p50_ms": percentile(ttft, 0.5) * 1e3, "ttft_p99_ms": percentile(ttft, 0.99) * 1e3, "answers": answers}


def main_generate(args, bundle: Path) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # ORT's quantizer turned on INFO logging for every logger
    prompts = [json.loads(line)["prompt"] for line in LM_PROMPTS.read_text(encoding="utf-8").splitlines()[:args.prompts]]
    alone, loop = lm_in_process(bundle, prompts, args.threads, args.max_tokens)
    print(f"in-process streams: {loop['tokens_per_s']:.1f} tokens/s, TTFT p50 {loop['ttft_p50_ms']:.0f} ms", file=sys.stderr)
    timeout = args.timeout or 2 * args.queue / loop["replies_per_s"]
    proc, port, cold = start_server(bundle, args.threads, args.queue)
    rows = []
    try:
        started = rss_mb(proc.pid)
        asyncio.run(lm_load(port, prompts, max(args.concurrency), args.seconds / 2, timeout, args.max_tokens))
        warm = rss_mb(proc.pid)
        print(f"warm-up at concurrency {max(args.concurrency)}: RSS {started:.1f} → {warm:.1f} MB", file=sys.stderr)
        for c in args.concurrency:
            before = rss_mb(proc.pid)
            r = asyncio.run(lm_load(port, prompts, c, args.seconds, timeout, args.max_tokens))
            after = rss_mb(proc.pid)
            answers = r.pop("answers")
            rows.append({"concurrency": c, **r, "differ_from_alone": sum(a != alone[p] for p, a in answers),
                         "rss_before_mb": before, "rss_after_mb": after, "rss_growth": (after - before) / before,
                         "tokens_per_s_vs_loop": r["tokens_per_s"] / loop["tokens_per_s"]})
            print(f"concurrency {c}: {r['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
    finally:
        proc.terminate()
        rc = proc.wait(30)
    out = args.out if args.out != HERE / "results" / "serve.json" else HERE / "results" / "serve_generate.json"
    write_json(out, {"machine": _machine(), "bundle": Path(bundle).name, "threads": args.threads, "queue": args.queue,
                     "seconds": args.seconds, "prompts": len(prompts), "max_tokens": args.max_tokens,
                     "timeout_s": timeout, "rss_started_mb": started, "rss_after_warmup_mb": warm,
                     "in_process": loop, "cold_start_ms": cold * 1e3, "rows": rows, "sigterm_exit_code": rc})
    print(f"\nin-process Generator.stream: {loop['tokens_per_s']:.1f} tokens/s, TTFT p50 {loop['ttft_p50_ms']:.0f} ms; "
          f"{len(prompts)} prompts, {args.max_tokens} tokens each; cold start {cold * 1e3:.0f} ms; threads {args.threads}; "
          f"timeout {timeout:.0f} s; RSS {started:.1f} MB started, {warm:.1f} MB after the warm-up")
    print("| clients | replies/s | tokens/s | vs loop | TTFT p50 ms | TTFT p99 ms | 503 | errors | timeouts | ≠ alone | RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['replies_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['tokens_per_s_vs_loop']:.0%} | "
              f"{r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | {r['busy']} | {r['errors']} | {r['timeouts']} | "
              f"{r['differ_from_alone']} of {r['replies_ok']} | {r['rss_before_mb']:.1f} → {r['rss_after_mb']:.1f} "
              f"({r['rss_growth']:+.1%}) |")
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--make-bundle", type=Path, help="build the INT8 MiniLM bundle in this folder first")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--seconds", type=float, default=20.0, help="per concurrency level, and for the in-process loop")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads, server and in-process loop alike")
    ap.add_argument("--queue", type=int, default=32, help="the server's --queue")
    ap.add_argument("--timeout", type=float, help="a request unanswered this long is a timeout (default 10 s; "
                    "text generation: twice a full queue's wait)")
    ap.add_argument("--cold", type=int, default=5, help="cold starts to time")
    ap.add_argument("--make-lm-bundle", type=Path, help="export the embedded SmolLM2 at INT4 in this folder first")
    ap.add_argument("--prompts", type=int, default=8, help="text generation: prompts from the shipped test sample")
    ap.add_argument("--max-tokens", type=int, default=64, help="text generation: tokens per reply")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    args = ap.parse_args()
    bundle = (make_bundle(args.make_bundle) if args.make_bundle else
              make_lm_bundle(args.make_lm_bundle) if args.make_lm_bundle else args.bundle)
    if bundle is None:
        ap.error("give a BUNDLE, --make-bundle DIR or --make-lm-bundle DIR")
    if json.loads(Path(bundle, "edgeft.json").read_text())["task"] == "text-generation":
        return main_generate(args, bundle)
    pool = texts()

    alone, loop = in_process(bundle, pool, args.threads, args.seconds)
    print(f"in-process loop: {loop['texts_per_s']:.1f} texts/s, p50 {loop['p50_ms']:.2f} ms", file=sys.stderr)
    cold = []
    for _ in range(args.cold):
        proc, _, seconds = start_server(bundle, args.threads, args.queue)
        proc.terminate()
        proc.wait(30)
        cold.append(seconds)
    print(f"cold start: median {statistics.median(cold) * 1e3:.0f} ms", file=sys.stderr)

    proc, port, _ = start_server(bundle, args.threads, args.queue)
    rows = []
    try:
        for c in args.concurrency:
            before = rss_mb(proc.pid)
            r = asyncio.run(load(port, pool, c, args.seconds, args.timeout or 10.0))
            after = rss_mb(proc.pid)
            answers = r.pop("answers")
            differ = sum(a != alone[t] for t, a in answers)
            rows.append({"concurrency": c, **r, "differ_from_alone": differ, "rss_before_mb": before, "rss_after_mb": after,
                         "rss_growth": (after - before) / before,
                         "throughput_vs_loop": r["requests_per_s"] / loop["texts_per_s"]})
            print(f"concurrency {c}: {r['requests_per_s']:.1f} req/s", file=sys.stderr)
        metrics = asyncio.run(_get(port, "/metrics")).decode()
    finally:
        proc.terminate()
        rc = proc.wait(30)
    model = json.loads(Path(bundle, "edgeft.json").read_text())
    result = {"machine": _machine(), "bundle": {"path": Path(bundle).name, "batching": model.get("batching"),
                                                "quantization": model.get("quantization", {}).get("candidate")},
              "threads": args.threads, "queue": args.queue, "seconds": args.seconds, "texts": len(pool),
              "in_process_loop": loop, "cold_start_ms": [c * 1e3 for c in cold],
              "cold_start_ms_median": statistics.median(cold) * 1e3, "rows": rows, "sigterm_exit_code": rc,
              "server_model_calls": _metric(metrics, "edgeft_model_calls_total"),
              "server_texts": _metric(metrics, "edgeft_texts_total")}
    write_json(args.out, result)
    print(f"\nin-process loop of Predictor.predict: {loop['texts_per_s']:.1f} texts/s (p50 {loop['p50_ms']:.2f} ms, "
          f"p99 {loop['p99_ms']:.2f} ms); cold start median {result['cold_start_ms_median']:.0f} ms "
          f"(min {min(cold) * 1e3:.0f}, max {max(cold) * 1e3:.0f}); threads {args.threads}, queue {args.queue}")
    print("| clients | req/s | vs loop | p50 ms | p99 ms | 503 | other errors | timeouts | ≠ alone | RSS before → after MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests_per_s']:.1f} | {r['throughput_vs_loop']:.0%} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['busy']} | {r['errors']} | {r['timeouts']} | {r['differ_from_alone']} of "
              f"{r['requests_ok']} | {r['rss_before_mb']:.1f} → {r['rss_after_mb']:.1f} ({r['rss_growth']:+.1%}) |")
    print(f"wrote {args.out}")


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
    _, _, body = await _response(reader)
    writer.close()
    return body


def _metric(text: str, name: str) -> float:
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), float("nan"))


def _machine() -> dict:
    from edgeft.runtime.bench import machine_info

    return {**machine_info(), "load_average": os.getloadavg()}


if __name__ == "__main__":
    main()
