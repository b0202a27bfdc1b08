"""``Recipe``: every setting of ``edgeft build`` — the build's own switches plus one section per stage.

A recipe TOML holds the build-level keys at the top, the data files under ``[data]``, and the stage
settings under ``[train]``, ``[distill]``, ``[trim]``, ``[export]``, ``[quantize]`` and ``[export_lm]``
(text generation) — exactly the fields of ``TrainConfig``, ``DistillConfig``, ``TrimConfig``,
``ExportConfig``, ``QuantizeConfig`` and ``ExportLMConfig``, so every stage setting is reachable and
none is declared twice. A recipe may be a small diff over
the defaults::

    [train]
    max_grad_norm = 0

Precedence is CLI > recipe file > defaults. ``build`` writes the fully resolved recipe next to its
output (``DIR/recipe.toml``), so ``edgeft build --recipe DIR/recipe.toml --out OTHER`` reruns it.
Flat recipes of edgeft 0.1 (``epochs = 3`` at the top level) still load: ``load_recipe`` moves each
key into its section (see ``FLAT_KEYS``).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from edgeft.compress.distill.config import DistillConfig
from edgeft.compress.export import ExportConfig
from edgeft.compress.export_lm import ExportLMConfig
from edgeft.compress.quantize import QuantizeConfig
from edgeft.compress.trim_vocab import TrimConfig
from edgeft.errors import ConfigError
from edgeft.settings import check, help_of, same_as, setting
from edgeft.stage import Splits
from edgeft.train.config import TrainConfig

SECTIONS = {"data": Splits, "train": TrainConfig, "distill": DistillConfig, "trim": TrimConfig,
            "export": ExportConfig, "quantize": QuantizeConfig, "export_lm": ExportLMConfig}
# Stage fields the build sets itself from one top-level value, so that all stages agree on them.
BUILD_OWNED = {
    "train": {"task": "task", "resume": "build (a build resumes by itself)", "force": "build"},
    "distill": {"train": "[train]"},
    "trim": {"max_length": "[train] max_length", "force": "build"},
    "export": {"max_length": "[train] max_length", "zipped": "zip"},
    "quantize": {"target": "target", "max_accuracy_drop": "max_accuracy_drop", "max_length": "[train] max_length",
                 "zipped": "zip", "seed": "[train] seed"},
    "export_lm": {"weights": "build (one variant per weight format: fp32, int8, int4)"},
}
# Text-generation builds: LoRA settings measured on SmolLM2-135M (benchmarks/finetune_lm.py), used where
# [train] leaves these at TrainConfig's defaults, which suit full fine-tuning of encoders.
LM_TRAIN = {"epochs": 1.0, "lr": 2e-4, "batch_size": 8, "group_by_length": True}
# edgeft 0.1's flat keys → (section, key) in this format.
FLAT_KEYS = {"data": ("data", "train"), "train": ("data", "train"), "validation": ("data", "validation"),
             "test": ("data", "test"), "text_column": ("data", "text_column"), "label_column": ("data", "label_column"),
             "epochs": ("train", "epochs"), "lr": ("train", "lr"), "batch_size": ("train", "batch_size"),
             "max_length": ("train", "max_length"), "max_train_samples": ("train", "max_train_samples"),
             "seed": ("train", "seed"), "quantize_mode": ("quantize", "mode"), "distill": ("", "distill_layers")}


@dataclass(frozen=True)
class Recipe:
    target: str = setting("arm64", "Device preset: arm64, rpi4, rpi5, android-arm64, x86_64 (edgeft targets).")
    task: str | None = same_as(TrainConfig, "task")
    model: str | None = setting(None, "HF folder or hub id (default: the embedded all-MiniLM-L6-v2; text generation: "
                                 "SmolLM2-135M-Instruct).")
    optimize: str = setting("latency", "latency (fastest within budget) | size (smallest).", choices=("latency", "size"))
    max_accuracy_drop: float = same_as(QuantizeConfig, "max_accuracy_drop")  # text generation: on token F1
    distill_layers: str = setting("auto", "auto (half the teacher's layers, if it has at least 4) | off | N layers.",
                                  flag="--distill")
    trim_vocab: str = setting("auto", "auto (when the vocabulary has over 10k tokens) | on | off.",
                              choices=("auto", "on", "off"))
    bench_runs: int = setting(200, "Timed batch-1 calls per variant.", ge=1)
    generation_runs: int = setting(5, "Text generation: timed greedy generations (128-token prompt, 64 new tokens) "
                                   "per variant.", ge=1)
    zip: bool = setting(False, "Write DIR/bundle.zip instead of DIR/bundle/.")
    fast: bool = setting(False, "Smoke run (a few minutes): 800 samples, 1 epoch, no distillation, dynamic INT8 "
                          "(text generation: 20 PyTorch replies scored in training, 3 timed generations).")
    data: Splits = setting(help="the data files: train alone is split 80/10/10 (default: the shipped SST-2 sample)",
                           default_factory=Splits, cli=False)
    train: TrainConfig = setting(help="fine-tuning (edgeft train --help)", default_factory=TrainConfig, cli=False)
    distill: DistillConfig = setting(help="distillation (edgeft distill --help)", default_factory=DistillConfig,
                                     cli=False)
    trim: TrimConfig = setting(help="vocabulary trimming (edgeft trim-vocab --help)", default_factory=TrimConfig,
                               cli=False)
    export: ExportConfig = setting(help="ONNX export (edgeft export --help)", default_factory=ExportConfig, cli=False)
    quantize: QuantizeConfig = setting(help="INT8 search (edgeft quantize --help)", default_factory=QuantizeConfig,
                                       cli=False)
    export_lm: ExportLMConfig = setting(help="text generation: decoder export and weight quantization (edgeft export-lm "
                                        "--help)", default_factory=ExportLMConfig, cli=False)

    def __post_init__(self):
        from edgeft.targets import TARGETS

        problems = []
        if self.target not in TARGETS:
            problems.append(f"target {self.target!r} is unknown; choose one of: {', '.join(TARGETS)}")
        d = self.distill_layers
        if not (d in ("auto", "off") or (d.isdigit() and int(d) >= 1)):
            problems.append(f"distill must be auto, off or a number of layers, got {d!r}")
        if (self.data.validation or self.data.test) and not self.data.train:
            problems.append("validation/test files need a train file")
        check(self, problems)

    def resolved(self, task: str | None = None) -> "Recipe":
        """The recipe as it runs: --fast shrinks the work to a smoke run of a few minutes; a text-generation
        build takes LM_TRAIN where [train] keeps TrainConfig's defaults."""
        if task == "text-generation":
            default = TrainConfig()
            lm = {k: v for k, v in LM_TRAIN.items() if getattr(self.train, k) == getattr(default, k)}
            t = replace(self.train, **lm)
            if self.fast:  # the context window stays: replies must fit; fewer replies generated per split
                t = replace(t, epochs=1.0, max_train_samples=min(t.max_train_samples or 800, 800),
                            generation_examples=min(t.generation_examples, 20))
            return replace(self, train=t, generation_runs=min(self.generation_runs, 3) if self.fast else
                           self.generation_runs)
        if not self.fast:
            return self
        t = self.train
        train = replace(t, epochs=1.0, max_train_samples=min(t.max_train_samples or 800, 800),
                        max_length=min(t.max_length or 64, 64))
        mode = "dynamic" if self.quantize.mode == "auto" else self.quantize.mode
        return replace(self, train=train, distill_layers="off", quantize=replace(self.quantize, mode=mode),
                       bench_runs=min(self.bench_runs, 50))

    def stage_configs(self, max_length: int) -> dict:
        """Each stage's config with the values the build owns filled in (BUILD_OWNED), so all stages agree."""
        train = replace(self.train, task=self.task, max_length=max_length)
        return {
            "train": train,
            "distill": replace(self.distill, train=train),
            "trim": replace(self.trim, max_length=max_length, force=True),
            "export": replace(self.export, max_length=max_length),
            "quantize": replace(self.quantize, target=self.target, max_accuracy_drop=self.max_accuracy_drop,
                                max_length=max_length, seed=self.train.seed),
            "export_lm": self.export_lm,
        }

    def to_toml(self, header: str = "") -> str:
        """Top-level keys, then a table per section; each key with its help as a comment, None commented out."""
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
        lines += _toml_lines(self, exclude=SECTIONS)
        for name in SECTIONS:
            lines += ["", f"[{name}]"] + _toml_lines(getattr(self, name), exclude=BUILD_OWNED.get(name, {}))
        return "\n".join(lines) + "\n"


