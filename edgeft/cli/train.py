"""CLI command of the training stage: ``edgeft train`` (see edgeft.train.finetune)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.options import config_options, examples
from edgeft.stage import Splits
from edgeft.train.config import TrainConfig

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sample_data() -> tuple[Path, Path]:
    """The SST-2 sample shipped in the package: (8,000 train rows, the 872-row GLUE dev as test)."""
    return SAMPLES / "sst2_train.jsonl", SAMPLES / "sst2_test.jsonl"


@app.command(
    "train",
    epilog=examples(
        "edgeft train --out runs/sst2                       # the shipped SST-2 sample, embedded MiniLM",
        "edgeft train --data reviews.csv --text-column review --label-column stars --out runs/reviews",
        "edgeft train --data ner.conll --task token-classification --out runs/ner",
        "torchrun --nproc_per_node 4 -m edgeft train --data reviews.csv --out runs/ddp   # 4 GPUs",
    ),
)
@config_options(cfg=TrainConfig, splits=Splits)
def train_command(
    out: Path = typer.Option(..., "--out", help="Output folder: the fine-tuned HF model, metrics.json, splits, curves."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Training data: .csv/.tsv/.jsonl (text + label), .jsonl/.conll (tokens + BIO tags) or "
        "SQuAD .jsonl/.json (question, context, answers). Alone, it is split 80/10/10 (seeded, stratified; QA: by "
        "paragraph). Default: the shipped SST-2 sample."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file (early stopping, best checkpoint)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test file (final metrics of the best model)."),
    model: Optional[str] = typer.Option(None, "--model", help="Local HF folder or hub id (default: embedded all-MiniLM-L6-v2)."),
    cfg: TrainConfig = None,
    splits: Splits = None,
):
    """Fine-tune a model on labeled text (classification, NER or question answering) and score it on a test split."""
    if data is None:
        if validation or test:
            from edgeft.cli import fail

            fail("--validation/--test need --data (the training file).")
        data, test = sample_data()
        typer.echo(f"no --data: using the shipped SST-2 sample ({data.name}, test = {test.name})", err=True)
    if cfg.task is None and data.is_file():  # the task decides the default length, checked before any work
        from edgeft.data import detect_task

        cfg = replace(cfg, task=detect_task(data))
    from edgeft.train.finetune import finetune

    result = finetune(model, out, replace(splits, train=data, validation=validation, test=test), cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun, not one per process
        print_summary(result.metrics, out)


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
