"""``edgeft build`` for text generation: prompt/response (or chat, or plain) text in, a device bundle out.

    fine-tune (LoRA, merged) → export FP32 / INT8 / INT4 decoders, each parity checked against PyTorch
      → evaluate every variant on the test split through the runtime (perplexity, token F1 / exact
        match of greedy replies, greedy agreement with FP32) → benchmark them in one interleaved run
      → keep the fastest (decode tokens/s at the target's threads) within the budget → DIR/bundle + report

The budget (``max_accuracy_drop``, 0.01 by default) is on the token F1 of the greedy replies, in points
below the FP32 bundle's (1 pt by default); on plain-text data, which has no replies to score, on
perplexity, which may grow by that fraction. Stages are cached as in ``edgeft.build``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeft import __version__
from edgeft.errors import ConfigError
from edgeft.recipe import Recipe
from edgeft.stage import Progress, Splits

WEIGHTS = ("fp32", "int8", "int4")  # the variants, in report order: FP32 is the reference


@dataclass
class LMVariant:
    """One text-generation bundle and what was measured on it."""

    name: str  # fp32 | int8 | int4
    bundle: Path
    description: str
    size_mb: float = 0.0  # model.onnx + model.onnx.data
    perplexity: float = 0.0  # over the reply tokens of the test split, through the runtime
    f1: float | None = None  # token F1 of greedy replies vs the references (None: plain text, no replies)
    exact_match: float | None = None
    drop_pt: float = 0.0  # FP32 F1 − this, in points (plain text: perplexity change, in %)
    agreement: float = 1.0  # share of test prompts whose greedy reply equals the FP32 bundle's
    parity: dict = field(default_factory=dict)  # the export's checks: FP32 vs PyTorch, this vs FP32
    bench: dict = field(default_factory=dict)  # ttft_ms, prefill/decode tokens/s, peak_rss_mb
    within_budget: bool = True
    why: str = ""  # why it is over budget


def check_lm_recipe(r: Recipe) -> None:
    """The settings a generative build cannot use: a clear message instead of a silent skip."""
    if r.distill_layers not in ("auto", "off"):
        raise ConfigError(f"--distill {r.distill_layers}: distillation makes encoder students; a text-generation build "
                          "does not distill (use --distill off, or leave the default)")
    if r.trim_vocab == "on":
        raise ConfigError("--trim-vocab on: vocabulary trimming handles encoders only; use off or auto for text "
                          "generation")
    if r.target == "android-arm64":
        raise ConfigError("--target android-arm64: the Android demo runs encoder bundles; for text generation choose "
                          "arm64, rpi4, rpi5 or x86_64")
    if r.zip:
        raise ConfigError("--zip: a text-generation bundle keeps its weights in model.onnx.data beside the graph "
                          "and runs from a folder; drop --zip")


def bench_threads(r: Recipe) -> int:
    """The target's runtime threads, capped at this machine's cores (what a device of it would use)."""
    from edgeft.targets import resolve_target

    t = resolve_target(r.target).threads or 4
    return max(1, min(t, os.cpu_count() or 1))


def lm_plan(r: Recipe) -> list[str]:
    t = r.train
    return [f"fine-tune {r.model or 'the embedded SmolLM2-135M-Instruct'} for text generation "
            f"({'full' if t.full else f'LoRA r={t.lora_r}'}, {t.epochs:g} epoch{'' if t.epochs == 1 else 's'}, lr {t.lr:g}, batch {t.batch_size}"
            + (f", {t.max_train_samples} samples" if t.max_train_samples else "") + "), merged",
            "export FP32, INT8 and INT4 decoders (KV cache), each parity checked against PyTorch",
            "evaluate every variant on the test split through the runtime (perplexity, token F1 of greedy replies, "
            "greedy agreement with FP32)",
            f"benchmark every variant ({r.generation_runs} greedy generations each, {bench_threads(r)} threads, "
            "interleaved)",
            f"keep the {'fastest (decode tokens/s)' if r.optimize == 'latency' else 'smallest'} variant within "
            f"{100 * r.max_accuracy_drop:g} pt of FP32's token F1"]


def build_lm(r: Recipe, out: Path, data: Splits, progress: Progress, timed, timings: dict, started: float) -> dict:
    """The generative pipeline, from the checked data to the report (``edgeft.build._build`` calls it)."""
    from edgeft.build import stage_train, write_final

    cfg = r.stage_configs(r.train.max_length)  # max_length None: the model's context window (causal_lm)
    # 1. fine-tune + merge (the reference: every variant is compared with its FP32 export)
    model = timed("train", lambda: stage_train(r.model, out, data, cfg["train"], progress))
    splits = data.saved(model / "data")  # the split the model was trained and scored on
    # 2. export + parity + weight quantization, one bundle per weight format
    prompts = parity_prompts(model, splits.validation, cfg["export_lm"].parity_prompts)
    variants = [LMVariant(w, timed(f"export {w}", lambda w=w: stage_export_lm(
        model, out, replace(cfg["export_lm"], weights=w), prompts, progress)),
        f"fine-tuned model, {w.upper()} weights" + ("" if w == "fp32" else " (MatMulNBits)")) for w in WEIGHTS]
    # 3. evaluate every variant on the test split through the runtime, 4. benchmark them together
    timed("evaluate", lambda: evaluate_lm_variants(variants, splits.test, r, progress))
    bench = timed("benchmark", lambda: benchmark_lm_variants(variants, r, progress))
    # 5. choose and write DIR/bundle
    chosen, why = choose_lm(variants, r)
    final = write_final(chosen, out, False)
    report = lm_report(r, variants, chosen, why, final, bench, timings, time.perf_counter() - started, model)
    write_lm_report(report, out)
    progress(f"chose {chosen.name}: {why}")
    return report


def parity_prompts(model_dir: Path, validation: Path, n: int) -> list[str]:
    """The first ``n`` validation prompts as the model reads them (its chat template, generation prompt
    added): the export's parity check runs on real prompts of this task, not generic ones."""
    from transformers import AutoTokenizer

    from edgeft.data import read_dataset

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [ex for ex in read_dataset(validation, task="text-generation").examples if ex.prompt][:n]
    return [tok.apply_chat_template([{"role": r, "content": c} for r, c in ex.prompt], tokenize=False,
                                    add_generation_prompt=True) for ex in rows]


