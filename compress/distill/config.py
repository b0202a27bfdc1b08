"""The settings of ``edgeft distill`` (and of a build's distillation stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeft.settings import check, parse_int_list, setting
from edgeft.train.config import TrainConfig


DEFAULT_LAYERS = 3
SMALL_DATA = 20_000  # training rows under which a build augments the transfer set
BUILD_AUGMENT = 4  # variants per training row a build makes then


@dataclass(frozen=True)
class DistillConfig:
    """Settings of ``edgeft distill`` and the recipe's ``[distill]`` section: the distillation fields, plus
    a TrainConfig for the Trainer (the recipe's ``[train]`` section in a build)."""

    train: TrainConfig = setting(help="epochs, lr, batch size, max length, seed, patience, resume, … as for edgeft "
                                 "train", default_factory=TrainConfig, cli=False)
    layers: int | None = setting(None, f"Student = the teacher with N evenly spaced layers (default {DEFAULT_LAYERS}).",
                                 ge=1)
    keep_layers: tuple[int, ...] | None = setting(None, "Which teacher layers to keep, 0-based, e.g. 0,2,5.",
                                                  parse=parse_int_list, metavar="0,2,5")
    student: str | None = setting(None, "A smaller pretrained model (folder or hub id) instead.")
    temperature: float = setting(2.0, "Softmax temperature of the KD term.", gt=0)
    alpha: float = setting(0.5, "Weight of the label cross-entropy; the KD term gets 1 - alpha.", ge=0, le=1)
    hidden_loss: bool = setting(False, "Add MSE between the student's and teacher's hidden states.")
    hidden_weight: float = setting(1.0, "Weight of the hidden-state MSE.", ge=0)
    unlabeled: str | None = setting(None, "Unlabeled in-domain text (.txt a line each, .jsonl, .csv): KD only.")
    augment: int | None = setting(None, "Variants per training row, labelled by the teacher (seeded, KD only). "
                                  f"Default: 0; a build uses {BUILD_AUGMENT} when the training split has under "
                                  f"{SMALL_DATA:,} rows.", ge=0)
    augment_words: str = setting("neighbours", "How a variant changes words: neighbours (each swapped, with "
                                 "--augment-prob, for one of its 15 nearest words in the teacher's embeddings) | "
                                 "mask (masked or dropped).", choices=("neighbours", "mask"))
    augment_prob: float = setting(0.3, "Fraction of the words swapped, masked or dropped per variant.", gt=0, lt=1)

    def __post_init__(self):
        problems = []
        if self.keep_layers is not None:
            keep = tuple(self.keep_layers)
            if not keep or any(not isinstance(i, int) or i < 0 for i in keep) or list(keep) != sorted(set(keep)):
                problems.append(f"--keep-layers must be increasing 0-based layer numbers like 0,2,4 "
                                f"(got {self.keep_layers})")
            elif self.layers is not None and self.layers != len(keep):
                problems.append(f"--layers {self.layers} disagrees with --keep-layers ({len(keep)} layers); "
                                f"give one of them")
        if self.student is not None and (self.layers is not None or self.keep_layers is not None):
            problems.append("--student and --layers/--keep-layers exclude each other: the student is either a "
                            "pretrained model or the teacher with fewer layers")
        if self.train.hp_search:
            problems.append("hyperparameter search is not available for distill; tune with edgeft train first")
        check(self, problems)  # ranges of every field, all at once, like TrainConfig

    def to_dict(self) -> dict:
        return asdict(self)