def _toml_lines(cfg, exclude) -> list[str]:
    out = []
    for f in fields(cfg):
        if f.name in exclude:
            continue
        value = getattr(cfg, f.name)
        if f.metadata.get("help"):
            out.append(f"# {help_of(f)}")
        out.append(f"# {f.name} =" if value is None else f"{f.name} = {_toml_value(value)}")
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def is_flat(values: dict) -> bool:
    """An edgeft 0.1 recipe: stage settings at the top level, or ``train``/``distill`` as plain values."""
    return any(k in FLAT_KEYS and not isinstance(v, dict) for k, v in values.items())


def unflatten(values: dict) -> dict:
    """Move edgeft 0.1's flat keys into their sections (``epochs = 3`` → ``[train] epochs = 3``)."""
    if values.get("data") is not None and any(values.get(k) for k in ("train", "validation", "test")):
        raise ConfigError("recipe: give either data (one file, split for you) or train/validation/test files, not both")
    out: dict = {}
    for key, value in values.items():
        section, name = FLAT_KEYS.get(key, ("", key)) if not isinstance(value, dict) else (key, None)
        if name is None:
            out.setdefault(section, {}).update(value)
        elif section:
            out.setdefault(section, {})[name] = value
        else:
            out[name] = value
    return out


def _did_you_mean(key: str, here: set, section: str = "") -> str:
    """`` (did you mean [train] epochs?)``: the closest key in this place, else in any section."""
    import difflib

    places = [(section, sorted(here))] + [(s, [f.name for f in fields(c)]) for s, c in SECTIONS.items() if s != section]
    for place, names in places:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        if close:
            return f" (did you mean {f'[{place}] ' if place else ''}{close[0]}?)"
    return ""