def stage_export_lm(model_dir: Path, out: Path, cfg, prompts: list[str], progress: Progress) -> Path:
    from edgeft.build import key_of, run_stage
    from edgeft.compress.export_lm import export_lm

    key = key_of("export_lm", model_dir.name, asdict(cfg), prompts)
    done = run_stage(out, f"export-lm-{cfg.weights}", key,
                     lambda tmp: export_lm(model_dir, tmp / "bundle", cfg, progress, prompts=prompts), progress)
    return done / "bundle"


def evaluate_lm_variants(variants: list[LMVariant], test: Path, r: Recipe, progress: Progress) -> None:
    """Perplexity and greedy replies of every variant on the test split (the runtime's ``edgeft eval``),
    agreement with FP32's replies, and the budget verdict."""
    from edgeft.runtime.generate import Generator
    from edgeft.runtime.generate_eval import evaluate_generation

    ref = ref_replies = None
    for v in variants:
        progress(f"[evaluate] {v.name} on {test.name}")
        g = Generator.load(v.bundle, threads=bench_threads(r))
        m = evaluate_generation(g, test, max_new_tokens=r.train.max_new_tokens, keep_replies=True)
        v.perplexity, v.f1, v.exact_match = m["perplexity"], m.get("f1"), m.get("exact_match")
        v.size_mb = round(sum(f.stat().st_size for f in v.bundle.glob("model.onnx*")) / 1e6, 2)
        manifest = json.loads((v.bundle / "edgeft.json").read_text())
        v.parity = {"pytorch": {k: manifest["parity"][k] for k in ("max_abs_diff", "greedy_identical", "greedy_prompts",
                                                                   "new_tokens")},
                    "fp32_token_agreement": manifest["metrics"].get("greedy_token_agreement"),
                    "fp32_top1_agreement": manifest["metrics"].get("top1_agreement")}
        replies = m.get("replies", [])
        if ref is None:
            ref, ref_replies = v, replies
        v.agreement = sum(a == b for a, b in zip(replies, ref_replies)) / len(replies) if replies else 1.0
        judge(v, ref, r.max_accuracy_drop)


