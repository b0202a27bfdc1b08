"""``edgeft inspect``: what is in a bundle — manifest, files, ONNX ops, opset, weight types.

The op histogram comes from a small reader of the ONNX protobuf wire format (ModelProto →
GraphProto → NodeProto), so ``inspect`` needs neither the ``onnx`` package nor torch on a device.
It skips over weight bytes by their length prefix and only decodes the few fields it reports.
"""

from __future__ import annotations

import mmap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeft.errors import BundleError
from edgeft.runtime.bundle import load_bundle

# onnx TensorProto.DataType → (name, bytes per element); int4 types pack two per byte
DTYPES = {1: ("float32", 4), 2: ("uint8", 1), 3: ("int8", 1), 4: ("uint16", 2), 5: ("int16", 2), 6: ("int32", 4),
          7: ("int64", 8), 8: ("string", 0), 9: ("bool", 1), 10: ("float16", 2), 11: ("float64", 8), 12: ("uint32", 4),
          13: ("uint64", 8), 16: ("bfloat16", 2), 17: ("float8e4m3fn", 1), 18: ("float8e4m3fnuz", 1),
          19: ("float8e5m2", 1), 20: ("float8e5m2fnuz", 1), 21: ("uint4", 0.5), 22: ("int4", 0.5)}


