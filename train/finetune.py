"""Fine-tune a pretrained model on labeled text with the Hugging Face Trainer.

``finetune(data, out_dir, cfg)`` is the whole stage: read and split the data, load the model (the
embedded MiniLM by default), tokenize with dynamic padding, train with evaluation every epoch,
early stopping and the best checkpoint kept, then score the best model on the test split and write
``out_dir`` as a normal HF folder plus ``metrics.json``.

The Trainer is the engine on purpose: bf16 autocast on CPUs that have it (2.15x fp32 on this
AVX512-BF16 machine), length-grouped batches (1.6x), checkpoint resume, Optuna search, TensorBoard
and multi-GPU / multi-node through torchrun or accelerate come with it:

    edgeft train --data reviews.csv --out runs/ft                          # 1 CPU or GPU
    torchrun --nproc_per_node 4 -m edgeft train --data reviews.csv --out runs/ft   # 4 GPUs (DDP)
    torchrun --nnodes 2 --node_rank 0 --master_addr 10.0.0.1 --nproc_per_node 8 \\
        -m edgeft train --data reviews.csv --out runs/ft                   # 2 nodes (run on each)
"""

from __future__ import annotations

import os
import time
import random
from dataclasses import replace
from pathlib import Path

from edgeft.data import Dataset, check_labels, fingerprint, read_dataset, split_dataset, write_jsonl
from edgeft.errors import ConfigError, DataError, ModelError, require
from edgeft.metrics import classification_metrics, ner_metrics
from edgeft.stage import Progress, Splits, StageResult, silent
from edgeft.train.config import TrainConfig
from edgeft.train.model_source import resolve_model
from edgeft.train.qa import qa_settings
from edgeft.versions import versions
from edgeft.train.outputs import check_output_dir, last_checkpoint, save_model
from edgeft.writable import atomic_file, write_json

IGNORE = -100  # label id the loss and the metrics skip (special tokens, non-first sub-tokens, padding)


def finetune(model: str | Path | None, out_dir: str | Path, splits: Splits, cfg: TrainConfig = TrainConfig(),
             progress: Progress = silent) -> StageResult:
    """Run the fine-tuning stage; returns the model folder and the contents of ``metrics.json``.

    Args:
        model: local HF folder or hub id to start from; None = the embedded all-MiniLM-L6-v2.
        out_dir: folder for the model, ``metrics.json``, the splits, curves and checkpoints.
        splits: the training file, and optional validation/test files (missing ones are carved out
            of the training file, seeded and stratified, and saved in ``out_dir/data``).
        cfg: all settings (see TrainConfig).
        progress: one-line progress messages (the Trainer prints its own progress bar).
    """
    out = Path(out_dir)
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes files
    if rank0:
        check_output_dir(out, cfg.resume, cfg.force)
    resume = last_checkpoint(out) if cfg.resume else None
    if cfg.resume and resume is None:
        raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'} to continue from; run without --resume.")
    train_ds, val_ds, test_ds = prepare_splits(splits, cfg)
    task = train_ds.task
    if task == "text-generation":  # a decoder taught its replies: LoRA or full, merged (edgeft.train.causal_lm)
        from edgeft.train.causal_lm import finetune_lm

        return finetune_lm(model, out, (train_ds, val_ds, test_ds), cfg, progress, resume)
    labels = train_ds.labels
    check_labels(val_ds, labels, f"the training data ({train_ds.path})")
    check_labels(test_ds, labels, f"the training data ({train_ds.path})")

    transformers = require("transformers", "train")
    require("torch", "train")
    transformers.utils.logging.set_verbosity_error()  # the load report's MISSING classifier.* is normal
    transformers.utils.logging.disable_progress_bar()  # weight loading/saving bars; training keeps its own
    model_path, model_name = resolve_model(None if model is None else str(model), task)
    cfg = replace(cfg, task=task, max_length=cfg.length(task))  # as it runs: recorded so in metrics.json
    progress(f"fine-tuning {model_name} for {task} on {len(train_ds)} examples")
    tokenizer, model_init, max_length = load_model(model_path, task, labels, cfg)

    if rank0:
        (out / "data").mkdir(parents=True, exist_ok=True)
        for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
            write_jsonl(ds, out / "data" / f"{name}.jsonl")

    label2id = {label: i for i, label in enumerate(labels)}
    qa = qa_settings(cfg, tokenizer, max_length) if task == "question-answering" else None  # window settings
    features = {name: encode(ds, tokenizer, label2id, max_length, qa)
                for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds))}
    trainer = build_trainer(model_init, tokenizer, features, labels, task, out, cfg)

    hp_trials = []
    if cfg.hp_search:
        hp_trials, best = hyperparameter_search(trainer, cfg, cfg.hp_space)
        for name, value in best.items():  # the final run uses the best trial's settings
            setattr(trainer.args, name, value)
        trainer.model = trainer.call_model_init()

    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    metric_name = "accuracy" if task == "text-classification" else "f1"
    evaluations = {name: evaluate(trainer, features[name], labels, task) for name in ("validation", "test")}
    metrics = {
        "task": task,
        "model": model_name,
        "labels": labels,
        "metric": metric_name,
        "max_length": max_length,
        **({"qa": qa} if qa else {}),  # the windowing settings export writes into the bundle
        "train": train_summary(trainer, result, seconds, train_ds),
        **run_record(cfg, evaluations, (train_ds, val_ds, test_ds), hp_trials),
    }
    if rank0:
        save_model(trainer, tokenizer, out)
        write_json(out / "train_config.json", cfg.to_dict())
        save_curves(trainer.state.log_history, out, metric_name)
        write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    return StageResult(out, metrics)


