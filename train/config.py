"""``TrainConfig``: every setting of a fine-tuning run, checked before any work starts.

Each field is declared once with its default, help and range (``edgeft.settings.setting``): the
``edgeft train`` and ``edgeft distill`` flags, the recipe's ``[train]`` section and the checks below
all come from here. The model to start from and the data files are not settings: they are the
stage's ``source`` and ``splits`` arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeft.runtime.tasks import TASK_NAMES, default_max_length
from edgeft.settings import check, parse_json_object, setting


@dataclass(frozen=True)
class TrainConfig:
    task: str | None = setting(None, "text-classification | token-classification | question-answering | "
                               "text-generation (default: from the data).", choices=TASK_NAMES)
    epochs: float = setting(3.0, "Passes over the training data (early stopping may end sooner).")
    lr: float = setting(5e-5, "Peak learning rate (AdamW, linear warm-up and decay).", gt=0)
    batch_size: int = setting(32, "Examples per batch and device.", ge=1)
    max_length: int | None = setting(None, "Tokens per example; longer texts are truncated (default: the task's, 128; "
                                     "question answering: 384-token windows over the context).", ge=8)
    # Question answering (edgeft.runtime.qa.settings; None = derived from max_length: 384 → 128, 64)
    doc_stride: int | None = setting(None, "QA: tokens shared by consecutive windows (default max-length / 3).", ge=1)
    max_question_tokens: int | None = setting(None, "QA: longer questions are cut (default max-length / 6).", ge=1)
    max_answer_tokens: int | None = setting(None, "QA: longest answer span, in tokens (default 30).", ge=1)
    max_steps: int = setting(-1, "Stop after N optimizer steps (overrides --epochs).")
    max_train_samples: int | None = setting(None, "Use only the first N training examples (a quick run).", ge=1)
    seed: int = setting(42, "Seed for the split, initialisation and data order.")
    eval_steps: int | None = setting(None, "Evaluate and checkpoint every N steps (default: every epoch).", ge=1)
    patience: int = setting(2, "Early stopping: evaluations without improvement before stopping (0 = off).", ge=0)
    warmup: float = setting(0.06, "Fraction of the steps with linear learning-rate warm-up.", ge=0, lt=1)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm, the Trainer's choice).",
                                  ge=0, lt=1)
    # 1.0 is the Trainer's default and BERT's; a plain loop usually has none, and on short runs that shows: on
    # 8,000 SST-2 rows for one epoch, clipping at 1.0 scored 0.24 pt lower over 11 seeds (README, Fine-tuning).
    max_grad_norm: float = setting(1.0, "Clip gradients to this global norm (the Trainer's default); 0 = no clipping, "
                                   "as in a plain PyTorch loop (it scored higher on short runs: README).", ge=0)
    precision: str = setting("auto", "auto (bf16 where the CPU/GPU has it) | bf16 | fp32.",
                             choices=("auto", "bf16", "fp32"))
    # Batches of similar lengths: less padding, 1.6x faster on CPU here, but measured 1.2 pt lower SST-2
    # accuracy after one epoch (two seeds): opt-in until a grouping that keeps accuracy is shown. Text-generation
    # builds turn it on (recipe.LM_TRAIN): 1.11x on SmolLM2 LoRA steps, test scores kept
    # (benchmarks/finetune_lm.py --steps, README).
    group_by_length: bool = setting(False, "Batch texts of similar length: ~1.6x faster, but -1.2 pt on SST-2 after "
                                    "1 epoch here.")
    hp_search: int = setting(0, "Run N Optuna trials (lr, batch size, epochs, warm-up, weight decay) and keep the "
                             "best.", ge=0)
    hp_space: dict | None = setting(None, 'Override search ranges as JSON, e.g. \'{"learning_rate": [1e-5, 3e-5], '
                                    '"num_train_epochs": [2, 4]}\'.', parse=parse_json_object, metavar="JSON")
    report_to: str = setting("none", "Trainer loggers, e.g. tensorboard (logs in OUT/checkpoints/runs).")
    resume: bool = setting(False, "Continue from the last checkpoint in OUT.")
    force: bool = setting(False, "Replace a non-empty output folder.")
    skip_bad_rows: bool = setting(False, "Skip and count bad rows instead of stopping.")
    trust_remote_code: bool = setting(False, "Allow model code from the hub (off by default).")
    validation_fraction: float = setting(0.1, "Share of --data held out for validation when no --validation is given.",
                                         gt=0, lt=0.5)
    test_fraction: float = setting(0.1, "Share of --data held out for testing when no --test is given.", gt=0, lt=0.5)
    # Text generation (edgeft.train.causal_lm). LoRA r=16 on all 7 projections of SmolLM2-135M: 4.9 M weights.
    full: bool = setting(False, "Text generation: train every weight instead of LoRA adapters.")
    lora_r: int = setting(16, "Text generation: LoRA rank (adapter width per adapted layer).", ge=1)
    lora_alpha: float = setting(32.0, "Text generation: LoRA scale; adapter updates are scaled by alpha / r.", gt=0)
    # 0, not peft's usual 0.05: on 2 CPU cores the dropout masks (one per adapted layer and step) cost a
    # third of a SmolLM2 LoRA step (benchmarks/finetune_lm.py --steps), with test scores kept on 1,000 pairs.
    lora_dropout: float = setting(0.0, "Text generation: dropout on the LoRA adapters' input (0.05 is a common "
                                  "choice; each adapted layer then draws a mask per step: 1.3-1.5x slower on 2 "
                                  "CPU cores).",
                                  ge=0, lt=1)
    lora_targets: str | None = setting(None, "Text generation: comma-separated layer names LoRA adapts (default: every "
                                       "attention and MLP projection; unknown architectures: every linear layer).")
    max_new_tokens: int = setting(64, "Text generation: most tokens of each greedy reply scored by exact match / F1.",
                                  ge=1)
    generation_examples: int = setting(100, "Text generation: validation/test prompts answered by greedy generation "
                                       "for exact match / F1 (0 = perplexity only).", ge=0)

    def __post_init__(self):
        problems = []
        if self.epochs <= 0 and self.max_steps <= 0:  # --max-steps > 0 makes --epochs irrelevant
            problems.append(f"--epochs must be > 0 (got {self.epochs})")
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
        if self.task == "question-answering" and (self.max_length or 8) >= 8:
            from edgeft.errors import ConfigError
            from edgeft.runtime.qa import settings

            try:
                settings(self.length(), self.doc_stride, self.max_question_tokens, self.max_answer_tokens)
            except ConfigError as e:
                problems.append(str(e))
        if self.lora_targets is not None and not any(t.strip() for t in self.lora_targets.split(",")):
            problems.append(f"--lora-targets names no layer (got {self.lora_targets!r}); give e.g. q_proj,v_proj")
        check(self, problems)  # ranges and choices of every field, reported together with the checks above

    def length(self, task: str | None = None) -> int:
        """max_length as it runs: the given one, else the task's default (128, QA 384)."""
        return self.max_length or default_max_length(task or self.task)

    def to_dict(self) -> dict:
        return asdict(self)
