"""Extractive question answering data (SQuAD format) and the official SQuAD v1.1 metric.

Two layouts are read, one question per example:
* JSONL, one question per line, as Hugging Face's ``squad`` dataset writes it:
  ``{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``
  (``answers`` may also be a list of ``{"text", "answer_start"}`` objects);
* the official nested JSON (``train-v1.1.json``, ``dev-v1.1.json``):
  ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers": [...]}]}]}]}``.

Every answer must sit where its ``answer_start`` says (``context[start:start + len(text)] == text``);
a row where it does not is reported with its file and line (or JSON path), like any bad row. An
empty answer list is allowed (a SQuAD 2.0 unanswerable question): training then points the model
at the first token, and the metric counts an empty prediction as right.

The metric is a line-by-line port of the official ``evaluate-v1.1.py`` (normalisation: lowercase,
drop punctuation, drop the articles a/an/the, collapse whitespace; exact match and token F1, each
the maximum over the reference answers), checked in tests against hand-computed cases. Scores
are fractions in [0, 1] like every other edgeft metric (the official script prints 100×).

Standard library only: training, quantization and the device runtime's ``eval`` all use it.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

TASK = "question-answering"


@dataclass(frozen=True)
class QAExample:
    question: str
    context: str
    answers: tuple[str, ...]  # reference answer texts (dev/test sets usually carry 3); () = unanswerable
    starts: tuple[int, ...]  # character offset of each answer in ``context``
    line: int  # 1-based line (JSONL) or question number (nested JSON)
    id: str = ""
    title: str = ""

    @property
    def pair(self) -> tuple[str, str]:
        return self.question, self.context


def looks_like_squad(path: Path, first_row) -> bool:
    """A JSONL row with question + context, or a nested file whose top level holds "data"."""
    if isinstance(first_row, dict) and "question" in first_row and "context" in first_row:
        return True
    return path.suffix.lower() == ".json" and _nested_head(path)


def _nested_head(path: Path) -> bool:
    """Cheap test for the official layout: the file starts with an object that has a "data" key
    (checked on the first 64 KB, so a 30 MB train file is not parsed twice)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        head = f.read(65536)
    return head.lstrip().startswith("{") and re.search(r'"data"\s*:\s*\[', head) is not None


def read_rows(path: Path, text: str, bad: Callable[[object, str], None]) -> Iterator[QAExample]:
    """Examples of a SQuAD JSONL or nested JSON file (``text``: its decoded content).

    ``bad(where, reason)`` is called for each bad row (it raises, or records and skips).
    """
    if re.match(r'\s*\{\s*"(data|version)"', text):  # the official layout's first key
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None  # not one JSON document: fall through to JSONL
        if isinstance(doc, dict) and "data" in doc:
            yield from _nested(doc, bad)
            return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            bad(number, f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        ex = example(row, number, number, bad)
        if ex is not None:
            yield ex


def _nested(doc: dict, bad) -> Iterator[QAExample]:
    """The official layout; ``where`` in messages is a JSON path such as data[3].paragraphs[0].qas[5]."""
    number = 0
    if not isinstance(doc["data"], list):
        bad("data", '"data" must be a list of articles')
        return
    for a, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            bad(f"data[{a}]", 'an article needs a "paragraphs" list')
            continue
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict) or not isinstance(para.get("qas"), list):
                bad(f"data[{a}].paragraphs[{p}]", 'a paragraph needs "context" and a "qas" list')
                continue
            for q, qa in enumerate(para["qas"]):
                number += 1
                row = {**qa, "context": para.get("context"), "title": article.get("title", "")} \
                    if isinstance(qa, dict) else qa
                ex = example(row, f"data[{a}].paragraphs[{p}].qas[{q}]", number, bad)
                if ex is not None:
                    yield ex


def example(row, where, number: int, bad) -> QAExample | None:
    """One checked example from a row (dict); ``bad(where, reason)`` and None when it is not usable."""
    if not isinstance(row, dict):
        return bad(where, f"expected an object with 'question', 'context' and 'answers', got {type(row).__name__}")
    question, context = row.get("question"), row.get("context")
    if not isinstance(question, str) or not question.strip():
        return bad(where, "empty or missing 'question'")
    if not isinstance(context, str) or not context.strip():
        return bad(where, "empty or missing 'context'")
    if "answers" not in row:
        return bad(where, "no 'answers' (give {\"text\": [...], \"answer_start\": [...]}; [] for an unanswerable "
                          "question)")
    answers = row["answers"]
    if isinstance(answers, dict):  # Hugging Face layout: parallel lists
        texts, starts = answers.get("text"), answers.get("answer_start")
    elif isinstance(answers, list) and all(isinstance(a, dict) for a in answers):  # official layout
        texts, starts = [a.get("text") for a in answers], [a.get("answer_start") for a in answers]
    else:
        return bad(where, "'answers' must be {\"text\": [...], \"answer_start\": [...]} or a list of "
                          "{\"text\", \"answer_start\"} objects")
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        return bad(where, "'answers' needs as many answer_start values as texts")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or not isinstance(start, int) or isinstance(start, bool):
            return bad(where, f"answer {text!r} at {start!r}: the text must be a non-empty string and "
                              f"answer_start an integer")
        found = context[start:start + len(text)]
        if found != text:
            return bad(where, f"answer {text!r} is not at character {start} of the context (found {found!r}); "
                              f"answer_start counts characters from 0")
    return QAExample(question=question, context=context, answers=tuple(texts), starts=tuple(starts), line=number,
                     id=str(row.get("id", "")), title=str(row.get("title", "")))


def to_row(ex: QAExample) -> dict:
    """The Hugging Face ``squad`` layout (what edgeft writes for its saved splits)."""
    return {"id": ex.id, "title": ex.title, "context": ex.context, "question": ex.question,
            "answers": {"text": list(ex.answers), "answer_start": list(ex.starts)}}


def split_by_context(examples: Sequence[QAExample], validation: float, test: float, seed: int
                     ) -> tuple[list, list, list]:
    """Seeded split that keeps every question of a paragraph in the same part (no context is both
    trained on and tested on). Whole paragraphs go to validation, then test, until each holds its
    fraction of the questions; a fraction of 0 makes no such part."""
    groups: dict[str, list[QAExample]] = {}
    for ex in examples:
        groups.setdefault(ex.context, []).append(ex)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    parts: tuple[list, list, list] = ([], [], [])
    want = {i: max(1, round(len(examples) * f)) if f > 0 else 0 for i, f in ((1, validation), (2, test))}
    for key in keys:
        part = next((i for i in (1, 2) if len(parts[i]) < want[i]), 0)
        parts[part].extend(groups[key])
    return parts


# --- the official SQuAD v1.1 metric --------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_metrics(references: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
    """Exact match and F1 as the official script computes them, as fractions.

    Args:
        references: per question, its reference answer texts; an empty list (unanswerable) counts
            an empty prediction as right (SQuAD 2.0's rule; v1.1 has no such questions).
        predictions: one answer text per question.
    Returns:
        {"exact_match", "f1", "n", "no_answer"} — no_answer: predictions that are empty.
    """
    em = f1 = 0.0
    for refs, pred in zip(references, predictions, strict=True):
        if not refs:
            score = float(not normalize_answer(pred))
            em, f1 = em + score, f1 + score
            continue
        em += max(exact_match_score(pred, r) for r in refs)
        f1 += max(f1_score(pred, r) for r in refs)
    n = len(predictions)
    return {"exact_match": em / n if n else 0.0, "f1": f1 / n if n else 0.0, "n": n,
            "no_answer": sum(not p for p in predictions)}
