"""Export a fine-tuned Hugging Face model folder to ONNX and prove that the export is faithful.

``export(model_dir, out, cfg)`` loads the model, exports one ONNX file with dynamic batch and
sequence axes, checks parity against PyTorch on real inputs (``parity.check_parity``) and writes an
FP32 bundle. Nothing is written when any step fails.

Exporter choices, all measured on this stack (torch 2.13, onnxruntime 1.32; README "The stages one by one"):
* ``dynamo=True`` (torch 2.13's default) with ``kwargs=`` inputs: works for BERT, DistilBERT,
  RoBERTa and GPT-2 alike (the legacy exporter breaks GPT-2 with positional args) and gives a
  leaner graph (289 vs 632 nodes for MiniLM).
* ``external_data=False``: one ``model.onnx``, as the bundle contract wants (no ``.onnx.data``).
* The legacy exporter (``dynamo=False``) is kept for one purpose: on an eager-attention model it
  is the only graph in which ONNX Runtime's transformer optimizer fuses ``Attention``, which INT8
  turns into ``QAttention``, the fastest INT8 variant measured. It restores the module's train/eval
  mode after exporting, so we call ``.eval()`` again afterwards (dropout would otherwise stay on).
"""

from __future__ import annotations

import contextlib
import inspect
import io as _io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeft.errors import ConfigError, DataError, ModelError
from edgeft.runtime.manifest import MANIFEST_NAME, Manifest
from edgeft.runtime.tasks import ENCODER_TASKS, TASKS, default_max_length, task_of_architectures
from edgeft.settings import check, setting
from edgeft.stage import Progress, Splits, silent

INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer")  # positions start at pad_token_id + 1


@dataclass(frozen=True)
class ExportConfig:
    """Settings of ``edgeft export`` and the recipe's ``[export]`` section."""

    opset: int = setting(18, "ONNX opset (18 runs on ONNX Runtime >= 1.14, Mobile and Web).", ge=13, le=23)
    max_length: int | None = setting(None, "Tokens per input (default: min(128, the model's limit); question "
                                     "answering: the training windows).", ge=2)
    atol: float = setting(1e-4, "Max |Δlogit| between PyTorch and ONNX over non-pad positions.", gt=0)
    zipped: bool = setting(False, "Write a single .zip instead of a folder.", flag="--zip")

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class LoadedModel:
    """A fine-tuned model with everything the export and the manifest need to know about it."""

    model_dir: Path
    model: Any  # torch.nn.Module, eval mode
    hf_tokenizer: Any  # transformers fast tokenizer
    task: str
    labels: tuple[str, ...]  # id → label
    inputs: tuple[str, ...]  # ONNX input names
    outputs: tuple[str, ...]  # ONNX output names
    pad_token_id: int
    max_length: int
    architecture: str  # config.model_type
    base_model: str
    data_fingerprint: str
    config_shape: dict = field(default_factory=dict)  # num_heads, hidden_size (for ORT's optimizer)
    qa: dict = field(default_factory=dict)  # question answering: window settings (edgeft.runtime.qa.settings)


@dataclass(frozen=True)
class ExportResult:
    bundle: Path
    manifest: Manifest
    parity: Any  # parity.ParityReport


@contextlib.contextmanager
def quiet():
    """Silence exporter chatter (progress lines, deprecation warnings, load reports) for a clean CLI."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript",
                                              "transformers", "root", "onnx_model", "fusion_base")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
    except ImportError:
        verbosity = None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(_io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if verbosity is not None:
            transformers.logging.set_verbosity(verbosity)
            transformers.utils.logging.enable_progress_bar()


def detect_task(model_dir: Path, config) -> str:
    """The task from ``config.architectures`` (what ``save_pretrained`` recorded)."""
    archs = list(getattr(config, "architectures", None) or [])
    task = task_of_architectures(archs)
    if task in ENCODER_TASKS:
        return task
    raise ModelError(f"{model_dir}: config.json names architectures {archs or 'none'}; edgeft exports models with a "
                     f"sequence- or token-classification or question-answering head (e.g. "
                     f"BertForSequenceClassification). Fine-tune with `edgeft train` first.")


def _model_limit(config) -> int:
    """Longest input the position embeddings allow."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
    if config.model_type in ROBERTA_LIKE:
        limit -= (config.pad_token_id or 0) + 1
    return int(limit)


