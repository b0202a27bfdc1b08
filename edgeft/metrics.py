"""Task metrics, shared by training (``edgeft train``) and the runtime (``edgeft eval``).

numpy and the standard library only, so the device runtime computes exactly the numbers training
reported. The entity-level NER scores follow seqeval's default (conlleval) rules; the tests check
them against seqeval itself and the classification scores against scikit-learn.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true, y_pred: label names, one per example.
        labels: every label of the model, in id order (defines the matrix rows/columns).
    Returns:
        {"accuracy", "macro_f1", "per_class": {label: {...}}, "confusion_matrix": [[…]] (rows = true,
        columns = predicted), "labels", "n"}.
    """
    index = {label: i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    # Macro-F1 over the classes present in y_true or y_pred (scikit-learn's convention when
    # `labels` is not passed), so a 77-intent model evaluated on a small slice is not penalised
    # for classes the slice does not contain.
    present = (actual + predicted) > 0
    n = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(actual[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
        "n": n,
    }


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """BIO(ES) tags → {(type, first, last)}, a port of seqeval's default (conlleval) chunking.

    Lenient like conlleval: an I- tag after O or after another type starts a new entity.
    """
    spans = set()
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, typ = chunk[:1], chunk[1:].split("-", maxsplit=1)[-1]
        ends = (
            prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag not in ("O", ".") and prev_type != typ)
        )
        starts = (
            tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != typ)
        )
        if ends:
            spans.add((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev_tag, prev_type = tag, typ
    return spans


def ner_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro precision/recall/F1 (+ per entity type) and token accuracy.

    Args:
        true_tags, pred_tags: per sentence, one BIO tag per word.
    """
    tp, n_true, n_pred = Counter(), Counter(), Counter()
    correct_tokens = total_tokens = 0
    for t, p in zip(true_tags, pred_tags, strict=True):
        gold, guess = entities(t), entities(p)
        for kind, *_ in gold:
            n_true[kind] += 1
        for kind, *_ in guess:
            n_pred[kind] += 1
        for kind, *_ in gold & guess:
            tp[kind] += 1
        correct_tokens += sum(a == b for a, b in zip(t, p))
        total_tokens += len(t)

    def prf(hit: int, pred: int, true: int) -> dict:
        p = hit / pred if pred else 0.0
        r = hit / true if true else 0.0
        return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": true}

    overall = prf(sum(tp.values()), sum(n_pred.values()), sum(n_true.values()))
    return {
        "precision": overall["precision"],
        "recall": overall["recall"],
        "f1": overall["f1"],
        "accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
        "per_type": {k: prf(tp[k], n_pred[k], n_true[k]) for k in sorted(n_true | n_pred)},
        "n": len(true_tags),
    }


def headline(metrics: dict) -> tuple[str, float]:
    """The one number a task is judged by: accuracy for classification, entity F1 for NER, token
    F1 for question answering (edgeft.squad.squad_metrics, which also reports exact match)."""
    return ("f1", metrics["f1"]) if "per_type" in metrics or "exact_match" in metrics else \
        ("accuracy", metrics["accuracy"])
