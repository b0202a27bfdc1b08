"""``Recipe``: every setting of ``edgeft build``, as a frozen dataclass and a small TOML file.

Precedence is CLI > recipe file > defaults. ``build`` writes the fully resolved recipe next to its
output (``DIR/recipe.toml``), so ``edgeft build --recipe DIR/recipe.toml --out OTHER`` reruns it.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgeft.errors import ConfigError

TASKS = ("text-classification", "token-classification", "question-answering")


@dataclass(frozen=True)
class Recipe:
    target: str = field(default="arm64", metadata={"help": "device preset (edgeft targets)"})
    task: str | None = field(default=None, metadata={
        "help": "text-classification | token-classification | question-answering; None = from the data"})
    model: str | None = field(default=None, metadata={"help": "HF folder or hub id; None = the embedded all-MiniLM-L6-v2"})
    data: str | None = field(default=None, metadata={"help": "one labeled file, split 80/10/10; None = the shipped SST-2 sample"})
    train: str | None = field(default=None, metadata={"help": "training file (with validation/test instead of data)"})
    validation: str | None = None
    test: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_accuracy_drop: float = field(default=0.01, metadata={"help": "largest accepted drop vs the FP32 model, 0.01 = 1 pt"})
    optimize: str = field(default="latency", metadata={"help": "latency (fastest within budget) | size (smallest)"})
    distill: str = field(default="auto", metadata={"help": "auto (half the layers) | off | N layers"})
    trim_vocab: str = field(default="auto", metadata={"help": "auto (when the vocabulary has over 10k tokens) | on | off"})
    quantize_mode: str = field(default="auto", metadata={"help": "auto (search) | dynamic | static"})
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int | None = field(default=None, metadata={
        "help": "tokens per input; None = 128, or 384-token windows for question answering"})
    max_train_samples: int | None = None
    seed: int = 42
    bench_runs: int = field(default=200, metadata={"help": "timed batch-1 calls per variant"})
    zip: bool = field(default=False, metadata={"help": "write DIR/bundle.zip instead of DIR/bundle/"})
    fast: bool = field(default=False, metadata={"help": "smoke run: small sample, 1 epoch, no distillation, dynamic INT8"})

    def __post_init__(self):
        from edgeft.targets import TARGETS

        problems = []
        if self.target not in TARGETS:
            problems.append(f"target {self.target!r} is unknown; choose one of: {', '.join(TARGETS)}")
        if self.task is not None and self.task not in TASKS:
            problems.append(f"task {self.task!r} is unknown; choose one of: {', '.join(TASKS)}")
        if self.data and (self.train or self.validation or self.test):
            problems.append("give either data (one file, split for you) or train/validation/test files, not both")
        if (self.validation or self.test) and not self.train:
            problems.append("validation/test files need a train file")
        if not 0 <= self.max_accuracy_drop < 1:
            problems.append(f"max_accuracy_drop is a fraction in [0, 1) (0.01 = 1 pt), got {self.max_accuracy_drop}")
        if self.optimize not in ("latency", "size"):
            problems.append(f"optimize must be latency or size, got {self.optimize!r}")
        if not (self.distill in ("auto", "off") or (self.distill.isdigit() and int(self.distill) >= 1)):
            problems.append(f"distill must be auto, off or a number of layers, got {self.distill!r}")
        if self.trim_vocab not in ("auto", "on", "off"):
            problems.append(f"trim_vocab must be auto, on or off, got {self.trim_vocab!r}")
        if self.quantize_mode not in ("auto", "dynamic", "static"):
            problems.append(f"quantize_mode must be auto, dynamic or static, got {self.quantize_mode!r}")
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1 or (self.max_length or 8) < 8 or self.bench_runs < 1:
            problems.append("epochs, lr, batch_size, bench_runs must be positive and max_length >= 8")
        if problems:
            raise ConfigError("recipe: " + "; ".join(problems))

    def resolved(self) -> "Recipe":
        """The recipe as it runs: --fast shrinks the work to a smoke run of a few minutes."""
        if not self.fast:
            return self
        return replace(self, epochs=1.0, max_train_samples=min(self.max_train_samples or 800, 800), distill="off",
                       quantize_mode="dynamic" if self.quantize_mode == "auto" else self.quantize_mode,
                       bench_runs=min(self.bench_runs, 50), max_length=min(self.max_length or 64, 64))

    def to_toml(self, header: str = "") -> str:
        """Flat TOML, one key per line with its help as a comment; None is written commented out."""
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
        for f in fields(self):
            value = getattr(self, f.name)
            help_ = f.metadata.get("help")
            if help_:
                lines.append(f"# {help_}")
            lines.append(f"# {f.name} =" if value is None else f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def load_recipe(path: str | Path | None, **overrides) -> Recipe:
    """defaults ← recipe file ← overrides (the CLI flags that were given; None means 'not given')."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--recipe {path}: no such file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--recipe {path}: not valid TOML ({e})") from None
        values = values.get("build", values)  # a [build] table is accepted too
        known = {f.name for f in fields(Recipe)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"--recipe {path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"valid keys: {', '.join(sorted(known))}")
        for key in ("distill",):  # `distill = 3` in TOML is an int; the field is a string
            if key in values:
                values[key] = str(values[key])
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Recipe(**values)
    except TypeError as e:
        raise ConfigError(f"recipe: {e}") from None


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)
