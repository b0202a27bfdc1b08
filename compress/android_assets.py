"""The Android demo's assets: a bundle whose model takes raw strings, tokenizer inside the graph.

``write_android_assets(bundle, out)`` writes ``out/``, an ordinary edgeft bundle (the runtime and
``edgeft serve-web`` load and verify it like any other) holding, besides the source bundle's
``model.onnx`` and ``tokenizer.json``:

    text_model.onnx  string in → logits: onnxruntime-extensions' BertTokenizer op, then the model
    model.ort        the ids-in model in ORT format (ONNX Runtime Mobile), for apps that tokenize
    labels.txt       one label per line, in output order
    edgeft.json      the source manifest plus an ``android`` section the app reads

Two things the stock conversion gets wrong, measured on tests/data/tokenizer_sentences.jsonl
(303 sentences) against Hugging Face ``tokenizers`` with the MiniLM vocabulary:
* ``gen_processing_models`` sets ``strip_accents=0`` when the HF config says null, but HF then
  strips accents whenever it lowercases: 34 sentences differed ("Café" → [UNK]). We set it from
  the tokenizer.json normalizer: ``strip_accents if not None else lowercase``.
* the op does not truncate unless its ``max_length`` attribute is set; we set the bundle's.
Even so the op's own Unicode handling differs from HF's (it lowercases few scripts, strips only
some combining marks, misses non-ASCII punctuation, stops at a NUL byte): 21 of 303 differ. So
the app normalizes text the way HF's BertNormalizer does before it feeds the graph
(``app_text`` here, ``TextNormalizer`` in android_demo's core, tested to agree); then only
special tokens typed as text ("[CLS]") differ. android_demo/README.md lists the differences.
"""

from __future__ import annotations

import copy
import json
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeft.errors import ConfigError, MissingExtraError, ParityError, require

TEXT_MODEL, ORT_MODEL, LABELS_FILE = "text_model.onnx", "model.ort", "labels.txt"
TEXT_INPUT, LOGITS, TOKEN_IDS = "text", "logits", "token_ids"  # the text model's input and outputs
CLIP_CHARS_PER_TOKEN = 32  # as the runtime: a text over max_length × 32 chars is cut at a space first
PROB_ATOL = 1e-4  # max |Δprobability| between the text model and the runtime on the same ids
CHECK_TEXTS = ("a gripping, beautifully shot film", "dull, lifeless and far too long", "Café in Zürich: très bien!",
               "", "I ❤️ this", "ΑΒΓΔ and İstanbul", "Łódź — Œdipe", "ok " * 400)


@dataclass(frozen=True)
class Normalization:
    """What the app does to a text before the graph: HF BertNormalizer's steps, in its order."""

    clean_text: bool  # drop NUL, U+FFFD and control/format characters (tab, CR, LF stay)
    strip_accents: bool  # NFD, then drop combining marks (Mn)
    lowercase: bool
    split_punctuation: bool = True  # spaces around non-ASCII punctuation (the op splits ASCII only)
    clip_chars: int = 0  # cut texts longer than this at a whitespace (0: never)


@dataclass(frozen=True)
class WordPiece:
    """The BERT tokenizer settings read from a bundle's tokenizer.json."""

    vocab: tuple[str, ...]  # id → token
    normalization: Normalization
    chinese_chars: bool
    unk: str
    cls: str
    sep: str
    prefix: str  # continuing-subword prefix, "##"


def app_text(text: str, n: Normalization) -> str:
    """The text the app feeds the graph (android_demo core: TextNormalizer.normalize)."""
    if n.clip_chars and len(text) > n.clip_chars:
        text = clip(text, n.clip_chars)
    if n.clean_text:
        text = "".join(c for c in text if c in "\t\n\r" or not (c in "\x00\ufffd" or unicodedata.category(c)[0] == "C"))
    if n.strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    if n.lowercase:
        text = text.lower()
    if n.split_punctuation:
        text = "".join(f" {c} " if ord(c) > 127 and unicodedata.category(c)[0] == "P" else c for c in text)
    return text


