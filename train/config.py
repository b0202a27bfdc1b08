"""``TrainConfig``: every setting of a fine-tuning run, checked before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeft.errors import ConfigError

TASKS = ("text-classification", "token-classification", "question-answering")


@dataclass(frozen=True)
class TrainConfig:
    task: str | None = field(default=None, metadata={
        "help": "text-classification | token-classification | question-answering; None = from the data file"})
    model: str | None = field(default=None, metadata={"help": "local HF folder, hub id, or None for the embedded all-MiniLM-L6-v2"})
    text_column: str = "text"
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 128  # tokens; longer inputs are truncated (question answering: windows of this size)
    # Question answering (edgeft.runtime.qa.settings; None = derived from max_length: 384 → 128, 64)
    doc_stride: int | None = None  # tokens shared by consecutive windows over a long context
    max_question_tokens: int | None = None  # longer questions are cut to this many tokens
    max_answer_tokens: int | None = None  # longest answer span considered when decoding (None = 30)
    max_steps: int = -1  # > 0 overrides epochs
    max_train_samples: int | None = None
    seed: int = 42
    eval_steps: int | None = None  # None = evaluate (and checkpoint) once per epoch
    patience: int = 2  # early stopping: evaluations without improvement before stopping
    warmup: float = 0.06  # fraction of the training steps with linear warm-up
    weight_decay: float = 0.01  # AdamW's, on every weight but biases and LayerNorm (the Trainer's choice)
    # Gradients are rescaled to this global norm before each step; 0 turns clipping off. 1.0 is the Trainer's
    # default and BERT's; a plain loop usually has none, and on short runs that shows: on 8,000 SST-2 rows for
    # one epoch, clipping at 1.0 scored 0.24 pt lower over 11 seeds (benchmarks/finetune.py, README).
    max_grad_norm: float = 1.0
    precision: str = "auto"  # auto = bf16 where the CPU/GPU supports it, else fp32 | bf16 | fp32
    # Batches of similar lengths: less padding, 1.6x faster on CPU here, but measured 1.2 pt lower SST-2
    # accuracy after one epoch (two seeds): opt-in until a grouping that keeps accuracy is shown.
    group_by_length: bool = False
    hp_search: int = 0  # > 0: that many Optuna trials of the Trainer's hyperparameter_search
    hp_space: dict | None = None  # overrides of train.finetune.HP_SPACE, e.g. {"learning_rate": [1e-5, 3e-5]}
    report_to: str = "none"  # "tensorboard", "wandb", … as in the Trainer
    resume: bool = False  # continue from the last checkpoint in OUT/checkpoints
    force: bool = False  # replace a non-empty output folder
    skip_bad_rows: bool = False
    trust_remote_code: bool = False
    validation_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self):
        problems = []
        if self.task is not None and self.task not in TASKS:
            problems.append(f"--task {self.task!r} is unknown; choose one of: {', '.join(TASKS)}")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append(f"--epochs must be > 0 (got {self.epochs})")
        if self.lr <= 0:
            problems.append(f"--lr must be > 0 (got {self.lr})")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be >= 1 (got {self.batch_size})")
        if self.max_length < 8:
            problems.append(f"--max-length must be >= 8 tokens (got {self.max_length})")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            problems.append(f"--max-train-samples must be >= 1 (got {self.max_train_samples})")
        if self.eval_steps is not None and self.eval_steps < 1:
            problems.append(f"--eval-steps must be >= 1 (got {self.eval_steps})")
        if self.patience < 0:
            problems.append(f"--patience must be >= 0 (got {self.patience})")
        if not 0 <= self.warmup < 1:
            problems.append(f"--warmup is a fraction of the steps in [0, 1) (got {self.warmup})")
        if not 0 <= self.weight_decay < 1:
            problems.append(f"--weight-decay must be in [0, 1) (got {self.weight_decay})")
        if self.max_grad_norm < 0:
            problems.append(f"--max-grad-norm must be >= 0; 0 turns clipping off (got {self.max_grad_norm})")
        if self.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"--precision must be auto, bf16 or fp32 (got {self.precision!r})")
        if self.hp_search < 0:
            problems.append(f"--hp-search must be >= 0 trials (got {self.hp_search})")
        if self.hp_space:
            from edgeft.train.finetune import HP_SPACE

            unknown = sorted(set(self.hp_space) - set(HP_SPACE))
            if unknown:
                problems.append(f"--hp-space: unknown {', '.join(unknown)}; searchable: {', '.join(HP_SPACE)}")
            for name, spec in self.hp_space.items():
                if not isinstance(spec, (list, tuple)) or not spec:
                    problems.append(f"--hp-space {name}: give [low, high] or a list of choices, got {spec!r}")
        if self.report_to not in ("none", "all") and "tensorboard" in self.report_to:
            import importlib.util

            if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
                problems.append("--report-to tensorboard needs TensorBoard: pip install tensorboard")
        if not (0 < self.validation_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            problems.append("validation and test fractions must be in (0, 0.5)")
        if self.task == "question-answering" and self.max_length >= 8:
            from edgeft.runtime.qa import settings

            try:
                settings(self.max_length, self.doc_stride, self.max_question_tokens, self.max_answer_tokens)
            except ConfigError as e:
                problems.append(str(e))
        if problems:  # report all at once, like torchtune's config errors
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)
