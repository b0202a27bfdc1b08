"""Generative fine-tuning benchmark: LoRA on the embedded SmolLM2-135M-Instruct, "answer from the passage"
pairs made from SQuAD, on this machine's CPU cores.

    HF_HUB_OFFLINE=1 python benchmarks/finetune_lm.py                       # 200 pairs, 1 epoch, projected to 1,000
    HF_HUB_OFFLINE=1 python benchmarks/finetune_lm.py --pairs 1000          # the full 1,000 (about the target time)
    HF_HUB_OFFLINE=1 python benchmarks/finetune_lm.py --steps 8             # LoRA dropout / grouping, step by step
    python benchmarks/finetune_lm.py --write-sample                         # rebuild edgeft/samples/squad_answers_*.jsonl

Writes benchmarks/results/finetune_lm.json and prints a table. Target (README "Generative models:
fine-tuning"): LoRA on 1,000 pairs in <= 10 minutes on 2 cores. With fewer pairs than 1,000 the
minutes for 1,000 are *projected* from the measured examples/s (training time is linear in the
examples at a fixed length); the JSON says which. HF_HUB_OFFLINE=1: without a network, peft's
adapter save otherwise waits on hub look-ups at every checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SQUAD = HERE.parent.parent / "shared" / "datasets" / "squad"
SAMPLES = HERE.parent / "edgeft" / "samples"
INSTRUCTION = "Answer from the passage."


def pairs(squad_jsonl: Path, n: int, seed: int = 0, max_words: int = 40) -> list[dict]:
    """``n`` prompt/response rows from SQuAD questions: the prompt holds the one sentence of the
    context that contains the first answer (short prompts keep training fast), the response is the answer.
    Questions whose sentence has more than ``max_words`` words, or whose answer crosses a sentence, are left out."""
    rows = []
    for line in squad_jsonl.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        answer, start = q["answers"]["text"][0], q["answers"]["answer_start"][0]
        for m in re.finditer(r"[^.!?]+(?:[.!?]+|$)", q["context"]):  # sentences, ends kept
            if m.start() <= start and start + len(answer) <= m.end():
                sentence = m.group().strip()
                if len(sentence.split()) <= max_words:
                    rows.append({"prompt": f"{INSTRUCTION}\nPassage: {sentence}\nQuestion: {q['question'].strip()}",
                                 "response": answer.strip()})
                break
    random.Random(seed).shuffle(rows)
    return rows[:n]


def write_rows(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def machine() -> dict:
    from edgeft.versions import versions

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions()}


def step_times(squad_jsonl: Path, work: Path, steps: int, batch_size: int) -> dict:
    """Seconds of ``steps`` LoRA training steps (forward, backward, AdamW) per variant: adapter dropout
    0.05 or 0, random or length-grouped batches (the Trainer's LengthGroupedSampler). The variants' steps
    alternate in one process, so a noisy machine slows them alike; step 1 of each is left out (warm-up)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from edgeft.data import read_dataset
    from edgeft.train.causal_lm import add_lora, collate_lm, encode_lm, load_lm, reply_loss
    from edgeft.train.config import TrainConfig
    from edgeft.train.model_source import resolve_model

    work.mkdir(parents=True, exist_ok=True)
    write_rows(pairs(squad_jsonl, steps * batch_size), work / "steps.jsonl")
    ds = read_dataset(work / "steps.jsonl", task="text-generation")
    variants = {"dropout 0.05, random batches": (0.05, False), "dropout 0, random batches": (0.0, False),
                "dropout 0, grouped by length": (0.0, True)}
    runs = []
    for dropout, grouped in variants.values():
        cfg = TrainConfig(task="text-generation", lora_dropout=dropout)
        tokenizer, model, _ = load_lm(resolve_model(None, "text-generation")[0], cfg)
        model = add_lora(model, cfg).train()
        feats, _ = encode_lm(ds, tokenizer, 2048, skip_bad_rows=False)
        lengths = [len(f["input_ids"]) for f in feats]
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(0))
                     if grouped else range(len(feats)))
        tokenizer.padding_side = "right"
        collate = collate_lm(tokenizer)
        batches = [collate([dict(feats[i]) for i in order[k:k + batch_size]]) for k in range(0, len(order), batch_size)]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
        runs.append((model, opt, batches, []))
    for step in range(steps):
        for model, opt, batches, seconds in runs:
            batch = dict(batches[step])
            labels = batch.pop("labels")
            started = time.perf_counter()
            reply_loss(model(**batch), labels).backward()
            opt.step()
            opt.zero_grad()
            seconds.append(time.perf_counter() - started)
    return {name: {"seconds": round(sum(sec[1:]), 2), "steps_timed": steps - 1,
                   "padded_tokens": sum(b["input_ids"].numel() for b in batches)}
            for name, (_, _, batches, sec) in zip(variants, runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200, help="training pairs (1,000 = the target's size)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--squad", type=Path, default=SQUAD, help="folder with SQuAD train/test JSONL")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeft-bench-lm"))
    ap.add_argument("--write-sample", action="store_true", help="write the shipped sample files and stop")
    ap.add_argument("--steps", type=int, default=0, help="time N steps per LoRA variant instead (dropout, grouping)")
    args = ap.parse_args()
    if args.steps:
        result = {"steps": step_times(args.squad / "train.jsonl", args.work, args.steps, args.batch_size),
                  "batch_size": args.batch_size, "machine": machine()}
        (HERE / "results" / "finetune_lm_steps.json").write_text(json.dumps(result, indent=2) + "\n")
        print("| variant | seconds | padded tokens |\n|---|---:|---:|")
        for name, r in result["steps"].items():
            print(f"| {name} | {r['seconds']:.1f} ({r['steps_timed']} steps) | {r['padded_tokens']:,} |")
        return
    if args.write_sample:  # 400 train pairs (train articles), 100 test pairs (test articles: never seen)
        write_rows(pairs(args.squad / "train.jsonl", 400, seed=0), SAMPLES / "squad_answers_train.jsonl")
        write_rows(pairs(args.squad / "test.jsonl", 100, seed=0), SAMPLES / "squad_answers_test.jsonl")
        return

    from edgeft.recipe import LM_TRAIN
    from edgeft.stage import Splits
    from edgeft.train.config import TrainConfig
    from edgeft.train.finetune import finetune

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    n_val = max(10, args.pairs // 10)
    train = args.work / "train.jsonl"
    write_rows(pairs(args.squad / "train.jsonl", args.pairs + n_val, seed=0), train)  # val carved from it
    test = args.work / "test.jsonl"
    write_rows(pairs(args.squad / "test.jsonl", 40, seed=0), test)
    lm = {**LM_TRAIN, "epochs": args.epochs, "batch_size": args.batch_size}  # what a build trains with
    cfg = TrainConfig(task="text-generation", **lm, validation_fraction=n_val / (args.pairs + n_val),
                      generation_examples=40, max_new_tokens=16)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    metrics = finetune(None, args.work / "run", Splits(train, test=test), cfg).metrics
    wall = time.perf_counter() - started
    t = metrics["train"]
    per_epoch_1000 = 1000 / t["examples_per_second"] / 60  # minutes for one pass over 1,000 pairs
    result = {
        "model": metrics["model"], "method": t["method"], "trainable_parameters": t["trainable_parameters"],
        "adapter": metrics["adapter"], "pairs": t["examples"], "epochs": t["epochs"], "batch_size": args.batch_size,
        "group_by_length": cfg.group_by_length,
        "train_tokens": t["tokens"], "precision": t["precision"], "train_seconds": t["seconds"],
        "examples_per_second": t["examples_per_second"],
        "minutes_for_1000_pairs_one_epoch": round(per_epoch_1000, 2),
        "minutes_1000_measured_or_projected": "measured" if t["examples"] >= 1000 else "projected from examples/s",
        "wall_seconds_whole_stage": round(wall, 1),  # + model load, splits, evaluation, merge, save
        "validation": {k: metrics["validation"].get(k) for k in ("perplexity", "exact_match", "f1", "n")},
        "test": {k: metrics["test"].get(k) for k in ("perplexity", "exact_match", "f1", "n", "generated")},
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count(),
        "load_before": load_before, "load_after": os.getloadavg()[0], "machine": machine(),
    }
    out = HERE / "results" / "finetune_lm.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| model | method | pairs | epochs | examples/s | train s | 1,000 pairs, 1 epoch | test ppl | test EM | test F1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {metrics['model'].split(' ')[0]} | {t['method']} r={cfg.lora_r} | {t['examples']} | {t['epochs']:.2f} | "
          f"{t['examples_per_second']:.2f} | {t['seconds']:.0f} | {per_epoch_1000:.1f} min "
          f"({result['minutes_1000_measured_or_projected']}) | {metrics['test']['perplexity']:.2f} | "
          f"{metrics['test'].get('exact_match', 0):.3f} | {metrics['test'].get('f1', 0):.3f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