def _training_info(model_dir: Path) -> dict:
    """base_model, data fingerprint (and for QA max_length and window settings) from the
    metrics.json that ``edgeft train`` writes, if any."""
    path = model_dir / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    data_block = data.get("data") if isinstance(data.get("data"), dict) else {}
    return {"base_model": str(data.get("base_model") or data.get("model") or ""),
            "data_fingerprint": str(data.get("data_fingerprint") or data_block.get("fingerprint") or ""),
            "max_length": data.get("max_length"), "qa": data.get("qa") or {}}


def load_model(model_dir: str | Path, max_length: int | None = None, attn_implementation: str | None = None
               ) -> LoadedModel:
    """Load a fine-tuned HF folder (local files, safetensors only, never remote code).

    Args:
        max_length: requested tokens; None = min(128, model limit); question answering: the
            training window (metrics.json) or 384. More than the model can take is a ConfigError.
        attn_implementation: "eager" for the legacy export that ORT can fuse; None = default (sdpa).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such folder; pass the folder `edgeft train` wrote (config.json, "
                         f"model.safetensors, tokenizer files).")
    if (model_dir / MANIFEST_NAME).is_file():
        raise ModelError(f"{model_dir} is an edgeft bundle, not a model folder; export takes the fine-tuned model "
                         f"folder (quantize takes either).")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} is not a model folder: it has no config.json. Pass the folder `edgeft train` "
                         f"wrote (config.json, model.safetensors, tokenizer files).")
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    with quiet():
        try:
            config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        except (ValueError, OSError) as e:
            remote = (" It points at Python code in the folder (auto_map); export never runs a model folder's "
                      "code (no trust_remote_code): use an architecture transformers ships.") if "custom code" in str(e) else ""
            raise ModelError(f"{model_dir}/config.json cannot be read: {str(e).splitlines()[0]}{remote}") from None
        task = detect_task(model_dir, config)
        auto_class = getattr(transformers, TASKS[task].auto_class)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            model = auto_class.from_pretrained(model_dir, use_safetensors=True, local_files_only=True,
                                               trust_remote_code=False, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelError(f"{model_dir}: cannot load the weights ({str(e).splitlines()[0]}). edgeft loads "
                             f"model.safetensors only; re-save with save_pretrained().") from None
        try:
            tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, TypeError) as e:
            raise ModelError(f"{model_dir}: no usable tokenizer ({str(e).splitlines()[0]}); save it next to the "
                             f"model with tokenizer.save_pretrained().") from None
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"{model_dir}: the tokenizer has no fast (tokenizers) version, so there is no "
                         f"tokenizer.json for the device runtime.")
    model.eval()
    model.config.use_cache = False  # GPT-2: no past_key_values outputs
    model.config.return_dict = True

    limit = _model_limit(config)
    if tok.model_max_length and tok.model_max_length < 1_000_000:
        limit = min(limit, int(tok.model_max_length))
    if max_length is not None and max_length > limit:
        raise ConfigError(f"--max-length {max_length} exceeds what {model_dir} can take ({limit} tokens); "
                          f"use --max-length {limit} or less.")
    pad = tok.pad_token_id if tok.pad_token_id is not None else config.pad_token_id
    if pad is None:
        raise ModelError(f"{model_dir}: no pad token (tokenizer and config.json have none); set pad_token_id in "
                         f"config.json (GPT-2: usually the eos id).")
    forward = set(inspect.signature(model.forward).parameters)
    wanted = set(tok.model_input_names) | {"attention_mask"}  # batches are padded: the mask is always needed
    inputs = tuple(n for n in INPUT_ORDER if n in wanted and n in forward)
    id2label = config.id2label
    info = _training_info(model_dir)
    qa = task == "question-answering"
    if qa:  # windows of the trained size unless asked otherwise
        max_length = min(max_length or info.get("max_length") or default_max_length(task), limit)
    return LoadedModel(
        model_dir=model_dir, model=model, hf_tokenizer=tok, task=task,
        labels=() if qa else tuple(str(id2label[i]) for i in range(len(id2label))), inputs=inputs,
        outputs=TASKS[task].outputs, pad_token_id=int(pad), max_length=min(max_length or default_max_length(task), limit),
        architecture=config.model_type, base_model=info.get("base_model") or str(model_dir),
        data_fingerprint=info.get("data_fingerprint", ""),
        config_shape=config_shape(config),
        qa=qa_settings(max_length, info["qa"] if info.get("max_length") == max_length else None, tok) if qa else {},
    )


def qa_settings(max_length: int, trained: dict | None, tok) -> dict:
    """The windows a QA bundle reads: the ones it was trained with (metrics.json), else the defaults
    for ``max_length``; checked against the tokenizer's special tokens."""
    from edgeft.runtime.qa import settings

    trained = trained or {}
    return settings(max_length, trained.get("doc_stride"), trained.get("max_question_tokens"),
                    trained.get("max_answer_tokens"), tok.backend_tokenizer.num_special_tokens_to_add(True))