def judge(v: LMVariant, ref: LMVariant, max_drop: float) -> None:
    """The budget verdict: token F1 points below FP32's, or (plain text) perplexity growth in %."""
    budget = 100 * max_drop
    if ref.f1 is not None:
        v.drop_pt = round(100 * (ref.f1 - v.f1), 2)
        v.why = f"token F1 {100 * v.f1:.2f} is {v.drop_pt:.2f} pt below FP32's {100 * ref.f1:.2f} (budget {budget:g} pt)"
    else:
        v.drop_pt = round(100 * (v.perplexity / ref.perplexity - 1), 2)
        v.why = (f"perplexity {v.perplexity:.3f} is {v.drop_pt:+.2f} % of FP32's {ref.perplexity:.3f} "
                 f"(budget {budget:g} %)")
    v.within_budget = v is ref or v.drop_pt <= budget + 1e-9  # FP32 is the reference: always a candidate
    v.why = "" if v.within_budget else v.why


def benchmark_lm_variants(variants: list[LMVariant], r: Recipe, progress: Progress) -> dict:
    """All variants in one interleaved run (a worker process each) at the target's threads:
    TTFT for a 128-token prompt, prefill and decode tokens/s for 64 greedy tokens, peak RSS."""
    from edgeft.runtime.bench import model_specs
    from edgeft.runtime.generate_eval import run_generation_bench

    specs = [replace(s, name=v.name) for s, v in zip(model_specs([v.bundle for v in variants], None), variants)]
    ctx = json.loads((variants[0].bundle / "edgeft.json").read_text())["generation"]["context_length"]
    report = run_generation_bench(specs, [bench_threads(r)], prompt_tokens=min(128, ctx // 2),
                                  new_tokens=max(2, min(64, ctx // 4)), runs=r.generation_runs,
                                  progress=lambda m: progress(f"[benchmark] {m}"))
    for v in variants:
        row = next(x for x in report["rows"] if x["model"] == v.name)
        v.bench = {k: round(row[k], 2) for k in ("ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s",
                                                   "peak_rss_mb")} | {"threads": row["threads"]}
    return report["settings"]


def choose_lm(variants: list[LMVariant], r: Recipe) -> tuple[LMVariant, str]:
    """Fastest decoding (or smallest) within the budget; FP32 itself is always within it."""
    ok = [v for v in variants if v.within_budget]
    fast = r.optimize == "latency"
    best = max(ok, key=lambda v: v.bench["decode_tokens_per_s"]) if fast else min(ok, key=lambda v: v.size_mb)
    ref = variants[0]
    unit = "pt of FP32's token F1" if ref.f1 is not None else "% of FP32's perplexity"
    why = f"the {'fastest' if fast else 'smallest'} of {len(ok)} variants within {100 * r.max_accuracy_drop:g} {unit}"
    if best is not ref:
        ratio = (f"{best.bench['decode_tokens_per_s'] / ref.bench['decode_tokens_per_s']:.2f}x FP32's decode speed"
                 if fast else f"{ref.size_mb / best.size_mb:.1f}x smaller than FP32")
        why += f": {ratio} at {-best.drop_pt:+.2f} {'pt' if ref.f1 is not None else '%'}"
    rejected = [f"{v.name} ({v.why})" for v in variants if not v.within_budget]
    return best, why + (f"; over budget: {'; '.join(rejected)}" if rejected else "")


def lm_report(r: Recipe, variants: list[LMVariant], chosen: LMVariant, why: str, final: Path, bench: dict,
              timings: dict, seconds: float, model: Path) -> dict:
    from edgeft.runtime.bench import machine_info
    from edgeft.versions import versions

    metrics = json.loads((model / "metrics.json").read_text())
    test = metrics["test"]
    return {
        "task": "text-generation",
        "bundle": str(final),
        "chosen": chosen.name,
        "why": why,
        "metric": "f1" if variants[0].f1 is not None else "perplexity",
        "budget_pt": 100 * r.max_accuracy_drop,
        "variants": [{k: (str(x) if isinstance(x, Path) else x) for k, x in asdict(v).items()} for v in variants],
        "pytorch_fp32": {"perplexity": test["perplexity"], "f1": test.get("f1"), "exact_match": test.get("exact_match"),
                         "generated": test.get("generated"), "train_seconds": metrics["train"]["seconds"],
                         "train_examples": metrics["train"]["examples"],
                         "examples_per_second": metrics["train"]["examples_per_second"], "model": metrics["model"]},
        "bench_settings": bench,
        "stage_seconds": timings,
        "seconds": round(seconds, 1),
        "recipe": asdict(r),
        "machine": machine_info(),
        "versions": versions(),
        "edgeft": __version__,
    }


def write_lm_report(report: dict, out: Path) -> None:
    from edgeft.writable import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", lm_markdown(report))
    lm_plot(report, out / "report.png")


def lm_markdown(report: dict) -> str:
    pt, f1 = report["pytorch_fp32"], report["metric"] == "f1"
    lines = ["# edgeft build report (text generation)", "",
             f"Chosen: **{report['chosen']}** → `{report['bundle']}` — {report['why']}.", "",
             "| variant | what | size MB | perplexity | test EM | test F1 | drop | agreement | decode tok/s | "
             "TTFT ms | peak RSS MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pct = lambda x: "-" if x is None else f"{100 * x:.2f}"  # noqa: E731
    for v in report["variants"]:
        mark = " ✔" if v["name"] == report["chosen"] else ("" if v["within_budget"] else " (over budget)")
        b = v["bench"]
        lines.append(f"| {v['name']}{mark} | {v['description']} | {v['size_mb']:.1f} | {v['perplexity']:.3f} | "
                     f"{pct(v['exact_match'])} | {pct(v['f1'])} | {v['drop_pt']:+.2f} {'pt' if f1 else '%'} | "
                     f"{100 * v['agreement']:.0f}% | {b.get('decode_tokens_per_s', 0):.1f} | {b.get('ttft_ms', 0):.1f} | "
                     f"{b.get('peak_rss_mb', 0):.0f} |")
    m, b = report["machine"], report["bench_settings"]
    lines += ["", f"Budget: {report['budget_pt']:g} " + ("pt of token F1 (greedy replies vs references) below the FP32 "
              "bundle." if f1 else "% of perplexity above the FP32 bundle (plain text: no replies to score)."),
              f"PyTorch FP32 (merged model) on the test split: perplexity {pt['perplexity']:.3f}"
              + (f", EM {pct(pt['exact_match'])}, F1 {pct(pt['f1'])} ({pt['generated']} replies)" if pt["f1"] is not
                 None else "") + f"; fine-tuned on {pt['train_examples']} examples in {pt['train_seconds']:.0f} s.",
              "Agreement: share of test prompts whose greedy reply equals the FP32 bundle's. Speed: "
              f"{b['prompt_tokens']}-token prompt, {b['new_tokens']} greedy tokens, {b['threads'][0]} threads, median of "
              f"{b['runs']} interleaved runs (a worker process per variant).",
              f"Machine: {m.get('cpu', '?')}, {m.get('logical_cores', '?')} cores ({m.get('arch', '?')}). Build time: "
              f"{report['seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in report['stage_seconds'].items())}).",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "."]
    return "\n".join(lines) + "\n"


def lm_plot(report: dict, path: Path) -> None:
    """Token F1 (or perplexity) vs decode tokens/s; marker area ∝ size; the chosen variant ringed."""
    from edgeft.build import budget_plot

    vs, f1 = report["variants"], report["metric"] == "f1"
    y0 = 100 * vs[0]["f1"] if f1 else vs[0]["perplexity"]
    budget_plot(path, [(v["name"], v["size_mb"], v["bench"].get("decode_tokens_per_s", 0),
                        100 * v["f1"] if f1 else v["perplexity"], max(30, 0.6 * v["size_mb"])) for v in vs],
                report["chosen"], y0 - report["budget_pt"] if f1 else y0 * (1 + report["budget_pt"] / 100),
                f"budget: FP32 {'−' if f1 else '+'} {report['budget_pt']:g} {'pt' if f1 else '%'}",
                f"decode tokens/s ({vs[0]['bench'].get('threads', '?')} threads)",
                "test token F1 of greedy replies (%)" if f1 else "test perplexity",
                "edgeft build: quality vs decode speed (marker size = bundle size)")
