"""INT8 quantization for a target: a small, measured search instead of a guessed preset.

``quantize(source, out, cfg)`` builds a few candidates (the ``RECIPES`` table), evaluates each on
the user's validation file at the serving shape (batch 1, real length), times them all
interleaved in one process (batch 1, 1 thread, real sentences), and keeps the fastest one whose
accuracy is within ``max_accuracy_drop`` of FP32. If none is, it keeps the most accurate one and
says so. Either way it writes a bundle and a table of every candidate.

The recipes follow what was measured on this stack (the figures below; README "Results") rather than folklore:
* Only weight MatMul/Gemm are quantized by default. Activation×activation attention MatMuls stay
  float (``MatMulConstBOnly``), as do LayerNorm/GELU/Softmax and the residual Adds, which QDQ
  leaves alone because they are not in ``op_types_to_quantize``. Optimum's presets quantize the
  attention MatMuls too, and were slower for it.
* ``Gather`` (the embedding tables) is a separate choice: 59 → 23.6 MB for MiniLM at the same speed.
* The "basic" graph is ``quant_pre_process(auto_merge=True)``: symbolic shape inference plus an
  ORT_ENABLE_BASIC pass. That pre-pass made INC's INT8 graph leaner (674 → 459 nodes) and 15–19 %
  faster than plain ``quantize_dynamic`` on Optimum's TorchScript export. Our dynamo export is lean
  already (MiniLM p50 2.70 vs 2.73 ms in one run here), so it is a candidate, not a default.
  Without ``auto_merge`` it fails on these exports with "Incomplete symbolic shape inference".
* The "legacy" graph is the TorchScript export (``dynamo=False``, eager attention) + the basic
  pre-pass: the graph INC quantizes. Its FP32 ran 14 % faster than the dynamo export on MiniLM.
* The "fused" graph is: legacy export with eager attention → ORT transformer optimizer (Attention +
  EmbedLayerNorm fused) → pre-process → quantize with ``Attention`` in the op types (QAttention).
  That order is the one that works: optimum's optimize-then-quantize fails for lack of
  ``DefaultTensorType``, which we pass. It was the fastest INT8 variant measured on MiniLM; adding
  ``EmbedLayerNormalization`` (QEmbedLayerNormalization) shrinks it from 58.7 to 23.0 MB at the same
  speed.
* Per-channel vs per-tensor was not monotone in task accuracy (in the baseline runs), so both are candidates.
* If the fastest candidate misses the budget, a per-layer sensitivity pass ranks the weight
  MatMuls by their local quantization error, and the most sensitive ones are kept in float.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from edgeft.errors import BundleError, ConfigError, ModelError
from edgeft.settings import check, setting
from edgeft.stage import Progress, Splits, silent
from edgeft.targets import Target, cpu_flags, host_target, resolve_target

MODES = ("auto", "dynamic", "static")
GRAPHS = ("plain", "basic", "legacy", "fused", "fused-ln")
OPS = ("MatMul", "Gemm", "Gather", "Attention", "EmbedLayerNormalization")  # weight-bearing ops ORT can quantize
FUSABLE = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra")  # ORT optimizer model_type "bert"


@dataclass(frozen=True)
class Recipe:
    """One way to quantize a model: a row of the candidate table."""

    name: str
    mode: str  # "dynamic": activation scales computed per call; "static": QDQ, scales calibrated offline
    per_channel: bool  # one weight scale per output channel (else one per tensor)
    graph: str = "plain"  # plain | basic | fused (module docstring)
    ops: tuple[str, ...] = ("MatMul", "Gemm")
    weight_type: str | None = None  # None: the target's; "uint8" = u8u8 (no saturation on AVX2)
    reduce_range: bool | None = None  # None: the target's
    exclude: tuple[str, ...] = ()  # weight initializers whose MatMul/Gemm stays float
    # onnxruntime graph optimizers the session must not run (the runtime reads them from the manifest)
    disabled_optimizers: tuple[str, ...] = ()
    why: str = ""

    def __post_init__(self):
        if self.mode not in ("dynamic", "static") or self.graph not in GRAPHS:
            raise ConfigError(f"recipe {self.name!r}: mode must be dynamic/static and graph one of {GRAPHS}.")
        if self.graph.startswith("fused") and self.mode != "dynamic":
            raise ConfigError(f"recipe {self.name!r}: the fused graph is quantized dynamically (QAttention).")
        if unknown := [op for op in self.ops if op not in OPS]:
            raise ConfigError(f"recipe {self.name!r}: unknown op types {unknown}; choose from {OPS}.")


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a candidate to the auto search; names are unique."""
    if recipe.name in RECIPES:
        raise ConfigError(f"recipe {recipe.name!r} is already registered; pick another name.")
    RECIPES[recipe.name] = recipe
    return recipe