def config_shape(config) -> dict:
    """num_heads and hidden_size under each architecture's own names, for ORT's transformer optimizer."""
    return {
        "num_heads": getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
        or getattr(config, "n_head", 0),
        "hidden_size": getattr(config, "hidden_size", None) or getattr(config, "dim", None)
        or getattr(config, "n_embd", 0),
    }


def write_tokenizer(loaded: LoadedModel, path: str | Path) -> None:
    """Save the model's fast tokenizer as a ``tokenizers`` file, truncating at max_length, no padding.

    We save ``backend_tokenizer`` rather than copying the folder's tokenizer.json: it is what the
    model was trained with (transformers may add a post-processor), and it exists even when the
    folder only has vocab.txt.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(loaded.hf_tokenizer.backend_tokenizer.to_str())
    tok.no_padding()  # the runtime pads each batch to its longest row with pad_token_id
    tok.enable_truncation(loaded.max_length)
    tok.save(str(path))


def _example_inputs(loaded: LoadedModel) -> dict:
    """Two real sentences, padded: batch 2 and seq > 2, so the exporter keeps both axes dynamic
    (torch.export specialises dimensions of size 0 and 1)."""
    from edgeft.compress.parity import BUILTIN_TEXTS

    enc = loaded.hf_tokenizer(list(BUILTIN_TEXTS[:2]), padding=True, truncation=True,
                              max_length=loaded.max_length, return_tensors="pt")
    out = {}
    for name in loaded.inputs:
        out[name] = enc[name] if name in enc else (enc["input_ids"] * 0)  # token_type_ids: zeros
    return out


def strip_metadata(model) -> None:
    """Drop the dynamo exporter's per-node stack traces and class paths (about 60 % of a small
    graph file, and local file paths a shipped model should not carry)."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]


def export_onnx(loaded: LoadedModel, path: str | Path, opset: int = 18, dynamo: bool = True) -> None:
    """Export ``loaded.model`` to one ONNX file with dynamic (batch, seq) axes and check it.

    Raises:
        ModelError: when torch.onnx fails (with its first line) or the result fails onnx.checker.
    """
    import onnx
    import torch

    example = _example_inputs(loaded)
    token_level = loaded.task != "text-classification"  # NER logits and QA start/end: one per token
    try:
        with quiet(), torch.no_grad():
            if dynamo:
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=loaded.max_length)
                torch.onnx.export(
                    loaded.model, (), str(path), kwargs=example, dynamo=True, external_data=False,
                    opset_version=opset, input_names=list(loaded.inputs), output_names=list(loaded.outputs),
                    dynamic_shapes={name: {0: batch, 1: seq} for name in loaded.inputs}, verbose=False)
            else:
                axes = {name: {0: "batch", 1: "seq"} for name in loaded.inputs}
                axes.update({name: ({0: "batch", 1: "seq"} if token_level else {0: "batch"})
                             for name in loaded.outputs})
                torch.onnx.export(
                    loaded.model, (), str(path), kwargs=example, dynamo=False, opset_version=opset,
                    input_names=list(loaded.inputs), output_names=list(loaded.outputs), dynamic_axes=axes)
    except Exception as e:  # the exporters raise many types; the user needs the first line
        raise ModelError(f"{loaded.model_dir}: torch.onnx export failed ({type(e).__name__}: "
                         f"{(str(e).strip().splitlines() or [''])[0][:300]}). Try another --opset.") from e
    finally:
        loaded.model.eval()  # the legacy exporter restores the mode it found; make sure dropout is off
    model = onnx.load(str(path))
    strip_metadata(model)
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise ModelError(f"{loaded.model_dir}: the exported graph fails onnx.checker ({e}).") from e


