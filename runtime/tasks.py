"""The one table of tasks: what each task's model head is, what its ONNX graph outputs, and how
many tokens it reads by default.

Every part of edgeft that names tasks (data reading, training configs, the recipe, the export, the
bundle manifest, the runtime) reads this table, so a new task is added here once. It lives in the
runtime because the runtime must know the tasks without torch or transformers; the transformers
auto class is only a name here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    head: str  # suffix of config.architectures, e.g. "ForSequenceClassification"
    auto_class: str  # transformers auto class that loads the model with this head
    outputs: tuple[str, ...]  # ONNX output names
    max_length: int  # default tokens per input (question answering: the SQuAD scripts' 384-token windows)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add a task; names and heads are unique, so a lookup by either is never ambiguous."""
    if task.name in TASKS or any(t.head == task.head for t in TASKS.values()):
        raise ValueError(f"task {task.name!r} (head {task.head}) is already registered")
    TASKS[task.name] = task
    return task


# 128 tokens: SST-2 dev sentences average 25.5 word pieces, p90 40, max 60.
register_task(Task("text-classification", "ForSequenceClassification", "AutoModelForSequenceClassification",
                   ("logits",), 128))
register_task(Task("token-classification", "ForTokenClassification", "AutoModelForTokenClassification",
                   ("logits",), 128))
# Two outputs, both per token: the runtime decodes the answer span from them (edgeft.runtime.qa).
register_task(Task("question-answering", "ForQuestionAnswering", "AutoModelForQuestionAnswering",
                   ("start_logits", "end_logits"), 384))
# A decoder that generates text: logits per position plus the KV cache (edgeft.runtime.generate).
register_task(Task("text-generation", "ForCausalLM", "AutoModelForCausalLM", ("logits",), 2048))

TASK_NAMES = tuple(TASKS)
ENCODER_TASKS = tuple(name for name in TASKS if name != "text-generation")


def task_of_architectures(architectures) -> str | None:
    """The task whose head ends one of ``config.architectures`` (None if none does)."""
    for arch in architectures or ():
        for task in TASKS.values():
            if arch.endswith(task.head):
                return task.name
    return None


def default_max_length(task: str | None) -> int:
    """Tokens per input when the user gives none: the task's default (128 when unknown)."""
    return TASKS[task].max_length if task in TASKS else TASKS["text-classification"].max_length
