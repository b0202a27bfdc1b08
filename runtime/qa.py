"""Extractive question answering on the device: windows over long contexts, best-span decoding.

A context longer than the model's ``max_length`` is read in overlapping windows. Each window is
the tokenizer's own pair template, ``[CLS] question [SEP] piece of context [SEP]`` for BERT, and
consecutive pieces share ``doc_stride`` tokens, so an answer cut by one window's edge lies whole in
the next one (when it is shorter than the stride). These are the windows of transformers'
``tokenizer(question, context, truncation="only_second", stride=doc_stride,
return_overflowing_tokens=True)`` — a test holds them equal — after cutting the question to
``max_question_tokens`` (a very long question would leave no room for the context).

The model scores every token as the answer's start and as its end. The answer is the span of
context tokens i ≤ j < i + max_answer_tokens with the largest start[i] + end[j] over all windows
(the rule of the reference SQuAD scripts); its characters come from the tokenizer's offsets, which
point into the original context even after lowercasing or accent stripping. Training scores its
validation and test splits with these same functions, so the runtime returns the answers the
training metrics counted.

numpy and tokenizers only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeft.errors import ConfigError

DEFAULT_MAX_ANSWER_TOKENS = 30  # as the SQuAD scripts: longer spans are almost never right
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: valid in a Python str, not in UTF-8


@dataclass(frozen=True)
class Answer:
    """The answer to one question: ``context[start:end] == answer``."""

    answer: str  # "" when no span was found (e.g. an empty context)
    score: float  # P(start) × P(end) of the span within its window (softmax over the window's context)
    start: int | None  # character offsets into the original context; None when there is no answer
    end: int | None
    truncated: bool = False  # the question was longer than max_question_tokens: only its start was read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings(max_length: int, doc_stride: int | None = None, max_question_tokens: int | None = None,
             max_answer_tokens: int | None = None, special_tokens: int = 4) -> dict[str, int]:
    """Windowing settings with defaults derived from ``max_length`` (384 → stride 128 and questions
    of up to 64 tokens, the SQuAD scripts' values), checked so that every window holds more new
    context than overlap.

    Args:
        special_tokens: tokens the pair template adds (3 for BERT, 4 for RoBERTa; 4 when unknown).
    Returns:
        {"doc_stride", "max_question_tokens", "max_answer_tokens"} — what bundles record as ``qa``.
    """
    question = max_question_tokens if max_question_tokens is not None else max(1, max_length // 6)
    stride = doc_stride if doc_stride is not None else max_length // 3
    answer = max_answer_tokens if max_answer_tokens is not None else DEFAULT_MAX_ANSWER_TOKENS
    room = max_length - question - special_tokens  # context tokens in a window with the longest question
    problems = []
    if question < 1 or room < 2:
        problems.append(f"--max-question-tokens {question} leaves no room for the context in {max_length}-token "
                        f"windows; use at most {max_length - special_tokens - 2}")
    elif not 0 <= stride < room:
        problems.append(f"--doc-stride {stride} must be below {room}, the context tokens of a {max_length}-token "
                        f"window after a {question}-token question (default max_length // 3)")
    if answer < 1:
        problems.append(f"--max-answer-tokens must be >= 1 (got {answer})")
    if problems:
        raise ConfigError("; ".join(problems))
    return {"doc_stride": stride, "max_question_tokens": question, "max_answer_tokens": answer}


@dataclass(frozen=True)
class Windowing:
    """Two tokenizers configured once (never mutated after, so one Windowing serves many threads)."""

    pair: Any  # tokenizers.Tokenizer: (question, context) → windows (only_second truncation, stride)
    question: Any  # tokenizers.Tokenizer without truncation: measures questions, to cut the long ones
    max_question_tokens: int
    max_answer_tokens: int

    @classmethod
    def create(cls, tokenizer_json: str, max_length: int, qa: dict) -> Windowing:
        """From a ``tokenizer.json`` text and the settings of ``settings()`` (a bundle's ``qa``)."""
        from tokenizers import Tokenizer

        pair, question = Tokenizer.from_str(tokenizer_json), Tokenizer.from_str(tokenizer_json)
        settings(max_length, qa["doc_stride"], qa["max_question_tokens"], qa["max_answer_tokens"],
                 pair.num_special_tokens_to_add(True))  # fail here, not on the first long context
        for tok in (pair, question):
            tok.no_padding()
        pair.enable_truncation(max_length, stride=qa["doc_stride"], strategy="only_second")
        question.no_truncation()
        return cls(pair, question, qa["max_question_tokens"], qa["max_answer_tokens"])

    def windows(self, question: str, context: str) -> tuple[list, bool]:
        """Every window of one pair, as ``tokenizers.Encoding`` objects, and whether the question was cut.

        A cut question keeps its first max_question_tokens tokens: the string is cut at the end of
        the last one (WordPiece tokenizes such a prefix into the same tokens; for a tokenizer that
        does not, the cut moves back a token until the prefix fits).
        """
        question, context = (_SURROGATE.sub("\ufffd", t) for t in (question, context))  # same length
        limit = keep = self.max_question_tokens
        offsets = self.question.encode(question, add_special_tokens=False).offsets
        cut = len(offsets) > limit
        while len(offsets) > limit and keep > 0:
            question = question[: offsets[keep - 1][1]]
            offsets, keep = self.question.encode(question, add_special_tokens=False).offsets, keep - 1
        if len(offsets) > limit:  # not even one character fits (byte-level pieces of one emoji, say)
            question = ""
        enc = self.pair.encode(question, context)
        return [enc, *enc.overflowing], cut


def context_range(enc) -> tuple[int, int]:
    """[first, last + 1) token indices of the context in a window (sequence id 1); (0, 0) if none."""
    ids = enc.sequence_ids
    first = next((i for i, s in enumerate(ids) if s == 1), None)
    if first is None:
        return 0, 0
    last = next(i for i in range(len(ids) - 1, -1, -1) if ids[i] == 1)
    return first, last + 1


def token_span(enc, start: int, end: int) -> tuple[int, int] | None:
    """The tokens of one window that hold the characters [start, end) of the context (the
    training label), or None when the span is not wholly inside the window."""
    lo, hi = context_range(enc)
    offsets = enc.offsets
    if hi == lo or offsets[lo][0] > start or offsets[hi - 1][1] < end:
        return None
    first = next(t for t in range(lo, hi) if offsets[t][1] > start)  # the token holding the first character
    last = next(t for t in range(hi - 1, lo - 1, -1) if offsets[t][0] < end)  # … and the last one
    return first, last


def best_span(start: np.ndarray, end: np.ndarray, enc, max_answer_tokens: int
              ) -> tuple[float, int, int, float] | None:
    """The best span of one window: (start + end logit, first token, last token, probability), or
    None when the window holds no context.

    Args:
        start, end: (seq,) logits of the window's tokens (pads and beyond are never read).
    """
    lo, hi = context_range(enc)
    if hi == lo:
        return None
    s, e = start[lo:hi].astype(np.float64), end[lo:hi].astype(np.float64)  # (n,) context tokens only
    n = hi - lo
    i, j = np.ogrid[:n, :n]
    sums = np.where((j >= i) & (j - i < max_answer_tokens), s[:, None] + e[None, :], -np.inf)  # (n, n)
    a, b = divmod(int(np.argmax(sums)), n)  # first maximum: ties go to the earliest span
    ps, pe = np.exp(s - s.max()), np.exp(e - e.max())
    return float(sums[a, b]), lo + a, lo + b, float(ps[a] / ps.sum() * pe[b] / pe.sum())


def decode(context: str, encodings: Sequence, outputs: Sequence[tuple[np.ndarray, np.ndarray]],
           max_answer_tokens: int, truncated: bool = False) -> Answer:
    """The best span over all windows of one question (``outputs``: (start, end) logits per window)."""
    best = None
    for enc, (start, end) in zip(encodings, outputs, strict=True):
        span = best_span(start, end, enc, max_answer_tokens)
        if span is not None and (best is None or span[0] > best[0][0]):
            best = span, enc
    if best is None:
        return Answer("", 0.0, None, None, truncated)
    (_, a, b, probability), enc = best
    first, last = enc.offsets[a][0], enc.offsets[b][1]
    while first < last and context[first].isspace():  # byte-level tokenizers fold a space into the token
        first += 1
    while last > first and context[last - 1].isspace():
        last -= 1
    return Answer(context[first:last], probability, first, last, truncated)


def as_pairs(items: Any = None, question: str | Sequence[str] | None = None,
             context: str | Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``predict``'s arguments as (question, context) pairs.

    Either ``question=`` and ``context=`` (a string each, or lists of equal length), or ``items``:
    (question, context) tuples/lists or {"question", "context"} dicts.
    """
    if question is not None or context is not None:
        if items is not None or question is None or context is None:
            raise TypeError("give question= and context= together, or a list of (question, context) pairs")
        qs, cs = ([x] if isinstance(x, str) else list(x) for x in (question, context))
        if len(qs) != len(cs):
            raise ValueError(f"{len(qs)} questions but {len(cs)} contexts; give one context per question")
        items = list(zip(qs, cs))
    pairs = []
    for i, item in enumerate([] if items is None else items):
        pair = (item.get("question"), item.get("context")) if isinstance(item, dict) else \
            tuple(item) if isinstance(item, (tuple, list)) else None
        if pair is None or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise TypeError(f"item {i} is not a (question, context) pair of strings: {str(item)[:80]!r}")
        pairs.append(pair)
    return pairs