def base_manifest(loaded: LoadedModel, opset: int) -> Manifest:
    """The manifest fields that describe the model (files, metrics and settings are added later)."""
    return Manifest(
        task=loaded.task, labels=list(loaded.labels), max_length=loaded.max_length, inputs=list(loaded.inputs),
        outputs=list(loaded.outputs), pad_token_id=loaded.pad_token_id, architecture=loaded.architecture,
        base_model=loaded.base_model, data_fingerprint=loaded.data_fingerprint, opset=opset, qa=dict(loaded.qa),
    )


def read_labeled(path: str | Path, task: str, labels, what: str = "the model's labels", **columns):
    """A data file for this model: its task must match and every label must be one the model has.

    ``columns``: text_column, label_column, tokens_column, tags_column (edgeft.data.read_dataset).
    """
    from edgeft.data import check_labels, detect_task as data_task, read_dataset

    found = data_task(path)
    if found != task:
        wanted = {"token-classification": "JSONL/CoNLL file with tokens and tags",
                  "question-answering": "SQuAD file (question, context, answers)"}.get(
                      task, "file with text and label columns")
        raise DataError(f"{path} holds {found} rows but the model does {task}; pass a {wanted}.")
    ds = read_dataset(path, task=task, **columns)
    check_labels(ds, list(labels), what=what)
    return ds


def parity_inputs(examples, task: str) -> list:
    """What the parity check feeds: the examples' texts (NER: words joined), or (question, context)
    pairs for QA — consecutive built-in sentences when there is no data, so the context segment
    (token type 1) is exercised too."""
    from edgeft.compress.parity import BUILTIN_TEXTS
    from edgeft.data import model_input

    if examples or task != "question-answering":
        return [model_input(ex) for ex in examples]
    return list(zip(BUILTIN_TEXTS, BUILTIN_TEXTS[1:] + BUILTIN_TEXTS[:1]))


def export(model_dir: str | Path, out: str | Path, splits: Splits = Splits(), cfg: ExportConfig = ExportConfig(),
           progress: Progress = silent) -> ExportResult:
    """Export ``model_dir`` to an FP32 bundle at ``out`` after a parity check on ``splits.validation``
    (also scored: the FP32 accuracy goes into the manifest); without it, parity runs on built-in sentences.

    Returns:
        The bundle path, its manifest and the parity report.
    Raises:
        ModelError / ConfigError / DataError for bad input, ParityError when ONNX and PyTorch
        disagree beyond ``cfg.atol``; nothing is written then.
    """
    from edgeft.compress.bundle_writer import check_output, write_bundle
    from edgeft.compress.evaluate import evaluate_onnx, summary
    from edgeft.compress.parity import check_parity

    check_output(out, cfg.zipped)  # a bad --out fails now, not after the export
    progress(f"loading {model_dir}")
    loaded = load_model(model_dir, cfg.max_length)
    ds = None
    data = splits.validation
    if data:
        ds = read_labeled(data, loaded.task, loaded.labels, **splits.columns())
    texts = parity_inputs(ds.examples if ds else [], loaded.task)
    with tempfile.TemporaryDirectory(prefix="edgeft-export-") as work:
        onnx_path, tok_path = Path(work) / "model.onnx", Path(work) / "tokenizer.json"
        progress(f"exporting {loaded.architecture} {loaded.task} (opset {cfg.opset}, max_length {loaded.max_length})")
        export_onnx(loaded, onnx_path, cfg.opset)
        write_tokenizer(loaded, tok_path)
        progress("checking parity with PyTorch")
        manifest = base_manifest(loaded, cfg.opset)
        report = check_parity(loaded.model, onnx_path, tok_path, manifest, texts[:64], cfg.atol, loaded.hf_tokenizer)
        manifest.parity = report.to_dict()
        if ds is not None:
            progress(f"evaluating FP32 ONNX on {len(ds)} rows of {data}")
            _, metrics = evaluate_onnx(onnx_path, tok_path, manifest, ds.examples)
            manifest.metrics = {"split": str(data), "fp32": summary(metrics), "variant": summary(metrics),
                                "drop": 0.0, "agreement": 1.0}
        bundle = write_bundle(out, {"model.onnx": onnx_path, "tokenizer.json": tok_path}, manifest, cfg.zipped)
    return ExportResult(bundle, manifest, report)
