"""CLI commands of the whole pipeline: ``edgeft build`` and ``edgeft recipes`` (see edgeft.build)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app



def recipes_dir() -> Path:
    """The shipped recipes: the top-level recipes/ folder, installed as the package edgeft.recipes."""
    import edgeft.recipes

    return Path(edgeft.recipes.__file__).parent


@app.command(
    "build",
    epilog=(
        "Examples:\n\n"
        "  edgeft build --target arm64                        # embedded MiniLM on the shipped SST-2 sample\n\n"
        "  edgeft build --target rpi5 --data intents.csv --out runs/intents\n\n"
        "  edgeft build --recipe recipes/minilm_sst2_arm64.toml --target rpi4   # flags override the recipe\n\n"
        "  edgeft build --target arm64 --fast --dry-run       # check inputs and print the plan"
    ),
)
def build_command(
    target: Optional[str] = typer.Option(None, help="Device preset: arm64, rpi4, rpi5, android-arm64, x86_64 (edgeft targets)."),
    out: Optional[Path] = typer.Option(None, help="Build folder (default runs/<target>): bundle/, report.md/json/png, recipe.toml, stages/."),
    data: Optional[str] = typer.Option(None, help="One labeled file, split 80/10/10 (default: the shipped SST-2 sample)."),
    train: Optional[str] = typer.Option(None, "--train", help="Training file (use with --validation/--test instead of --data)."),
    validation: Optional[str] = typer.Option(None, help="Validation file (quantization search, early stopping)."),
    test: Optional[str] = typer.Option(None, help="Test file (every variant is scored on it)."),
    model: Optional[str] = typer.Option(None, help="HF folder or hub id (default: the embedded all-MiniLM-L6-v2)."),
    task: Optional[str] = typer.Option(None, help="text-classification | token-classification | question-answering "
                                                  "(default: from the data)."),
    recipe: Optional[Path] = typer.Option(None, help="A recipe TOML (edgeft recipes list); flags override its values."),
    max_accuracy_drop: Optional[float] = typer.Option(None, help="Accepted drop vs FP32 as a fraction (default 0.01 = 1 pt)."),
    optimize: Optional[str] = typer.Option(None, help="latency (fastest within budget, default) | size (smallest)."),
    distill: Optional[str] = typer.Option(None, help="auto (half the layers, default) | off | N layers."),
    trim_vocab: Optional[str] = typer.Option(None, help="auto (default: when the vocabulary has over 10k tokens) | on | off."),
    epochs: Optional[float] = typer.Option(None, help="Fine-tuning epochs (default 3)."),
    max_train_samples: Optional[int] = typer.Option(None, help="Use only N training examples."),
    fast: Optional[bool] = typer.Option(None, "--fast", help="Smoke run (a few minutes): 800 samples, 1 epoch, no distillation, dynamic INT8."),
    zip_: Optional[bool] = typer.Option(None, "--zip", help="Write DIR/bundle.zip instead of DIR/bundle/."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate data, model, target and recipe; print the plan; run nothing."),
    force: bool = typer.Option(False, "--force", help="Build into a non-empty folder that is not a build folder."),
):
    """Labeled text → fine-tuned, compressed, verified device bundle, with a report of every variant."""
    from edgeft.recipe import load_recipe

    r = load_recipe(recipe, target=target, data=data, train=train, validation=validation, test=test, model=model,
                    task=task, max_accuracy_drop=max_accuracy_drop, optimize=optimize, distill=distill,
                    trim_vocab=trim_vocab, epochs=epochs, max_train_samples=max_train_samples, fast=fast, zip=zip_)
    out = out or Path("runs") / r.target
    from edgeft.build import build

    report = build(r, out, dry_run=dry_run, progress=lambda m: typer.echo(m, err=True), force=force)
    if dry_run:
        typer.echo(f"recipe OK; data: {report['data']['data']}; the build would:")
        for i, step in enumerate(report["plan"], 1):
            typer.echo(f"  {i}. {step}")
        return
    typer.echo((out / "report.md").read_text())
    typer.echo(f"bundle: {report['bundle']}  ({report['chosen']}; report: {out}/report.md, {out}/report.png)")


recipes_app = typer.Typer(help="Reference recipes shipped with edgeft: list them, copy one to edit.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def recipes_list():
    """The shipped recipes, one line each (the first line of their header)."""
    for path in sorted(recipes_dir().glob("*.toml")):
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        typer.echo(f"{path.stem:<28} {first}")


@recipes_app.command("cp")
def recipes_cp(name: str = typer.Argument(..., help="Recipe name (edgeft recipes list)."),
               dest: Path = typer.Argument(Path("."), help="Folder or file to copy it to.")):
    """Copy a shipped recipe for editing: edgeft recipes cp minilm_sst2_arm64 ."""
    from edgeft.cli import fail

    src = recipes_dir() / f"{name.removesuffix('.toml')}.toml"
    if not src.is_file():
        fail(f"no recipe {name!r}; the recipes are: {', '.join(p.stem for p in sorted(recipes_dir().glob('*.toml')))}")
    target = dest / src.name if dest.is_dir() else dest
    if target.exists():
        fail(f"{target} exists; remove it or pass another destination")
    shutil.copyfile(src, target)
    typer.echo(f"copied {src.name} → {target}")
