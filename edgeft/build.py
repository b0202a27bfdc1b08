"""``edgeft build``: labeled text in, a verified device bundle out — the whole pipeline on one screen
(text generation: the same start, then edgeft.build_lm).

    fine-tune → (distill) → (trim vocabulary) → export + parity → quantize for the target
      → evaluate every variant on the test split through the runtime → benchmark every variant
      → keep the fastest (or smallest) within the accuracy budget → DIR/bundle + report

Every stage writes into ``DIR/stages/<stage>-<key>/``, where the key is a hash of the stage's inputs
(upstream keys, data content, settings, edgeft version). A finished stage is marked done and reused,
so a build interrupted by Ctrl-C or kill resumes from the last finished stage, and changing only the
target reruns only quantization onwards. A stage works in a temp folder and is renamed when
complete: nothing is ever half-written under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from edgeft import __version__
from edgeft.errors import ConfigError
from edgeft.recipe import Recipe
from edgeft.stage import Progress, Splits
from edgeft.writable import atomic_file, atomic_folder, atomic_write_text



@dataclass
class Variant:
    """One candidate bundle and what was measured on it."""

    name: str  # fp32 | int8 | student3-int8 …
    bundle: Path
    description: str
    size_mb: float = 0.0
    metric: float = 0.0  # accuracy, entity F1 or SQuAD F1 on the test split, through the runtime
    exact_match: float | None = None  # question answering: SQuAD exact match on the test split
    drop_pt: float = 0.0  # FP32 − this, in points
    agreement: float = 1.0  # share of test predictions equal to the FP32 bundle's
    latency: dict = field(default_factory=dict)  # p50/p90/p99 ms, batch 1, 1 thread, real test sentences
    peak_rss_mb: float = 0.0
    within_budget: bool = True


def build(recipe: Recipe, out: str | Path, dry_run: bool = False, progress: Progress = print,
          force: bool = False) -> dict:
    """Run (or, with ``dry_run``, only validate and plan) the pipeline; returns the report.

    The stages' own chatter (the Trainer's loss lines) goes to stderr, so stdout carries only
    what the caller prints from the report. ``force``: build into a non-empty folder that is not
    a build folder (its other files are left alone).
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _build(recipe, Path(out), dry_run, progress, force)


