"""Windows over long contexts and span decoding (edgeft.runtime.qa): the windows are transformers'
own, every token's offsets point at its characters in the original context (accents, emoji, CJK),
an answer cut by one window's edge is found whole in the next, and decoding follows its rules."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tokenizer_json

from edgeft.errors import ConfigError
from edgeft.runtime.qa import Answer, Windowing, as_pairs, context_range, decode, settings, token_span

QUESTION = "Where does José live?"
CONTEXTS = {  # accents, emoji, CJK, a lone surrogate-free mix of scripts; long enough for several windows
    "accents": "José Müller moved from Zürich to Besançon in 1998 and still lives in Besançon today. " * 4,
    "emoji": "We met 😀 at the café 🎉 near the station, then walked 🚶 home along the river. " * 4,
    "cjk": "東京は日本の首都です。 Tokyo is the capital of Japan, and 大阪 is another big city. " * 4,
}
MAX_LENGTH, STRIDE, MAX_QUESTION = 40, 12, 12


@pytest.fixture(scope="module")
def windowing() -> Windowing:
    return Windowing.create(tokenizer_json(), MAX_LENGTH, settings(MAX_LENGTH, STRIDE, MAX_QUESTION))


@pytest.fixture(scope="module")
def backend():
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json())


@pytest.mark.parametrize("name", CONTEXTS)
def test_windows_equal_transformers_overflow_windows(windowing, name):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer_json()), unk_token="[UNK]",
                                 pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    ref = hf(QUESTION, CONTEXTS[name], truncation="only_second", max_length=MAX_LENGTH, stride=STRIDE,
             return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True)
    encs, cut = windowing.windows(QUESTION, CONTEXTS[name])
    assert not cut and len(encs) == len(ref["input_ids"]) > 2
    assert [e.ids for e in encs] == ref["input_ids"]
    assert [e.type_ids for e in encs] == ref["token_type_ids"]
    assert [list(e.offsets) for e in encs] == [[tuple(o) for o in r] for r in ref["offset_mapping"]]
    assert all(len(e.ids) <= MAX_LENGTH for e in encs)


@pytest.mark.parametrize("name", CONTEXTS)
def test_offsets_point_at_each_tokens_characters(windowing, backend, name):
    """Normalising the characters under a token's offsets gives back that token (WordPiece pieces
    without their ##), so spans map back to the original, un-normalised context."""
    context = CONTEXTS[name]
    encs, _ = windowing.windows(QUESTION, context)
    checked = 0
    for enc in encs:
        lo, hi = context_range(enc)
        for t in range(lo, hi):
            a, b = enc.offsets[t]
            piece = enc.tokens[t].removeprefix("##")
            if enc.tokens[t] != "[UNK]":
                assert backend.normalizer.normalize_str(context[a:b]) == piece, (t, context[a:b], piece)
                checked += 1
            else:  # an unknown character (emoji, rare CJK) keeps its own characters
                assert context[a:b].strip()
    assert checked > 0
    # consecutive windows overlap by exactly the stride
    firsts = [enc.offsets[context_range(enc)[0]] for enc in encs]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)


def straddling(windowing, answer: str) -> tuple[str, int]:
    """A context with ``answer`` inserted at the first word boundary where the first window ends
    inside it; returns (context, answer start)."""
    filler = "and then some more words follow here " * 2
    for start in (i + 1 for i, c in enumerate(filler) if c == " "):
        context = filler[:start] + answer + " " + filler[start:]
        first = windowing.windows(QUESTION, context)[0][0]
        last_char = first.offsets[context_range(first)[1] - 1][1]  # end of window 1's last context token
        if start < last_char < start + len(answer):
            return context, start
    raise AssertionError(f"no position puts {answer!r} across the first window's edge")