def train_summary(trainer, result, seconds: float, train_ds: Dataset) -> dict:
    """The "train" block of metrics.json: size, loss, speed, steps, where the best checkpoint is."""
    return {
        "examples": len(train_ds),
        "loss": result.training_loss,
        "seconds": round(seconds, 2),
        "examples_per_second": result.metrics.get("train_samples_per_second"),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "devices": trainer.args.world_size,
        "skipped_rows": len(train_ds.skipped),
    }


def run_record(cfg: TrainConfig, evaluations: dict, datasets: tuple[Dataset, Dataset, Dataset], hp_trials: list) -> dict:
    """The rest of metrics.json, as every task writes it: validation and test scores, the search's trials, and
    what reproduces the run (seed, the data's fingerprint and files, the config, library versions)."""
    train_ds, val_ds, test_ds = datasets
    return {
        "validation": evaluations["validation"],
        "test": evaluations["test"],
        "hp_search": hp_trials,
        "seed": cfg.seed,
        "data_fingerprint": fingerprint(train_ds, val_ds, test_ds),
        "data": {"train": train_ds.path, "validation": val_ds.path, "test": test_ds.path},
        "config": cfg.to_dict(),
        "versions": versions(),
    }


def prepare_splits(splits: Splits, cfg: TrainConfig) -> tuple[Dataset, Dataset, Dataset]:
    """Read the files; carve whichever of validation/test is missing out of the training file (seeded, stratified)."""
    if splits.train is None:
        raise ConfigError("no training data: give --data (or train = ... in the recipe's [data] section).")
    read = dict(**splits.columns(), skip_bad_rows=cfg.skip_bad_rows)
    train_ds = read_dataset(splits.train, task=cfg.task, **read)
    validation, test = splits.validation, splits.test
    task = train_ds.task
    val_ds = read_dataset(validation, task=task, **read) if validation else None
    test_ds = read_dataset(test, task=task, **read) if test else None
    if val_ds is None or test_ds is None:
        tr, va, te = split_dataset(train_ds, cfg.validation_fraction if val_ds is None else 0,
                                   cfg.test_fraction if test_ds is None else 0, seed=cfg.seed)
        train_ds.examples, val_ds, test_ds = tr.examples, val_ds or va, test_ds or te
    else:  # shuffled like a split would be, so --max-train-samples takes a random subset
        random.Random(cfg.seed).shuffle(train_ds.examples)
    if cfg.max_train_samples:
        train_ds.examples = train_ds.examples[: cfg.max_train_samples]  # already shuffled by the split
    if len(train_ds.labels) < 2 and task == "text-classification":
        raise DataError(f"{train_ds.path}: only one label ({train_ds.labels[0]!r}) in the training data; "
                        f"a classifier needs at least two.")
    return train_ds, val_ds, test_ds