register_recipe(Recipe("dyn-pc", "dynamic", True, why="the planned default: per-channel s8 weights"))
register_recipe(Recipe("dyn-pt", "dynamic", False, why="per-tensor: fewer scales, sometimes more accurate"))
register_recipe(Recipe("dyn-pc-gather", "dynamic", True, ops=("MatMul", "Gemm", "Gather"),
                       why="int8 embeddings: ~2.5x smaller file"))
register_recipe(Recipe("dyn-pc-basic-gather", "dynamic", True, "basic", ("MatMul", "Gemm", "Gather"),
                       why="INC's recipe: ORT basic pre-pass + embeddings"))
register_recipe(Recipe("dyn-pt-basic-gather", "dynamic", False, "basic", ("MatMul", "Gemm", "Gather"),
                       why="INC's per-tensor recipe, its fastest in the anchor baseline"))
register_recipe(Recipe("static-pc", "static", True, "basic", why="QDQ calibrated on your data: no runtime scales"))
register_recipe(Recipe("fused-pc", "dynamic", True, "fused", ("MatMul", "Gemm", "Attention"),
                       why="legacy export + ORT fusion → QAttention"))
register_recipe(Recipe("fused-pc-emb", "dynamic", True, "fused",
                       ("MatMul", "Gemm", "Attention", "EmbedLayerNormalization", "Gather"),
                       why="fused + int8 embeddings (QEmbedLayerNormalization): MiniLM 58.7 → 23.0 MB"))
register_recipe(Recipe("fused-ln-emb", "dynamic", True, "fused-ln",
                       ("MatMul", "Gemm", "Attention", "EmbedLayerNormalization", "Gather"),
                       disabled_optimizers=("SkipLayerNormFusion",),
                       why="fused-pc-emb with residual Add + LayerNorm unfused: SkipLayerNorm was ~20 % slower here"))
register_recipe(Recipe("legacy-pc", "dynamic", True, "legacy",
                       why="INC's recipe on the graph INC quantizes: TorchScript export + basic pre-pass"))
register_recipe(Recipe("legacy-pc-gather", "dynamic", True, "legacy", ("MatMul", "Gemm", "Gather"),
                       why="the same with int8 embeddings: ~2.5x smaller file"))