def clip(text: str, limit: int) -> str:
    """The runtime's rule: cut at the last whitespace in the final 4 KB before ``limit``, else at it."""
    for cut in range(limit, max(0, limit - 4096), -1):
        if text[cut - 1].isspace():
            return text[:cut - 1]
    return text[:limit]


def read_wordpiece(tokenizer_json: str, where: str) -> WordPiece:
    """The settings of a BERT WordPiece tokenizer.json, or ConfigError naming what is not BERT-like."""
    tok = json.loads(tokenizer_json)
    model, norm = tok.get("model") or {}, tok.get("normalizer") or {}
    pre, post = tok.get("pre_tokenizer") or {}, tok.get("post_processor") or {}
    kinds = (model.get("type"), norm.get("type"), pre.get("type"))
    if kinds != ("WordPiece", "BertNormalizer", "BertPreTokenizer"):
        raise ConfigError(f"{where}: the app's in-graph tokenizer is BERT WordPiece (onnxruntime-extensions "
                          f"BertTokenizer), but this tokenizer is model/normalizer/pre-tokenizer {kinds}; export a "
                          f"BERT-family model (BERT, DistilBERT, MiniLM) for the Android demo.")
    if post.get("type") == "BertProcessing":
        cls, sep = post["cls"][0], post["sep"][0]
    elif post.get("type") == "TemplateProcessing" and [next(iter(p)) for p in post["single"]] == \
            ["SpecialToken", "Sequence", "SpecialToken"]:
        cls, sep = post["single"][0]["SpecialToken"]["id"], post["single"][2]["SpecialToken"]["id"]
    else:
        raise ConfigError(f"{where}: the post-processor must wrap a text as [CLS] text [SEP] (BertProcessing or that "
                          f"template), found {post.get('type')!r}.")
    ids = model["vocab"]
    vocab = tuple(sorted(ids, key=ids.get))
    if sorted(ids.values()) != list(range(len(ids))) or any("\n" in t or "\r" in t for t in vocab):
        raise ConfigError(f"{where}: the vocabulary must have ids 0..{len(ids) - 1} without gaps and no token may "
                          f"contain a line break (the op reads the vocabulary as lines).")
    missing = [t for t in (model["unk_token"], cls, sep) if t not in ids]
    if missing:
        raise ConfigError(f"{where}: the vocabulary lacks {missing}, which the in-graph tokenizer needs.")
    lower = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    # HF: strip_accents None means "strip when lowercasing"; the stock converter reads it as False.
    normalization = Normalization(bool(norm.get("clean_text", True)), lower if strip is None else bool(strip), lower)
    return WordPiece(vocab, normalization, bool(norm.get("handle_chinese_chars", True)), model["unk_token"], cls, sep,
                     model.get("continuing_subword_prefix", "##"))


def tokenizer_model(wp: WordPiece, max_length: int, opset: int):
    """The string → ids graph, built with onnxruntime-extensions' converter from a BertTokenizer."""
    from onnxruntime_extensions import gen_processing_models
    from transformers import BertTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(wp.vocab) + "\n", encoding="utf-8")
        hf = BertTokenizer(str(Path(tmp) / "vocab.txt"), unk_token=wp.unk, cls_token=wp.cls, sep_token=wp.sep)
        filler = wp.unk  # the op looks up pad and mask tokens, which encoding never emits
        attrs = dict(do_lower_case=int(wp.normalization.lowercase), strip_accents=int(wp.normalization.strip_accents),
                     tokenize_chinese_chars=int(wp.chinese_chars), unk_token=wp.unk, cls_token=wp.cls,
                     sep_token=wp.sep, pad_token="[PAD]" if "[PAD]" in wp.vocab else filler,
                     mask_token="[MASK]" if "[MASK]" in wp.vocab else filler, suffix_indicator=wp.prefix,
                     max_length=max_length)  # counts [CLS] and [SEP], as HF's truncation does
        return gen_processing_models(hf, pre_kwargs=attrs, opset=opset)[0]


