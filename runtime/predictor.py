"""``Predictor``: a verified bundle + an onnxruntime session + its tokenizer → labels and entities.

    from edgeft.runtime.predictor import Predictor
    p = Predictor.load("runs/bundle")          # or "bundle.zip"; verifies hashes first
    p.predict(["great film", "dull"])           # [Prediction(label="positive", score=0.93, …), …]

How texts share a model call is the bundle's ``batching`` (edgeft.runtime.session): "padded" sorts
texts by length and pads each batch only to its longest member, in numpy (the tokenizer's own
padding is never switched on); "rows" runs one text per call, for dynamic-INT8 graphs whose
activation scale spans the whole input tensor. Either way a text's answer does not depend on what
else was passed with it. The tokenizer is configured
once at load (truncation to the bundle's max_length) and never mutated afterwards — a setting
changed per call would leak into the texts another thread is encoding — and
``InferenceSession.run`` is thread-safe, so one Predictor serves many threads without a lock.

numpy, onnxruntime and tokenizers only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.errors import BundleError, ConfigError
from edgeft.runtime.bundle import Bundle, load_bundle
from edgeft.runtime.manifest import Manifest
from edgeft.runtime.qa import Answer, Windowing, as_pairs, decode
from edgeft.runtime.session import SessionSettings, groups, open_session, pad, settings_for

CLIP_CHARS_PER_TOKEN = 32  # a text longer than max_length × this is cut before tokenizing (see _clip)
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: valid in a Python str, not in UTF-8
# Attention mask and token types for one unpadded sequence, sliced per call instead of allocated:
# at batch 1 every allocation runs on caches the model has just flushed (~2 µs each, cold).
_ONES = np.ones(4096, dtype=np.int64)
_ZEROS = np.zeros(4096, dtype=np.int64)
_ONES.flags.writeable = _ZEROS.flags.writeable = False


@dataclass(frozen=True)
class Prediction:
    """A classification result: the best label, its probability and every label's probability."""

    label: str
    score: float  # softmax probability of `label`
    scores: dict[str, float]  # label → probability, in the bundle's label order; sums to 1
    truncated: bool = False  # the text was longer than max_length tokens; only its start was read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Entity:
    """One entity span; ``text[start:end]`` of the original text is ``self.text``."""

    label: str  # entity type, without the B-/I- prefix
    score: float  # mean over its words of the first sub-token's probability
    start: int  # character offsets into the original (not normalised) text
    end: int
    text: str


