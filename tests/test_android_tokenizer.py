"""The Android app's in-graph tokenizer (onnxruntime-extensions' BertTokenizer) against HF ``tokenizers``.

On tests/data/tokenizer_sentences.jsonl (303 sentences: real SST-2, BANKING77, WNUT-17 and SQuAD
text, multilingual and Unicode edge cases, texts of up to 1,000 words), with the real MiniLM
vocabulary when the embedded model is installed and the tests' tiny WordPiece otherwise. The
sentences that still differ are asserted exactly, so a change in either library is noticed;
android_demo/README.md lists them.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from tiny_models import DATA, tokenizer_json

pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed (pip install "
                    "'edgeft[train]')")
from edgeft.compress.android_assets import (CLIP_CHARS_PER_TOKEN, app_text, read_wordpiece,  # noqa: E402
                                            text_session, tokenizer_model)
from edgeft.errors import ConfigError  # noqa: E402

SENTENCES = [json.loads(line)["text"] for line in (DATA / "tokenizer_sentences.jsonl").read_text("utf-8").splitlines()]
MAX_LENGTH = 128

# Sentences whose ids differ on the app's path (normalized as the app does, then the graph).
APP_MISMATCHES = {
    # HF maps special tokens typed in the text to their ids; the op splits them like words.
    "minilm": ["[CLS] literal special tokens [SEP]", "[PAD] [UNK] [MASK]"],
    # A word with a character missing from the vocabulary: HF gives one [UNK] for the word, the op
    # keeps the pieces before that character ("große" → g ##r ##o [UNK]). The 600-token tiny
    # vocabulary lacks ß and ², MiniLM's has every character in these sentences.
    "tiny": ["Straße, Fußgänger, Größe: German ß and umlauts.", "Ⅻ roman numeral Ⅻ, ½ cup, x² + y³"],
}
# The graph fed raw text, without the app's normalization (accents set right, truncation on).
RAW_MISMATCHES = {"minilm": 21, "tiny": 11}
STOCK_MISMATCHES = 34  # MiniLM through gen_processing_models' defaults: strip_accents=0, no truncation


def minilm_tokenizer() -> str:
    """MiniLM's tokenizer.json, read from the embedded model's zip (no extraction)."""
    from edgeft.errors import ModelError
    from edgeft.train.model_source import embedded_zip

    try:
        with zipfile.ZipFile(embedded_zip()) as z:
            return z.read("tokenizer.json").decode("utf-8")
    except ModelError as e:  # the package is a set-up step of the README, not a dependency
        pytest.skip(f"embedded MiniLM not installed: {e}")


@pytest.fixture(scope="module", params=["tiny", "minilm"])
def tokenizer(request) -> tuple[str, str]:
    """(name, tokenizer.json text): the tests' tiny WordPiece, or MiniLM's."""
    return (request.param, tokenizer_json() if request.param == "tiny" else minilm_tokenizer())


def hf_ids(tokenizer_text: str, max_length: int | None) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_text)
    tok.no_padding()
    tok.enable_truncation(max_length) if max_length else tok.no_truncation()
    return [e.ids for e in tok.encode_batch(SENTENCES)]


def graph_ids(session, texts) -> list[list[int]]:
    return [session.run(None, {"text": np.array([t])})[0].tolist() for t in texts]


def test_app_path_equals_hf_except_the_listed_sentences(tokenizer):
    name, text = tokenizer
    wp = read_wordpiece(text, name)
    norm = replace(wp.normalization, clip_chars=MAX_LENGTH * CLIP_CHARS_PER_TOKEN)
    session = text_session(tokenizer_model(wp, MAX_LENGTH, 18).SerializeToString())
    want = hf_ids(text, MAX_LENGTH)

    app = graph_ids(session, [app_text(t, norm) for t in SENTENCES])
    assert [t for t, a, b in zip(SENTENCES, app, want) if a != b] == APP_MISMATCHES[name]
    raw = graph_ids(session, SENTENCES)
    assert sum(a != b for a, b in zip(raw, want)) == RAW_MISMATCHES[name]
    # Truncation: the long texts stop at exactly max_length tokens, [SEP] last, as HF's.
    cut = [ids for ids in app if len(ids) == MAX_LENGTH]
    assert len(cut) >= 4 and all(ids[-1] == wp.vocab.index(wp.sep) for ids in cut)


def test_the_stock_conversion_breaks_accented_text(tmp_path):
    """The trap: gen_processing_models reads MiniLM's strip_accents=null as 0, and never truncates."""
    from onnxruntime_extensions import gen_processing_models
    from transformers import BertTokenizer

    text = minilm_tokenizer()
    vocab = read_wordpiece(text, "minilm").vocab
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    hf = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True, strip_accents=None)  # MiniLM's config
    session = text_session(gen_processing_models(hf, pre_kwargs={})[0].SerializeToString())
    stock = graph_ids(session, SENTENCES)
    want = hf_ids(text, None)
    assert sum(a != b for a, b in zip(stock, want)) == STOCK_MISMATCHES
    assert stock[SENTENCES.index("café")] == [101, 24689, 100, 102] and want[SENTENCES.index("café")] == [101, 7668, 102]
    assert max(len(ids) for ids in stock) > 1000  # no truncation by default


@pytest.mark.parametrize("lowercase, strip_accents, stripped", [
    (True, None, True),  # HF: null means "strip when lowercasing" (MiniLM, bert-base-uncased)
    (False, None, False),
    (True, False, False),
    (False, True, True),
])
def test_strip_accents_follows_hf_when_null(lowercase, strip_accents, stripped):
    data = json.loads(tokenizer_json())
    data["normalizer"].update(lowercase=lowercase, strip_accents=strip_accents)
    n = read_wordpiece(json.dumps(data), "t").normalization
    assert (n.lowercase, n.strip_accents) == (lowercase, stripped)


def test_a_tokenizer_the_op_cannot_run_is_refused_with_the_fix():
    from tokenizers import Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    with pytest.raises(ConfigError, match=r"t\.json: the app's in-graph tokenizer is BERT WordPiece .* export a "
                                          r"BERT-family model"):
        read_wordpiece(bpe.to_str(), "t.json")