def text_model(wp: WordPiece, classifier_bytes: bytes, inputs: list[str], logits: str, max_length: int):
    """Tokenizer graph → Unsqueeze to (1, seq) → the classifier: one model, input ``text`` (1,) string.

    Outputs ``logits`` (1, labels) and ``token_ids`` (seq,) int64 (the app shows the token count and
    whether the text was truncated).
    """
    import onnx
    from onnx import TensorProto, compose, helper

    classifier = onnx.load_from_string(classifier_bytes)
    opset = next(o.version for o in classifier.opset_import if o.domain in ("", "ai.onnx"))
    tok = tokenizer_model(wp, max_length, opset)
    node = tok.graph.node[0]
    node.output[:] = [f"tok_{name}" for name in node.output]  # input_ids → tok_input_ids: no clash with the classifier
    nodes = [node, helper.make_node("Identity", ["tok_input_ids"], [TOKEN_IDS])]
    nodes += [helper.make_node("Unsqueeze", [f"tok_{name}", "batch_axis"], [f"{name}_batch"]) for name in inputs]
    graph = helper.make_graph(
        nodes, "tokenizer", [helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, [1])],
        [helper.make_tensor_value_info(TOKEN_IDS, TensorProto.INT64, ["seq"])]
        + [helper.make_tensor_value_info(f"{name}_batch", TensorProto.INT64, [1, "seq"]) for name in inputs],
        [onnx.numpy_helper.from_array(np.array([0], np.int64), "batch_axis")])
    opsets = [helper.make_opsetid("" if o.domain == "ai.onnx" else o.domain, o.version) for o in tok.opset_import]
    front = helper.make_model(graph, opset_imports=opsets, ir_version=classifier.ir_version)
    merged = compose.merge_models(front, classifier, io_map=[(f"{name}_batch", name) for name in inputs],
                                  outputs=[logits, TOKEN_IDS], producer_name="edgeft")
    if logits != LOGITS:
        for n in merged.graph.node:
            n.output[:] = [LOGITS if o == logits else o for o in n.output]
        next(o for o in merged.graph.output if o.name == logits).name = LOGITS
    versions = {}  # merge_models repeats the default domain when both models import it
    for o in merged.opset_import:
        versions[o.domain] = max(o.version, versions.get(o.domain, 0))
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(domain, v) for domain, v in versions.items())
    outputs = sorted((copy.deepcopy(o) for o in merged.graph.output), key=lambda o: o.name != LOGITS)  # logits first
    del merged.graph.output[:]
    merged.graph.output.extend(outputs)
    onnx.checker.check_model(merged)
    return merged


