"""How a model is run (onnxruntime session options, providers, threads, graph optimizations,
batching), decided in one place from the bundle manifest: the quantize search scores and times its
candidates with sessions made here from the manifest fields the bundle will carry, and
``Predictor.load`` makes the served session here from the written manifest, so the winner is
measured the way it is served (tests/test_session.py compares the two sessions' options).

Sources (``settings_for``): threads: the caller's, else the target's (capped at the physical cores:
more threads than cores only contend), else physical cores, at most 4; graph optimization: the
target's ("basic" for android-arm64, as its model.ort), else "all"; disabled optimizers:
``quantization.disabled_optimizers``; providers: the caller's, else CPU (edgeft's INT8 contrib ops
have CPU kernels only); batching: the manifest's ``batching``, else inferred (``batching_of``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.errors import ConfigError

GRAPH_LEVELS = ("disable", "basic", "extended", "all")  # onnxruntime GraphOptimizationLevel, by name
# How rows share a model call (the manifest's "batching"):
#   "padded": length-sorted rows padded to the longest of their batch, one call per batch; for graphs
#             whose result for a row does not depend on the other rows (FP32, static QDQ: fixed scales);
#   "rows":   one row per call, unpadded; for dynamic quantization, whose activation scale is computed
#             over the whole input tensor, so a row's result would depend on its batch and padding.
BATCHINGS = ("padded", "rows")


@dataclass(frozen=True)
class SessionSettings:
    """Everything that decides how a model is run (compared by tests: candidate vs served)."""

    threads: int = 1  # onnxruntime intra-op threads
    graph_optimization: str = "all"  # one of GRAPH_LEVELS
    disabled_optimizers: tuple[str, ...] = ()  # onnxruntime optimizer names, e.g. "SkipLayerNormFusion"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    batching: str = "padded"  # one of BATCHINGS
    # onnxruntime's CPU arena keeps what it once held. A decoder's KV cache grows every step, so for
    # text generation it is off: SmolLM2 INT4, 512 new tokens, AMD EPYC: peak RSS 331 vs 351 MB, same speed.
    memory_arena: bool = True

    def __post_init__(self):
        if self.threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, not {self.threads}")
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ConfigError(f"graph optimization {self.graph_optimization!r} is not one of {GRAPH_LEVELS}")
        if self.batching not in BATCHINGS:
            raise ConfigError(f"batching {self.batching!r} is not one of {BATCHINGS}; this edgeft may be older "
                              "than the bundle: pip install -U edgeft")


def batching_of(manifest) -> str:
    """The manifest's ``batching``; for bundles written before the field existed, inferred from the
    quantization: dynamic INT8 runs one row per call, everything else is padded."""
    if getattr(manifest, "batching", ""):
        return manifest.batching
    return "rows" if (manifest.quantization or {}).get("mode") == "dynamic" else "padded"


def settings_for(manifest, threads: int | None = None, providers: Sequence[str] | None = None) -> SessionSettings:
    """The settings a bundle with this manifest runs with (module docstring: where each comes from)."""
    target = manifest.target or {}
    if threads is None:
        threads = min(target["threads"], physical_cores()) if target.get("threads") else default_threads()
    return SessionSettings(
        threads=threads, graph_optimization=target.get("graph_optimization") or "all",
        disabled_optimizers=tuple(str(x) for x in (manifest.quantization or {}).get("disabled_optimizers") or ()),
        providers=tuple(providers or ("CPUExecutionProvider",)), batching=batching_of(manifest),
        memory_arena=manifest.task != "text-generation")


def session_options(settings: SessionSettings):
    """onnxruntime.SessionOptions for ``settings``."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    levels = dict(zip(GRAPH_LEVELS, (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC, level.ORT_ENABLE_EXTENDED,
                                     level.ORT_ENABLE_ALL)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1  # one graph branch at a time: transformer graphs are sequential
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[settings.graph_optimization]
    opts.enable_cpu_mem_arena = settings.memory_arena
    opts.log_severity_level = 3  # errors only: quantized graphs log harmless shape-merge warnings
    return opts


def open_session(model: str | Path | bytes, settings: SessionSettings):
    """An onnxruntime.InferenceSession of ``model`` (path or bytes); its exceptions pass through."""
    import onnxruntime as ort

    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), session_options(settings),
                                providers=list(settings.providers),
                                disabled_optimizers=list(settings.disabled_optimizers))


def options_of(session) -> dict[str, Any]:
    """The options a live session actually runs with (read back from onnxruntime), for comparisons."""
    so = session.get_session_options()
    return {"intra_op_num_threads": so.intra_op_num_threads, "inter_op_num_threads": so.inter_op_num_threads,
            "execution_mode": str(so.execution_mode), "graph_optimization_level": str(so.graph_optimization_level),
            "log_severity_level": so.log_severity_level, "enable_cpu_mem_arena": so.enable_cpu_mem_arena,
            "providers": session.get_providers()}


def groups(lengths: Sequence[int], batch_size: int, batching: str) -> list[list[int]]:
    """Indices of the rows that go through the model together: "padded": length-sorted (little
    padding), ``batch_size`` per call; "rows": one per call, in input order."""
    if batching == "rows":
        return [[i] for i in range(len(lengths))]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]


def pad(ids: Sequence[Sequence[int]], inputs: Sequence[str], pad_id: int, type_ids: Sequence[Sequence[int]] = (),
        width: int | None = None) -> dict[str, np.ndarray]:
    """Right-padded int64 feeds, each (rows, width ≥ the longest row), for the model's ``inputs``; a
    row with no token at all becomes one pad token with attention 1 (something to attend to)."""
    width = max(width or 0, 1, *(len(r) for r in ids))
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)  # (rows, width)
    mask = np.zeros((len(ids), width), dtype=np.int64)  # 1 = real token, 0 = pad
    types = np.zeros((len(ids), width), dtype=np.int64)  # 1 on a QA context segment
    for r, row in enumerate(ids):
        n = max(1, len(row))
        input_ids[r, :len(row)] = row
        mask[r, :n] = 1
        if type_ids:
            types[r, :len(type_ids[r])] = type_ids[r]
    arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
    return {name: arrays[name] for name in inputs}


def default_threads() -> int:
    """Physical cores, at most 4: hyper-threads and more than 4 threads rarely help a small encoder."""
    return max(1, min(4, physical_cores()))


def physical_cores() -> int:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; os.cpu_count() where that is missing."""
    try:
        pairs, phys = set(), "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = value.strip()
            elif key == "core id":
                pairs.add((phys, value.strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1
