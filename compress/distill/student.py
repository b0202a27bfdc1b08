"""The teacher and the student: which head a folder has, the student cut from the teacher's layers
(or loaded as a smaller pretrained model), and which teacher layer each student layer imitates.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from edgeft.errors import ConfigError, ModelError
from edgeft.runtime.tasks import default_max_length
from edgeft.train.config import TrainConfig
from edgeft.train.finetune import load_model
from edgeft.train.model_source import resolve_model
from edgeft.compress.distill.config import DEFAULT_LAYERS, DistillConfig


HEADS = {"ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
         "ForQuestionAnswering": "question-answering"}
QA = "question-answering"  # start/end logits per token, distilled as two distributions over the positions
# GPT-2's last hidden state has the final LayerNorm applied, the others not: only compare it with its like.
FINAL_NORM_IN_LAST_HIDDEN = ("gpt2",)


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


def teacher_max_length(teacher_dir: Path, task: str) -> int:
    """The task's default length, or for a question-answering teacher the windows it was trained with."""
    if task == QA:
        try:
            return int(json.loads((teacher_dir / "metrics.json").read_text(encoding="utf-8"))["max_length"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return default_max_length(task)


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


@dataclass(frozen=True)
class Student:
    """What ``make_student`` built: how the Trainer creates the student, and what it is."""

    init: Callable  # model_init(trial=None) -> a fresh student model
    tokenizer: object
    name: str  # for the progress line and metrics.json
    keep: tuple[int, ...] | None  # the teacher layers it copies; None for a pretrained student
    layers: int
    pairs: list[tuple[int, int]] | None  # (student, teacher) hidden states the MSE compares; None without it
    same_tokenizer: bool  # the teacher's vocabulary: per-token targets line up position by position


def make_student(teacher, t_tok, teacher_dir: str, task: str, labels: list[str], cfg: DistillConfig,
                 tcfg: TrainConfig) -> Student:
    """The student ``cfg`` asks for: the teacher with fewer layers, or a smaller pretrained model.

    Raises:
        ConfigError when the layers do not exist in the teacher, or --hidden-loss cannot compare the two.
    """
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
    return Student(student_init, s_tok, student_name, keep, n_student, pairs, same_tokenizer)
