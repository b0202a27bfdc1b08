"""Predictions: equal to a PyTorch forward of the same model, NER spans that map back to the
original text, any input without a crash, and one Predictor shared by 8 threads."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from bundles import MAX_LENGTH, NER_LABELS, torch_logits
from tiny_models import DATA

from edgeft.errors import ConfigError
from edgeft.runtime.predictor import Entity, Predictor, entities

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

TEXTS = [json.loads(line)["text"] for line in (DATA / "sst2_300.jsonl").read_text().splitlines()[:40]]
UNICODE = ["Rendez-vous à Zürich avec José Müller près de 東京.", "naïve café crème brûlée 😀 in Köln",
           "👩‍👩‍👧 family trip to Kyōto and 北京 with Zoë", "مرحبا بالعالم Paris", "e\u0301cole in Montréal"]
EDGE = ["", " ", "\n\t ", "\x00", "\ud800 lone surrogate", "\u200b", "a" * 10_000, "東京" * 3_000,
        "e" + "\u0301" * 500, "🙂" * 2_000]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("built", ["cls_built", "gpt2_built"])
def test_classification_equals_pytorch(built, request):
    bundle, hf_dir = request.getfixturevalue(built)
    p = Predictor.load(bundle, batch_size=8)  # 40 texts of mixed lengths: padded batches
    preds = p.predict(TEXTS)
    ref = softmax(np.stack(torch_logits(hf_dir, "text-classification", [e.ids for e in p.tokenizer.encode_batch(TEXTS)])))
    got = np.array([[pred.scores[label] for label in p.manifest.labels] for pred in preds])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert [pred.label for pred in preds] == [p.manifest.labels[i] for i in ref.argmax(-1)]
    assert all(pred.score == max(pred.scores.values()) for pred in preds)


def test_ner_equals_pytorch(ner_built):
    bundle, hf_dir = ner_built
    p = Predictor.load(bundle, batch_size=4)
    texts = TEXTS[:12] + UNICODE
    ids = [e.ids for e in p.tokenizer.encode_batch(texts)]
    for got, ref in zip(p.forward(ids), torch_logits(hf_dir, "token-classification", ids)):
        assert got.shape == ref.shape
        np.testing.assert_allclose(softmax(got), softmax(ref), atol=1e-4)
    # eval path: each word gets its first sub-token's tag
    words = [t.split() for t in texts]
    encs = [p.tokenizer.encode(w, is_pretokenized=True) for w in words]
    refs = torch_logits(hf_dir, "token-classification", [e.ids for e in encs])
    for (tags, _), ws, enc, ref in zip(p.tag_words(words), words, encs, refs):
        firsts = [enc.word_ids.index(i) for i in range(len(ws))]
        assert tags == [NER_LABELS[int(ref[t].argmax())] for t in firsts]


def test_entities_merge_bio_first_subtoken_and_map_to_original_text(ner_bundle):
    """Crafted logits on the real tokenizer: accents, emoji and CJK keep their character offsets."""
    p = Predictor.load(ner_bundle)
    text = "Rendez-vous à Zürich 😀 avec José Müller près de 東京."
    enc = p.tokenizer.encode(text)
    words: dict[int, list[int]] = {}  # word id → its token indices
    for t, w in enumerate(enc.word_ids):
        if w is not None:
            words.setdefault(w, []).append(t)
    word_text = {w: text[enc.offsets[ts[0]][0]:enc.offsets[ts[-1]][1]] for w, ts in words.items()}
    want = {"Zürich": "B-location", "José": "B-person", "Müller": "I-person", "東": "B-location", "京": "I-location"}
    logits = np.zeros((len(enc.ids), len(NER_LABELS)), dtype=np.float32)
    logits[:, 0] = 5  # O everywhere …
    for w, ts in words.items():
        if word_text[w] in want:
            logits[ts[0]] = 0
            logits[ts[0], NER_LABELS.index(want[word_text[w]])] = 5  # … except the words above
            for t in ts[1:]:  # later sub-tokens disagree: aggregation "first" ignores them
                logits[t] = 0
                logits[t, NER_LABELS.index("I-person")] = 9
    assert len(words[next(w for w in words if word_text[w] == "Zürich")]) > 1  # really split into sub-tokens
    found = entities(text, enc, logits, list(NER_LABELS))
    assert [(e.label, e.text) for e in found] == [("location", "Zürich"), ("person", "José Müller"), ("location", "東京")]
    for e in found:
        assert text[e.start:e.end] == e.text
        assert e.score == pytest.approx(np.exp(5) / (np.exp(5) + 4))


@pytest.mark.parametrize("tags, expected", [
    (["B-location", "I-location", "I-person", "O", "I-location"],
     [("location", "alpha beta"), ("person", "gamma"), ("location", "epsilon")]),  # I- after another type / O opens
    (["B-person", "B-person", "O", "B-location", "I-location"],
     [("person", "alpha"), ("person", "beta"), ("location", "delta epsilon")]),  # B- always opens a new one
    (["O"] * 5, []),
])
def test_bio_merge_table(ner_bundle, tags, expected):
    p = Predictor.load(ner_bundle)
    text = "alpha beta gamma delta epsilon"
    enc = p.tokenizer.encode(text)
    logits = np.zeros((len(enc.ids), len(NER_LABELS)), dtype=np.float32)
    for t, w in enumerate(enc.word_ids):
        logits[t, NER_LABELS.index(tags[w]) if w is not None else 0] = 5
    assert [(e.label, e.text) for e in entities(text, enc, logits, list(NER_LABELS))] == expected


def test_ner_spans_on_unicode_map_back(ner_bundle):
    p = Predictor.load(ner_bundle)
    results = p.predict(UNICODE)
    found = [(text, e) for text, r in zip(UNICODE, results) for e in r.entities]
    assert found, "the random tiny model should tag something in these texts"
    for text, e in found:
        assert isinstance(e, Entity) and e.text and e.text == e.text.strip()
        assert text[e.start:e.end] == e.text
        assert e.label in {"location", "person"} and 0 < e.score <= 1


@pytest.mark.parametrize("bundle", ["cls_bundle", "ner_bundle"])
def test_any_input_without_crash(bundle, request):
    p = Predictor.load(request.getfixturevalue(bundle))
    results = p.predict(EDGE)
    assert len(results) == len(EDGE)
    if not p.is_ner:
        assert all(abs(sum(r.scores.values()) - 1) < 1e-6 for r in results)
    else:
        for text, r in zip(EDGE, results):
            assert all(text[e.start:e.end] == e.text for e in r.entities)
    assert [r.truncated for r in results][:6] == [False] * 6
    assert results[7].truncated  # 6,000 CJK characters are 6,000 words


@pytest.mark.parametrize("bundle", ["cls_bundle", "ner_bundle"])
def test_one_megabyte_text(bundle, request):
    p = Predictor.load(request.getfixturevalue(bundle))
    big = "Zürich ist schön 😀 東京 " * 45_000  # ≈ 1 MB of text
    t = time.perf_counter()
    result = p.predict([big, "short"])
    assert time.perf_counter() - t < 5  # the clip keeps this from tokenizing all of it
    assert result[0].truncated and not result[1].truncated
    assert len(p._encode([big])[0][0].ids) == MAX_LENGTH


def test_clip_gives_the_same_tokens_as_the_full_text(ner_bundle):
    p = Predictor.load(ner_bundle)
    for text in ["word " * 5_000, "東京" * 2_000, "x" * 5_000, " " * 5_000 + "tail", "a" + " " * 4_000 + "b c d"]:
        assert p._encode([text])[0][0].ids == p.tokenizer.encode(text).ids


def test_truncation_is_flagged(cls_bundle):
    p = Predictor.load(cls_bundle)
    long_text = " ".join(TEXTS)
    short, long = p.predict(["fine", long_text])
    assert not short.truncated and long.truncated
    assert p.predict("fine") == [short]  # a lone str is one text


def test_thread_safe(cls_bundle, ner_bundle):
    for bundle in (cls_bundle, ner_bundle):
        p = Predictor.load(bundle, threads=1, batch_size=4)
        jobs = [TEXTS[i::8] + UNICODE[i % 5:] for i in range(8)] * 4  # 32 calls, 8 at a time
        sequential = [p.predict(job) for job in jobs]
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(p.predict, jobs))
        assert concurrent == sequential


def test_bad_options(cls_bundle):
    with pytest.raises(ConfigError, match="--threads must be ≥ 1"):
        Predictor.load(cls_bundle, threads=0)
    with pytest.raises(ConfigError, match="not available"):
        Predictor.load(cls_bundle, providers=["NoSuchExecutionProvider"])
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        Predictor.load(cls_bundle).predict(["ok", 3])


def test_session_runs_without_the_optimizers_the_manifest_disables(cls_bundle, monkeypatch):
    """A candidate measured with a graph optimizer off is served with it off too."""
    import dataclasses

    import onnxruntime as ort

    from edgeft.runtime.bundle import load_bundle
    from edgeft.runtime.predictor import make_session
    from edgeft.runtime.session import settings_for

    seen = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):
        seen.append(kwargs.get("disabled_optimizers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    bundle = load_bundle(cls_bundle)
    make_session(bundle, settings_for(bundle.manifest, threads=1))
    quantized = dataclasses.replace(bundle.manifest, quantization={"disabled_optimizers": ["SkipLayerNormFusion"]})
    make_session(dataclasses.replace(bundle, manifest=quantized), settings_for(quantized, threads=1))
    assert seen == [[], ["SkipLayerNormFusion"]]