def load_model(model_path: str, task: str, labels: list[str], cfg: TrainConfig):
    """Tokenizer, a ``model_init`` that builds the model with a fresh head, and the max length.

    Weights load from safetensors only (no pickle), and remote code only with --trust-remote-code.
    """
    from transformers import AutoConfig, AutoTokenizer

    remote = cfg.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=remote)
        needs_prefix_space = task == "token-classification" and config.model_type in ("roberta", "gpt2")
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=remote,
                                                  **({"add_prefix_space": True} if needs_prefix_space else {}))
    except (OSError, ValueError, KeyError) as e:
        remote = (" Its config.json points at Python code in the folder (auto_map): edgeft runs such code only "
                  "with --trust-remote-code, once you have read it.") if "custom code" in str(e) else ""
        raise ModelError(f"cannot load {model_path!r} as a model: {str(e).splitlines()[0]}{remote}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{model_path}: edgeft needs a fast (tokenizers-backed) tokenizer for offsets and export.")
    if tokenizer.pad_token is None:  # GPT-2 and other decoders ship without one
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if task == "question-answering":  # two scores per token, start and end; no label set
        config.num_labels = 2
    else:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    config.pad_token_id = tokenizer.pad_token_id  # decoders pool the last non-pad token

    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # positions start after the padding index
    if cfg.max_length > positions:
        raise ConfigError(f"--max-length {cfg.max_length} is above what {model_path} supports ({positions} tokens); "
                          f"use --max-length {positions} or less.")
    import transformers

    cls = getattr(transformers, {"token-classification": "AutoModelForTokenClassification",
                                 "question-answering": "AutoModelForQuestionAnswering"}.get(
                                     task, "AutoModelForSequenceClassification"))

    def model_init(trial=None):
        try:
            return cls.from_pretrained(model_path, config=config, use_safetensors=True, trust_remote_code=remote,
                                       ignore_mismatched_sizes=True)  # a new head for our labels
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load weights from {model_path!r}: {str(e).splitlines()[0]} "
                             f"(edgeft loads safetensors only, never pickled .bin files)") from None

    model_init()  # fail now, before any training, if the weights cannot be loaded
    return tokenizer, model_init, cfg.max_length


def encode(ds: Dataset, tokenizer, label2id: dict[str, int], max_length: int, qa: dict | None = None) -> list[dict]:
    """Tokenize without padding (the collator pads per batch). NER labels go on each word's first sub-token;
    question answering gives one row per window of a long context (edgeft.train.qa; ``qa``: its settings)."""
    if ds.task == "question-answering":
        from edgeft.train.qa import encode_qa

        return encode_qa(ds.examples, tokenizer, max_length, qa)
    if ds.task == "text-classification":
        enc = tokenizer([ex.text for ex in ds.examples], truncation=True, max_length=max_length)
        return [{**{k: v[i] for k, v in enc.items()}, "labels": label2id[ex.label]} for i, ex in enumerate(ds.examples)]
    enc = tokenizer([list(ex.tokens) for ex in ds.examples], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    rows = []
    for i, ex in enumerate(ds.examples):
        word_ids, labels, previous = enc.word_ids(i), [], None
        for w in word_ids:  # (seq,) word index per token, None for special tokens
            labels.append(IGNORE if w is None or w == previous else label2id[ex.tags[w]])
            previous = w
        rows.append({**{k: v[i] for k, v in enc.items()}, "labels": labels})
    return rows


def predictions_to_metrics(logits, label_ids, labels: list[str], task: str) -> dict:
    """Full task metrics from Trainer outputs: logits (n, L) or (n, seq, L); label ids with IGNORE."""
    import numpy as np

    pred = np.asarray(logits).argmax(-1)
    if task == "text-classification":
        return classification_metrics([labels[i] for i in label_ids], [labels[i] for i in pred], labels)
    true_tags, pred_tags = [], []
    for p_row, l_row in zip(pred, label_ids):
        keep = l_row != IGNORE  # the first sub-token of each word
        true_tags.append([labels[i] for i in l_row[keep]])
        pred_tags.append([labels[i] for i in p_row[keep]])
    return ner_metrics(true_tags, pred_tags)


def build_trainer(model_init, tokenizer, features: dict, labels: list[str], task: str, out: Path, cfg: TrainConfig,
                  trainer_cls=None):
    """The HF Trainer with edgeft's defaults: eval + checkpoint per epoch, best model kept, early stopping.

    ``trainer_cls``: a Trainer subclass (or a callable taking Trainer's arguments) for a custom loss,
    e.g. distillation (edgeft.compress.distill); None = the plain Trainer.
    """
    from transformers import (DataCollatorForTokenClassification, DataCollatorWithPadding, EarlyStoppingCallback,
                              Trainer, TrainingArguments)

    metric_name = "accuracy" if task == "text-classification" else "f1"
    strategy = "steps" if cfg.eval_steps else "epoch"
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 32),
        warmup_steps=cfg.warmup,  # a float in [0, 1) is a fraction of the steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps,
        logging_steps=0.02,  # a fraction: ~50 points on the loss curve whatever the run length
        logging_first_step=True,
        load_best_model_at_end=True,
        metric_for_best_model=metric_name,
        greater_is_better=True,
        save_total_limit=2,  # the best and the latest (for --resume)
        bf16=use_bf16(cfg.precision),
        use_cpu=not cuda_available(),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to,
        disable_tqdm=False,
    )
    collator = (DataCollatorForTokenClassification(tokenizer) if task == "token-classification"
                else DataCollatorWithPadding(tokenizer))

    def compute_metrics(eval_pred):
        if task == "question-answering":  # windows → answers → EM/F1, as the runtime decodes them
            from edgeft.train.qa import qa_metrics

            full = qa_metrics(*eval_pred.predictions, features["validation"])
        else:
            full = predictions_to_metrics(eval_pred.predictions, eval_pred.label_ids, labels, task)
        keys = {"token-classification": ("precision", "recall", "f1", "accuracy"),
                "question-answering": ("exact_match", "f1")}.get(task, ("accuracy", "macro_f1"))
        return {k: full[k] for k in keys}  # the Trainer logs scalars only

    return (trainer_cls or Trainer)(
        model_init=model_init,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)] if cfg.patience else [],
    )


