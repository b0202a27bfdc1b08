"""CLI commands of the whole pipeline: ``edgeft build`` and ``edgeft recipes`` (see edgeft.build)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.options import config_options, examples
from edgeft.recipe import Recipe


def recipes_dir() -> Path:
    """The shipped recipes: the top-level recipes/ folder, installed as the package edgeft.recipes."""
    import edgeft.recipes

    return Path(edgeft.recipes.__file__).parent


@app.command(
    "build",
    epilog=examples(
        "edgeft build --target arm64                        # embedded MiniLM on the shipped SST-2 sample",
        "edgeft build --target rpi5 --data intents.csv --out runs/intents",
        "edgeft build --recipe recipes/minilm_sst2_arm64.toml --target rpi4   # flags override the recipe",
        "edgeft build --target arm64 --fast --dry-run       # check inputs and print the plan",
        "edgeft build --task text-generation --target rpi5  # embedded SmolLM2 on the shipped SQuAD answer pairs",
    ),
)
@config_options(given_only=True, top=Recipe)
def build_command(
    out: Optional[Path] = typer.Option(None, help="Build folder (default runs/<target>): bundle/, report.md/json/png, recipe.toml, stages/."),
    data: Optional[str] = typer.Option(None, help="One labeled file, split 80/10/10 (default: the shipped SST-2 sample; "
                                               "--task text-generation: the SQuAD answer pairs)."),
    train: Optional[str] = typer.Option(None, "--train", help="Training file (use with --validation/--test instead of --data)."),
    validation: Optional[str] = typer.Option(None, help="Validation file (quantization search, early stopping)."),
    test: Optional[str] = typer.Option(None, help="Test file (every variant is scored on it)."),
    recipe: Optional[Path] = typer.Option(None, help="A recipe TOML (edgeft recipes list); flags override its values."),
    epochs: Optional[float] = typer.Option(None, help="Fine-tuning epochs (default 3, text generation 1; the same as "
                                                "--set train.epochs=N)."),
    max_train_samples: Optional[int] = typer.Option(None, help="Use only N training examples (--set train.max_train_samples=N)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="SECTION.KEY=VALUE",
                                             help="Any recipe setting, e.g. --set train.max_grad_norm=0 --set "
                                                  "quantize.calibration_rows=256 (repeatable; sections: data, train, "
                                                  "distill, trim, export, quantize, export_lm)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate data, model, target and recipe; print the plan; run nothing."),
    force: bool = typer.Option(False, "--force", help="Build into a non-empty folder that is not a build folder."),
    given: dict = None,
):
    """Labeled text → fine-tuned, compressed, verified device bundle, with a report of every variant.

    Text generation (--task text-generation, or prompt/response data): LoRA, then FP32/INT8/INT4 decoders;
    the budget (--max-accuracy-drop) is then on the token F1 of greedy test replies (plain text: perplexity).
    """
    from edgeft.cli import fail
    from edgeft.recipe import load_recipe

    if data and (train or validation or test):
        fail("give either --data (one file, split for you) or --train/--validation/--test, not both")
    flags = {**given["top"], "data": {"train": data or train, "validation": validation, "test": test},
             "train": {"epochs": epochs, "max_train_samples": max_train_samples}}
    given = {k: ({n: x for n, x in v.items() if x is not None} if isinstance(v, dict) else v)
             for k, v in flags.items() if v is not None}
    r = load_recipe(recipe, {k: v for k, v in given.items() if v != {}}, sets=set_ or [])
    out = out or Path("runs") / r.target
    from edgeft.build import build

    report = build(r, out, dry_run=dry_run, progress=lambda m: typer.echo(m, err=True), force=force)
    if dry_run:
        typer.echo(f"recipe OK; data: {report['data']['train']}; the build would:")
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
