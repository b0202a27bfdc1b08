"""CLI commands of distillation and vocabulary trimming: ``edgeft distill``, ``edgeft trim-vocab``.

Thin: flags become a frozen config (checked before anything heavy is imported), the stage function
in ``edgeft.compress`` does the work, and a short summary is printed at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import (LABEL_COLUMN, MAX_GRAD_NORM, TAGS_COLUMN, TEXT_COLUMN, TOKENS_COLUMN, WARMUP,
                        WEIGHT_DECAY, app, fail)


def _progress(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(message, err=True)


def _layer_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"--keep-layers takes comma-separated layer numbers like 0,2,4 (got {text!r})")


@app.command(
    "distill",
    epilog=(
        "Examples:\n\n"
        "  edgeft distill runs/ft --data train.csv --out runs/kd3                  # 3 evenly spaced layers\n\n"
        "  edgeft distill runs/ft --data train.csv --keep-layers 0,2,5 --hidden-loss --out runs/kd3\n\n"
        "  edgeft distill runs/ft --data train.csv --unlabeled reviews.txt --augment 2 --out runs/kd3\n\n"
        "  edgeft distill runs/ft --data train.csv --student prajjwal1/bert-tiny --out runs/tiny\n\n"
        "  torchrun --nproc_per_node 4 -m edgeft distill runs/ft --data train.csv --out runs/kd3   # 4 GPUs"
    ),
)
def distill_command(
    teacher: Path = typer.Argument(..., help="Fine-tuned classifier folder (what edgeft train writes)."),
    out: Path = typer.Option(..., "--out", help="Output folder: the student as an HF folder, metrics.json, splits."),
    data: Path = typer.Option(..., "--data", help="Training data (.csv/.tsv/.jsonl/.conll); alone, it is split 80/10/10."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file (early stopping, best checkpoint)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file: the student is scored next to the teacher on it."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Student = the teacher with N evenly spaced layers (default 3)."),
    keep_layers: Optional[str] = typer.Option(None, "--keep-layers", help="Which teacher layers to keep, 0-based, e.g. 0,2,5."),
    student: Optional[str] = typer.Option(None, "--student", help="A smaller pretrained model (folder or hub id) instead."),
    temperature: float = typer.Option(2.0, help="Softmax temperature of the KD term."),
    alpha: float = typer.Option(0.5, help="Weight of the label cross-entropy; the KD term gets 1 - alpha."),
    hidden_loss: bool = typer.Option(False, "--hidden-loss", help="Add MSE between the student's and teacher's hidden states."),
    hidden_weight: float = typer.Option(1.0, help="Weight of the hidden-state MSE."),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="Unlabeled in-domain text (.txt a line each, .jsonl, .csv): KD only."),
    augment: int = typer.Option(0, "--augment", help="Masked-word / word-dropout variants per training row (seeded, KD only)."),
    augment_prob: float = typer.Option(0.15, help="Fraction of the words masked or dropped per variant."),
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    tokens_column: str = TOKENS_COLUMN,
    tags_column: str = TAGS_COLUMN,
    epochs: float = typer.Option(3.0, help="Passes over the transfer set (early stopping may end sooner)."),
    lr: float = typer.Option(5e-5, help="Peak learning rate (AdamW, linear warm-up and decay)."),
    batch_size: int = typer.Option(32, help="Examples per batch and device."),
    max_length: Optional[int] = typer.Option(None, help="Tokens per example; longer texts are truncated (default 128; "
                                                        "question answering: the teacher's windows)."),
    max_steps: int = typer.Option(-1, help="Stop after N optimizer steps (overrides --epochs)."),
    max_train_samples: Optional[int] = typer.Option(None, help="Use only the first N training examples."),
    seed: int = typer.Option(42, help="Seed for the split, augmentation, initialisation and data order."),
    eval_steps: Optional[int] = typer.Option(None, help="Evaluate and checkpoint every N steps (default: every epoch)."),
    patience: int = typer.Option(2, help="Early stopping: evaluations without improvement before stopping (0 = off)."),
    warmup: float = WARMUP,
    weight_decay: float = WEIGHT_DECAY,
    max_grad_norm: float = MAX_GRAD_NORM,
    precision: str = typer.Option("auto", help="auto (bf16 where the CPU/GPU has it) | bf16 | fp32."),
    report_to: str = typer.Option("none", help="Trainer loggers, e.g. tensorboard."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUT."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip and count bad rows instead of stopping."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model code from the hub."),
):
    """Distil a fine-tuned model into a smaller student and score both on the same test split."""
    from edgeft.compress.distill import DistillConfig
    from edgeft.train.config import TrainConfig

    train = TrainConfig(  # checks every value before anything heavy is imported
        text_column=text_column, label_column=label_column, tokens_column=tokens_column, tags_column=tags_column,
        epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length or teacher_max_length(teacher),
        max_steps=max_steps,
        max_train_samples=max_train_samples, seed=seed, eval_steps=eval_steps, patience=patience, warmup=warmup,
        weight_decay=weight_decay, max_grad_norm=max_grad_norm, precision=precision, report_to=report_to,
        resume=resume, force=force, skip_bad_rows=skip_bad_rows, trust_remote_code=trust_remote_code,
    )
    cfg = DistillConfig(
        train=train, layers=layers, keep_layers=_layer_list(keep_layers) if keep_layers is not None else None,
        student=student, temperature=temperature, alpha=alpha, hidden_loss=hidden_loss, hidden_weight=hidden_weight,
        unlabeled=str(unlabeled) if unlabeled else None, augment=augment, augment_prob=augment_prob,
    )
    from edgeft.compress.distill import distill

    metrics = distill(teacher, data, out, cfg, validation=validation, test=test, progress=_progress)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print_distill_summary(metrics, out)


def teacher_max_length(teacher: Path) -> int:
    """128 tokens, or for a question-answering teacher the windows it was trained with (384 if unknown)."""
    import json

    try:
        archs = json.loads((teacher / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return 128  # distill reports the missing or broken folder itself
    if not any(a.endswith("ForQuestionAnswering") for a in archs):
        return 128
    try:
        return int(json.loads((teacher / "metrics.json").read_text(encoding="utf-8"))["max_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 384


def print_distill_summary(metrics: dict, out: Path) -> None:
    """Student next to teacher: transfer set, training, scores, size."""
    t, c = metrics["train"], metrics["comparison"]
    name = metrics["metric"]
    tr = t["transfer"]
    typer.echo("")
    shape = f"{metrics['max_length']}-token windows" if metrics.get("qa") else f"{len(metrics['labels'])} labels"
    typer.echo(f"  task        {metrics['task']}  ({shape})   student {metrics['model']}")
    typer.echo(f"  transfer    {tr['labeled']} labeled + {tr['unlabeled']} unlabeled + {tr['augmented']} augmented "
               f"= {tr['total']} rows; teacher logits computed once ({t['teacher_seconds']:.1f} s)")
    typer.echo(f"  train       {t['steps']} steps, {t['seconds']:.0f} s, {t['examples_per_second'] or 0:.1f} examples/s "
               f"({t['precision']})")
    typer.echo(f"  validation  {name} {metrics['validation'][name]:.4f}   n={metrics['validation']['n']}")
    typer.echo(f"  test        {name}: student {c['student']:.4f}  teacher {c['teacher']:.4f}  "
               f"drop {100 * c['drop']:+.2f} pt  agreement {100 * c['agreement']:.1f} %   n={metrics['test']['n']}")
    p, f = c["parameters"], c["flops_per_token"]
    typer.echo(f"  size        layers {c['layers']['teacher']} → {c['layers']['student']}, parameters "
               f"{p['teacher'] / 1e6:.2f}M → {p['student'] / 1e6:.2f}M, FLOPs/token {f['teacher'] / 1e6:.2f}M → "
               f"{f['student'] / 1e6:.2f}M (at {f['seq_len']:.0f} tokens)")
    typer.echo(f"  saved       {out}/ (model), {out}/metrics.json, {out}/curves.png")
    typer.echo(f"test {name}: student {c['student']:.4f} (teacher {c['teacher']:.4f}, drop {100 * c['drop']:.2f} pt)")


@app.command(
    "trim-vocab",
    epilog=(
        "Examples:\n\n"
        "  edgeft trim-vocab runs/kd3 --data runs/kd3/data/train.jsonl --out runs/kd3-trim\n\n"
        "  edgeft trim-vocab runs/ft --data corpus.txt --validation dev.csv --min-count 2 --out runs/ft-trim"
    ),
)
def trim_vocab_command(
    model: Path = typer.Argument(..., help="HF model folder with a tokenizer.json (WordPiece or BPE)."),
    out: Path = typer.Option(..., "--out", help="Output folder: the trimmed HF model, vocab_map.json, trim_report.json."),
    data: Path = typer.Option(..., "--data", help="In-domain corpus: .txt (a text per line), .jsonl, .csv/.tsv, .conll."),
    keep_chars: bool = typer.Option(True, "--keep-chars/--no-keep-chars",
                                    help="Keep every single-character piece, so unseen words become characters, not [UNK]."),
    min_count: int = typer.Option(1, "--min-count", help="Keep a corpus token only if it occurs at least N times."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Held-out labeled file: changed inputs and accuracy before/after."),
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    tokens_column: str = TOKENS_COLUMN,
    tags_column: str = TAGS_COLUMN,
    max_length: int = typer.Option(128, help="Tokens per example for the logit check and the validation scores."),
    check_rows: int = typer.Option(512, help="Corpus rows (seeded sample) whose logits are compared with the original's."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
):
    """Shrink the vocabulary and embedding matrix to the tokens a corpus uses; logits on it stay identical."""
    from edgeft.compress.trim_vocab import TrimConfig

    cfg = TrimConfig(keep_chars=keep_chars, min_count=min_count, validation=str(validation) if validation else None,
                     text_column=text_column, label_column=label_column, tokens_column=tokens_column,
                     tags_column=tags_column, max_length=max_length, check_rows=check_rows, force=force)
    from edgeft.compress.trim_vocab import trim_vocab

    report = trim_vocab(model, data, out, cfg, progress=_progress)
    print_trim_summary(report, out)


def print_trim_summary(report: dict, out: Path) -> None:
    """Vocabulary, parameters and size before/after, and the two checks."""
    v, p, s, c = report["vocab"], report["parameters"], report["size_bytes"], report["corpus_check"]
    typer.echo("")
    typer.echo(f"  vocab       {v['before']} → {v['after']} tokens ({100 * (v['after'] / v['before'] - 1):+.1f} %): "
               f"{v['from_corpus']} from the corpus, {v['special']} special, {v['chars']} characters"
               + (f", {v['for_merges']} for merges" if v.get("for_merges") else ""))
    typer.echo(f"  params      {p['before'] / 1e6:.2f}M → {p['after'] / 1e6:.2f}M   "
               f"weights {s['before'] / 1e6:.1f} MB → {s['after'] / 1e6:.1f} MB")
    typer.echo(f"  corpus      {c['rows']} rows: token ids identical {100 * c['ids_identical']:.1f} %, "
               f"max |Δlogit| {c['max_abs_logit_diff']:.2g}")
    val = report["validation"]
    if val:
        line = (f"  validation  {val['rows']} rows: {100 * val['changed_inputs']:.1f} % changed token ids, "
                f"[UNK] {100 * val['unk_rate']['before']:.2f} % → {100 * val['unk_rate']['after']:.2f} % of tokens")
        if val.get("metric"):
            line += f"; {val['metric']} {val['before']:.4f} → {val['after']:.4f}"
        typer.echo(line)
    typer.echo(f"  saved       {out}/ (model), {out}/vocab_map.json, {out}/trim_report.json")
    typer.echo(f"trimmed vocab: {v['before']} → {v['after']} tokens")
