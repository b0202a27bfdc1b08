"""Target presets: how to quantize and run a model for one kind of device.

One frozen dataclass per target in one dict, ``TARGETS``; ``edgeft targets`` prints it, one line
each. ``register_target`` refuses duplicate names and bad values, ``get_target`` refuses unknown
names, each with the fix in the message.

What the presets rest on, measured on this stack (ARM64 kernels under qemu-aarch64: tests/test_arm64.py;
README "The stages one by one", Targets):
* ARM64 U8S8 kernels widen before they accumulate (UMULL on the A72, SDOT on the A76, I8MM/SVE
  on newer cores), so they never saturate, and their INT8 results match x86 with VNNI to within
  LayerNorm rounding drift. Accuracy measured on a VNNI x86 host therefore carries over to ARM.
* x86 without VNNI (AVX2 only) runs U8S8 through ``vpmaddubsw``, which saturates at int16: up to
  4.6 absolute logit error on MiniLM with per-channel weights. ``reduce_range`` (7-bit weights)
  removes the saturation exactly, so AVX2 and VNNI then give bit-identical results.
* ``per_channel=True`` was the best INT8 recipe on every platform measured; the auto search still
  tries per-tensor, because the task-level effect was not monotone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgeft.errors import ConfigError

QUANT_TYPES = ("int8", "uint8")
GRAPH_LEVELS = ("disable", "basic", "extended", "all")  # onnxruntime GraphOptimizationLevel names
ARTIFACTS = ("ort",)  # "ort": also ship model.ort (ORT format, for ONNX Runtime Mobile)
QUANTIZABLE_OPS = ("MatMul", "Gemm", "Gather", "Attention")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # any of these: int8 dot products accumulate in int32


@dataclass(frozen=True)
class Target:
    """A device class and the INT8 settings that suit it."""

    name: str
    summary: str  # the one line `edgeft targets` prints after the settings
    weight_type: str = "int8"  # int8 = s8 weights (symmetric), uint8 = u8 weights
    activation_type: str = "uint8"  # static QDQ activations; dynamic quantization always uses uint8
    per_channel: bool = True  # one scale per output channel of each weight matrix
    reduce_range: bool = False  # 7-bit weights: avoids int16 saturation of U8S8 on AVX2-only x86
    op_types: tuple[str, ...] = ("MatMul", "Gemm")  # weight ops to quantize by default
    opset: int = 18  # ONNX opset of the export (18: ONNX Runtime >= 1.14, Mobile and Web included)
    # Recorded in the manifest's "target" and read by edgeft.runtime.session, so the quantize search
    # times candidates, and the runtime and the Android app serve the bundle, with the same settings.
    # (No execution-provider field: edgeft's INT8 graphs use contrib ops with CPU kernels only, so a
    # preset naming another provider would run on CPU anyway; `Predictor.load(providers=…)` chooses.)
    graph_optimization: str = "all"  # session graph-optimization level (android-arm64: "basic", as model.ort)
    threads: int = 0  # runtime default intra-op threads (capped at the machine's cores); 0 = physical cores, ≤ 4
    extra_artifacts: tuple[str, ...] = ()
    detect_isa: bool = False  # x86_64: pick the VNNI or AVX2 settings from this CPU's flags

    def __post_init__(self):
        problems = []
        if self.weight_type not in QUANT_TYPES or self.activation_type not in QUANT_TYPES:
            problems.append(f"weight/activation types must be one of {QUANT_TYPES}")
        if self.graph_optimization not in GRAPH_LEVELS:
            problems.append(f"graph_optimization must be one of {GRAPH_LEVELS}")
        if unknown := [op for op in self.op_types if op not in QUANTIZABLE_OPS]:
            problems.append(f"unknown op types {unknown}; choose from {QUANTIZABLE_OPS}")
        if unknown := [a for a in self.extra_artifacts if a not in ARTIFACTS]:
            problems.append(f"unknown extra artifacts {unknown}; choose from {ARTIFACTS}")
        if not 13 <= self.opset <= 23:
            problems.append(f"opset {self.opset} is outside 13..23")
        if self.threads < 0:
            problems.append("threads must be >= 0 (0 = ONNX Runtime's default)")
        if problems:
            raise ConfigError(f"target {self.name!r}: " + "; ".join(problems) + ".")

    def line(self) -> str:
        """One line for ``edgeft targets``: name, settings, then why."""
        w = {"int8": "s8", "uint8": "u8"}
        settings = (
            f"u8{w[self.weight_type]} dynamic / {w[self.activation_type]}{w[self.weight_type]} static, "
            f"{'per-channel' if self.per_channel else 'per-tensor'}"
            f"{', reduce_range' if self.reduce_range else ''}, opset {self.opset}, "
            f"graph {self.graph_optimization}, threads {self.threads or 'auto'}"
            f"{''.join(f', +{a}' for a in self.extra_artifacts)}"
        )
        return f"{self.name:<14} {settings} — {self.summary}"

    def to_dict(self) -> dict:
        return asdict(self)


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    """Add a preset to the registry; a name may be registered once."""
    if target.name in TARGETS:
        raise ConfigError(f"target {target.name!r} is already registered; give the new preset another name "
                          f"or change the existing entry in edgeft/targets.py.")
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    """The registered preset ``name`` (not yet resolved against this CPU; see resolve_target)."""
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)} (see `edgeft targets`).")
    return TARGETS[name]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The ISA flags of this CPU (x86 "flags" / ARM "Features"); empty where cpuinfo is unreadable."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_target(name: str, flags: frozenset[str] | None = None) -> Target:
    """The preset ``name`` with CPU-dependent choices made (only ``x86_64`` has any).

    ``x86_64`` takes the settings of ``x86_64-vnni`` when this CPU (or ``flags``) has an int8
    dot-product extension, else those of ``x86_64-avx2``, and says which in its summary.
    """
    target = get_target(name)
    if not target.detect_isa:
        return target
    flags = cpu_flags() if flags is None else flags
    chosen = TARGETS["x86_64-vnni" if any(f in flags for f in VNNI_FLAGS) else "x86_64-avx2"]
    found = sorted(f for f in flags if f in (*VNNI_FLAGS, "avx2")) or ["no avx2/vnni flags found"]
    return replace(chosen, name=target.name, detect_isa=False,
                   summary=f"this CPU has {', '.join(found)} → {chosen.name} settings. {chosen.summary}")


def host_target() -> str:
    """The preset for the machine edgeft runs on: ``x86_64`` on Intel/AMD, else ``arm64``."""
    import platform

    return "x86_64" if platform.machine().lower() in ("x86_64", "amd64") else "arm64"


# --- The presets. Thread defaults are conservative: a second busy core stalls a 2-thread pool
# (anchor: 2-thread p99 went 37 → 900 ms under contention), and INT8 at sentence length barely
# gains from a second core, so servers get 1 thread per session and devices their big cores.
register_target(Target(
    "arm64", "generic 64-bit ARM (Graviton, Apple Silicon, Jetson, …): u8s8 widens before it accumulates, "
    "no saturation; QInt8 activations suit ARM's static kernels (ORT docs)",
    activation_type="int8", threads=2))
register_target(Target(
    "rpi4", "Raspberry Pi 4, 4× Cortex-A72, no dot-product: MLAS uses the NEON UMULL kernel (exact, but the "
    "INT8 gain is smaller than on the A76)", activation_type="int8", threads=4))
register_target(Target(
    "rpi5", "Raspberry Pi 5, 4× Cortex-A76 with dotprod: SDOT/UDOT kernels", activation_type="int8", threads=4))
register_target(Target(
    "android-arm64", "Android phones (arm64-v8a): also writes model.ort for ONNX Runtime Mobile, optimized at "
    "basic level only (portable across devices); 2 threads keep the pool on the big cores",
    activation_type="int8", graph_optimization="basic", threads=2, extra_artifacts=("ort",)))
register_target(Target(
    "x86_64", "Intel/AMD: picks x86_64-vnni or x86_64-avx2 from this CPU's flags", threads=1, detect_isa=True))
register_target(Target(
    "x86_64-vnni", "x86 with AVX512-VNNI/AVX-VNNI (Ice Lake+, Zen 4+): vpdpbusd accumulates in int32, "
    "u8s8 without reduce_range", threads=1))
register_target(Target(
    "x86_64-avx2", "x86 with AVX2 only: u8s8 saturates in vpmaddubsw (measured up to 4.6 abs logit error), so "
    "7-bit weights (reduce_range); the search also tries u8u8", reduce_range=True, threads=1))
