"""The bundle manifest ``edgeft.json``: the contract between ``edgeft.compress`` (writer) and
``edgeft.runtime`` (reader).

A bundle is a folder (or a ``.zip`` of one) holding::

    model.onnx       the model (one file; no external-data sidecar)
    tokenizer.json   a Hugging Face ``tokenizers`` file
    edgeft.json      this manifest

The manifest records everything the runtime needs to run the model without torch or
transformers (task, labels, input/output names, max_length, pad id) and everything a user needs
to trust it (sha256 + size of every file, parity and accuracy figures, tool versions).

Format version history:
    1 — first release; later within version 1: the question-answering task and its ``qa`` field
        (older runtimes refuse such a bundle by its task, with a message naming it); then the
        optional ``batching`` field (below). Older runtimes keep it in ``extra`` and ignore it. Then
        text-generation graphs with an optional ``logits_positions`` input (the LM head runs only on
        those positions; ``generation.logits_positions`` true): a runtime from before cannot run such
        a bundle (onnxruntime names the missing input); bundles from before run on this runtime.

``batching``: how rows may share a model call, so that a text's answer never depends on its batch:
"padded" (length-sorted rows padded to the longest of their batch: FP32, static QDQ) or "rows" (one
unpadded row per call: dynamic INT8, whose activation scale spans the whole input tensor). Without
the field (older bundles): "rows" for quantization mode "dynamic", else "padded" (session.batching_of).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST_NAME = "edgeft.json"
FORMAT_VERSION = 1
# text-generation: labels [], weights in ``model.onnx.data`` (hashed like every file), decoding in ``generation``.
TASKS = ("text-classification", "token-classification", "question-answering", "text-generation")


@dataclass
class Manifest:
    """Everything in ``edgeft.json``. Unknown keys from newer writers are kept in ``extra``."""

    task: str  # one of TASKS
    labels: list[str]  # id → label, in the model's output order; [] for question answering
    max_length: int  # tokens; inputs are truncated to this
    inputs: list[str]  # ONNX input names, e.g. ["input_ids", "attention_mask", "token_type_ids"]
    outputs: list[str]  # ONNX output names, e.g. ["logits"]; QA: ["start_logits", "end_logits"]
    pad_token_id: int  # id used to pad input_ids in a batch
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {"sha256", "size"}
    format_version: int = FORMAT_VERSION
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"
    architecture: str = ""  # HF model_type of the source model: bert, roberta, gpt2, …
    base_model: str = ""  # where the fine-tuned model came from (name or path)
    data_fingerprint: str = ""  # sha256 of the training data, from metrics.json
    opset: int = 0
    min_onnxruntime: str = "1.17"
    target: dict[str, Any] = field(default_factory=dict)  # target preset as applied
    quantization: dict[str, Any] = field(default_factory=dict)  # {} for FP32
    parity: dict[str, Any] = field(default_factory=dict)  # max |Δlogit|, argmax agreement, shapes
    metrics: dict[str, Any] = field(default_factory=dict)  # this variant + FP32 reference, drop, agreement
    qa: dict[str, Any] = field(default_factory=dict)  # QA windows: doc_stride, max_question/answer_tokens
    batching: str = ""  # "padded" | "rows" (module docstring); "" = not recorded: inferred from quantization
    versions: dict[str, str] = field(default_factory=dict)  # tool versions that wrote the bundle
    created: str = ""  # ISO 8601, UTC
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        extra = data.pop("extra")
        return json.dumps({**data, **extra}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Build from parsed JSON; raises KeyError/TypeError on missing or mistyped keys."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, extra=extra)


def file_digest(path: str | Path) -> dict[str, Any]:
    """sha256 and size of one file, read in 1 MiB chunks (models can be large)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}