register_recipe(Recipe("dyn-pc-u8u8", "dynamic", True, weight_type="uint8", reduce_range=False,
                       why="AVX2 only: u8 weights avoid vpmaddubsw saturation without 7-bit weights"))


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of ``edgeft quantize`` and the recipe's ``[quantize]`` section. The candidates are
    scored on ``splits.validation``; static ones are calibrated on ``splits.train`` (else validation)."""

    target: str | None = setting(None, "Preset (see `edgeft targets`); default: this machine.")
    mode: str = setting("auto", "auto: search candidates | dynamic | static (the target's preset only).", choices=MODES)
    # One budget for quantize and build (build reuses this field): a fraction, 0.01 = 1 pt. Negative asks for
    # a candidate better than FP32 (tests use it to see the "no candidate met the budget" path).
    max_accuracy_drop: float = setting(0.01, "Allowed drop vs FP32, as a fraction (0.01 = 1 pt).", ge=-1, le=1)
    calibration_rows: int = setting(128, "Calibration rows (seeded sample).", ge=1)
    sensitivity_rows: int = setting(32, "Rows used by the per-layer sensitivity pass.", ge=1)
    max_eval_rows: int = setting(2000, "Validation rows used at most (seeded sample), to bound the time.", ge=1)
    timing_rounds: int = setting(5, "Interleaved timing rounds …", ge=1)
    timing_calls: int = setting(20, "… of this many batch-1 calls per candidate.", ge=1)
    opset: int | None = setting(None, "ONNX opset when exporting a model folder (default: the target's).", ge=13, le=23)
    max_length: int | None = setting(None, "Tokens per input when exporting a model folder.", ge=2)
    atol: float = setting(1e-4, "Max |Δlogit| of the parity check when exporting a model folder.", gt=0)
    zipped: bool = setting(False, "Write a single .zip instead of a folder.", flag="--zip")
    seed: int = setting(0, "Seed of the sampled evaluation and calibration rows.")

    def __post_init__(self):
        check(self)


@dataclass
class Candidate:
    """One row of the table: how it was made and what it measured."""

    name: str
    recipe: dict
    status: str = "ok"  # ok | failed: … | skipped: …
    path: Path | None = None
    size_bytes: int = 0
    seconds: float = 0.0  # time to produce
    metrics: dict = field(default_factory=dict)  # evaluate.summary()
    drop: float | None = None  # FP32 headline − this headline (fraction; > 0 = worse)
    agreement: float | None = None  # fraction of predictions equal to FP32's
    latency_ms: dict = field(default_factory=dict)  # p50/p90/p99 at batch 1, 1 thread, real sentences
    meets_budget: bool = False
    predictions: list = field(default_factory=list, repr=False)
    session: Any = field(default=None, repr=False)  # scored and timed with: made as the bundle's will be
    settings: Any = field(default=None, repr=False)  # its edgeft.runtime.session.SessionSettings

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)
             if f.name not in ("path", "predictions", "session", "settings")}
        d["latency_ms"] = {k: v for k, v in self.latency_ms.items() if k != "round_p50"}
        return d


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Path
    manifest: Any
    chosen: Candidate
    fp32: Candidate
    candidates: list
    verdict: str
    budget_met: bool
    notes: tuple[str, ...] = ()


def _pt(drop: float) -> str:
    """A drop as a signed change in points: 0.012 → "−1.2 pt"."""
    change = -drop * 100
    return f"{'−' if change < -0.05 else '+' if change > 0.05 else '±'}{abs(change):.1f} pt"


# --- sources: the FP32 graph in its plain / basic / fused forms ---------------------------------

@dataclass
class Source:
    """The FP32 model being quantized and the graphs derived from it (made on first use)."""

    work: Path
    fp32: Path  # plain ONNX export (dynamo)
    tokenizer: Path
    manifest: Any  # runtime.manifest.Manifest with the model fields filled in
    model_dir: Path | None = None  # HF folder, when given: needed for the fused graph
    graphs: dict = field(default_factory=dict)

    def graph(self, kind: str) -> Path:
        """The FP32 graph a recipe starts from (plain / basic / legacy / fused), built once and reused."""
        if kind not in self.graphs:
            make = {"plain": lambda: self.fp32, "basic": lambda: _preprocess(self.fp32, self.work / "basic.onnx"),
                    "legacy": lambda: _preprocess(_legacy(self), self.work / "legacy-pre.onnx"),
                    "fused": lambda: _fused(self), "fused-ln": lambda: _fused(self, skip_layer_norm=False)}[kind]
            self.graphs[kind] = make()
        return self.graphs[kind]


def _preprocess(src: Path, dst: Path) -> Path:
    """quant_pre_process: symbolic shapes (auto_merge, else it fails on these exports) + ORT basic pass."""
    from onnxruntime.quantization import quant_pre_process

    from edgeft.compress.export import quiet

    with quiet():
        quant_pre_process(str(src), str(dst), auto_merge=True)
    return dst


def unsupported(source: Source, graph: str) -> str | None:
    """Why this source cannot give the ``graph`` a recipe starts from, or None."""
    if graph not in ("legacy", "fused", "fused-ln"):
        return None
    if source.model_dir is None:
        return "needs the model folder (a bundle has no PyTorch weights to re-export)"
    if graph.startswith("fused") and source.manifest.architecture not in FUSABLE:
        return f"ONNX Runtime's optimizer fuses no Attention for {source.manifest.architecture}"
    return None


def _legacy(source: Source) -> Path:
    """The TorchScript (``dynamo=False``) export with eager attention, made once per source.

    It is the graph Optimum exports and INC quantizes; on MiniLM its FP32 ran 14 % faster than our
    dynamo export in one run here (vs_optimum benchmark), so its INT8 is a candidate of its own."""
    from edgeft.compress.export import export_onnx, load_model

    legacy = source.work / "legacy.onnx"
    if not legacy.is_file():
        loaded = load_model(source.model_dir, source.manifest.max_length, attn_implementation="eager")
        export_onnx(loaded, legacy, source.manifest.opset, dynamo=False)
    return legacy


def _fused(source: Source, skip_layer_norm: bool = True) -> Path:
    """Legacy export with eager attention → ORT transformer optimizer → pre-process.

    ``skip_layer_norm=False`` leaves residual Add + LayerNormalization unfused: onnxruntime's CPU
    SkipLayerNormalization ran about 20 % slower than the pair at batch 1 on MiniLM here (ORT 1.32)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from transformers import AutoConfig

    from edgeft.compress.export import config_shape, quiet

    legacy = _legacy(source)
    shape = config_shape(AutoConfig.from_pretrained(source.model_dir, trust_remote_code=False))
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = skip_layer_norm
    name = "fused" if skip_layer_norm else "fused-ln"
    with quiet():
        opt = optimize_model(str(legacy), model_type="bert", optimization_options=options, **shape)
        fused = opt.get_fused_operator_statistics()
        opt.save_model_to_file(str(source.work / f"{name}.onnx"))
    if not fused.get("Attention"):
        raise ModelError("ONNX Runtime's optimizer fused no Attention in this graph")
    return _preprocess(source.work / f"{name}.onnx", source.work / f"{name}-pre.onnx")