def _build(recipe: Recipe, out: Path, dry_run: bool, progress: Progress, force: bool = False) -> dict:
    r = recipe.resolved()
    from edgeft.data import detect_task

    data = check_inputs(r, out, force)  # everything a user can get wrong fails here, before any training
    task = r.task or detect_task(data.train)
    lm = task == "text-generation"  # a decoder: edgeft.build_lm's pipeline after the shared start
    if lm:
        from edgeft import build_lm

        r = replace(recipe.resolved(task), task=task)
        build_lm.check_lm_recipe(r)
    qa = task == "question-answering"
    cfg = r.stage_configs(r.train.length(task))  # one max_length, seed, target and budget for every stage
    if qa and r.trim_vocab == "on":
        raise ConfigError("trim_vocab = on: vocabulary trimming does not handle question answering yet; use off.")
    plan = build_lm.lm_plan(r) if lm else stages_plan(r, cfg, qa)
    if dry_run:
        return {"recipe": asdict(r), "data": {k: str(v) if v else None for k, v in data.files().items()}, "plan": plan}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe.toml", recipe.to_toml(f"edgeft {__version__} build recipe — rerun with:\n"
                                                          f"  edgeft build --recipe {out / 'recipe.toml'} --out {out}"))
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        return result

    if lm:
        return build_lm.build_lm(r, out, data, progress, timed, timings, started)
    # 1. fine-tune (the reference: everything is compared with this model's FP32 ONNX export)
    teacher = timed("train", lambda: stage_train(r.model, out, data, cfg["train"], progress))
    splits = data.saved(teacher / "data")  # the split the teacher was trained and scored on, for every stage
    # 2. distill a smaller student, 3. trim the vocabulary of the smallest model (both optional)
    smaller = []  # (variant name, description, HF folder): models that go to the device as INT8 only
    trimmed = None
    layers, student, augment = distill_layers(r, teacher_layers(teacher)), None, 0
    if layers:
        augment = build_augment(cfg["distill"], splits, qa)
        distill_cfg = replace(cfg["distill"], layers=layers, augment=augment)
        student = timed("distill", lambda: stage_distill(teacher, out, splits, distill_cfg, progress))
        smaller.append((f"student{layers}-int8", f"{layers}-layer student distilled from the fine-tuned model", student))
    if not qa and (r.trim_vocab == "on" or (r.trim_vocab == "auto" and vocab_size(teacher) > 10_000)):
        name, what, base = smaller.pop() if smaller else ("int8", "fine-tuned model", teacher)
        corpus = base / "data" / "transfer.jsonl"  # a student's: its augmented words keep their pieces
        trim_splits = replace(splits, train=corpus) if corpus.is_file() else splits
        trim_cfg = cfg["trim"]
        if trim_cfg.max_tokens is None and augment and student is not None:  # the augmented words' pieces
            trim_cfg = replace(trim_cfg, max_tokens=trim_cap(teacher, base))  # must not cost the size target
        trimmed = timed("trim", lambda: stage_trim(base, out, trim_splits, trim_cfg, progress))
        smaller.append((name.replace("int8", "trim-int8"), f"{what}, vocabulary trimmed", trimmed))
    # 4. export + parity, 5. quantize for the target
    variants = [Variant("fp32", timed("export", lambda: stage_export(teacher, out, splits, cfg["export"], progress)),
                        "fine-tuned model, ONNX FP32")]
    for name, what, model in [("int8", "fine-tuned model", teacher), *smaller]:
        bundle = timed(f"quantize {name}", lambda: stage_quantize(model, out, splits, cfg["quantize"], progress))
        variants.append(Variant(name, bundle, f"{what}, INT8 for {r.target}"))
    # 6. evaluate every variant on the test split through the runtime, 7. benchmark them together
    timed("evaluate", lambda: evaluate_variants(variants, splits.test, r, progress))
    timed("benchmark", lambda: benchmark_variants(variants, splits.test, r, cfg["train"].max_length, progress))
    # 8. choose and write DIR/bundle
    chosen, why = choose(variants, r)
    final = write_final(chosen, out, r.zip)
    mobile = mobile_check(final, r) if r.target == "android-arm64" else None
    report = make_report(r, variants, chosen, why, final, mobile, timings, time.perf_counter() - started, teacher,
                         student, trimmed)
    if r.target == "android-arm64" and not qa:  # the Android demo's assets: string-in model, ORT model, labels
        from edgeft.compress.android_assets import build_assets

        report["android"] = build_assets(final, out / "android", splits.test, progress)
    write_report(report, out)
    progress(f"chose {chosen.name}: {why}")
    return report


def check_inputs(r: Recipe, out: Path, force: bool = False) -> Splits:
    """Validate data, model, target and output before any work; returns the data files to use."""
    from edgeft.data import read_dataset, split_dataset
    from edgeft.recipe import data_files
    from edgeft.train.model_source import resolve_model
    from edgeft.writable import check_writable

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder.")
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "recipe.toml").exists() and not force:
        raise ConfigError(f"--out {out} is not empty and not an edgeft build folder; choose a new folder, "
                          "or pass --force to build into it (its other files are left alone).")
    data = data_files(r)
    train = read_dataset(data.train, task=r.task, **data.columns())
    for name in ("validation", "test"):
        if getattr(data, name):
            read_dataset(getattr(data, name), task=train.task, **data.columns())
    if not (data.validation and data.test):  # the split will work: every class is large enough
        t = r.train
        split_dataset(train, 0 if data.validation else t.validation_fraction, 0 if data.test else t.test_fraction,
                      seed=t.seed)
    resolve_model(r.model, train.task)
    return data