def text_session(path_or_bytes):
    """An onnxruntime session for the text model, with the onnxruntime-extensions ops registered."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    from edgeft.runtime.session import SessionSettings, session_options

    settings = SessionSettings()
    so = session_options(settings)
    so.register_custom_ops_library(get_library_path())
    return ort.InferenceSession(path_or_bytes, so, providers=list(settings.providers))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check_text_model(session, bundle_dir: Path, normalization: Normalization, texts) -> dict:
    """The text model (app path) against the runtime on the same texts: ids, labels, probabilities.

    Rows whose ids agree must give the same probabilities (same ONNX model on the same ids); a
    difference there is a bug, raised as ParityError.
    """
    from edgeft.runtime.predictor import Predictor

    predictor = Predictor.load(bundle_dir, threads=1, batch_size=1)
    equal, agree, worst = 0, 0, 0.0
    for text in texts:
        logits, ids = session.run([LOGITS, TOKEN_IDS], {TEXT_INPUT: np.array([app_text(text, normalization)])})
        probs = softmax(logits[0].astype(np.float64))
        ref = predictor.predict([text])[0]
        ref_probs = np.array([ref.scores[label] for label in predictor.manifest.labels])
        agree += predictor.manifest.labels[int(probs.argmax())] == ref.label
        if ids.tolist() == predictor.tokenizer.encode(clip_like_runtime(text, predictor)).ids:
            equal += 1
            worst = max(worst, float(np.abs(probs - ref_probs).max()))
    if worst > PROB_ATOL:
        raise ParityError(f"the text model's probabilities differ from the runtime's by {worst:.2e} on texts with the "
                          f"same token ids (tolerance {PROB_ATOL:g}); the merged graph is wrong. Please report this.")
    n = max(1, len(texts))
    return {"rows": len(texts), "ids_equal": equal / n, "label_agreement": agree / n, "max_abs_diff_probs": worst}


def clip_like_runtime(text: str, predictor) -> str:
    limit = predictor.manifest.max_length * CLIP_CHARS_PER_TOKEN
    return clip(text, limit) if len(text) > limit else text


def write_android_assets(bundle: str | Path, out: str | Path, texts=CHECK_TEXTS,
                         progress: Callable[[str], None] = lambda msg: None) -> Path:
    """Write the Android demo's assets for a text-classification ``bundle`` to the folder ``out``.

    Args:
        bundle: a bundle folder or .zip (verified first); texts: sentences the text model is
            checked on against the runtime (the result goes into the manifest).
    Returns:
        ``out``.
    Raises:
        ConfigError for a bundle the app cannot run (token classification, a non-BERT tokenizer);
        ParityError when the text model disagrees with the runtime on the same ids.
    """
    from edgeft.compress.bundle_writer import read_bundle, write_bundle
    from edgeft.compress.quantize import _ort_format
    from edgeft.versions import versions

    ortx_version = require("onnxruntime_extensions", "export --android").__version__

    with tempfile.TemporaryDirectory(prefix="edgeft-android-") as work:
        work = Path(work)
        m, folder = read_bundle(bundle, work)
        if m.task != "text-classification":
            raise ConfigError(f"{bundle}: the Android demo classifies whole texts; a {m.task} bundle is not supported.")
        wp = read_wordpiece((folder / m.tokenizer_file).read_text(encoding="utf-8"), f"{bundle}/{m.tokenizer_file}")
        norm = Normalization(**{**asdict(wp.normalization), "clip_chars": m.max_length * CLIP_CHARS_PER_TOKEN})
        progress(f"building the text model (BertTokenizer in the graph, max_length {m.max_length})")
        model = text_model(wp, (folder / m.model_file).read_bytes(), m.inputs, m.outputs[0], m.max_length)
        (work / TEXT_MODEL).write_bytes(model.SerializeToString())
        ort_model = folder / ORT_MODEL if ORT_MODEL in m.files else _ort_format(folder / m.model_file, work / ORT_MODEL)
        (work / LABELS_FILE).write_text("".join(f"{label}\n" for label in m.labels), encoding="utf-8")
        progress(f"checking the text model against the runtime on {len(texts)} texts")
        parity = check_text_model(text_session(str(work / TEXT_MODEL)), folder, norm, list(texts))
        m.extra = {**m.extra, "android": {
            "text_model": TEXT_MODEL, "text_input": TEXT_INPUT, "logits": LOGITS, "token_ids": TOKEN_IDS,
            "ort_model": ORT_MODEL, "labels_file": LABELS_FILE, "normalization": asdict(norm),
            "custom_ops": f"onnxruntime-extensions {ortx_version}", "parity": parity}}
        m.versions = {**(m.versions or versions()), "onnxruntime_extensions": ortx_version}
        files = {"model.onnx": folder / m.model_file, "tokenizer.json": folder / m.tokenizer_file,
                 TEXT_MODEL: work / TEXT_MODEL, ORT_MODEL: ort_model, LABELS_FILE: work / LABELS_FILE}
        m.model_file, m.tokenizer_file = "model.onnx", "tokenizer.json"
        return write_bundle(out, files, m)


def build_assets(bundle: Path, out: Path, data: Path | None, progress: Callable[[str], None]) -> dict:
    """``edgeft build --target android-arm64``: the assets in ``out``, checked on up to 200 rows of
    ``data`` too. A model the app cannot run is reported, not raised: the build's bundle stays good."""
    texts = list(CHECK_TEXTS)
    if data:
        from edgeft.data import read_dataset

        texts += [ex.text for ex in read_dataset(data).examples[:200] if hasattr(ex, "text")]
    try:
        path = write_android_assets(bundle, out, texts, progress)
    except (ConfigError, MissingExtraError) as e:
        progress(f"[android] no app assets: {e}")
        return {"skipped": str(e)}
    parity = json.loads((path / "edgeft.json").read_text(encoding="utf-8"))["android"]["parity"]
    return {"assets": str(path), **parity}