def inspect_bundle(path: str | Path) -> dict[str, Any]:
    """Verify the bundle at ``path`` and describe it.

    Returns:
        {"bundle", "verified", "manifest" (the manifest as a dict), "files" {name: bytes},
         "model": {"ir_version", "producer", "opset" {domain: version}, "nodes", "ops" {op: count},
         "weights" {dtype: {"tensors", "bytes"}}}, "batching" (how it batches; inferred for older bundles)}.
    """
    bundle = load_bundle(path)  # raises BundleError on any tampering, before the graph is parsed
    import json

    if isinstance(bundle.model, bytes):
        model = describe_onnx(bundle.model)
    else:
        with open(bundle.model, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            model = describe_onnx(mm)
    from edgeft.runtime.session import batching_of

    report = {"bundle": str(bundle.source), "verified": True, "manifest": json.loads(bundle.manifest.to_json()),
              "files": dict(bundle.sizes), "model": model, "batching": batching_of(bundle.manifest)}
    if bundle.manifest.task == "text-generation":
        report["generation"] = generation_facts(report["manifest"], report["files"])
        report["batching"] = "rows"  # one prompt per model call: each reply its own (edgeft.runtime.generate)
    return report


def generation_facts(m: dict[str, Any], files: dict[str, int]) -> dict[str, Any]:
    """What a text-generation bundle needs on a device: its weights, context window, sampling defaults,
    size on disk (graph + external weights + tokenizer) and whether chat messages can be given."""
    spec = m.get("generation", {})
    return {"weights": (m.get("quantization") or {}).get("weights", "fp32"),
            "context_length": spec.get("context_length"),
            # the runtime's defaults (edgeft.runtime.generate.Generator.stream) unless the bundle sets its own
            "defaults": spec.get("defaults") or {"max_new_tokens": 128, "temperature": 0.0, "top_p": 1.0, "top_k": 0},
            "eos_tokens": spec.get("eos_token_ids", []), "chat_template": bool(spec.get("chat_template")),
            "route": spec.get("route") or (m.get("export") or {}).get("route"), "size_bytes": sum(files.values())}


def describe_onnx(buf) -> dict[str, Any]:
    """Op histogram, opsets and weight dtypes of a serialized ONNX ModelProto (bytes or mmap)."""
    view = memoryview(buf)
    out: dict[str, Any] = {"ir_version": 0, "producer": "", "opset": {}}
    ops: Counter = Counter()
    weights: dict[str, dict[str, int]] = {}
    try:
        for num, val in _fields(view, 0, len(view)):
            if num == 1:  # ir_version
                out["ir_version"] = val
            elif num in (2, 3):  # producer_name, producer_version
                out["producer"] = (out["producer"] + " " + _text(view, val)).strip()
            elif num == 7:  # graph
                _graph(view, val, ops, weights)
            elif num == 8:  # opset_import {1: domain, 2: version}
                entry = dict(_fields(view, *val))
                domain = _text(view, entry[1]) if 1 in entry else ""
                out["opset"][domain or "ai.onnx"] = entry.get(2, 0)
    except (IndexError, ValueError) as e:
        raise BundleError(f"model.onnx is not a readable ONNX file ({e})") from None
    out["nodes"] = sum(ops.values())
    out["ops"] = dict(ops.most_common())
    out["weights"] = dict(sorted(weights.items(), key=lambda kv: -kv[1]["bytes"]))
    return out


def _graph(view: memoryview, span: tuple[int, int], ops: Counter, weights: dict) -> None:
    for num, val in _fields(view, *span):
        if num == 1:  # node {4: op_type, 5: attribute, 7: domain}
            op, domain = "", ""
            for n, v in _fields(view, *val):
                if n == 4:
                    op = _text(view, v)
                elif n == 7:
                    domain = _text(view, v)
                elif n == 5:  # attribute {6: g, 11: graphs}: If/Loop/Scan bodies count too
                    for an, av in _fields(view, *v):
                        if an in (6, 11):
                            _graph(view, av, ops, weights)
            ops[f"{domain}.{op}" if domain and domain != "ai.onnx" else op] += 1
        elif num == 5:  # initializer {1: dims, 2: data_type}
            dims, dtype = [], 0
            for n, v in _fields(view, *val):
                if n == 1:
                    dims.extend(_packed(view, v) if isinstance(v, tuple) else [v])
                elif n == 2:
                    dtype = v
            name, width = DTYPES.get(dtype, (f"type{dtype}", 0))
            count = 1
            for d in dims:
                count *= d
            entry = weights.setdefault(name, {"tensors": 0, "bytes": 0})
            entry["tensors"] += 1
            entry["bytes"] += int(count * width)


def _fields(view: memoryview, start: int, end: int) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one message: ints for varints, (start, end) spans for bytes."""
    i = start
    while i < end:
        key, i = _varint(view, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(view, i)
            yield num, val
        elif wire == 2:
            size, i = _varint(view, i)
            if i + size > end:
                raise ValueError(f"field {num} runs past its message")
            yield num, (i, i + size)
            i += size
        elif wire == 1:  # fixed 64-bit
            i += 8
        elif wire == 5:  # fixed 32-bit
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {i}")


def _varint(view: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = view[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _packed(view: memoryview, span: tuple[int, int]) -> list[int]:
    i, out = span[0], []
    while i < span[1]:
        v, i = _varint(view, i)
        out.append(v)
    return out


def _text(view: memoryview, span: Any) -> str:
    return bytes(view[span[0]:span[1]]).decode("utf-8", "replace") if isinstance(span, tuple) else ""


def render(report: dict[str, Any]) -> str:
    """The human-readable form of ``inspect_bundle``'s report."""
    m, model = report["manifest"], report["model"]
    lines = [f"bundle   {report['bundle']}  (verified: sha256 and size of {len(report['files'])} files)",
             f"format   version {m['format_version']}, created {m.get('created') or '?'}",
             f"task     {m['task']}, " + (", ".join(f"{k} {v}" for k, v in m["qa"].items()) if m.get("qa") else
                                         f"{len(m['labels'])} labels: {', '.join(m['labels'][:12])}"
                                         + (" …" if len(m['labels']) > 12 else "")),
             (f"model    {m.get('architecture') or '?'} from {m.get('base_model') or '?'}, "
              f"max_length {m['max_length']}, inputs {', '.join(m['inputs'])}"),
             "files    " + ", ".join(f"{name} {_mb(size)}" for name, size in report["files"].items()),
             (f"onnx     ir {model['ir_version']}, opset {model['opset']}, {model['nodes']} nodes, "
              f"producer {model['producer'] or '?'}"),
             "ops      " + ", ".join(f"{op} {n}" for op, n in model["ops"].items()),
             "weights  " + ", ".join(f"{t} {w['tensors']} tensors {_mb(w['bytes'])}" for t, w in model["weights"].items()),
             f"batching {report['batching']}" + ("" if m.get("batching") else " (not recorded: inferred from the quantization)")]
    for key in ("quantization", "target", "parity", "metrics", "versions"):
        if m.get(key):
            lines.append(f"{key:<8} " + ", ".join(f"{k}={_short(v)}" for k, v in m[key].items()))
    if report.get("generation"):  # a decoder: no labels, no padded batches; what generation needs instead
        g = report["generation"]
        lines[2] = (f"task     text-generation: {g['weights']} weights, context {g['context_length']} tokens, chat "
                    f"template {'yes' if g['chat_template'] else 'no (plain prompts only)'}, {_mb(g['size_bytes'])} "
                    f"in all")
        lines[8] = ("generate " + ", ".join(f"{k} {v}" for k, v in g["defaults"].items())
                    + f" (defaults), EOS ids {g['eos_tokens']}, exported by {g['route']}, one prompt per model call")
    return "\n".join(lines)


def _mb(size: float) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    return text if len(text) <= 60 else text[:57] + "…"