@dataclass(frozen=True)
class Entities:
    """A token-classification result: the entities found in one text."""

    entities: tuple[Entity, ...]
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Predictor:
    """Use ``Predictor.load``; the fields are public for inspection and benchmarks."""

    manifest: Manifest
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer, truncation set at load, padding off; never mutated after
    source: Path
    batch_size: int = 32  # rows per model call when the bundle's batching is "padded"
    threads: int = 1
    load_seconds: float = field(default=0.0, compare=False)  # verification + session creation
    settings: SessionSettings = SessionSettings()  # how the session was made and how rows are batched

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None,
             batch_size: int = 32) -> Predictor:
        """Verify the bundle at ``path`` (folder or .zip), then create the session.

        Args:
            path: bundle folder or .zip.
            threads: onnxruntime intra-op threads; default: the bundle target's (capped at the
                physical cores), else physical cores, at most 4.
            providers: onnxruntime execution providers; default CPU.
            batch_size: texts per model call inside ``predict`` (bundles batched "padded"; a
                "rows" bundle runs one text per call whatever this is).
        Raises:
            BundleError: the bundle fails verification or onnxruntime cannot load it.
            ConfigError: a bad thread count, batch size or provider.
        """
        import time

        t0 = time.perf_counter()
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, not {threads}")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, not {batch_size}")
        bundle = load_bundle(path)  # raises before any session exists
        settings = settings_for(bundle.manifest, threads, providers)
        session = make_session(bundle, settings)
        tokenizer = make_tokenizer(bundle)
        return cls(bundle.manifest, session, tokenizer, bundle.source, batch_size, settings.threads,
                   time.perf_counter() - t0, settings)

    @property
    def is_ner(self) -> bool:
        return self.manifest.task == "token-classification"

    @property
    def is_qa(self) -> bool:
        return self.manifest.task == "question-answering"

    def predict(self, texts: Sequence[str] | str | None = None, *, question: str | Sequence[str] | None = None,
                context: str | Sequence[str] | None = None) -> list[Prediction] | list[Entities] | list[Answer]:
        """Classify texts, find their entities (token-classification bundles), or answer questions
        (question-answering bundles).

        Args:
            texts: strings (a single str counts as one text). Empty strings, any Unicode and very
                long texts are fine; texts over max_length tokens are truncated and flagged.
                For a QA bundle: (question, context) pairs, or {"question", "context"} dicts.
            question, context: QA bundles only: a string each, or lists of equal length.
        Returns:
            one Prediction (classification), Entities (NER) or Answer (QA) per input, in order.
        """
        if self.is_qa:
            return self.answer(as_pairs(texts, question, context))
        if question is not None or context is not None:
            raise ConfigError(f"question=/context= are for question-answering bundles; {self.source} does "
                              f"{self.manifest.task}: pass texts")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
        encodings, truncated = self._encode(texts)
        logits = self.forward([e.ids for e in encodings])
        labels = self.manifest.labels
        if not self.is_ner:
            return [classify(row, labels, cut) for row, cut in zip(logits, truncated)]
        # Spans are cut from the text the tokenizer saw (lone surrogates → U+FFFD, same offsets), so
        # every result encodes as UTF-8 (json.dumps(..., ensure_ascii=False) in `edgeft predict`).
        return [Entities(entities(valid_unicode(text), enc, row, labels), cut)
                for text, enc, row, cut in zip(texts, encodings, logits, truncated)]

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], bool]]:
        """Tag pre-split words (NER evaluation): the label of each word's first sub-token.

        Returns:
            per sentence: (one tag per word, truncated). Words cut off by truncation, or that
            produce no token at all, are tagged "O".
        """
        encodings = self.tokenizer.encode_batch([list(s) for s in sentences], is_pretokenized=True)
        logits = self.forward([e.ids for e in encodings])
        out = []
        for words, enc, row in zip(sentences, encodings, logits):
            first = first_subtokens(enc.word_ids)  # word index → token index
            best = row.argmax(-1)  # (seq,)
            tags = [self.manifest.labels[best[first[w]]] if w in first else "O" for w in range(len(words))]
            out.append((tags, bool(enc.overflowing)))
        return out

    def answer(self, pairs: Sequence[tuple[str, str]]) -> list[Answer]:
        """The answer to each (question, context) pair, found in its context (edgeft.runtime.qa):
        every window of every pair goes through the model in length-sorted batches."""
        w = self.windowing
        windows = [w.windows(q, c) for q, c in pairs]  # per pair: (its window encodings, question cut)
        outputs = self.run_windows([e for encs, _ in windows for e in encs])
        answers, k = [], 0
        for (_, context), (encs, cut) in zip(pairs, windows):
            answers.append(decode(context, encs, outputs[k:k + len(encs)], w.max_answer_tokens, cut))
            k += len(encs)
        return answers

    @cached_property
    def windowing(self) -> Windowing:
        """QA windows from the bundle's tokenizer and ``qa`` settings (made on first use; never mutated)."""
        return Windowing.create(self.tokenizer.to_str(), self.manifest.max_length, self.manifest.qa)

    def run_windows(self, encodings: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(start, end) logits, each (len(ids),), of QA window encodings, with their token type ids."""
        m = self.manifest
        out: list[Any] = [None] * len(encodings)
        for chunk in groups([len(e.ids) for e in encodings], self.batch_size, self.settings.batching):
            width = max(len(encodings[i].ids) for i in chunk)  # a window has its special tokens: never 0
            feeds = pad([encodings[i].ids for i in chunk], m.inputs, m.pad_token_id,
                        [encodings[i].type_ids for i in chunk])  # (batch, width) each
            start, end = self.session.run(m.outputs[:2], feeds)
            if start.shape != (len(chunk), width) or end.shape != start.shape:
                raise BundleError(f"{self.source}: the model returned start/end logits of shapes {start.shape} and "
                                  f"{end.shape}, expected {(len(chunk), width)}; the manifest does not match the model")
            for r, i in enumerate(chunk):
                n = len(encodings[i].ids)
                out[i] = (start[r, :n], end[r, :n])
        return out

    def forward(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Run the model on token ids, batched as the bundle says (module docstring).

        Returns:
            per sequence, its float32 logits: (num_labels,) for classification, (len(ids[i]),
            num_labels) for NER.
        """
        m = self.manifest
        if len(ids) == 1 or self.settings.batching == "rows":  # one row per call: nothing to sort or pad
            return [self._forward_one(seq) for seq in ids]
        out: list[np.ndarray] = [np.empty(0)] * len(ids)
        for chunk in groups([len(seq) for seq in ids], self.batch_size, self.settings.batching):
            feeds = pad([ids[i] for i in chunk], m.inputs, m.pad_token_id)  # (batch, width) each
            width = feeds["input_ids"].shape[1]
            logits = self.session.run(m.outputs[:1], feeds)[0]
            self._check_shape(logits, len(chunk), width)
            for r, i in enumerate(chunk):
                out[i] = logits[r, :len(ids[i])] if self.is_ner else logits[r]
        return out

    def _forward_one(self, seq: Sequence[int]) -> np.ndarray:
        """One unpadded row, (1, seq); the batch-1 serving path, so it allocates as little as it can."""
        m = self.manifest
        n = len(seq)
        if not 0 < n <= len(_ONES):  # no token at all (e.g. "" without specials), or very long: pad()
            feeds = pad([seq], m.inputs, m.pad_token_id)
        else:
            arrays = {"input_ids": np.array([seq], dtype=np.int64),  # (1, seq)
                      "attention_mask": _ONES[None, :n], "token_type_ids": _ZEROS[None, :n]}  # read-only views
            feeds = {k: arrays[k] for k in m.inputs}
        logits = self.session.run(m.outputs[:1], feeds)[0]
        self._check_shape(logits, 1, max(n, 1))
        return logits[0, :n] if self.is_ner else logits[0]

    def _check_shape(self, logits: np.ndarray, batch: int, width: int) -> None:
        want = (batch, width, len(self.manifest.labels)) if self.is_ner else (batch, len(self.manifest.labels))
        if logits.shape != want:
            raise BundleError(f"{self.source}: the model returned logits of shape {logits.shape}, expected {want} "
                              f"for task {self.manifest.task} with {len(self.manifest.labels)} labels; "
                              "the manifest does not match the model")

    def _encode(self, texts: list[str]) -> tuple[list[Any], list[bool]]:
        """Tokenize with truncation; returns (encodings, truncated flags)."""
        limit = self.manifest.max_length * CLIP_CHARS_PER_TOKEN
        safe = [valid_unicode(t) for t in texts]
        clipped = [clip(t, limit) for t in safe]
        # One text (the batch-1 serving case): plain encode, without encode_batch's thread-pool hand-off.
        encodings = [self.tokenizer.encode(clipped[0])] if len(clipped) == 1 else self.tokenizer.encode_batch(clipped)
        for i, (full, cut, enc) in enumerate(zip(safe, clipped, encodings)):
            if len(cut) < len(full) and not clip_is_exact(enc):
                encodings[i] = self.tokenizer.encode(full)
        return encodings, [bool(e.overflowing) for e in encodings]


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (valid in a Python str, not in UTF-8) replaced by U+FFFD; same length."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def clip(text: str, limit: int) -> str:
    """Cut a very long text near ``limit`` characters, at a whitespace when there is one nearby.

    Tokenizing 1 MB to keep 128 tokens costs seconds and builds thousands of overflow encodings.
    The kept tokens of the cut text equal those of the full text when the cut word is not among
    them (``clip_is_exact``); otherwise the caller tokenizes the full text.
    """
    if len(text) <= limit:
        return text
    for cut in range(limit, max(0, limit - 4096), -1):  # the last whitespace in the final 4 KB
        if text[cut - 1].isspace():
            return text[:cut - 1]
    return text[:limit]


def clip_is_exact(enc: Any) -> bool:
    """True when truncation kept only words that end before the cut: the kept tokens then do not
    depend on where the text was cut (pre-tokenizers split words locally, and word ids run on
    through the overflow pieces, so the last piece holds the cut word)."""
    if not enc.overflowing:
        return False  # the cut text fits: the full text may still have had more to keep
    kept = max((w for w in enc.word_ids if w is not None), default=-1)
    last = max((w for w in enc.overflowing[-1].word_ids if w is not None), default=-1)
    return kept < last


def classify(logits: np.ndarray, labels: list[str], truncated: bool) -> Prediction:
    """Softmax in plain Python floats (float64): for one row of a few labels, numpy's per-call
    dispatch costs more than the arithmetic, and at batch 1 this runs right after the model has
    flushed the CPU caches (measured: 44 → ~10 µs per call, 2 % of MiniLM INT8's model time)."""
    row = logits.tolist()
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    total = math.fsum(exps)
    probs = [e / total for e in exps]
    best = max(range(len(probs)), key=probs.__getitem__)
    return Prediction(labels[best], probs[best], dict(zip(labels, probs)), truncated)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (probabilities are reported to ~1e-7)."""
    z = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def first_subtokens(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word index → index of its first token (special tokens have word id None)."""
    first: dict[int, int] = {}
    for t, w in enumerate(word_ids):
        if w is not None and w not in first:
            first[w] = t
    return first


def entities(text: str, enc: Any, logits: np.ndarray, labels: list[str]) -> tuple[Entity, ...]:
    """Word-level BIO tags → entity spans, like the HF pipeline's aggregation "first".

    A word's tag is the argmax of its first sub-token; B-X starts an entity, I-X continues one of
    type X (or starts one after O or another type), O ends it. Spans come from the tokenizer's
    character offsets, which point into the original text even after lowercasing/accent stripping.

    Args:
        enc: the tokenizers Encoding of ``text``; logits: (seq, num_labels) for its tokens.
    """
    probs = softmax(logits)  # (seq, num_labels)
    spans: dict[int, list[int]] = {}  # word → [first token, char start, char end]
    for t, w in enumerate(enc.word_ids):
        if w is None:
            continue
        start, end = enc.offsets[t]
        if w not in spans:
            spans[w] = [t, start, end]
        else:
            spans[w][2] = max(spans[w][2], end)
    found: list[tuple[str, list[float], int, int]] = []  # (type, word scores, start, end)
    open_entity = False
    for w in sorted(spans):
        first, start, end = spans[w]
        tag = labels[int(probs[first].argmax())]
        prefix, kind = (tag[:1], tag[2:]) if tag[1:2] == "-" else ("I", tag)
        if tag == "O" or not kind:
            open_entity = False
            continue
        if open_entity and prefix in ("I", "E") and found[-1][0] == kind:
            found[-1][1].append(float(probs[first].max()))
            found[-1] = (kind, found[-1][1], found[-1][2], end)
        else:
            found.append((kind, [float(probs[first].max())], start, end))
        open_entity = prefix not in ("E", "S")
    out = []
    for kind, scores, start, end in found:
        while start < end and text[start].isspace():  # byte-level tokenizers fold the space into the word
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        out.append(Entity(kind, float(np.mean(scores)), start, end, text[start:end]))
    return tuple(out)


def make_session(bundle: Bundle, settings: SessionSettings) -> Any:
    """An onnxruntime session for a verified bundle, made as ``settings`` say (``settings_for`` its
    manifest: the options its quantize candidate was measured with); checks the model's
    inputs/outputs against the manifest."""
    import onnxruntime as ort

    m = bundle.manifest
    if _version(ort.__version__) < _version(m.min_onnxruntime):
        raise BundleError(f"{bundle.source} needs onnxruntime ≥ {m.min_onnxruntime}, but {ort.__version__} is "
                          "installed: pip install -U onnxruntime")
    available = ort.get_available_providers()
    unknown = [p for p in settings.providers if p not in available]
    if unknown:
        raise ConfigError(f"execution provider(s) {unknown} are not available; this onnxruntime has {available}")
    try:
        session = open_session(bundle.model, settings)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, …)
        raise BundleError(_load_failure(bundle, str(e))) from None
    names = {i.name for i in session.get_inputs()}
    if names != set(m.inputs):
        raise BundleError(f"{bundle.source}: the model's inputs are {sorted(names)} but the manifest lists "
                          f"{sorted(m.inputs)}; rebuild the bundle")
    outs = {o.name: o.shape for o in session.get_outputs()}
    if missing := [o for o in m.outputs if o not in outs]:
        raise BundleError(f"{bundle.source}: the model has no output {missing[0]!r} (it has {list(outs)})")
    if m.task == "question-answering":  # start and end logits, (batch, seq) each
        if bad := [o for o in m.outputs if len(outs[o]) != 2]:
            raise BundleError(f"{bundle.source}: the model's {bad[0]} have shape {outs[bad[0]]}, but a "
                              "question-answering manifest needs (batch, seq) start and end logits; the manifest "
                              "does not belong to this model")
        return session
    # logits: (batch, labels) or (batch, seq, labels); a dim is an int when static, else a name
    shape, rank = outs[m.outputs[0]], 3 if m.task == "token-classification" else 2
    if len(shape) != rank or (isinstance(shape[-1], int) and shape[-1] != len(m.labels)):
        raise BundleError(f"{bundle.source}: the model's {m.outputs[0]} have shape {shape}, but a {m.task} "
                          f"manifest with {len(m.labels)} labels needs rank {rank} ending in {len(m.labels)}; "
                          "the manifest does not belong to this model")
    return session


