"""Extractive question answering for the Trainer: SQuAD examples in, window features with answer
labels out; window logits in, exact match and F1 out.

Windows and decoding are the device runtime's own (``edgeft.runtime.qa``), built from the model's
``tokenizers`` backend, so training scores the very answers the bundle will give. Labels follow
the reference SQuAD scripts: each window of a training question is one example; the first
reference answer's tokens are the start and end labels when that answer lies wholly inside the
window, and the first token ([CLS]) otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from edgeft.runtime.qa import Windowing, decode, settings, token_span
from edgeft.squad import squad_metrics

TASK = "question-answering"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class QAFeatures(list):
    """The rows the Trainer reads (a list of dicts: model inputs + start/end positions), carrying
    what scoring needs besides: each row's window encoding and question index, the questions, and
    the windowing settings."""

    def __init__(self, rows: list[dict], encodings: list, owners: list[int], examples: Sequence, qa: dict):
        super().__init__(rows)
        self.encodings, self.owners, self.examples, self.qa = encodings, owners, list(examples), qa


def qa_settings(cfg, tokenizer, max_length: int) -> dict:
    """The windowing settings of a run (``cfg``: TrainConfig), checked against the tokenizer."""
    return settings(max_length, cfg.doc_stride, cfg.max_question_tokens, cfg.max_answer_tokens,
                    tokenizer.backend_tokenizer.num_special_tokens_to_add(True))


def encode_qa(examples: Sequence, tokenizer, max_length: int, qa: dict | None = None) -> QAFeatures:
    """Every window of every question, with its answer labels (unpadded; the collator pads).

    Args:
        examples: edgeft.squad.QAExample; tokenizer: the transformers fast tokenizer of the model.
        qa: ``settings()`` of this run (doc_stride, max_question_tokens, max_answer_tokens); None:
            the defaults for ``max_length``.
    """
    qa = qa or settings(max_length, special_tokens=tokenizer.backend_tokenizer.num_special_tokens_to_add(True))
    windowing = Windowing.create(tokenizer.backend_tokenizer.to_str(), max_length, qa)
    names = [n for n in MODEL_INPUTS if n in tokenizer.model_input_names or n == "attention_mask"]
    rows, encodings, owners = [], [], []
    for k, ex in enumerate(examples):
        windows, _ = windowing.windows(ex.question, ex.context)
        answer = (ex.starts[0], ex.starts[0] + len(ex.answers[0])) if ex.answers else None  # the first one
        for enc in windows:
            first, last = (token_span(enc, *answer) if answer else None) or (0, 0)  # not inside: [CLS]
            inputs = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
            rows.append({**{n: inputs[n] for n in names}, "start_positions": first, "end_positions": last})
            encodings.append(enc)
            owners.append(k)
    return QAFeatures(rows, encodings, owners, examples, qa)


def answers(starts, ends, features: QAFeatures) -> list:
    """The runtime's answer (edgeft.runtime.qa.Answer) to every question of ``features``.

    Args:
        starts, ends: per window, in feature order, its start/end logits: rows of the Trainer's
            (windows, seq) arrays (padded with -100 between batches) or 1-D arrays; each row is
            cut to its window's length, so padding is never read.
    """
    per_question = defaultdict(list)
    for i, (enc, k) in enumerate(zip(features.encodings, features.owners, strict=True)):
        n = len(enc.ids)
        per_question[k].append((enc, (np.asarray(starts[i][:n]), np.asarray(ends[i][:n]))))
    out = []
    for k, ex in enumerate(features.examples):
        windows = per_question.get(k, [])
        out.append(decode(ex.context, [e for e, _ in windows], [o for _, o in windows],
                          features.qa["max_answer_tokens"]))
    return out


def qa_metrics(starts, ends, features: QAFeatures) -> dict:
    """Exact match and F1 (edgeft.squad) of the decoded answers, plus "predictions" (answer texts)."""
    predicted = [a.answer for a in answers(starts, ends, features)]
    return {**squad_metrics([ex.answers for ex in features.examples], predicted), "predictions": predicted}