def open_source(path: str | Path, work: Path, cfg: QuantizeConfig, target: Target, texts: list[str],
                progress: Callable[[str], None]) -> Source:
    """A model folder is exported (with parity) at the target's opset; an FP32 bundle is verified."""
    from edgeft.compress.bundle_writer import read_bundle
    from edgeft.compress.export import base_manifest, export_onnx, load_model, write_tokenizer
    from edgeft.compress.parity import check_parity
    from edgeft.runtime.manifest import MANIFEST_NAME, TASKS

    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file() and not (path / MANIFEST_NAME).is_file():
        progress(f"loading {path}")
        loaded = load_model(path, cfg.max_length)
        opset = cfg.opset or target.opset
        progress(f"exporting FP32 ONNX (opset {opset})")
        export_onnx(loaded, work / "fp32.onnx", opset)
        write_tokenizer(loaded, work / "tokenizer.json")
        progress("checking parity with PyTorch")
        manifest = base_manifest(loaded, opset)
        report = check_parity(loaded.model, work / "fp32.onnx", work / "tokenizer.json", manifest, texts[:64],
                              cfg.atol, loaded.hf_tokenizer)
        manifest.parity = report.to_dict()
        return Source(work, work / "fp32.onnx", work / "tokenizer.json", manifest, path)
    if (path.is_dir() and (path / MANIFEST_NAME).is_file()) or path.suffix == ".zip":
        if not path.exists():
            raise BundleError(f"{path}: no such bundle.")
        manifest, folder = read_bundle(path, work)
        if manifest.task not in TASKS:
            raise BundleError(f"{path} is a {manifest.task} bundle; quantize supports {', '.join(TASKS)}.")
        if manifest.quantization:
            raise ConfigError(f"{path} is already quantized ({manifest.quantization.get('candidate', 'int8')}); "
                              f"pass the FP32 bundle from `edgeft export` or the model folder.")
        manifest.files, manifest.metrics, manifest.versions = {}, {}, {}
        return Source(work, folder / manifest.model_file, folder / manifest.tokenizer_file, manifest)
    if not path.exists():
        raise ModelError(f"{path}: no such folder or file; pass a fine-tuned model folder or an FP32 bundle.")
    raise ModelError(f"{path} is neither a model folder (config.json) nor an edgeft bundle (edgeft.json).")


# --- building one candidate ----------------------------------------------------------------------