def _load_failure(bundle: Bundle, error: str) -> str:
    """onnxruntime's refusal as one message: an operator it lacks is named with the fix."""
    import onnxruntime as ort

    # "com.x:Op(-1) is not a registered function/op" (unknown domain) or "No Op registered for Op" (known domain)
    op = re.search(r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op", error) or re.search(
        r"No Op registered for (\w+)", error)
    if op:
        return (f"{bundle.source}: {bundle.manifest.model_file} uses an operator this onnxruntime does not have: "
                f"{op.group(1)}. Upgrade onnxruntime (pip install -U onnxruntime; this is {ort.__version__}), or "
                "re-export the model with `edgeft export` (standard ONNX operators only)")
    return f"{bundle.source}: onnxruntime cannot load {bundle.manifest.model_file}: {error}"


def make_tokenizer(bundle: Bundle) -> Any:
    """The bundle's tokenizer, truncating to max_length, without padding (we pad in numpy)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(bundle.tokenizer_json)
    except Exception as e:  # tokenizers raises a plain Exception on a bad file
        raise BundleError(f"{bundle.source}: {bundle.manifest.tokenizer_file} is not a tokenizers file: {e}") from None
    tok.no_padding()
    tok.enable_truncation(max_length=bundle.manifest.max_length)
    return tok


def _version(text: str) -> tuple[int, ...]:
    """'1.17.3' → (1, 17, 3); non-numeric parts ('dev0', 'rc1') end the tuple."""
    parts = []
    for piece in str(text).split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)
