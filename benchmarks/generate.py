"""Generative benchmark: edgeft's text-generation bundles vs PyTorch FP32 and onnxruntime-genai's INT4.

    python benchmarks/generate.py --model HF_DIR --bundles runs/lm-fp32 runs/lm-int8 runs/lm-int4 \
        --genai runs/genai-int4 --threads 1 2 --out benchmarks/results/generate.json

Each (runtime, threads) row runs in its own process (peak RSS is that process's ru_maxrss), rows are
interleaved round by round. Prompt: the first 128 tokens of a SQuAD test context; 64 greedy new
tokens (EOS ignored). TTFT = prefill + first token; decode tokens/s = tokens after the first / time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "squad" / "test.jsonl"


def prompt_ids(tokenizer_json: str, n: int = 128) -> list[int]:
    from tokenizers import Tokenizer

    ctx = json.loads(SQUAD.read_text(encoding="utf-8").splitlines()[0])["context"]
    return Tokenizer.from_file(tokenizer_json).encode(ctx).ids[:n]


def run_edgeft(bundle: str, threads: int, new: int) -> dict:
    from edgeft.runtime.generate import Generator

    g = Generator.load(bundle, threads=threads)
    ids = prompt_ids(str(Path(bundle) / "tokenizer.json"))
    g.generate(ids[:8], max_new_tokens=4, ignore_eos=True)  # warm-up
    r = g.generate(ids, max_new_tokens=new, ignore_eos=True)
    return {"ttft_ms": r.ttft_s * 1e3, "decode_tok_s": r.decode_tokens_per_s, "tokens": r.token_ids}


def run_genai(folder: str, threads: int, new: int) -> dict:
    import onnxruntime_genai as og

    cfg = og.Config(folder)
    cfg.clear_providers()  # CPU, at the row's thread count like every other runtime here
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads,
                                                                      "inter_op_num_threads": 1}}}}))
    model = og.Model(cfg)
    ids = prompt_ids(str(Path(folder) / "tokenizer.json"))
    p = og.GeneratorParams(model)
    p.set_search_options(max_length=len(ids) + new, do_sample=False, min_length=len(ids) + new)
    g = og.Generator(model, p)
    t = time.perf_counter()
    g.append_tokens(ids)
    g.generate_next_token()
    t1 = time.perf_counter()
    out = [int(g.get_next_tokens()[0])]
    while len(out) < new:
        g.generate_next_token()
        out.append(int(g.get_next_tokens()[0]))
    return {"ttft_ms": (t1 - t) * 1e3, "decode_tok_s": (new - 1) / (time.perf_counter() - t1), "tokens": out}


def run_torch(model_dir: str, threads: int, new: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    m = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([prompt_ids(str(Path(model_dir) / "tokenizer.json"))])
    with torch.no_grad():
        t = time.perf_counter()
        m.generate(ids, max_new_tokens=1, do_sample=False)
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        out = m.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        total = time.perf_counter() - t
    return {"ttft_ms": ttft * 1e3, "decode_tok_s": (new - 1) / max(total - ttft, 1e-9), "tokens": out[0, ids.shape[1]:].tolist()}


def child(kind: str, path: str, threads: int, new: int) -> None:
    row = {"edgeft": run_edgeft, "genai": run_genai, "torch": run_torch}[kind](path, threads, new)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(row))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--bundles", nargs="+", default=[])
    ap.add_argument("--genai")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/generate.json")
    ap.add_argument("--child", nargs=4)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
    runs = [("torch", a.model)] + ([("genai", a.genai)] if a.genai else []) + [("edgeft", b) for b in a.bundles]
    rows = []
    for threads in a.threads:  # interleaved: every runtime once per thread count, in a row
        for kind, path in runs:
            proc = subprocess.run([sys.executable, __file__, "--model", a.model, "--child", kind, path, str(threads),
                                   str(a.new_tokens)], capture_output=True, text=True, check=True)
            row = {"runtime": kind, "path": path, "threads": threads, **json.loads(proc.stdout.strip().splitlines()[-1])}
            size = sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix in (".onnx", ".data", ".safetensors"))
            row["size_mb"] = size / 1e6
            if kind == "edgeft":
                m = json.loads((Path(path) / "edgeft.json").read_text())
                row["perplexity"] = (m["metrics"].get("variant") or m["metrics"].get("fp32") or {}).get("perplexity")
                row["fp32_agreement"] = {k: m["metrics"].get(f) for k, f in (  # export-lm's, as perplexity
                    ("greedy", "greedy_token_agreement"), ("top1", "top1_agreement"))}
            rows.append(row)
            print(f"{kind:7} {Path(path).name:14} thr {threads}  {row['size_mb']:7.1f} MB  TTFT {row['ttft_ms']:6.0f} ms  "
                  f"decode {row['decode_tok_s']:6.1f} tok/s  RSS {row['peak_rss_mb']:6.0f} MB", flush=True)
    ref = {r["threads"]: r["tokens"] for r in rows if r["runtime"] == "torch"}
    for r in rows:
        r["greedy_equal_to_torch"] = sum(x == y for x, y in zip(r["tokens"], ref[r["threads"]]))  # same positions
    from edgeft.runtime.bench import machine_info

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine_info(),
                                       "new_tokens": a.new_tokens, "prompt_tokens": 128, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