def stages_plan(r: Recipe, cfg: dict, qa: bool = False) -> list[str]:
    t = cfg["train"]
    plan = [f"fine-tune {r.model or 'the embedded all-MiniLM-L6-v2'} ({t.epochs:g} epochs"
            + (f", {t.max_train_samples} samples" if t.max_train_samples else "") + f", {t.max_length} tokens)"]
    if r.distill_layers != "off":
        plan.append(f"distill a student with {r.distill_layers if r.distill_layers != 'auto' else 'half the'} layers")
    if r.trim_vocab != "off" and not qa:
        plan.append("trim the vocabulary to the training data" + (" (when it has over 10,000 tokens)"
                                                                  if r.trim_vocab == "auto" else ""))
    plan += ["export to ONNX FP32 and check parity with PyTorch",
             f"quantize to INT8 for {r.target} (mode {r.quantize.mode}) on the validation split",
             "evaluate every variant on the test split through the runtime",
             f"benchmark every variant ({r.bench_runs} batch-1 calls, 1 thread, real test sentences)",
             f"keep the {'fastest' if r.optimize == 'latency' else 'smallest'} variant within "
             f"{100 * r.max_accuracy_drop:g} pt of FP32"]
    return plan


# --- stages ---------------------------------------------------------------------------------------


