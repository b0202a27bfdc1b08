"""Teacher vs student on the test split: scores, agreement, parameters, FLOPs per token, size;
also used by trim-vocab's before/after checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from edgeft.train.finetune import IGNORE, predictions_to_metrics
from edgeft.compress.distill.student import QA
from edgeft.compress.distill.transfer import run_model


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


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def compare_on_test(teacher, t_tok, t_rows: list[dict], student, s_tok, s_rows: list[dict], labels: list[str],
                    task: str, student_test: dict, split: str, batch_size: int) -> tuple[dict, dict]:
    """(the teacher's test metrics, the ``comparison`` block of metrics.json): scores, drop, agreement,
    layers, parameters and FLOPs per token of teacher and student on the same test rows.

    Args:
        t_rows, s_rows: the test split encoded with each model's tokenizer (the same object if shared).
        student_test: the student's test metrics (``evaluate``); split: the split's path, for the record.
    """
    metric = "accuracy" if task == "text-classification" else "f1"
    t_out = run_model(teacher, t_rows, t_tok, batch_size)
    s_out = run_model(student, s_rows, s_tok, batch_size)
    teacher_test = qa_scores(t_out, t_rows) if task == QA else \
        predictions_to_metrics(*stack_outputs(t_out, t_rows), labels, task)
    seq_len = sum(len(r["input_ids"]) for r in s_rows) / len(s_rows)  # mean tokens per test row
    comparison = {
        "split": split,
        "metric": metric,
        "teacher": teacher_test[metric],
        "student": student_test[metric],
        "drop": teacher_test[metric] - student_test[metric],  # > 0: the student is worse
        # same argmax (NER: per word; QA: the same answer text)
        "agreement": qa_agreement(s_out, s_rows, t_out) if task == QA else
        prediction_agreement(s_out, s_rows, t_out, t_rows),
        "layers": {"teacher": teacher.config.num_hidden_layers, "student": student.config.num_hidden_layers},
        "parameters": {"teacher": parameters(teacher), "student": parameters(student)},
        "flops_per_token": {"teacher": flops_per_token(teacher.config, seq_len),
                            "student": flops_per_token(student.config, seq_len),
                            "seq_len": round(seq_len, 2),
                            "formula": "2·layers·(4h² + 2h·ffn + 2·seq·h): projections, feed-forward, attention; "
                                       "embeddings and head left out"},
    }
    return teacher_test, comparison
