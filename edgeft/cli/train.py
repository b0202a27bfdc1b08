"""CLI command of the training stage: ``edgeft train`` (see edgeft.train.finetune)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import (LABEL_COLUMN, MAX_GRAD_NORM, TAGS_COLUMN, TEXT_COLUMN, TOKENS_COLUMN, WARMUP,
                        WEIGHT_DECAY, app)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sample_data() -> tuple[Path, Path]:
    """The SST-2 sample shipped in the package: (8,000 train rows, the 872-row GLUE dev as test)."""
    return SAMPLES / "sst2_train.jsonl", SAMPLES / "sst2_test.jsonl"


@app.command(
    "train",
    epilog=(
        "Examples:\n\n"
        "  edgeft train --out runs/sst2                       # the shipped SST-2 sample, embedded MiniLM\n\n"
        "  edgeft train --data reviews.csv --text-column review --label-column stars --out runs/reviews\n\n"
        "  edgeft train --data ner.conll --task token-classification --out runs/ner\n\n"
        "  torchrun --nproc_per_node 4 -m edgeft train --data reviews.csv --out runs/ddp   # 4 GPUs"
    ),
)
def train_command(
    out: Path = typer.Option(..., "--out", help="Output folder: the fine-tuned HF model, metrics.json, splits, curves."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Training data: .csv/.tsv/.jsonl (text + label), .jsonl/.conll (tokens + BIO tags) or "
        "SQuAD .jsonl/.json (question, context, answers). Alone, it is split 80/10/10 (seeded, stratified; QA: by "
        "paragraph). Default: the shipped SST-2 sample."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file (early stopping, best checkpoint)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file (final metrics of the best model)."),
    task: Optional[str] = typer.Option(None, "--task", help="text-classification | token-classification | "
                                                            "question-answering (default: from the data)."),
    model: Optional[str] = typer.Option(None, "--model", help="Local HF folder or hub id (default: embedded all-MiniLM-L6-v2)."),
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    tokens_column: str = TOKENS_COLUMN,
    tags_column: str = TAGS_COLUMN,
    epochs: float = typer.Option(3.0, help="Passes over the training data (early stopping may end sooner)."),
    lr: float = typer.Option(5e-5, help="Peak learning rate (AdamW, linear warm-up and decay)."),
    batch_size: int = typer.Option(32, help="Examples per batch and device."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per example; longer texts are truncated (default 128; "
                                                        "question answering: 384-token windows over the context)."),
    doc_stride: Optional[int] = typer.Option(None, help="QA: tokens shared by consecutive windows (default max-length / 3)."),
    max_question_tokens: Optional[int] = typer.Option(None, help="QA: longer questions are cut (default max-length / 6)."),
    max_answer_tokens: Optional[int] = typer.Option(None, help="QA: longest answer span, in tokens (default 30)."),
    max_steps: int = typer.Option(-1, help="Stop after N optimizer steps (overrides --epochs)."),
    max_train_samples: Optional[int] = typer.Option(None, help="Use only the first N training examples (a quick run)."),
    seed: int = typer.Option(42, help="Seed for the split, initialisation and data order."),
    eval_steps: Optional[int] = typer.Option(None, help="Evaluate and checkpoint every N steps (default: every epoch)."),
    patience: int = typer.Option(2, help="Early stopping: evaluations without improvement before stopping (0 = off)."),
    warmup: float = WARMUP,
    weight_decay: float = WEIGHT_DECAY,
    max_grad_norm: float = MAX_GRAD_NORM,
    precision: str = typer.Option("auto", help="auto (bf16 where the CPU/GPU has it) | bf16 | fp32."),
    group_by_length: bool = typer.Option(
        False, "--group-by-length", help="Batch texts of similar length: ~1.6x faster, but -1.2 pt on SST-2 after 1 epoch here."),
    hp_search: int = typer.Option(0, help="Run N Optuna trials (lr, batch size, epochs, warm-up, weight decay) and keep the best."),
    hp_space: Optional[str] = typer.Option(
        None, help='Override search ranges as JSON, e.g. \'{"learning_rate": [1e-5, 3e-5], "num_train_epochs": [2, 4]}\'.'),
    report_to: str = typer.Option("none", help="Trainer loggers, e.g. tensorboard (logs in OUT/checkpoints/runs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUT."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count bad rows instead of stopping."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the hub (off by default)."),
):
    """Fine-tune a model on labeled text (classification, NER or question answering) and score it on a test split."""
    from edgeft.train.config import TrainConfig

    space = None
    if hp_space:
        try:
            space = json.loads(hp_space)
            assert isinstance(space, dict)
        except (ValueError, AssertionError):
            from edgeft.cli import fail

            fail(f"--hp-space must be a JSON object like '{{\"learning_rate\": [1e-5, 3e-5]}}', got {hp_space!r}")
    cfg = TrainConfig(  # checks every value before anything heavy is imported
        task=task, model=model, text_column=text_column, label_column=label_column, tokens_column=tokens_column,
        tags_column=tags_column, epochs=epochs, lr=lr, batch_size=batch_size,
        max_length=max_length or default_max_length(task, data), doc_stride=doc_stride,
        max_question_tokens=max_question_tokens, max_answer_tokens=max_answer_tokens, max_steps=max_steps,
        max_train_samples=max_train_samples, seed=seed, eval_steps=eval_steps,
        patience=patience, warmup=warmup, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
        precision=precision, group_by_length=group_by_length, hp_search=hp_search, hp_space=space,
        report_to=report_to, resume=resume,
        force=force, skip_bad_rows=skip_bad_rows, trust_remote_code=trust_remote_code,
    )
    if data is None:
        if validation or test:
            from edgeft.cli import fail

            fail("--validation/--test need --data (the training file).")
        data, test = sample_data()
        typer.echo(f"no --data: using the shipped SST-2 sample ({data.name}, test = {test.name})", err=True)
    from edgeft.train.finetune import finetune

    metrics = finetune(data, out, cfg, validation=validation, test=test)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun, not one per process
        print_summary(metrics, out)


def default_max_length(task: Optional[str], data: Optional[Path]) -> int:
    """128 tokens, or 384 for question answering (the SQuAD scripts' window), the task known from
    --task or the data file."""
    if task is None and data is not None and data.is_file():
        from edgeft.data import detect_task

        task = detect_task(data)
    return 384 if task == "question-answering" else 128


def print_summary(metrics: dict, out: Path) -> None:
    """A short table: split sizes and scores, speed, where things were written."""
    t = metrics["train"]
    name = metrics["metric"]
    typer.echo("")
    qa = metrics.get("qa")
    shape = (f"{metrics['max_length']}-token windows, stride {qa['doc_stride']}" if qa
             else f"{len(metrics['labels'])} labels")
    typer.echo(f"  task        {metrics['task']}  ({shape})   model {metrics['model']}")
    typer.echo(f"  train       {t['examples']} examples, {t['steps']} steps, {t['seconds']:.0f} s, "
               f"{t['examples_per_second'] or 0:.1f} examples/s ({t['precision']})")
    for split in ("validation", "test"):
        m = metrics[split]
        extra = f"macro-F1 {m['macro_f1']:.4f}" if "macro_f1" in m else f"EM {m['exact_match']:.4f}" \
            if "exact_match" in m else f"P {m['precision']:.4f} R {m['recall']:.4f}"
        typer.echo(f"  {split:<11} {name} {m[name]:.4f}   {extra}   n={m['n']}")
    if metrics["hp_search"]:
        keys = [k for k in metrics["hp_search"][0] if k not in ("trial", name)]
        typer.echo(f"  hp search   {'trial':>5} {name:>9} " + " ".join(f"{k[:14]:>14}" for k in keys))
        for trial in metrics["hp_search"]:
            typer.echo(f"              {trial['trial']:>5} {trial[name] or 0:>9.4f} "
                       + " ".join(f"{trial.get(k, ''):>14.4g}" for k in keys))
    if t["skipped_rows"]:
        typer.echo(f"  skipped     {t['skipped_rows']} bad training rows (--skip-bad-rows)")
    typer.echo(f"  saved       {out}/ (model), {out}/metrics.json, {out}/curves.png")
    typer.echo(f"test {name}: {metrics['test'][name]:.4f}")