def key_of(*parts) -> str:
    """12 hex chars of sha256 over the stage inputs (JSON, sorted keys) and the edgeft version."""
    blob = json.dumps([__version__, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def file_key(path: Path | str | None) -> str | None:
    """Content hash of a data file (not its path or mtime: a copy elsewhere reuses the stage)."""
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_stage(out: Path, name: str, key: str, work: Callable[[Path], None], progress: Progress,
              resumable: bool = False) -> Path:
    """Run ``work(tmp)`` unless ``stages/<name>-<key>`` is done; rename tmp into place when complete.

    A resumable stage (training) keeps its temp folder across interruptions so the Trainer can
    continue from its last checkpoint; the others start over.
    """
    done = out / "stages" / f"{name}-{key}"
    if (done / ".done").is_file():
        progress(f"[{name}] cached ({done.name})")
        return done
    tmp = out / "stages" / f".{name}-{key}.partial"
    if tmp.exists() and not resumable:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    progress(f"[{name}] running")
    work(tmp)
    (tmp / ".done").write_text(json.dumps({"stage": name, "key": key, "finished": time.time()}))
    tmp.rename(done)
    return done


def _resumable(tmp: Path) -> bool:
    """A stage folder holding a Trainer checkpoint: the stage continues from it."""
    return (tmp / "checkpoints").is_dir() and any((tmp / "checkpoints").glob("checkpoint-*"))


def stage_train(model: str | None, out: Path, splits: Splits, cfg, progress: Progress) -> Path:
    from edgeft.train.finetune import finetune

    key = key_of("train", model, {k: file_key(v) for k, v in splits.files().items()}, splits.columns(), cfg.to_dict())
    work = lambda tmp: finetune(model, tmp, splits, replace(cfg, resume=_resumable(tmp), force=True), progress)  # noqa: E731
    return run_stage(out, "train", key, work, progress, resumable=True)


def teacher_layers(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("num_hidden_layers") or config.get("n_layers") or config.get("n_layer") or 0)


def vocab_size(model_dir: Path) -> int:
    return int(json.loads((model_dir / "config.json").read_text()).get("vocab_size", 0))


STUDENT_SHARE = 8  # a trimmed INT8 student weighs at most 1/8 of the FP32 ONNX teacher (the distillation target)
INT8_OVERHEAD = 1.02  # INT8 bundle bytes per parameter: 11.99 MB for 11.86 M on the SST-2 student (+ margin)


def parameter_shapes(model_dir: Path) -> list[tuple[int, ...]]:
    """The shapes of a folder's safetensors weights, read from their headers (no weights loaded)."""
    from safetensors import safe_open

    shapes = []
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as f:
            shapes += [tuple(f.get_slice(k).get_shape()) for k in f.keys()]
    return shapes


def trim_cap(teacher: Path, student: Path) -> int:
    """The tokens a student's trimmed vocabulary may keep for its INT8 bundle (about a byte a parameter)
    to weigh 1/STUDENT_SHARE of the FP32 teacher (4 bytes a parameter). Without a cap, the neighbour
    words of an augmented transfer set kept 16,130 tokens on the SST-2 sample (12.0 MB > 11.4 MB)."""
    import math

    budget = 4 * sum(math.prod(s) for s in parameter_shapes(teacher)) / STUDENT_SHARE / INT8_OVERHEAD
    shapes, vocab = parameter_shapes(student), vocab_size(student)
    per_token = sum(math.prod(s[1:]) for s in shapes if s and s[0] == vocab)  # embedding rows (and a tied head's)
    if not per_token:
        return vocab
    rest = sum(math.prod(s) for s in shapes) - vocab * per_token
    from edgeft.compress.trim_vocab import is_char_piece, read_tokenizer_spec

    spec = read_tokenizer_spec(student)  # never below what every trimmed vocabulary keeps (tiny models)
    floor = len(spec.get("added_tokens") or ()) + sum(is_char_piece(t, spec["model"]) for t in spec["model"]["vocab"])
    return max(floor, int((budget - rest) // per_token))


def distill_layers(r: Recipe, layers: int) -> int | None:
    """auto: half the teacher's layers, if the teacher has at least 4; N: N; off: no student."""
    d = r.distill_layers
    if d == "off":
        return None
    n = layers // 2 if d == "auto" else int(d)
    if d == "auto" and layers < 4:
        return None
    if not 1 <= n < layers:
        raise ConfigError(f"distill = {d}: the student needs between 1 and {layers - 1} layers "
                          f"(the teacher has {layers}).")
    return n


def build_augment(cfg, splits: Splits, qa: bool) -> int:
    """The variants per training row a build's student learns from: the recipe's ``augment`` if set;
    else BUILD_AUGMENT when the training split is small (under SMALL_DATA rows), where the student
    fell 2 pt behind the teacher on the 8,000-row SST-2 sample without them; 0 for question answering
    (an answer needs its span in the context) and for large data."""
    from edgeft.compress.distill.config import BUILD_AUGMENT, SMALL_DATA

    if cfg.augment is not None:
        return cfg.augment
    if qa:
        return 0
    with open(splits.train, "rb") as f:
        rows = sum(1 for line in f if line.strip())
    return BUILD_AUGMENT if rows < SMALL_DATA else 0


def stage_distill(teacher: Path, out: Path, splits: Splits, cfg, progress: Progress) -> Path:
    from edgeft.compress.distill import distill

    key = key_of("distill", teacher.name, asdict(cfg))

    def work(tmp: Path):
        distill(teacher, tmp, splits, replace(cfg, train=replace(cfg.train, resume=_resumable(tmp), force=True)),
                progress)

    return run_stage(out, "distill", key, work, progress, resumable=True)


def stage_trim(model_dir: Path, out: Path, splits: Splits, cfg, progress: Progress) -> Path:
    from edgeft.compress.trim_vocab import trim_vocab

    key = key_of("trim", model_dir.name, asdict(cfg))

    def work(tmp: Path):
        trim_vocab(model_dir, tmp / "model", splits, cfg, progress)
        for item in (tmp / "model").iterdir():  # the stage folder is the model folder
            item.replace(tmp / item.name)
        (tmp / "model").rmdir()

    return run_stage(out, "trim", key, work, progress)


def stage_export(model_dir: Path, out: Path, splits: Splits, cfg, progress: Progress) -> Path:
    from edgeft.compress.export import export

    key = key_of("export", model_dir.name, asdict(cfg))
    done = run_stage(out, "export", key, lambda tmp: export(model_dir, tmp / "bundle", splits, cfg, progress), progress)
    return done / "bundle"


def stage_quantize(model_dir: Path, out: Path, splits: Splits, cfg, progress: Progress) -> Path:
    from edgeft.compress.quantize import quantize

    key = key_of("quantize", model_dir.name, asdict(cfg))
    done = run_stage(out, f"quantize-{cfg.target}", key,
                     lambda tmp: quantize(model_dir, tmp / "bundle", splits, cfg, progress), progress)
    return done / "bundle"


# --- measure, choose, report ----------------------------------------------------------------------


def evaluate_variants(variants: list[Variant], test: Path, r: Recipe, progress: Progress) -> None:
    """Test-split metric of every variant through the runtime (batched as its manifest says, which
    scores what batch 1, the serving shape, scores), and its agreement with the FP32 bundle's predictions."""
    from edgeft.metrics import headline
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    reference = reference_preds = None  # the first variant (FP32)
    for v in variants:
        progress(f"[evaluate] {v.name} on {test.name}")
        # The splits saved by the train stage always use the text/label (tokens/tags) fields. Batched as the
        # bundle says (its manifest's batching: one row per call for dynamic INT8), so = batch-1 scores.
        result = evaluate(Predictor.load(v.bundle, threads=1, batch_size=32), test, keep_predictions=True)
        v.metric = headline(result)[1]
        v.exact_match = result.get("exact_match")
        v.size_mb = round((v.bundle / "model.onnx").stat().st_size / 1e6, 2)
        if reference is None:
            reference, reference_preds = v, result["predictions"]
        v.agreement = sum(a == b for a, b in zip(result["predictions"], reference_preds)) / max(1, len(reference_preds))
        v.drop_pt = round(100 * (reference.metric - v.metric), 2)
        v.within_budget = v.drop_pt <= 100 * r.max_accuracy_drop + 1e-9


def benchmark_variants(variants: list[Variant], test: Path, r: Recipe, max_length: int, progress: Progress) -> None:
    """All variants in one interleaved run (child process each), batch 1, 1 thread, real sentences."""
    from edgeft.runtime.bench import model_specs, run_bench

    specs = model_specs([v.bundle for v in variants], None)
    report = run_bench(specs, threads=[1], batches=[1], seq_lens=["real"], runs=r.bench_runs,
                       warmup=min(30, r.bench_runs), data=test, max_length=max_length,
                       progress=lambda m: progress(f"[benchmark] {m}"))
    for v, spec, model in zip(variants, specs, report["models"]):
        row = next(x for x in report["rows"] if x["model"] == spec.name)
        v.latency = {k: round(row[k], 3) for k in ("p50_ms", "p90_ms", "p99_ms")}
        v.peak_rss_mb = round(model["cold"]["1"].get("peak_rss_mb", 0.0), 1)


def choose(variants: list[Variant], r: Recipe) -> tuple[Variant, str]:
    """Fastest (or smallest) within the budget; FP32 itself is always within it."""
    ok = [v for v in variants if v.within_budget]
    key = (lambda v: v.latency["p50_ms"]) if r.optimize == "latency" else (lambda v: v.size_mb)
    best = min(ok, key=key)
    ref = variants[0]
    what = (f"{ref.latency['p50_ms'] / best.latency['p50_ms']:.2f}x the speed" if r.optimize == "latency"
            else f"{ref.size_mb / best.size_mb:.1f}x smaller")
    rejected = [v.name for v in variants if not v.within_budget]
    why = (f"the {'fastest' if r.optimize == 'latency' else 'smallest'} of {len(ok)} variants within "
           f"{100 * r.max_accuracy_drop:g} pt of FP32" + ("" if best is ref else
                                                          f": {what} of FP32 at {-best.drop_pt:+.2f} pt"))
    if rejected:
        why += f" (over budget: {', '.join(rejected)})"
    return best, why


def write_final(chosen: Variant, out: Path, zipped: bool) -> Path:
    """Copy the chosen bundle to DIR/bundle (or DIR/bundle.zip) via a temp name and a rename."""
    if zipped:
        import zipfile

        with atomic_file(out / "bundle.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(chosen.bundle.iterdir()):
                z.write(f, f.name)
        return out / "bundle.zip"
    with atomic_folder(out / "bundle") as tmp:
        for f in sorted(chosen.bundle.iterdir()):
            shutil.copy2(f, tmp / f.name)
    return out / "bundle"


def mobile_check(bundle: Path, r: Recipe) -> dict:
    """ONNX Runtime's own verdict on running the model with ORT Mobile (NNAPI/CoreML usability)."""
    model = bundle / "model.onnx"
    if not model.exists():
        return {"verdict": "not checked (zipped bundle)", "output": ""}
    done = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(model)],
                          capture_output=True, text=True, timeout=600)
    text = (done.stdout + done.stderr).strip()
    lines = [line.split("] ", 1)[-1] for line in text.splitlines()]
    verdict = next((line for line in lines if "Model should perform well with NNAPI" in line
                    or "NNAPI is not recommended" in line or "should work well" in line), lines[-1] if lines else "")
    return {"verdict": verdict, "ort_model": (bundle / "model.ort").exists(), "returncode": done.returncode,
            "output": "\n".join(lines[-40:])}


def make_report(r: Recipe, variants: list[Variant], chosen: Variant, why: str, final: Path, mobile, timings: dict,
                seconds: float, teacher: Path, student: Path | None = None, trimmed: Path | None = None) -> dict:
    from edgeft.runtime.bench import machine_info
    from edgeft.versions import versions

    metrics = json.loads((teacher / "metrics.json").read_text())
    return {
        "bundle": str(final),
        "chosen": chosen.name,
        "why": why,
        "metric": metrics["metric"],
        "budget_pt": 100 * r.max_accuracy_drop,
        "variants": [{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(x).items()} for x in variants],
        "pytorch_fp32": {"metric": metrics["test"][metrics["metric"]], "train_seconds": metrics["train"]["seconds"]},
        "student": student_summary(student, variants, metrics, trimmed),
        "stage_seconds": timings,
        "seconds": round(seconds, 1),
        "mobile_check": mobile,
        "recipe": asdict(r),
        "machine": machine_info(),
        "versions": versions(),
    }


def student_summary(student: Path | None, variants: list[Variant], teacher_metrics: dict,
                    trimmed: Path | None = None) -> dict | None:
    """The distilled student's transfer set and what each step cost in points of the test metric:
    distillation (PyTorch teacher → PyTorch student), then trimming and INT8 together (PyTorch student →
    the student's bundle through the runtime); with its trimmed vocabulary's size and the share of test
    texts it tokenizes differently. None when the build made no student."""
    if student is None:
        return None
    m = json.loads((student / "metrics.json").read_text())
    name = teacher_metrics["metric"]
    bundle = next(v for v in variants if v.name.startswith("student"))
    teacher_pt, student_pt = teacher_metrics["test"][name], m["test"][name]
    return {"variant": bundle.name, "transfer": m["train"]["transfer"], "augment": m["config"]["augment"],
            "pytorch_metric": student_pt, "distill_pt": round(100 * (teacher_pt - student_pt), 2),
            "trim_and_int8_pt": round(100 * (student_pt - bundle.metric), 2), "train_seconds": m["train"]["seconds"],
            "trim": trim_summary(trimmed) if trimmed is not None and "trim" in bundle.name else None}


def trim_summary(trimmed: Path) -> dict:
    t = json.loads((trimmed / "trim_report.json").read_text())
    return {"vocab_before": t["vocab"]["before"], "vocab_after": t["vocab"]["after"], "max_tokens": t.get("max_tokens"),
            "test_changed": (t.get("test") or {}).get("changed_inputs")}


def write_report(report: dict, out: Path) -> None:
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report))
    plot(report, out / "report.png")


def report_markdown(report: dict) -> str:
    m = report["metric"]
    em = report["variants"][0].get("exact_match") is not None  # question answering: EM beside F1
    lines = ["# edgeft build report", "",
             f"Chosen: **{report['chosen']}** → `{report['bundle']}` — {report['why']}.", "",
             f"| variant | what | size MB | {'test EM | ' if em else ''}test {m} | drop pt | agreement | p50 ms | "
             f"p90 ms | p99 ms | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if em else "")]
    for v in report["variants"]:
        mark = " ✔" if v["name"] == report["chosen"] else ("" if v["within_budget"] else " (over budget)")
        lat = v["latency"]
        lines.append(f"| {v['name']}{mark} | {v['description']} | {v['size_mb']:.1f} | "
                     + (f"{100 * v['exact_match']:.2f} | " if em else "") + f"{100 * v['metric']:.2f} | "
                     f"{v['drop_pt']:+.2f} | {100 * v['agreement']:.1f}% | {lat.get('p50_ms', 0):.2f} | "
                     f"{lat.get('p90_ms', 0):.2f} | {lat.get('p99_ms', 0):.2f} | {v['peak_rss_mb']:.0f} |")
    machine = report["machine"]
    lines += ["", f"Budget: {report['budget_pt']:g} pt below the FP32 ONNX model. PyTorch FP32 test {m}: "
              f"{100 * report['pytorch_fp32']['metric']:.2f}.",
              "Latency: batch 1, 1 thread, real test sentences, all variants interleaved in one run.",
              f"Machine: {machine.get('cpu', '?')}, {machine.get('logical_cores', '?')} cores ({machine.get('arch', '?')}). Build time: "
              f"{report['seconds']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in report['stage_seconds'].items())}).",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "."]
    if st := report.get("student"):
        t = st["transfer"]
        lines += ["", f"Student ({st['variant']}): {t['total']:,} transfer texts ({t['labeled']:,} labeled, "
                  f"{t['unlabeled']:,} unlabeled, {t['augmented']:,} augmented); PyTorch test {m} "
                  f"{100 * st['pytorch_metric']:.2f}. Cost in points: distillation {st['distill_pt']:+.2f}, "
                  f"trimming and INT8 {st['trim_and_int8_pt']:+.2f}."]
        if tr := st.get("trim"):
            lines[-1] += (f" Vocabulary {tr['vocab_before']:,} → {tr['vocab_after']:,} tokens"
                          + (f" (cap {tr['max_tokens']:,})" if tr["max_tokens"] else "")
                          + (f"; {100 * tr['test_changed']:.1f} % of test texts tokenize differently"
                             if tr["test_changed"] is not None else "") + ".")
    if report.get("mobile_check"):
        lines += ["", f"ONNX Runtime mobile usability check: {report['mobile_check']['verdict']}"]
    if android := report.get("android"):
        lines += ["", f"Android demo assets: {android['assets']} (copy to android_demo/app/src/main/assets/bundle/); "
                  f"token ids equal the runtime's on {android['ids_equal']:.0%} of {android['rows']} texts"
                  if "assets" in android else f"Android demo assets: not written ({android['skipped']})"]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Accuracy vs p50 latency; marker area ∝ bundle size; the chosen variant ringed; the budget as a line."""
    vs = report["variants"]
    budget_plot(path, [(v["name"], v["size_mb"], v["latency"].get("p50_ms", 0), 100 * v["metric"], max(30, 12 * v["size_mb"]))
                       for v in vs], report["chosen"], 100 * vs[0]["metric"] - report["budget_pt"],
                f"budget: FP32 − {report['budget_pt']:g} pt", "p50 latency, ms (batch 1, 1 thread)",
                f"test {report['metric']} (%)", "edgeft build: accuracy vs latency (marker size = bundle size)",
                legend="lower right")


def budget_plot(path: Path, points: list[tuple[str, float, float, float, float]], chosen: str, edge: float, edge_label: str,
                xlabel: str, ylabel: str, title: str, legend: str = "best") -> None:
    """The build's report.png: one marker per variant (name, size MB, x, y, marker area), the chosen one ringed,
    the budget's edge as a dashed line; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[2] for p in points], [p[3] for p in points], s=[p[4] for p in points], alpha=0.6, color="tab:blue")
    for name, size_mb, x, y, area in points:
        ax.annotate(f"{name} ({size_mb:.0f} MB)", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        if name == chosen:
            ax.scatter([x], [y], s=area * 2.2, facecolors="none", edgecolors="tab:red", linewidths=2)
    ax.axhline(edge, color="tab:red", linestyle="--", linewidth=1, label=edge_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend, fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