def from_dict(values: dict, where: str = "recipe") -> Recipe:
    """A Recipe from nested values (a parsed TOML), with one error naming every unknown or misplaced key."""
    problems, built = [], {}
    top = {f.name for f in fields(Recipe)} - set(SECTIONS)
    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"[{key}] must be a table of settings, got {value!r}")
                continue
            known = {f.name for f in fields(SECTIONS[key])}
            for name in sorted(set(value) - known):
                valid = known - set(BUILD_OWNED.get(key, {}))
                problems.append(f"[{key}] {name}: unknown{_did_you_mean(name, valid, key)}; valid keys: "
                                f"{', '.join(sorted(valid))}")
            for name in sorted(set(value) & set(BUILD_OWNED.get(key, {}))):
                problems.append(f"[{key}] {name}: the build sets it from {BUILD_OWNED[key][name]}; remove it here")
        elif key not in top:
            problems.append(f"{key}: unknown key{_did_you_mean(key, top)}; top-level keys: {', '.join(sorted(top))}; "
                            f"sections: {', '.join(f'[{s}]' for s in SECTIONS)}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    for key, value in values.items():
        if key in SECTIONS:
            section = dict(value)
            if key == "distill" and "keep_layers" in section and section["keep_layers"] is not None:
                section["keep_layers"] = tuple(section["keep_layers"])  # a TOML array
            built[key] = SECTIONS[key](**section)
        elif key == "distill_layers":
            built[key] = str(value)  # `distill_layers = 3` in TOML is an int; the field is a string
        else:
            built[key] = value
    return Recipe(**built)


def load_recipe(path: str | Path | None, overrides: dict | None = None, sets: list[str] = ()) -> Recipe:
    """defaults ← recipe file ← ``--set section.key=value`` ← ``overrides`` (the flags given: {section: {key: v}})."""
    values: dict = {}
    where = "recipe"
    if path is not None:
        path, where = Path(path), f"--recipe {path}"
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--recipe {path}: no such file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"--recipe {path}: not valid TOML ({e})") from None
        values = values.get("build", values) if isinstance(values.get("build"), dict) else values
        if is_flat(values):
            values = unflatten(values)
    for item in sets:
        _merge(values, parse_set(item))
    _merge(values, overrides or {})
    try:
        return from_dict(values, where)
    except TypeError as e:  # a value of the wrong kind for a nested config
        raise ConfigError(f"{where}: {e}") from None


def parse_set(item: str) -> dict:
    """``train.max_grad_norm=0`` → ``{"train": {"max_grad_norm": 0}}``; the value is read as TOML (else a string)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: write section.key=value, e.g. --set train.max_grad_norm=0")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    section, _, name = key.strip().rpartition(".")
    return {section: {name: value}} if section else {name: value}


def _merge(into: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into[key] = value


def data_files(r: Recipe) -> Splits:
    """The recipe's data, or a shipped sample: SST-2 (8,000 rows; the GLUE dev set as test), or for
    ``task = text-generation`` the SQuAD answer-from-the-passage pairs (400 + 100)."""
    if r.data.train:
        return r.data
    samples = Path(__file__).resolve().parent / "samples"
    if r.task == "text-generation":
        return replace(r.data, train=samples / "squad_answers_train.jsonl", test=samples / "squad_answers_test.jsonl")
    return replace(r.data, train=samples / "sst2_train.jsonl", test=samples / "sst2_test.jsonl")