def evaluate(trainer, features: list[dict], labels: list[str], task: str) -> dict:
    """Full metrics of the trainer's (best) model on one split."""
    if task == "question-answering":
        from edgeft.train.qa import qa_metrics

        scorer, trainer.compute_metrics = trainer.compute_metrics, None  # it scores the validation windows
        try:
            out = trainer.predict(features)
        finally:
            trainer.compute_metrics = scorer
        metrics = qa_metrics(*out.predictions, features)
        metrics.pop("predictions")
    else:
        out = trainer.predict(features)
        metrics = predictions_to_metrics(out.predictions, out.label_ids, labels, task)
    metrics["examples_per_second"] = out.metrics.get("test_samples_per_second")
    return metrics


HP_SPACE = {  # TrainingArguments name → [low, high] (a range) or a list of 1 or 3+ choices
    "learning_rate": [1e-5, 1e-4],  # sampled log-uniformly
    "per_device_train_batch_size": [16, 32, 64],  # always a choice
    "num_train_epochs": [1, 5],
    "warmup_steps": [0.0, 0.2],  # fraction of the steps
    "weight_decay": [0.0, 0.1],
}


def hyperparameter_search(trainer, cfg: TrainConfig, space: dict | None = None) -> tuple[list[dict], dict]:
    """N Optuna trials through the Trainer's own ``hyperparameter_search``; returns (trials, best params)."""
    import optuna

    space = {**HP_SPACE, **(space or {})}

    def hp_space(trial):
        params = {}
        for name, spec in space.items():
            if name == "per_device_train_batch_size" or len(spec) != 2:
                params[name] = trial.suggest_categorical(name, list(spec))
            elif all(isinstance(v, int) for v in spec):
                params[name] = trial.suggest_int(name, *spec)
            else:
                params[name] = trial.suggest_float(name, *spec, log=name == "learning_rate")
        return params

    metric = trainer.args.metric_for_best_model
    storage = optuna.storages.InMemoryStorage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = trainer.hyperparameter_search(
        hp_space=hp_space, n_trials=cfg.hp_search, direction="maximize", backend="optuna",
        compute_objective=lambda m: m[f"eval_{metric}"], storage=storage, study_name="edgeft",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
    )
    study = optuna.load_study(study_name="edgeft", storage=storage)
    trials = [{"trial": t.number, metric: t.value, **t.params} for t in study.trials]
    return trials, best.hyperparameters


def use_bf16(precision: str) -> bool:
    """bf16 autocast where the hardware does it natively (CUDA bf16, or CPU AVX512-BF16/AMX), else fp32."""
    if precision != "auto":
        return precision == "bf16"
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def save_curves(log_history: list[dict], out: Path, metric: str) -> None:
    """Training loss and the validation metric per evaluation, as JSON and PNG."""
    loss = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    val = [(h["step"], h[f"eval_{metric}"]) for h in log_history if f"eval_{metric}" in h]
    write_json(out / "curves.json", {"train_loss": loss, f"validation_{metric}": val})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if loss:
        ax.plot(*zip(*loss), label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "o-", label=f"validation {metric}", color="tab:orange")
        ax2.set_ylabel(f"validation {metric}")
    fig.legend(loc="upper right")
    fig.tight_layout()
    with atomic_file(out / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
