"""The settings of ``edgeft distill`` (and of a build's distillation stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeft.errors import ConfigError
from edgeft.train.config import TrainConfig


DEFAULT_LAYERS = 3


@dataclass(frozen=True)
class DistillConfig:
    """Settings of ``edgeft distill``: a TrainConfig for the Trainer plus the distillation fields."""

    train: TrainConfig = field(default_factory=TrainConfig, metadata={
        "help": "epochs, lr, batch size, max length, seed, patience, resume, … as for edgeft train (model unused)"})
    layers: int | None = field(default=None, metadata={
        "help": f"student = the teacher with this many layers, evenly spaced [--layers]; None = {DEFAULT_LAYERS}"})
    keep_layers: tuple[int, ...] | None = field(default=None, metadata={
        "help": "which teacher layers the student keeps, 0-based [--keep-layers 0,2,4]"})
    student: str | None = field(default=None, metadata={
        "help": "a smaller pretrained model (folder or hub id) instead of a cut-down teacher [--student]"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T of the KD term [--temperature]"})
    alpha: float = field(default=0.5, metadata={"help": "weight of the label CE; the KD term gets 1 − α [--alpha]"})
    hidden_loss: bool = field(default=False, metadata={"help": "add MSE between mapped hidden states [--hidden-loss]"})
    hidden_weight: float = field(default=1.0, metadata={"help": "β, weight of the hidden-state MSE [--hidden-weight]"})
    unlabeled: str | None = field(default=None, metadata={
        "help": "unlabeled in-domain text (.txt one per line, .jsonl, .csv) added to the transfer set [--unlabeled]"})
    augment: int = field(default=0, metadata={"help": "augmented variants per training row (KD only) [--augment]"})
    augment_prob: float = field(default=0.15, metadata={
        "help": "fraction of the words masked or dropped in each variant [--augment-prob]"})

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
        if self.layers is not None and self.layers < 1:
            problems.append(f"--layers must be >= 1 (got {self.layers})")
        if self.student is not None and (self.layers is not None or self.keep_layers is not None):
            problems.append("--student and --layers/--keep-layers exclude each other: the student is either a "
                            "pretrained model or the teacher with fewer layers")
        if not self.temperature > 0:
            problems.append(f"--temperature must be > 0 (got {self.temperature})")
        if not 0 <= self.alpha <= 1:
            problems.append(f"--alpha is the weight of the label loss, in [0, 1] (got {self.alpha})")
        if self.hidden_weight < 0:
            problems.append(f"--hidden-weight must be >= 0 (got {self.hidden_weight})")
        if self.augment < 0:
            problems.append(f"--augment must be >= 0 variants per row (got {self.augment})")
        if not 0 < self.augment_prob < 1:
            problems.append(f"--augment-prob is a fraction of the words, in (0, 1) (got {self.augment_prob})")
        if self.train.hp_search:
            problems.append("hyperparameter search is not available for distill; tune with edgeft train first")
        if self.train.model is not None:
            problems.append("set the student with student=…, not train.model (the teacher is an argument)")
        if problems:  # all at once, like TrainConfig
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)
