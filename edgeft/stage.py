"""The shape every stage shares: ``stage(source, out, splits, cfg, progress) -> result``.

``Splits`` is the data a stage reads: train/validation/test files and the columns that hold text
and labels. Data paths are not settings: every stage takes one ``Splits`` value next to its config,
so the build hands the same value from stage to stage and a config holds only what changes how a
stage works. ``StageResult`` is what the model-to-model stages (train, distill, trim) return.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

from edgeft.settings import setting

SPLIT_NAMES = ("train", "validation", "test")
Progress = Callable[[str], None]  # one line of progress for the user (stderr in the CLI)


def silent(message: str) -> None:
    """The default progress callback of library calls: say nothing."""


@dataclass(frozen=True)
class Splits:
    train: Path | None = setting(None, "training file; alone, it is split 80/10/10 (seeded, stratified)", cli=False)
    validation: Path | None = setting(None, "validation file (early stopping, quantization search)", cli=False)
    test: Path | None = setting(None, "test file (final scores of every model and variant)", cli=False)
    text_column: str = setting("text", "Column holding the text.")
    label_column: str = setting("label", "Column holding the label (string or integer).")
    tokens_column: str = setting("tokens", "NER JSONL: field holding the word list.")
    tags_column: str = setting("tags", "NER JSONL: field holding the BIO tags.")

    def __post_init__(self):
        for name in SPLIT_NAMES:  # str paths from a recipe or a caller become Paths
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def columns(self) -> dict[str, str]:
        """The keyword arguments of ``edgeft.data.read_dataset`` that name the columns."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SPLIT_NAMES}

    def files(self) -> dict[str, Path | None]:
        return {name: getattr(self, name) for name in SPLIT_NAMES}

    def saved(self, folder: Path) -> "Splits":
        """The splits a training stage saved in ``folder`` (``train.jsonl`` …), in edgeft's own columns."""
        return Splits(*(folder / f"{name}.jsonl" for name in SPLIT_NAMES))

    def with_files(self, **files) -> "Splits":
        return replace(self, **files)


@dataclass(frozen=True)
class StageResult:
    """A model folder a stage wrote and the contents of its ``metrics.json`` (or report)."""

    path: Path
    metrics: dict
