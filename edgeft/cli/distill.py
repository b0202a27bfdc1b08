"""CLI command of distillation: ``edgeft distill`` (see edgeft.compress.distill).

Thin: flags become a frozen config (checked before anything heavy is imported), the stage function
in ``edgeft.compress`` does the work, and a short summary is printed at the end.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.options import config_options, examples
from edgeft.compress.distill.config import DistillConfig
from edgeft.stage import Splits
from edgeft.train.config import TrainConfig


def progress(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(message, err=True)


@app.command(
    "distill",
    epilog=examples(
        "edgeft distill runs/ft --data train.csv --out runs/kd3                  # 3 evenly spaced layers",
        "edgeft distill runs/ft --data train.csv --keep-layers 0,2,5 --hidden-loss --out runs/kd3",
        "edgeft distill runs/ft --data train.csv --unlabeled reviews.txt --augment 2 --out runs/kd3",
        "edgeft distill runs/ft --data train.csv --student prajjwal1/bert-tiny --out runs/tiny",
        "torchrun --nproc_per_node 4 -m edgeft distill runs/ft --data train.csv --out runs/kd3   # 4 GPUs",
    ),
)
@config_options(cfg=DistillConfig, train=TrainConfig, splits=Splits, exclude=("task", "hp_search", "hp_space"))
def distill_command(
    teacher: Path = typer.Argument(..., help="Fine-tuned classifier folder (what edgeft train writes)."),
    out: Path = typer.Option(..., "--out", help="Output folder: the student as an HF folder, metrics.json, splits."),
    data: Path = typer.Option(..., "--data", help="Training data (.csv/.tsv/.jsonl/.conll); alone, it is split 80/10/10."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file (early stopping, best checkpoint)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file: the student is scored next to the teacher on it."),
    cfg: DistillConfig = None,
    train: TrainConfig = None,
    splits: Splits = None,
):
    """Distil a fine-tuned model into a smaller student and score both on the same test split."""
    from edgeft.compress.distill import distill

    result = distill(teacher, out, replace(splits, train=data, validation=validation, test=test),
                     replace(cfg, train=train), progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print_distill_summary(result.metrics, out)


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