@pytest.mark.parametrize("answer", ["Besançon", "café 🎉 bar", "東京 大阪 名古屋"])
def test_answer_at_a_window_border_is_whole_in_the_next_window(windowing, answer):
    """An answer across the end of the first window: that window cannot label it, the next one
    holds it whole, and decoding logits that point at it there gives back its exact characters."""
    context, start = straddling(windowing, answer)
    end = start + len(answer)
    encs, _ = windowing.windows(QUESTION, context)
    assert token_span(encs[0], start, end) is None  # cut by the first window's edge
    assert token_span(encs[1], start, end) is not None  # the overlap (stride) holds it whole
    first, last = token_span(encs[1], start, end)
    assert encs[1].offsets[first][0] == start and encs[1].offsets[last][1] == end
    outputs = []
    for k, enc in enumerate(encs):  # low everywhere, high on the answer's tokens in window 2
        s, e = np.full(len(enc.ids), -5.0), np.full(len(enc.ids), -5.0)
        if k == 1:
            s[first], e[last] = 8.0, 8.0
        outputs.append((s, e))
    got = decode(context, encs, outputs, max_answer_tokens=30)
    assert (got.answer, got.start, got.end) == (answer, start, end) and 0.5 < got.score <= 1.0


def test_decoding_rules(windowing):
    context = "alpha beta gamma delta epsilon"
    (enc,), _ = windowing.windows("which?", context)
    lo, hi = context_range(enc)
    start, end = np.full(len(enc.ids), -10.0), np.full(len(enc.ids), -10.0)
    start[:lo] = end[:lo] = 50.0  # [CLS] and the question are never the answer
    start[lo + 4], end[lo] = 9.0, 9.0  # the best start after the best end: not a span
    start[lo + 1], end[lo + 2] = 3.0, 3.0
    got = decode(context, [enc], [(start, end)], max_answer_tokens=30)
    assert (got.start, got.end) == (enc.offsets[lo + 1][0], enc.offsets[lo + 2][1])
    assert got.answer == context[got.start:got.end]
    start[lo + 4], end[hi - 1] = -10.0, 4.0  # a longer span with a higher sum …
    assert decode(context, [enc], [(start, end)], max_answer_tokens=30).end == enc.offsets[hi - 1][1]
    short = decode(context, [enc], [(start, end)], max_answer_tokens=2)  # … is refused past the limit
    assert (short.start, short.end) == (got.start, got.end)


def test_no_context_means_no_answer(windowing):
    encs, _ = windowing.windows("anything?", "")
    outputs = [(np.zeros(len(e.ids)), np.zeros(len(e.ids))) for e in encs]
    assert decode("", encs, outputs, 30) == Answer("", 0.0, None, None, False)


def test_long_question_is_cut_and_flagged(windowing):
    question = "where is the best place to go in the old city of paris when it rains all day?"
    encs, cut = windowing.windows(question, "Go to the Louvre.")
    assert cut and encs[0].sequence_ids.count(0) == MAX_QUESTION
    assert windowing.windows("short?", "Go to the Louvre.")[1] is False


@pytest.mark.parametrize("kwargs, message", [
    ({"max_length": 40, "doc_stride": 30, "max_question_tokens": 12}, "--doc-stride 30 must be below 24"),
    ({"max_length": 20, "max_question_tokens": 19}, "--max-question-tokens 19 leaves no room"),
    ({"max_length": 384, "max_answer_tokens": 0}, "--max-answer-tokens must be >= 1"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        settings(**kwargs)


def test_default_settings_are_the_squad_scripts():
    assert settings(384) == {"doc_stride": 128, "max_question_tokens": 64, "max_answer_tokens": 30}


def test_pairs_from_predict_arguments():
    assert as_pairs(question="q", context="c") == [("q", "c")]
    assert as_pairs([("q1", "c1"), {"question": "q2", "context": "c2"}, ["q3", "c3"]]) == [
        ("q1", "c1"), ("q2", "c2"), ("q3", "c3")]
    with pytest.raises(ValueError, match="2 questions but 1 contexts"):
        as_pairs(question=["a", "b"], context=["c"])
    with pytest.raises(TypeError, match="item 0 is not a \\(question, context\\) pair"):
        as_pairs(["just a text"])