def _reader(feeds: list[dict]):
    """An onnxruntime CalibrationDataReader over pre-built batch-1 feeds (real rows of the user's data)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rewind()

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(feeds)

    return Reader()


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


def nodes_using(model_path: Path, weights: tuple[str, ...]) -> list[str]:
    """Names of the MatMul/Gemm nodes that read any of ``weights`` (initializer names), for nodes_to_exclude."""
    import onnx

    if not weights:
        return []
    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = []
    for n in graph.node:
        if n.op_type in ("MatMul", "Gemm") and set(n.input) & set(weights):
            # dynamic mode first rewrites Gemm as MatMul(+Add) named "<gemm>_MatMul", then excludes by name
            names += [n.name, f"{n.name}_MatMul"] if n.op_type == "Gemm" else [n.name]
    return names


def build(recipe: Recipe, target: Target, source: Source, out: Path, calibration: list[dict]) -> Path:
    """Quantize ``source`` per ``recipe`` and ``target`` into ``out``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_dynamic, quantize_static

    from edgeft.compress.export import quiet

    src = source.graph(recipe.graph)
    weight_type = _qtype(recipe.weight_type or target.weight_type)
    reduce_range = target.reduce_range if recipe.reduce_range is None else recipe.reduce_range
    exclude = nodes_using(src, recipe.exclude)
    # DefaultTensorType: contrib-op outputs (Attention, SkipLayerNorm …) of the fused graph have no
    # inferred type; without it quantize fails "Unable to find data type for weight_name=…".
    # MatMulConstBOnly: never quantize activation×activation MatMuls (attention scores).
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True}
    with quiet():
        if recipe.mode == "dynamic":
            quantize_dynamic(str(src), str(out), op_types_to_quantize=list(recipe.ops), per_channel=recipe.per_channel,
                             reduce_range=reduce_range, weight_type=weight_type, nodes_to_exclude=exclude,
                             extra_options=extra)
        else:
            activation = _qtype(target.activation_type)
            quantize_static(str(src), str(out), _reader(calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(recipe.ops), per_channel=recipe.per_channel,
                            reduce_range=reduce_range, activation_type=activation, weight_type=weight_type,
                            nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={**extra, "ActivationSymmetric": target.activation_type == "int8"})
    return out


# --- per-layer sensitivity -------------------------------------------------------------------------

def _fake_quant(x, qmin: int, qmax: int, axis: int | None, symmetric: bool):
    """Quantize-dequantize ``x`` the way ORT does: symmetric (weights) or asymmetric incl. 0 (activations)."""
    import numpy as np  # here, not at the top: the CLI imports this module for QuantizeConfig alone

    reduce = tuple(i for i in range(x.ndim) if i != axis) if axis is not None else None
    if symmetric:
        scale = np.maximum(np.abs(x).max(axis=reduce, keepdims=True), 1e-12) / qmax
        return np.clip(np.round(x / scale), qmin, qmax) * scale
    lo = np.minimum(x.min(axis=reduce, keepdims=True), 0)
    hi = np.maximum(x.max(axis=reduce, keepdims=True), 0)
    scale = np.maximum(hi - lo, 1e-12) / (qmax - qmin)
    zero = np.round(qmin - lo / scale)
    return (np.clip(np.round(x / scale) + zero, qmin, qmax) - zero) * scale


def sensitivity(fp32: Path, feeds: list[dict], target: Target, per_channel: bool = True) -> list[dict]:
    """Rank weight MatMul/Gemm nodes by the error INT8 would add to their own output.

    One FP32 pass records each node's input X (seq, K); then, in numpy, Y = X·W is compared with
    fake-quantized u8 X (per call, asymmetric, as dynamic quantization does) times fake-quantized
    W (s8 symmetric, per output channel). The local error ‖Y − Ŷ‖² / ‖Y‖² is the classic SQNR proxy:
    cheap (no re-quantization, no extra evaluation) and good at finding the few outlier-heavy layers
    (e.g. FFN down-projections after GELU) that dominate the accuracy loss.

    Returns:
        [{"weight", "node", "sqnr_db"}] sorted from most to least sensitive (lowest SQNR first).
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgeft.runtime.session import SessionSettings, open_session

    model = onnx.load(str(fp32))
    inits = {t.name: t for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]
    acts = sorted({n.input[0] for n in nodes} - {o.name for o in model.graph.output})
    model.graph.output.extend(onnx.helper.make_tensor_value_info(a, onnx.TensorProto.FLOAT, None) for a in acts)
    probe = fp32.with_name("sensitivity-probe.onnx")
    onnx.save(model, str(probe))
    sess = open_session(probe, SessionSettings(graph_optimization="disable"))  # no fusion: keep the probed tensors
    names = [o.name for o in sess.get_outputs()]
    runs = [dict(zip(names, sess.run(names, f))) for f in feeds]
    wmax = 63 if target.reduce_range else 127  # ORT's reduced int8 weight range is 7 bits
    out = []
    for n in nodes:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        if n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute):
            w = w.T  # (K, N)
        if w.ndim != 2:
            continue
        wq = _fake_quant(w, -wmax, wmax, 1 if per_channel else None, symmetric=True)
        err = ref = 0.0
        for r in runs:
            x = r[n.input[0]].reshape(-1, w.shape[0])  # (tokens, K)
            y = x @ w
            err += float(((y - _fake_quant(x, 0, 255, None, symmetric=False) @ wq) ** 2).sum())
            ref += float((y ** 2).sum())
        out.append({"weight": n.input[1], "node": n.name, "sqnr_db": 10 * np.log10(max(ref, 1e-30) / max(err, 1e-30))})
    probe.unlink()
    return sorted(out, key=lambda d: d["sqnr_db"])


# --- the search -------------------------------------------------------------------------------------

def plan(cfg: QuantizeConfig, target: Target) -> list[Recipe]:
    """Which recipes to try: the whole table for auto, the target's preset for dynamic/static."""
    if cfg.mode == "dynamic":
        return [Recipe("dynamic", "dynamic", target.per_channel, ops=target.op_types, why="--mode dynamic")]
    if cfg.mode == "static":
        return [Recipe("static", "static", target.per_channel, "basic", target.op_types, why="--mode static")]
    return [r for r in RECIPES.values() if r.weight_type != "uint8" or target.reduce_range]  # u8u8: AVX2 only


def sample_rows(items: list, n: int, seed: int) -> list:
    """Up to ``n`` items, a seeded sample in file order (so a rerun evaluates the same rows)."""
    if len(items) <= n:
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def quantize(source_path: str | Path, out: str | Path, splits: Splits, cfg: QuantizeConfig = QuantizeConfig(),
             progress: Progress = silent) -> QuantizeResult:
    """Quantize a model folder or FP32 bundle for ``cfg.target`` and write the chosen bundle to ``out``.

    Returns:
        The bundle, its manifest, the chosen candidate, the FP32 reference, every candidate and
        the verdict. The budget not being met is not an error: the best candidate is still written.
    Raises:
        EdgeftError subclasses for bad input (nothing is written then).
    """
    from edgeft.compress.bundle_writer import check_output, write_bundle
    from edgeft.compress.evaluate import encode, evaluate_onnx, feeds, load_tokenizer, summary
    from edgeft.compress.export import read_labeled
    from edgeft.runtime.session import open_session
    from edgeft.data import detect_task, model_input, read_dataset

    check_output(out, cfg.zipped)  # a bad --out fails now, not after the search
    target = resolve_target(cfg.target or host_target())
    data = splits.validation
    if not data:
        raise ConfigError("--data is required: a labeled validation file to measure every candidate on.")
    columns = splits.columns()
    with tempfile.TemporaryDirectory(prefix="edgeft-quantize-") as tmp:
        work = Path(tmp)
        # The parity check of a model folder needs texts before the model (and its task) is loaded.
        texts = [model_input(ex) for ex in read_dataset(data, task=detect_task(data), **columns).examples]
        source = open_source(source_path, work, cfg, target, texts, progress)
        m = source.manifest
        ds = read_labeled(data, m.task, m.labels, **columns)
        examples = sample_rows(ds.examples, cfg.max_eval_rows, cfg.seed)
        calib_ds = read_labeled(splits.train, m.task, m.labels, **columns) if splits.train else ds
        tok = load_tokenizer(source.tokenizer, m.max_length)
        # (1, seq) int64 feeds at real length: calibration rows (seeded sample) and timing sentences
        calibration = [feeds([e], m) for e in encode(tok, sample_rows(calib_ds.examples, cfg.calibration_rows,
                                                                   cfg.seed + 1), m.task)]
        timing = [feeds([e], m) for e in tok.encode_batch(sample_rows(texts, 64, cfg.seed + 2))]

        progress(f"evaluating FP32 on {len(examples)} rows")
        fp32 = Candidate("fp32", {"mode": "fp32"}, path=source.fp32, size_bytes=source.fp32.stat().st_size,
                         settings=candidate_settings(m, target, {}))
        fp32.session = open_session(source.fp32, fp32.settings)
        fp32.predictions, scores = evaluate_onnx(source.fp32, source.tokenizer, m, examples, settings=fp32.settings,
                                                 sess=fp32.session)
        fp32.metrics, fp32.drop, fp32.agreement, fp32.meets_budget = summary(scores), 0.0, 1.0, True

        def run(recipe: Recipe) -> Candidate:
            return _candidate(recipe, target, source, work, calibration, examples, fp32, cfg.max_accuracy_drop)

        candidates, sensitive = _search(cfg, target, source, run, fp32, calibration, timing, progress)
        chosen, budget_met = choose(candidates)
        if chosen is None:
            raise ModelError("every quantization candidate failed:\n" +
                             "\n".join(f"- {c.name}: {c.status}" for c in candidates))
        verdict = "budget met" if budget_met else f"not met: best is {_pt(chosen.drop)}"
        notes = _notes(target, chosen)

        files = {"model.onnx": chosen.path, "tokenizer.json": source.tokenizer}
        if "ort" in target.extra_artifacts:
            files["model.ort"] = _ort_format(chosen.path, work / "model.ort")
        table = {"target": target.to_dict(), "mode": cfg.mode, "max_accuracy_drop": cfg.max_accuracy_drop,
                 "data": str(data), "rows": len(examples), "verdict": verdict, "chosen": chosen.name,
                 "fp32": fp32.to_dict(), "candidates": [c.to_dict() for c in candidates],
                 "sensitivity": sensitive, "notes": list(notes)}
        files["candidates.json"] = work / "candidates.json"
        files["candidates.json"].write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
        _fill_manifest(m, target, cfg, chosen, fp32, verdict, len(candidates), len(examples), len(calibration),
                       "model.ort" in files, data)
        progress(f"writing {out}")
        bundle = write_bundle(out, files, m, cfg.zipped)
    return QuantizeResult(bundle, m, chosen, fp32, candidates, verdict, budget_met, notes)


def _candidate(recipe: Recipe, target: Target, source: Source, work: Path, calibration: list[dict],
               examples: list, fp32: Candidate, max_drop: float) -> Candidate:
    """Build one candidate and score it against FP32 on the same rows (timing comes later, for all)."""
    from edgeft.compress.evaluate import agreement, evaluate_onnx, summary
    from edgeft.runtime.session import open_session

    c = Candidate(recipe.name, {k: list(v) if isinstance(v, tuple) else v  # JSON-shaped, as in the table
                                for k, v in asdict(recipe).items() if k != "name"})
    if why := unsupported(source, recipe.graph):
        c.status = f"skipped: {why}"
        return c
    t0 = time.perf_counter()
    try:
        c.path = build(recipe, target, source, work / f"{recipe.name}.onnx", calibration)
        c.settings = candidate_settings(source.manifest, target, c.recipe)
        c.session = open_session(c.path, c.settings)
    except Exception as e:  # one broken recipe must not sink the search; the table says why
        c.status = f"failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
        return c
    c.seconds, c.size_bytes = time.perf_counter() - t0, c.path.stat().st_size
    c.predictions, scores = evaluate_onnx(c.path, source.tokenizer, source.manifest, examples, settings=c.settings,
                                          sess=c.session)
    c.metrics = summary(scores)
    c.drop = fp32.metrics["value"] - c.metrics["value"]
    c.agreement = agreement(c.predictions, fp32.predictions)
    c.meets_budget = c.drop <= max_drop + 1e-12  # float noise must not flip an exact tie
    return c


def _search(cfg: QuantizeConfig, target: Target, source: Source, run: Callable[[Recipe], Candidate],
            fp32: Candidate, calibration: list[dict], timing: list[dict], progress) -> tuple[list, list]:
    """Round 1: the planned recipes. Round 2 (auto only), when the fastest candidate misses the
    budget: the fastest plain/basic one again with its k and 2k most sensitive MatMuls in float
    (k = 10 % of them), stopping at the first that meets the budget. At most len(RECIPES) + 2 builds.

    Returns:
        (candidates, sensitivity ranking or []).
    """
    recipes = plan(cfg, target)
    candidates = []
    for i, recipe in enumerate(recipes, 1):
        progress(f"[{i}/{len(recipes)}] {recipe.name}: {recipe.why}")
        candidates.append(run(recipe))
    _time_all(fp32, candidates, timing, cfg)

    ok = sorted((c for c in candidates if c.status == "ok"), key=lambda c: c.latency_ms["p50"])
    fastest = next((c for c in ok if c.recipe["graph"] in ("plain", "basic")), None)  # weight names of source.fp32
    if cfg.mode != "auto" or not ok or ok[0].meets_budget or fastest is None:
        return candidates, []
    progress(f"sensitivity pass over the weight MatMuls ({cfg.sensitivity_rows} rows)")
    sensitive = sensitivity(source.fp32, calibration[: cfg.sensitivity_rows], target, fastest.recipe["per_channel"])
    k = max(1, round(0.1 * len(sensitive)))
    for keep in (k, 2 * k):
        if keep >= len(sensitive):
            break
        recipe = replace(RECIPES[fastest.name], name=f"{fastest.name}-skip{keep}",
                         exclude=tuple(d["weight"] for d in sensitive[:keep]),
                         why=f"{fastest.name} with its {keep} most sensitive MatMuls in float")
        progress(f"[+] {recipe.name}: {recipe.why}")
        candidates.append(c := run(recipe))
        if c.status == "ok" and c.meets_budget:
            break
    _time_all(fp32, candidates, timing, cfg)  # again, all together: only one interleaved run is comparable
    return candidates, sensitive


def _fill_manifest(m, target: Target, cfg: QuantizeConfig, chosen: Candidate, fp32: Candidate, verdict: str,
                   n_candidates: int, rows: int, calibration_rows: int, ort_file: bool, data: Path) -> None:
    """Target, quantization settings and measured metrics of the chosen candidate."""
    m.target = {**target.to_dict(), "artifacts": {"ort": "model.ort"} if ort_file else {}}
    m.quantization = {
        "candidate": chosen.name, **quantization_fields(chosen.recipe, target, calibration_rows),
        "search": {"mode": cfg.mode, "candidates": n_candidates, "max_accuracy_drop": cfg.max_accuracy_drop,
                   "verdict": verdict, "table": "candidates.json"},
    }
    m.batching = chosen.settings.batching
    m.metrics = {
        "split": str(data), "rows": rows, "variant": chosen.metrics, "fp32": fp32.metrics,
        "drop": chosen.drop, "agreement": chosen.agreement, "latency_ms": chosen.to_dict()["latency_ms"],
        "fp32_latency_ms": fp32.to_dict()["latency_ms"],
        "latency_setup": "batch 1, 1 thread, real sentences, interleaved; measured on this machine",
    }


def quantization_fields(recipe: dict, target: Target, calibration_rows: int = 0) -> dict:
    """The manifest's ``quantization`` settings of a candidate made from ``recipe`` (a Candidate's
    JSON-shaped recipe; {} for FP32), with the target's defaults filled in."""
    if not recipe:
        return {}
    return {**recipe, "weight_type": recipe["weight_type"] or target.weight_type,
            "activation_type": "uint8" if recipe["mode"] == "dynamic" else target.activation_type,
            "reduce_range": target.reduce_range if recipe["reduce_range"] is None else recipe["reduce_range"],
            "calibration_rows": calibration_rows if recipe["mode"] == "static" else 0}


def candidate_settings(m, target: Target, recipe: dict):
    """How a candidate is scored and timed: ``settings_for`` the manifest its bundle would carry, at
    1 thread (timing is single-threaded; ``Predictor.load(bundle, threads=1)`` gets the same)."""
    from edgeft.runtime.session import settings_for

    return settings_for(replace(m, target=target.to_dict(), quantization=quantization_fields(recipe, target),
                                batching=""), threads=1)


def _time_all(fp32: Candidate, candidates: list[Candidate], timing: list[dict], cfg: QuantizeConfig) -> None:
    """Time FP32 and every built candidate together (interleaved), filling ``latency_ms``."""
    from edgeft.compress.evaluate import time_interleaved

    live = [fp32, *(c for c in candidates if c.status == "ok")]
    runs = {c.name: (lambda i, s=c.session: s.run(None, timing[i % len(timing)])) for c in live}
    stats = time_interleaved(runs, cfg.timing_rounds, cfg.timing_calls, seed=cfg.seed)
    for c in live:
        c.latency_ms = stats[c.name]


SPEED_TIE = 1.03  # p50 within 3 % of the fastest counts as a tie (the timing noise of a shared machine)


def choose(candidates: list[Candidate]) -> tuple[Candidate | None, bool]:
    """The fastest candidate within budget; near-ties (p50 within 3 %, about the timing noise of a
    shared machine) go to the smaller file, then the more accurate one — on a device, a model 2.5x
    smaller loads faster and needs less flash and RAM, and every tied candidate is within the
    accuracy budget already. Without any within budget: the most accurate (then the fastest)."""
    ok = [c for c in candidates if c.status == "ok"]
    if not ok:
        return None, False
    within = [c for c in ok if c.meets_budget]
    if within:
        best = min(c.latency_ms["p50"] for c in within)
        near = [c for c in within if c.latency_ms["p50"] <= best * SPEED_TIE]
        return min(near, key=lambda c: (c.size_bytes, c.drop)), True
    return min(ok, key=lambda c: (c.drop, c.latency_ms["p50"])), False


def _notes(target: Target, chosen: Candidate) -> tuple[str, ...]:
    """Caveats about where the numbers were measured."""
    import platform

    notes = []
    host = platform.machine().lower()
    if target.name not in ("x86_64", "x86_64-vnni", "x86_64-avx2") or host not in ("x86_64", "amd64"):
        notes.append(f"latency was measured on this {host} machine, not on a {target.name} device; run "
                     f"`edgeft bench` on the device for its numbers.")
    flags = cpu_flags()
    u8s8 = (chosen.recipe.get("weight_type") or target.weight_type) == "int8"
    if host in ("x86_64", "amd64") and "avx2" in flags and not any(f in flags for f in ("avx512_vnni", "avx_vnni")) \
            and u8s8 and not target.reduce_range:
        notes.append("this CPU has AVX2 without VNNI: u8s8 saturates here but not on the target, so the accuracy "
                     "shown is pessimistic.")
    return tuple(notes)


def _ort_format(model: Path, dst: Path) -> Path:
    """ORT-format copy for ONNX Runtime Mobile, optimized at basic level only (portable)."""
    import onnxruntime as ort

    from edgeft.runtime.session import SessionSettings, session_options

    so = session_options(SessionSettings(graph_optimization="basic"))
    so.optimized_model_filepath = str(dst)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return dst


def format_table(result: QuantizeResult) -> str:
    """The candidates as a text table (FP32 first), with the chosen one marked."""
    rows = [("", "candidate", "mode", "graph", "weights", "size MB", result.fp32.metrics["metric"], "Δ", "agree",
             "p50 ms", "p90 ms", "speed-up", "budget")]
    ref = result.fp32.latency_ms.get("p50")
    for c in [result.fp32, *result.candidates]:
        if c.status != "ok":
            rows.append(("", c.name, c.recipe.get("mode", ""), c.recipe.get("graph", ""), *[""] * 8, c.status))
            continue
        r = c.recipe
        weights = "fp32" if r.get("mode") == "fp32" else (  # e.g. "pc +attn +emb -2": 2 MatMuls kept float
            ("pc" if r["per_channel"] else "pt") + (" +attn" if "Attention" in r["ops"] else "")
            + (" +emb" if {"Gather", "EmbedLayerNormalization"} & set(r["ops"]) else "")
            + (" u8u8" if r["weight_type"] == "uint8" else "") + (f" -{len(r['exclude'])}" if r["exclude"] else ""))
        rows.append(("*" if c is result.chosen else "", c.name, r.get("mode", ""), r.get("graph", ""), weights,
                     f"{c.size_bytes / 1e6:.2f}", f"{c.metrics['value']:.2%}", _pt(c.drop), f"{c.agreement:.1%}",
                     f"{c.latency_ms['p50']:.3f}", f"{c.latency_ms['p90']:.3f}",
                     f"×{ref / c.latency_ms['p50']:.2f}" if ref else "", "ref" if c is result.fp32 else
                     ("ok" if c.meets_budget else "over")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
