"""Distil a fine-tuned classifier (the teacher) into a smaller student with the Hugging Face Trainer.

``distill(teacher_dir, data, out_dir, cfg)`` is the whole stage. The student is either the teacher
with fewer layers (embeddings, a chosen subset of the blocks and the fine-tuned head copied bit for
bit) or any smaller pretrained model (``--student``). It learns from

    loss = α·CE(student, labels) + (1−α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T))  [+ β·hidden MSE]

(Hinton et al. 2015; the T² keeps the soft-target gradients on the same scale as the CE's when T
changes). The transfer set is the training data, plus optional unlabeled in-domain text and
seeded word-dropout / masked-word variants of the training rows; rows without a label (unlabeled,
augmented) get the KD term only. The teacher's logits for these fixed inputs are computed once,
before training, and travel with each row as a feature column: the teacher costs one inference
pass, not one per epoch.

Everything else is ``edgeft train``'s machinery (``edgeft.train.finetune``): splits, encoding, the
Trainer with evaluation, early stopping, checkpoints and ``--resume``, the output folder, and so
multi-GPU / multi-node through torchrun or accelerate:

    edgeft distill runs/ft --data train.csv --layers 3 --out runs/kd3             # 1 CPU or GPU
    torchrun --nproc_per_node 4 -m edgeft distill runs/ft --data train.csv --out runs/kd3   # 4 GPUs

Under torchrun every rank computes the teacher logits for the whole transfer set once (one
inference pass per GPU, no communication); the Trainer then shards the rows.
"""

from __future__ import annotations

import copy
import csv
import inspect
import io
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from edgeft.data import Dataset, TextExample, TokenExample, check_labels, detect_task, fingerprint, write_jsonl
from edgeft.errors import ConfigError, DataError, ModelError, require
from edgeft.train.config import TrainConfig
from edgeft.train.finetune import (IGNORE, build_trainer, encode, evaluate, load_model, predictions_to_metrics,
                                   prepare_splits, save_curves, train_summary)
from edgeft.train.outputs import check_output_dir, last_checkpoint, save_model
from edgeft.squad import QAExample, to_row
from edgeft.train.model_source import resolve_model
from edgeft.train.qa import qa_settings
from edgeft.versions import versions
from edgeft.writable import atomic_file, write_json

DEFAULT_LAYERS = 3
UNLABELED = "\x00unlabeled"  # label of transfer rows that have none (unlabeled text, augmented variants)
NO_LABEL = -1  # its id while encoding: marks the KD positions, then becomes IGNORE
KD_COLUMNS = ("teacher_logits", "kd_mask")  # feature columns the Trainer must pass through to compute_loss
HEADS = {"ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
         "ForQuestionAnswering": "question-answering"}
QA = "question-answering"  # start/end logits per token, distilled as two distributions over the positions
# GPT-2's last hidden state has the final LayerNorm applied, the others not: only compare it with its like.
FINAL_NORM_IN_LAST_HIDDEN = ("gpt2",)


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


# --------------------------------------------------------------------------------------------------
# The loss


def distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0, alpha: float = 0.5,
                      mask=None) -> dict:
    """α·CE on the labels + (1−α)·T²·KL(teacher_T ‖ student_T), in float32.

    As torchtune's ``ForwardKLLoss`` (kd_losses.py): softmax in float32, the KD term averaged over
    the positions that count. Unlike it we return the true KL, Σ p_t·(log p_t − log p_s), not the
    cross-entropy −Σ p_t·log p_s: the gradient is the same, and the logged value is 0 when the
    student matches the teacher. Logits must be finite (classifier heads are).

    Args:
        student_logits: (batch, labels) or, for token classification, (batch, seq, labels).
        teacher_logits: the same shape; no gradient flows into it.
        labels: (batch,) or (batch, seq) int64 label ids, IGNORE (-100) where a row or position has no label.
        temperature: T > 0; both distributions are softened by it.
        alpha: weight of the CE term in [0, 1].
        mask: (batch, seq) where the KD term applies (token task: each word's first sub-token, also on
            unlabeled rows); None = every row (sequence task).
    Returns:
        {"loss": scalar with grad, "ce": CE over labelled positions (0 if none), "kd": KL at T, mean
        over KD positions (not multiplied by T²)}.
    """
    import torch
    import torch.nn.functional as F

    s = student_logits.float()
    log_p_s = F.log_softmax(s / temperature, dim=-1)  # (..., labels)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (batch,) or (batch, seq)
    weight = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    kd = (kl * weight).sum() / weight.sum().clamp(min=1)

    labelled = labels != IGNORE  # unlabeled / augmented rows and non-first sub-tokens have no label
    ce_sum = F.cross_entropy(s.reshape(-1, s.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    ce = ce_sum / labelled.sum().clamp(min=1)  # a batch of unlabeled rows: 0, not NaN
    loss = alpha * ce + (1 - alpha) * temperature**2 * kd
    return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}


def hidden_mse(student_hidden, teacher_hidden, pairs: Sequence[tuple[int, int]], attention_mask):
    """Mean over layer pairs of the MSE between hidden states, over real (non-pad) positions.

    Args:
        student_hidden, teacher_hidden: ``output_hidden_states`` tuples; entry 0 is the embedding
            output, entry i the output of layer i; each (batch, seq, hidden).
        pairs: (student index, teacher index) into those tuples.
        attention_mask: (batch, seq), 1 for real tokens.
    """
    m = attention_mask.unsqueeze(-1).float()  # (batch, seq, 1)
    per_pair = [(((student_hidden[s].float() - teacher_hidden[t].detach().float()) ** 2) * m).sum()
                / (m.sum() * student_hidden[s].shape[-1]).clamp(min=1) for s, t in pairs]
    return sum(per_pair) / len(per_pair)


def layer_pairs(student_layers: int, teacher_layers: int, keep: Sequence[int] | None, model_type: str
                ) -> list[tuple[int, int]]:
    """Which teacher hidden state each student hidden state imitates (indices into hidden_states).

    A cut-down teacher maps its layer j to the teacher layer it was copied from; a pretrained
    student maps its layer j to teacher layer round((j+1)·n_t/n_s) (uniform, as TinyBERT). Embeddings map to
    embeddings.
    """
    pairs = [(0, 0)]
    for j in range(student_layers):
        t = keep[j] + 1 if keep is not None else round((j + 1) * teacher_layers / student_layers)
        pairs.append((j + 1, t))
    if model_type in FINAL_NORM_IN_LAST_HIDDEN:  # the last state is post-LayerNorm: pair it only with its like
        pairs = [(s, t) for s, t in pairs if (s == student_layers) == (t == teacher_layers)]
    return pairs


# --------------------------------------------------------------------------------------------------
# The student


def find_layers(model) -> tuple[str, object]:
    """(dotted name, module) of the model's list of transformer blocks.

    Found generically: the first ``nn.ModuleList`` of ``config.num_hidden_layers`` blocks of one
    class, which is ``bert.encoder.layer`` (BERT, MiniLM), ``roberta.encoder.layer``,
    ``distilbert.transformer.layer`` and ``transformer.h`` (GPT-2). ``num_hidden_layers`` is an alias
    of DistilBERT's ``n_layers`` and GPT-2's ``n_layer`` in transformers' configs.
    """
    import torch.nn as nn

    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and len({type(b) for b in module}) == 1:
            return name, module
    raise ModelError(f"{type(model).__name__}: found no list of {n} identical blocks to copy layers from; "
                     f"use --student with a smaller pretrained model instead.")


def evenly_spaced(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """Layers to keep, first and last included: 6→3 keeps (0, 2, 5); 12→6 keeps (0, 2, 4, 7, 9, 11), DistilBERT's.

    One layer keeps the last one, which the fine-tuned head was trained on.
    """
    if student_layers == 1:
        return (teacher_layers - 1,)
    return tuple(round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers))


def cut_layers(teacher, keep: Sequence[int]):
    """A copy of ``teacher`` that keeps only the blocks in ``keep`` (embeddings and head included).

    The student is built from a config with fewer layers and loads the teacher's tensors by name
    (block ``keep[j]`` becomes block ``j``), strictly: every tensor is the teacher's, bit for bit.
    """
    prefix, blocks = find_layers(teacher)
    n = len(blocks)
    if not keep or max(keep) >= n:
        raise ConfigError(f"--keep-layers {','.join(map(str, keep))}: the teacher has layers 0..{n - 1}.")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(keep)  # sets n_layers (DistilBERT) / n_layer (GPT-2) through the alias
    if isinstance(getattr(config, "layer_types", None), list) and len(config.layer_types) == n:
        config.layer_types = [config.layer_types[i] for i in keep]  # per-layer attention kinds (newer models)
    source = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            if int(index) not in source:
                continue
            key = f"{prefix}.{source[int(index)]}.{rest}"
        state[key] = tensor
    student = type(teacher)(config).to(teacher.dtype)  # random init, overwritten below
    student.load_state_dict(state, strict=True)
    return student


def teacher_info(teacher_dir: str, trust_remote_code: bool = False) -> tuple[str, str, list[str]]:
    """(path, task, labels in id order) of a fine-tuned classifier folder, from its config alone."""
    from transformers import AutoConfig

    path, _ = resolve_model(teacher_dir)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {teacher_dir} as a model: {str(e).splitlines()[0]}") from None
    task = task_of(config)
    if task is None:
        raise ModelError(f"{teacher_dir}: the teacher must be a fine-tuned classifier (config.architectures is "
                         f"{config.architectures}); fine-tune it with `edgeft train` first.")
    return path, task, [] if task == QA else [config.id2label[i] for i in range(config.num_labels)]


def task_of(config) -> str | None:
    """text-/token-classification from ``config.architectures``, None for any other head."""
    for arch in getattr(config, "architectures", None) or ():
        for suffix, task in HEADS.items():
            if arch.endswith(suffix):
                return task
    return None


# --------------------------------------------------------------------------------------------------
# The transfer set


@dataclass(frozen=True)
class TransferSet:
    """The rows the student learns from: labeled training rows, then unlabeled, then augmented."""

    examples: list
    labeled: int
    unlabeled: int
    augmented: int

    def counts(self) -> dict:
        return {"labeled": self.labeled, "unlabeled": self.unlabeled, "augmented": self.augmented,
                "total": len(self.examples)}


def read_texts(path: str | Path, text_column: str = "text", tokens_column: str = "tokens"
               ) -> list[tuple[int, str | list[str]]]:
    """Unlabeled text as (line, text or word list): .txt (a text per line), .jsonl (``text`` or a
    ``tokens`` list), .csv/.tsv (the text column), .conll (words). Labels, if any, are ignored."""
    from edgeft.data import CONLL_SUFFIXES, read_dataset, read_text

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    suffix = path.suffix.lower()
    rows: list[tuple[int, str | list[str]]] = []
    if suffix in CONLL_SUFFIXES:
        ds = read_dataset(path, task="token-classification")
        rows = [(ex.line, list(ex.tokens)) for ex in ds.examples]
    elif suffix in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}).") from None
            if not isinstance(row, dict):
                value = None
            elif isinstance(row.get(tokens_column), list):
                value = row[tokens_column]
            else:
                value = row.get(text_column)
            words_ok = isinstance(value, list) and value and all(isinstance(w, str) and w.strip() for w in value)
            if not (isinstance(value, str) and value.strip() or words_ok):
                have = ", ".join(map(repr, row)) if isinstance(row, dict) else type(row).__name__
                raise DataError(f"{path}:{number}: no text in {text_column!r} or word list in {tokens_column!r} "
                                f"(the row has {have}). Name the column with --text-column / --tokens-column.")
            rows.append((number, value))
    elif suffix in (".csv", ".tsv", ".tab"):
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="," if suffix == ".csv" else "\t")
        if text_column not in (reader.fieldnames or []):
            have = ", ".join(map(repr, reader.fieldnames or [])) or "none"
            raise DataError(f"{path}:1: no column {text_column!r}; the columns are {have}. "
                            f"Name yours with --text-column.")
        for row in reader:
            if (row.get(text_column) or "").strip():
                rows.append((reader.line_num, row[text_column]))
    else:  # plain text: one text per line
        rows = [(n, line) for n, line in enumerate(read_text(path).splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no text in the file; it needs at least one non-empty row.")
    return rows


def unlabeled_examples(path: str | Path, task: str, text_column: str = "text", tokens_column: str = "tokens") -> list:
    """``read_texts`` as examples of ``task`` whose label is UNLABELED (words split on whitespace)."""
    out = []
    for line, value in read_texts(path, text_column, tokens_column):
        if task == "token-classification":
            words = value if isinstance(value, list) else value.split()
            out.append(TokenExample(tokens=tuple(words), tags=(UNLABELED,) * len(words), line=line))
        else:
            text = value if isinstance(value, str) else " ".join(value)
            out.append(TextExample(text=text, label=UNLABELED, line=line))
    return out


def augment(examples: Sequence, n: int, prob: float, mask_token: str | None, seed: int) -> list:
    """``n`` variants of each example, seeded: either each word replaced by ``mask_token`` with
    probability ``prob`` (masked-word, as in BERT's pre-training) or each word dropped with that
    probability (word dropout). Every variant changes at least one word. Variants are KD-only
    (UNLABELED): masking or dropping the word that carries the label can change it, and the
    teacher's soft labels say what it became (Tang et al. 2019; TinyBERT).

    A one-word row without a mask token cannot change: it gets no variants.
    """
    rng = random.Random(seed)
    out = []
    for ex in examples:
        words = list(ex.tokens) if isinstance(ex, TokenExample) else ex.text.split()
        for _ in range(n):
            use_mask = mask_token is not None and (len(words) < 2 or rng.random() < 0.5)
            if not use_mask and len(words) < 2:
                break
            hit = [rng.random() < prob for _ in words]
            if not any(hit):
                hit[rng.randrange(len(words))] = True
            if use_mask:
                variant = [mask_token if h else w for w, h in zip(words, hit)]
            else:
                if all(hit):  # keep at least one word
                    hit[rng.randrange(len(words))] = False
                variant = [w for w, h in zip(words, hit) if not h]
            if isinstance(ex, TokenExample):
                out.append(TokenExample(tokens=tuple(variant), tags=(UNLABELED,) * len(variant), line=ex.line))
            else:
                out.append(TextExample(text=" ".join(variant), label=UNLABELED, line=ex.line))
    return out


def transfer_set(train: Dataset, cfg: DistillConfig, mask_token: str | None) -> TransferSet:
    """Training rows + unlabeled rows (``cfg.unlabeled``) + ``cfg.augment`` variants per training row."""
    t = cfg.train
    extra = unlabeled_examples(cfg.unlabeled, train.task, t.text_column, t.tokens_column) if cfg.unlabeled else []
    variants = augment(train.examples, cfg.augment, cfg.augment_prob, mask_token, t.seed) if cfg.augment else []
    return TransferSet([*train.examples, *extra, *variants], len(train), len(extra), len(variants))


def encode_transfer(examples: Sequence, task: str, tokenizer, label2id: dict[str, int], max_length: int,
                    qa: dict | None = None) -> list[dict]:
    """``finetune.encode`` for rows that may lack a label, plus ``kd_mask`` for token classification.

    An UNLABELED row is encoded with the placeholder id NO_LABEL, which lands exactly where a label
    would (each word's first sub-token): that marks the KD positions, then becomes IGNORE.
    Question answering: every window of every training question (``qa``: window settings).
    """
    if task == QA:
        return encode(Dataset(path="transfer", task=task, examples=list(examples)), tokenizer, {}, max_length, qa)
    rows = encode(Dataset(path="transfer", task=task, examples=list(examples)), tokenizer,
                  {**label2id, UNLABELED: NO_LABEL}, max_length)
    for row in rows:
        if task == "token-classification":
            row["kd_mask"] = [int(label != IGNORE) for label in row["labels"]]  # (seq,) 1 = a word's first sub-token
            row["labels"] = [IGNORE if label == NO_LABEL else label for label in row["labels"]]
        elif row["labels"] == NO_LABEL:
            row["labels"] = IGNORE
    return rows


def attach_teacher_logits(rows: list[dict], teacher_rows: list[dict], outputs: list, task: str) -> None:
    """Store the teacher's logits in each student row (the cache the Trainer reads every epoch).

    Sequence task: (labels,) per row. Token task: the teacher's logits at its own first sub-tokens
    (one per word) are placed at the student's first sub-tokens, so a student with a different
    tokenizer still gets one target per word; words cut off by either tokenizer's truncation drop out.
    """
    import numpy as np

    for row, t_row, logits in zip(rows, teacher_rows, outputs, strict=True):
        if task == QA:  # (seq, 2): start and end logits of every token of the window, all positions count
            row["teacher_logits"] = np.asarray(logits, dtype=np.float32)
            row["kd_mask"] = np.ones(len(row["input_ids"]), dtype=np.float32)
            continue
        if task != "token-classification":
            row["teacher_logits"] = np.asarray(logits, dtype=np.float32)  # (labels,)
            continue
        words = logits[np.flatnonzero(t_row["kd_mask"])]  # (words, labels)
        positions = np.flatnonzero(row["kd_mask"])[: len(words)]
        full = np.zeros((len(row["input_ids"]), words.shape[1]), dtype=np.float32)  # (seq, labels)
        full[positions] = words[: len(positions)]
        mask = np.zeros(len(row["input_ids"]), dtype=np.float32)
        mask[positions] = 1.0
        row["teacher_logits"], row["kd_mask"] = full, mask


# --------------------------------------------------------------------------------------------------
# Inference helpers (teacher cache, teacher/student comparison, trim-vocab checks)


def run_model(model, rows: Sequence[dict], tokenizer, batch_size: int = 64, desc: str | None = None) -> list:
    """Logits of ``model`` for encoded rows, no grad, fp32, in batches of similar length.

    Returns:
        Per row, in input order: (labels,) for a sequence head, (len(input_ids), classes) for a per-token one.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import DataCollatorWithPadding

    names = set(inspect.signature(model.forward).parameters)  # DistilBERT's forward takes no token_type_ids
    if "input_ids" not in names:  # a forward(*args, **kwargs) wrapper: pass every model input
        names = set(tokenizer.model_input_names)
    collate = DataCollatorWithPadding(tokenizer)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # less padding per batch
    out: list = [None] * len(rows)
    was_training = model.training
    model.eval()
    with torch.no_grad(), tqdm(total=len(rows), desc=desc, disable=desc is None, leave=False) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([{k: v for k, v in rows[i].items() if k in names and k != "labels"} for i in chunk])
            result = model(**{k: v.to(device) for k, v in batch.items()})
            logits = result.logits if getattr(result, "logits", None) is not None else \
                torch.stack([result.start_logits, result.end_logits], -1)  # QA: (batch, seq, 2)
            logits = logits.float().cpu().numpy()
            for b, i in enumerate(chunk):
                if logits.ndim == 3:  # (batch, seq, classes): keep the row's real tokens
                    n = len(rows[i]["input_ids"])
                    offset = logits.shape[1] - n if tokenizer.padding_side == "left" else 0
                    out[i] = np.ascontiguousarray(logits[b, offset:offset + n])
                else:
                    out[i] = logits[b]
            bar.update(len(chunk))
    model.train(was_training)
    return out


def stack_outputs(outputs: list, rows: Sequence[dict]):
    """(logits, label ids) as ``predictions_to_metrics`` takes them; token rows padded with IGNORE."""
    import numpy as np

    if outputs[0].ndim == 1:
        return np.stack(outputs), np.asarray([r["labels"] for r in rows])
    width = max(len(o) for o in outputs)
    logits = np.zeros((len(outputs), width, outputs[0].shape[1]), dtype=np.float32)  # (n, seq, labels)
    labels = np.full((len(outputs), width), IGNORE, dtype=np.int64)
    for i, (o, r) in enumerate(zip(outputs, rows)):
        logits[i, : len(o)] = o
        labels[i, : len(o)] = r["labels"]
    return logits, labels


def teacher_windows(tcfg: TrainConfig, teacher_dir: Path) -> TrainConfig:
    """A QA student reads the teacher's windows: its training max_length and window settings
    (metrics.json), where the distill flags leave them unset."""
    try:
        trained = json.loads((teacher_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return tcfg
    qa = trained.get("qa") or {} if trained.get("max_length") == tcfg.max_length else {}
    return replace(tcfg, **{k: getattr(tcfg, k) if getattr(tcfg, k) is not None else qa.get(k)
                            for k in ("doc_stride", "max_question_tokens", "max_answer_tokens")})


def qa_scores(outputs: list, features) -> dict:
    """EM/F1 of per-window (seq, 2) start/end logits, as ``run_model`` returns them for QA."""
    from edgeft.train.qa import qa_metrics

    metrics = qa_metrics([o[:, 0] for o in outputs], [o[:, 1] for o in outputs], features)
    metrics.pop("predictions")
    return metrics


def qa_agreement(a_out: list, features, b_out: list) -> float:
    """Share of questions two QA models answer with the same text."""
    from edgeft.train.qa import answers

    a = answers([o[:, 0] for o in a_out], [o[:, 1] for o in a_out], features)
    b = answers([o[:, 0] for o in b_out], [o[:, 1] for o in b_out], features)
    return sum(x.answer == y.answer for x, y in zip(a, b)) / max(1, len(a))


def prediction_agreement(a_out: list, a_rows: Sequence[dict], b_out: list, b_rows: Sequence[dict]) -> float:
    """Fraction of predictions two models share: per row, or per word (each word's first sub-token)."""
    same = total = 0
    for a, ar, b, br in zip(a_out, a_rows, b_out, b_rows, strict=True):
        if a.ndim == 1:
            same, total = same + int(a.argmax() == b.argmax()), total + 1
            continue
        pa = [int(a[i].argmax()) for i, label in enumerate(ar["labels"]) if label != IGNORE]
        pb = [int(b[i].argmax()) for i, label in enumerate(br["labels"]) if label != IGNORE]
        k = min(len(pa), len(pb))
        same, total = same + sum(x == y for x, y in zip(pa[:k], pb[:k])), total + k
    return same / total if total else 1.0


def parameters(model) -> int:
    """Number of parameters (tied ones once)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_token(config, seq_len: float) -> int:
    """Forward FLOPs per token of the transformer blocks, analytic, 2 FLOPs per multiply-add.

    Per layer and token: Q, K, V and output projections 4·h², the feed-forward 2·h·f, attention
    scores QKᵀ and the weighted sum of V 2·s·h (s = sequence length, h = hidden size, f =
    feed-forward size). Embedding lookups cost no multiplications; the classifier head (h·labels
    per sequence) is left out.
    """
    h = config.hidden_size  # alias of DistilBERT's dim and GPT-2's n_embd
    f = (getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim", None)  # BERT / DistilBERT
         or getattr(config, "n_inner", None) or 4 * h)  # GPT-2: None means 4·h
    return int(2 * config.num_hidden_layers * (4 * h * h + 2 * h * f + 2 * seq_len * h))


# --------------------------------------------------------------------------------------------------
# The Trainer


@dataclass(frozen=True)
class KDCollator:
    """The usual collator plus the cached teacher logits (and KD mask), padded to the batch's length."""

    base: Callable  # DataCollatorWithPadding / DataCollatorForTokenClassification
    padding_side: str = "right"

    def __call__(self, features: list[dict]) -> dict:
        import numpy as np
        import torch

        batch = self.base([{k: v for k, v in f.items() if k not in KD_COLUMNS} for f in features])
        if "teacher_logits" not in features[0]:  # validation/test rows
            return batch
        first = features[0]["teacher_logits"]
        if first.ndim == 1:  # (batch, labels)
            batch["teacher_logits"] = torch.from_numpy(np.stack([f["teacher_logits"] for f in features]))
            return batch
        seq = batch["input_ids"].shape[1]
        logits = np.zeros((len(features), seq, first.shape[1]), dtype=np.float32)  # (batch, seq, labels)
        mask = np.zeros((len(features), seq), dtype=np.float32)  # (batch, seq), 0 on padding
        for i, f in enumerate(features):
            n = len(f["kd_mask"])
            at = slice(seq - n, seq) if self.padding_side == "left" else slice(0, n)
            logits[i, at], mask[i, at] = f["teacher_logits"], f["kd_mask"]
        batch["teacher_logits"], batch["kd_mask"] = torch.from_numpy(logits), torch.from_numpy(mask)
        return batch


def _distill_trainer_class():
    """The Trainer subclass (defined lazily: transformers is an optional extra)."""
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Trainer whose training loss is ``distillation_loss`` on the cached teacher logits.

        Evaluation batches carry no teacher logits and get the model's own CE, as in edgeft train.
        With ``hidden_pairs`` the teacher runs (no grad) on every batch for its hidden states: those are
        (seq × hidden) per layer per row, too big to cache (≈1.7 GB for SST-2 on MiniLM).
        """

        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: the Trainer divides by the GA steps

        def __init__(self, *args, kd: DistillConfig, teacher=None, hidden_pairs=None, data_collator=None, **kwargs):
            tokenizer = kwargs.get("processing_class")
            collator = KDCollator(data_collator, getattr(tokenizer, "padding_side", "right"))
            super().__init__(*args, data_collator=collator, **kwargs)
            self.kd, self.teacher, self.hidden_pairs = kd, teacher, hidden_pairs
            self._teacher_inputs = set(inspect.signature(teacher.forward).parameters) if teacher is not None else set()
            self._parts: dict[str, float] = {}
            self._parts_n = 0

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()  # the columns the model's forward takes …
            self._signature_columns += [c for c in KD_COLUMNS if c not in self._signature_columns]  # … and ours

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "teacher_logits" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            import torch

            teacher_logits = inputs.pop("teacher_logits")  # (batch, labels) or (batch, seq, labels), cached
            kd_mask = inputs.pop("kd_mask", None)  # (batch, seq) token task
            if "start_positions" in inputs:  # QA: two classifications over the positions, start and end
                positions = torch.stack([inputs.pop("start_positions"), inputs.pop("end_positions")], 1)  # (batch, 2)
                outputs = model(**inputs, output_hidden_states=bool(self.hidden_pairs))
                pad = (kd_mask == 0).unsqueeze(1)  # (batch, 1, seq): padding gets no probability in either
                student = torch.stack([outputs.start_logits, outputs.end_logits], 1).float().masked_fill(pad, -1e4)
                teacher = teacher_logits.transpose(1, 2).masked_fill(pad, -1e4)  # (batch, 2, seq)
                parts = distillation_loss(student.flatten(0, 1), teacher.flatten(0, 1), positions.flatten(),
                                          self.kd.temperature, self.kd.alpha)
            else:
                labels = inputs.pop("labels")  # IGNORE on rows/positions without a label
                outputs = model(**inputs, output_hidden_states=bool(self.hidden_pairs))
                parts = distillation_loss(outputs.logits, teacher_logits, labels, self.kd.temperature, self.kd.alpha,
                                          kd_mask)
            loss = parts.pop("loss")
            if self.hidden_pairs:
                self.teacher.to(inputs["input_ids"].device)
                with torch.no_grad():
                    t_out = self.teacher(**{k: v for k, v in inputs.items() if k in self._teacher_inputs},
                                         output_hidden_states=True)
                parts["hidden"] = hidden_mse(outputs.hidden_states, t_out.hidden_states, self.hidden_pairs,
                                             inputs["attention_mask"])
                loss = loss + self.kd.hidden_weight * parts["hidden"]
                parts["hidden"] = parts["hidden"].detach()
            for name, value in parts.items():  # averaged into the next log line (this process's batches)
                self._parts[name] = self._parts.get(name, 0.0) + float(value)
            self._parts_n += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and self._parts_n:
                logs.update({f"{k}_loss": float(f"{v / self._parts_n:.6g}") for k, v in self._parts.items()})
                self._parts, self._parts_n = {}, 0
            super().log(logs, *args, **kwargs)

    return DistillTrainer


# --------------------------------------------------------------------------------------------------
# The stage


def distill(teacher_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: DistillConfig = DistillConfig(),
            validation: str | Path | None = None, test: str | Path | None = None,
            progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Run the distillation stage and return the contents of ``metrics.json``.

    Args:
        teacher_dir: a fine-tuned classifier folder (what ``edgeft train`` writes).
        data: training file (or the only file: then a seeded stratified split is made and saved).
        out_dir: folder for the student (a normal HF folder), ``metrics.json``, splits, curves, checkpoints.
        cfg: all settings (see DistillConfig).
        validation, test: optional separate files; missing splits are carved out of ``data``.
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
    found = detect_task(data) if Path(data).is_file() else task
    if found != task:
        raise DataError(f"{data} holds {found} data but the teacher {teacher_dir} is a {task} model.")
    tcfg = replace(cfg.train, task=task)
    if task == QA:
        if cfg.unlabeled or cfg.augment:
            raise ConfigError("--unlabeled and --augment are not available for question answering: the transfer set "
                              "is the training questions (an answer needs its span in the context).")
        tcfg = teacher_windows(tcfg, Path(teacher_path))
    train_ds, val_ds, test_ds = prepare_splits(data, validation, test, tcfg)
    for ds in (train_ds, val_ds, test_ds):
        check_labels(ds, labels, f"the teacher's labels ({teacher_dir})")

    progress(f"loading the teacher {teacher_dir}")
    t_tok, teacher_init, max_length = load_model(teacher_path, task, labels, tcfg)
    teacher = teacher_init().eval()
    n_teacher = teacher.config.num_hidden_layers
    if cfg.student is None:
        keep = tuple(cfg.keep_layers or evenly_spaced(n_teacher, cfg.layers or DEFAULT_LAYERS))
        if len(keep) > n_teacher or max(keep) >= n_teacher:
            flag = "--keep-layers" if cfg.keep_layers else "--layers"
            raise ConfigError(f"{flag}: the teacher has {n_teacher} layers (0..{n_teacher - 1}); the student can "
                              f"keep at most that many.")
        find_layers(teacher)  # fail now if the blocks cannot be found

        def student_init(trial=None):
            return cut_layers(teacher, keep)

        s_tok, student_name = t_tok, f"{teacher_dir} with layers {', '.join(map(str, keep))} of {n_teacher}"
    else:
        keep = None
        s_path, student_name = resolve_model(cfg.student)
        s_tok, student_init, _ = load_model(s_path, task, labels, tcfg)
    student = student_init()
    n_student = student.config.num_hidden_layers
    same_tokenizer = s_tok is t_tok or s_tok.get_vocab() == t_tok.get_vocab()
    pairs = None
    if cfg.hidden_loss:
        if not same_tokenizer or student.config.hidden_size != teacher.config.hidden_size:
            raise ConfigError(f"--hidden-loss compares hidden states position by position: the student needs the "
                              f"teacher's tokenizer and hidden size ({teacher.config.hidden_size}; the student has "
                              f"{student.config.hidden_size}). Drop --hidden-loss or use --layers.")
        pairs = layer_pairs(n_student, n_teacher, keep, teacher.config.model_type)

    qa = None
    if task == QA:
        if not same_tokenizer:  # the KD targets are per token position
            raise ConfigError("question answering distils start/end logits position by position: the student needs "
                              "the teacher's tokenizer; use --layers instead of --student.")
        qa = qa_settings(tcfg, t_tok, max_length)

    # The transfer set and the teacher's logits on it, once.
    label2id = {label: i for i, label in enumerate(labels)}
    transfer = transfer_set(train_ds, cfg, getattr(s_tok, "mask_token", None))
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
        _write_splits(out, train_ds, val_ds, test_ds, transfer)
    features = {"train": rows, **{name: encode(ds, s_tok, label2id, max_length, qa)
                                  for name, ds in (("validation", val_ds), ("test", test_ds))}}
    trainer_cls = partial(_distill_trainer_class(), kd=cfg, teacher=teacher if pairs else None, hidden_pairs=pairs)
    trainer = build_trainer(student_init, s_tok, features, labels, task, out, tcfg, trainer_cls=trainer_cls)

    progress(f"training the student ({student_name})")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    metric_name = "accuracy" if task == "text-classification" else "f1"
    evaluations = {name: evaluate(trainer, features[name], labels, task) for name in ("validation", "test")}
    progress(f"scoring the teacher on the test split ({len(test_ds)} rows)")
    t_test_rows = features["test"] if s_tok is t_tok else encode(test_ds, t_tok, label2id, max_length, qa)
    t_out = run_model(teacher.to(device), t_test_rows, t_tok, _eval_batch(tcfg))
    s_out = run_model(trainer.model, features["test"], s_tok, _eval_batch(tcfg))
    teacher_test = qa_scores(t_out, t_test_rows) if task == QA else \
        predictions_to_metrics(*stack_outputs(t_out, t_test_rows), labels, task)
    seq_len = sum(len(r["input_ids"]) for r in features["test"]) / len(features["test"])  # mean tokens per test row
    comparison = {
        "split": test_ds.path,
        "metric": metric_name,
        "teacher": teacher_test[metric_name],
        "student": evaluations["test"][metric_name],
        "drop": teacher_test[metric_name] - evaluations["test"][metric_name],  # > 0: the student is worse
        # same argmax (NER: per word; QA: the same answer text)
        "agreement": qa_agreement(s_out, features["test"], t_out) if task == QA else
        prediction_agreement(s_out, features["test"], t_out, t_test_rows),
        "layers": {"teacher": n_teacher, "student": n_student},
        "parameters": {"teacher": parameters(teacher), "student": parameters(trainer.model)},
        "flops_per_token": {"teacher": flops_per_token(teacher.config, seq_len),
                            "student": flops_per_token(trainer.model.config, seq_len),
                            "seq_len": round(seq_len, 2),
                            "formula": "2·layers·(4h² + 2h·ffn + 2·seq·h): projections, feed-forward, attention; "
                                       "embeddings and head left out"},
    }
    log = trainer.state.log_history
    metrics = {
        "task": task,
        "model": student_name,
        "teacher": str(teacher_dir),
        "student": {"source": cfg.student or "teacher layers", "keep_layers": list(keep) if keep else None,
                    "layers": n_student},
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
        comparison["size_bytes"] = {"teacher": _weights_bytes(Path(teacher_path)), "student": _weights_bytes(out)}
        write_json(out / "distill_config.json", cfg.to_dict())
        save_curves(log, out, metric_name)
        write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    return metrics


def _eval_batch(cfg: TrainConfig) -> int:
    return max(cfg.batch_size, 32)  # as build_trainer's per_device_eval_batch_size


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def _write_splits(out: Path, train_ds: Dataset, val_ds: Dataset, test_ds: Dataset, transfer: TransferSet) -> None:
    """The splits (as edgeft train saves them) and the transfer set with each row's origin, for reruns."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
        write_jsonl(ds, out / "data" / f"{name}.jsonl")
    origins = ["train"] * transfer.labeled + ["unlabeled"] * transfer.unlabeled + ["augmented"] * transfer.augmented
    with atomic_file(out / "data" / "transfer.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex, origin in zip(transfer.examples, origins, strict=True):
            row = to_row(ex) if isinstance(ex, QAExample) else \
                {"text": ex.text, "label": None if ex.label == UNLABELED else ex.label} \
                if isinstance(ex, TextExample) else {"tokens": list(ex.tokens),
                                                     "tags": None if UNLABELED in ex.tags else list(ex.tags)}
            f.write(json.dumps({**row, "origin": origin}, ensure_ascii=False) + "\n")
