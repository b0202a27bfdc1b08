"""Evaluate and time ONNX candidates the way a device runs them.

``evaluate_onnx`` predicts through the device runtime itself (``edgeft.runtime.predictor``: same
tokenizer settings, session settings and batching (``edgeft.runtime.session``), NER word alignment
and argmax), on a candidate file that is not yet a bundle, so every variant is scored exactly as
``edgeft eval`` would score it. The helpers below it build raw feeds for the places that need
arrays: parity (the same tensors go to PyTorch), calibration and timing.

Rows are batched as the bundle will batch them: dynamic quantization computes activation scales
over the whole input tensor, pad positions included, so its graphs run one row per call (anchor:
82.80 % unpadded vs 83.26 % padded to 128); FP32 and static graphs are padded in batches, which
leaves every row's result as it is alone (tests/test_batch_invariance.py).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgeft.metrics import classification_metrics, headline, ner_metrics
from edgeft.runtime.manifest import Manifest
from edgeft.runtime.session import SessionSettings, open_session, pad, settings_for


def load_tokenizer(tokenizer_path: str | Path, max_length: int):
    """The bundle tokenizer, truncating at ``max_length`` and never padding (batches pad themselves)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def encode(tok, examples: Sequence, task: str) -> list:
    """One ``tokenizers.Encoding`` per example; NER examples are encoded as pre-split words, QA
    examples as (question, context) pairs cut to max_length (the first window: for calibration)."""
    if task == "token-classification":
        return tok.encode_batch([list(ex.tokens) for ex in examples], is_pretokenized=True)
    if task == "question-answering":
        return tok.encode_batch([(ex.question, ex.context) for ex in examples])
    return tok.encode_batch([ex if isinstance(ex, str) else ex.text for ex in examples])


def feeds(encodings: Sequence, m: Manifest, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays, (batch, seq), for the model's inputs; seq = longest row or ``pad_to``."""
    return pad([e.ids for e in encodings], m.inputs, m.pad_token_id, [e.type_ids for e in encodings], pad_to)


def evaluate_onnx(model_path: str | Path, tokenizer_path: str | Path, m: Manifest, examples: Sequence,
                  batch_size: int = 32, settings: SessionSettings | None = None, sess=None) -> tuple[list, dict]:
    """Predict every example with the device runtime and score the predictions.

    Args:
        model_path: ONNX model; tokenizer_path: its ``tokenizer.json``.
        m: the manifest the bundle will carry (task, labels, inputs, pad id, max_length).
        examples: edgeft.data examples (``.text/.label`` or ``.tokens/.tags``).
        batch_size: rows per call where the batching is "padded" (module docstring).
        settings: how the model runs and batches; default ``settings_for(m, threads=1)``.
        sess: an existing onnxruntime session for ``model_path``, made with ``settings`` (skips creating one).
    Returns:
        (predictions, metrics): a label per example (NER: a tag per word; QA: the answer text)
        and ``classification_metrics`` / ``ner_metrics`` / ``squad_metrics`` of them.
    """
    from edgeft.runtime.predictor import Predictor

    settings = settings or settings_for(m, threads=1)
    predictor = Predictor(manifest=m, session=sess or open_session(model_path, settings),
                          tokenizer=load_tokenizer(tokenizer_path, m.max_length), source=Path(model_path),
                          batch_size=batch_size, threads=settings.threads, settings=settings)
    if m.task == "question-answering":
        from edgeft.squad import squad_metrics

        predictions = [a.answer for a in predictor.predict([ex.pair for ex in examples])]
        return predictions, squad_metrics([ex.answers for ex in examples], predictions)
    if m.task == "token-classification":
        predictions = [tags for tags, _ in predictor.tag_words([list(ex.tokens) for ex in examples])]
        return predictions, ner_metrics([list(ex.tags) for ex in examples], predictions)
    predictions = [p.label for p in predictor.predict([ex.text for ex in examples])]
    return predictions, classification_metrics([ex.label for ex in examples], predictions, m.labels)


def agreement(predictions: Sequence, reference: Sequence) -> float:
    """Fraction of predictions equal to the reference's (NER: per word)."""
    if predictions and isinstance(predictions[0], list):
        pairs = [(a, b) for p, r in zip(predictions, reference, strict=True) for a, b in zip(p, r, strict=True)]
    else:
        pairs = list(zip(predictions, reference, strict=True))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


def summary(metrics: dict) -> dict:
    """The compact form of a metrics dict that goes into manifests and tables."""
    name, value = headline(metrics)
    keep = ("accuracy", "macro_f1") if name == "accuracy" else ("exact_match", "f1") if "exact_match" in metrics \
        else ("f1", "precision", "recall", "accuracy")
    return {"metric": name, "value": value, **{k: metrics[k] for k in keep}, "n": metrics["n"]}


def time_interleaved(runs: dict[str, Callable[[int], object]], rounds: int = 5, calls: int = 20,
                     warmup: int = 5, seed: int = 0) -> dict[str, dict]:
    """Latency percentiles of several models measured in one process, interleaved.

    Each round runs every model ``calls`` times in a freshly shuffled order, so background load
    hits all models alike (anchor: single-thread ratios then hold to ±0.05 on a shared machine).

    Args:
        runs: name → ``run(i)``, which performs call number ``i`` (cycle through inputs with it).
    Returns:
        name → {"p50", "p90", "p99", "mean"} in ms (wall clock per call, after ``warmup`` calls),
        plus "n" calls and "round_p50" (the per-round medians, to judge noise).
    """
    rng = random.Random(seed)
    for run in runs.values():
        for i in range(warmup):
            run(i)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    per_round: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            run, times = runs[name], []
            for i in range(calls):
                t0 = time.perf_counter()
                run(len(samples[name]) + i)
                times.append((time.perf_counter() - t0) * 1e3)  # ms
            samples[name].extend(times)
            per_round[name].append(statistics.median(times))
    out = {}
    for name, xs in samples.items():
        p50, p90, p99 = np.percentile(xs, [50, 90, 99]).tolist()
        out[name] = {"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(xs)), "n": len(xs),
                     "round_p50": per_round[name]}
    return out


def timing_feeds(tokenizer_path: str | Path, m: Manifest, texts: Sequence[str], pad_to: int | None = None
                 ) -> list[dict[str, np.ndarray]]:
    """Batch-1 inputs of real sentences (``pad_to=None``: real length; else padded to ``pad_to``)."""
    tok = load_tokenizer(tokenizer_path, m.max_length)
    return [feeds([e], m, pad_to=pad_to) for e in tok.encode_batch(list(texts))]
