"""edgeft's numpy-only metrics equal scikit-learn's and seqeval's on real-shaped data."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgeft.metrics import classification_metrics, entities, headline, ner_metrics


def test_classification_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    labels = ["a", "b", "c", "d"]
    y_true = [rng.choice(labels[:3]) for _ in range(500)]  # 'd' never occurs in y_true
    y_pred = [t if rng.random() < 0.7 else rng.choice(labels) for t in y_true]
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(sklearn.accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(sklearn.f1_score(y_true, y_pred, average="macro"))
    p, r, f, s = sklearn.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = m["per_class"][label]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert np.array_equal(m["confusion_matrix"], sklearn.confusion_matrix(y_true, y_pred, labels=labels))
    assert headline(m) == ("accuracy", m["accuracy"])


def test_ner_matches_seqeval_on_random_bio():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-per", "I-per", "B-loc", "I-loc"]
    true = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.8 else rng.choice(tags) for t in row] for row in true]
    m = ner_metrics(true, pred)
    assert m["f1"] == pytest.approx(seqeval.f1_score(true, pred))
    assert m["precision"] == pytest.approx(seqeval.precision_score(true, pred))
    assert m["recall"] == pytest.approx(seqeval.recall_score(true, pred))
    assert m["accuracy"] == pytest.approx(seqeval.accuracy_score(true, pred))
    report = seqeval.classification_report(true, pred, output_dict=True)
    assert m["per_type"]["per"]["f1"] == pytest.approx(report["per"]["f1-score"])
    assert headline(m) == ("f1", m["f1"])


@pytest.mark.parametrize("tags, spans", [
    (["B-per", "I-per", "O", "B-loc"], {("per", 0, 1), ("loc", 3, 3)}),
    (["I-per", "I-per"], {("per", 0, 1)}),  # conlleval: a leading I- starts an entity
    (["B-per", "I-loc"], {("per", 0, 0), ("loc", 1, 1)}),  # type change ends the entity
    (["B-per", "B-per"], {("per", 0, 0), ("per", 1, 1)}),
    (["O", "O"], set()),
])
def test_entity_chunking(tags, spans):
    assert entities(tags) == spans
