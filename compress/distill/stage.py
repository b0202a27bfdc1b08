"""The distillation stage itself: ``distill()`` (the package docstring explains the method)."""


from __future__ import annotations

import os
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from edgeft.data import Dataset, check_labels, detect_task, fingerprint
from edgeft.errors import ConfigError, DataError, require
from edgeft.stage import Progress, Splits, StageResult, silent
from edgeft.train.config import TrainConfig
from edgeft.train.finetune import (build_trainer, encode, evaluate, load_model, prepare_splits, save_curves,
                                   train_summary)
from edgeft.train.outputs import check_output_dir, last_checkpoint, save_model
from edgeft.train.qa import qa_settings
from edgeft.versions import versions
from edgeft.writable import write_json
from edgeft.compress.distill.config import DistillConfig
from edgeft.compress.distill.student import (QA, make_student, teacher_info, teacher_max_length, teacher_windows)
from edgeft.compress.distill.transfer import (attach_teacher_logits, encode_transfer, run_model, transfer_set, word_neighbours,
                                             write_splits)
from edgeft.compress.distill.compare import (compare_on_test, weights_bytes)
from edgeft.compress.distill.trainer import distill_trainer_class


def distill(teacher_dir: str | Path, out_dir: str | Path, splits: Splits, cfg: DistillConfig = DistillConfig(),
            progress: Progress = silent) -> StageResult:
    """Run the distillation stage; returns the student folder and the contents of ``metrics.json``.

    Args:
        teacher_dir: a fine-tuned classifier folder (what ``edgeft train`` writes).
        out_dir: folder for the student (a normal HF folder), ``metrics.json``, splits, curves, checkpoints.
        splits: the training file, and optional validation/test files (missing ones are carved out
            of the training file, as for ``edgeft train``).
        cfg: all settings (see DistillConfig).
        progress: called with one line per step that takes a while.
    Raises:
        ConfigError / DataError / ModelError for bad input, before any training.
    """
    out = Path(out_dir)
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes files
    if rank0:
        check_output_dir(out, cfg.train.resume, cfg.train.force)
    resume = last_checkpoint(out) if cfg.train.resume else None
    if cfg.train.resume and resume is None:
        raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'} to continue from; run without --resume.")
    transformers = require("transformers", "distill")
    torch = require("torch", "distill")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    teacher_path, task, labels = teacher_info(str(teacher_dir), cfg.train.trust_remote_code)
    data = splits.train
    found = detect_task(data) if data is not None and Path(data).is_file() else task
    if found != task:
        raise DataError(f"{data} holds {found} data but the teacher {teacher_dir} is a {task} model.")
    tcfg = replace(cfg.train, task=task, max_length=cfg.train.max_length or teacher_max_length(Path(teacher_path), task))
    if task == QA:
        if cfg.unlabeled or cfg.augment:
            raise ConfigError("--unlabeled and --augment are not available for question answering: the transfer set "
                              "is the training questions (an answer needs its span in the context).")
        tcfg = teacher_windows(tcfg, Path(teacher_path))
    train_ds, val_ds, test_ds = prepare_splits(splits, tcfg)
    for ds in (train_ds, val_ds, test_ds):
        check_labels(ds, labels, f"the teacher's labels ({teacher_dir})")

    progress(f"loading the teacher {teacher_dir}")
    t_tok, teacher_init, max_length = load_model(teacher_path, task, labels, tcfg)
    teacher = teacher_init().eval()
    student = make_student(teacher, t_tok, str(teacher_dir), task, labels, cfg, tcfg)
    s_tok = student.tokenizer

    qa = None
    if task == QA:
        if not student.same_tokenizer:  # the KD targets are per token position
            raise ConfigError("question answering distils start/end logits position by position: the student needs "
                              "the teacher's tokenizer; use --layers instead of --student.")
        qa = qa_settings(tcfg, t_tok, max_length)

    # The transfer set and the teacher's logits on it, once.
    label2id = {label: i for i, label in enumerate(labels)}
    neighbours = None
    if cfg.augment and cfg.augment_words == "neighbours":
        progress("nearest words in the teacher's embeddings (the augmentation's replacements)")
        neighbours = word_neighbours(teacher.get_input_embeddings().weight.detach().float().numpy(), t_tok.get_vocab())
    transfer = transfer_set(train_ds, cfg, getattr(s_tok, "mask_token", None), splits, neighbours)
    rows = encode_transfer(transfer.examples, task, s_tok, label2id, max_length, qa)
    t_rows = rows if s_tok is t_tok else encode_transfer(transfer.examples, task, t_tok, label2id, max_length, qa)
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    progress(f"teacher logits for {len(rows)} transfer rows ({transfer.labeled} labeled, {transfer.unlabeled} "
             f"unlabeled, {transfer.augmented} augmented), computed once")
    started = time.perf_counter()
    attach_teacher_logits(rows, t_rows, run_model(teacher.to(device), t_rows, t_tok, _eval_batch(tcfg),
                                                  desc="teacher logits"), task)
    teacher_seconds = time.perf_counter() - started
    teacher.to("cpu")  # the Trainer moves it back only for --hidden-loss

    if rank0:
        write_splits(out, train_ds, val_ds, test_ds, transfer)
    features = {"train": rows, **{name: encode(ds, s_tok, label2id, max_length, qa)
                                  for name, ds in (("validation", val_ds), ("test", test_ds))}}
    trainer_cls = partial(distill_trainer_class(), kd=cfg, teacher=teacher if student.pairs else None,
                          hidden_pairs=student.pairs)
    trainer = build_trainer(student.init, s_tok, features, labels, task, out, tcfg, trainer_cls=trainer_cls)

    progress(f"training the student ({student.name})")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    metric_name = "accuracy" if task == "text-classification" else "f1"
    evaluations = {name: evaluate(trainer, features[name], labels, task) for name in ("validation", "test")}
    progress(f"scoring the teacher on the test split ({len(test_ds)} rows)")
    t_test_rows = features["test"] if s_tok is t_tok else encode(test_ds, t_tok, label2id, max_length, qa)
    teacher_test, comparison = compare_on_test(teacher.to(device), t_tok, t_test_rows, trainer.model, s_tok,
                                               features["test"], labels, task, evaluations["test"], test_ds.path,
                                               _eval_batch(tcfg))
    log = trainer.state.log_history
    metrics = {
        "task": task,
        "model": student.name,
        "teacher": str(teacher_dir),
        "student": {"source": cfg.student or "teacher layers",
                    "keep_layers": list(student.keep) if student.keep else None, "layers": student.layers},
        "labels": labels,
        "metric": metric_name,
        "max_length": max_length,
        **({"qa": qa} if qa else {}),  # the windows export writes into the bundle
        "train": {
            **train_summary(trainer, result, seconds, train_ds),
            "transfer": transfer.counts(),
            "teacher_rows": len(t_rows),  # rows the teacher ran on for the cache: each once
            "teacher_seconds": round(teacher_seconds, 2),
            "kd_curve": [(h["step"], h["kd_loss"]) for h in log if "kd_loss" in h],  # KL at T per logged step
            "last_losses": next(({k: h[k] for k in ("ce_loss", "kd_loss", "hidden_loss") if k in h}
                                 for h in reversed(log) if "kd_loss" in h), {}),
        },
        "validation": evaluations["validation"],
        "test": evaluations["test"],
        "teacher_test": teacher_test,
        "comparison": comparison,
        "seed": tcfg.seed,
        "data_fingerprint": fingerprint(train_ds, val_ds, test_ds, Dataset("transfer", task, transfer.examples)),
        "data": {"train": train_ds.path, "validation": val_ds.path, "test": test_ds.path, "unlabeled": cfg.unlabeled},
        "config": cfg.to_dict(),
        "versions": versions(),
    }
    if rank0:
        save_model(trainer, s_tok, out)
        comparison["size_bytes"] = {"teacher": weights_bytes(Path(teacher_path)), "student": weights_bytes(out)}
        write_json(out / "distill_config.json", cfg.to_dict())
        save_curves(log, out, metric_name)
        write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    return StageResult(out, metrics)


def _eval_batch(cfg: TrainConfig) -> int:
    return max(cfg.batch_size, 32)  # as build_trainer's per_device_eval_batch_size
