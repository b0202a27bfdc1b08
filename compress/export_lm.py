"""Export a causal LM folder to a text-generation bundle: one decoder graph with a KV cache, its
weights FP32, INT8 or INT4, parity checked against PyTorch.

``export_lm(model_dir, out, cfg, progress)``: build the FP32 graph, check parity (max |Δlogit| on
real prompts and greedy tokens identical to ``model.generate`` for N prompts x M tokens), quantize
the weights, measure the variant against FP32 (perplexity on the eval texts, greedy agreement) and
write the bundle (``model.onnx`` + ``model.onnx.data``, tokenizer.json, edgeft.json).

Routes, chosen by measurement on SmolLM2-135M (2-vCPU Xeon, 1 thread; benchmarks/generate.py):

* ``builder``, onnxruntime-genai's model builder, for the families it knows (Llama, Mistral, Qwen,
  Phi, Gemma, ...): builds in 8 s, with fused GroupQueryAttention, rotary embedding and
  SkipSimplifiedLayerNorm; its FP32 graph's greedy tokens equal PyTorch's.
* ``exporter``, transformers 5's ``OnnxExporter.export_for_generation`` (torch.onnx dynamo) with
  ``ort_fusions="cpu"``, for everything else, GPT-2 included (the builder has no GPT-2): its
  ``decode`` graph also prefills from an empty cache. 136 s on SmolLM2 and ~1.5x slower decoding
  without fusions, hence the builder first.

INT4 is weight-only block-wise (32) ``MatMulNBits``. Measured perplexity on 8 SQuAD test contexts
(FP32 20.17): RTN 27.3 (onnxruntime-genai's int4, +35 %), ORT's default asymmetric 26.0 with an
FP32 LM head; HQQ's float zero points take onnxruntime's slow MatMulNBits path (5 tok/s). SmolLM2's
projections come from a Q4_1 GGUF (asymmetric 4-bit, blocks of 32 along the input dimension): the
grid HQQ finds. So ``hqq`` keeps HQQ's codes and scales with MatMulNBits' default zero point 8 (the
fast path, no zero-point table) and adds the float offset back as one small FP32 MatMul per projection
on the block sums of its input: w = s*(q - z) = s*(q - 8) + o, x.w = s*(x.(q - 8)) + sum_blocks(x)*o.
Scales and offsets are stored fp16 (the GGUF's precision) and cast once when the session folds
constants. The tied embedding/LM head (Q8_0 in the GGUF) is the rest of the loss at 4 bits (+12.5 %
on 4 contexts), so by default it is 8-bit symmetric MatMulNBits (blocks of 64) and the embedding
reads the same codes (GatherBlockQuantized): 14 MB more, -0.3 % (``_symmetric_matmul``). GPTQ (ORT's
``gptq_quantize``) ran ~80 min for this model on 2 cores: not offered.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgeft.errors import ConfigError, ModelError, ParityError
from edgeft.runtime.manifest import Manifest
from edgeft.settings import check, setting
from edgeft.stage import Progress, silent

# config.architectures[0] values onnxruntime-genai's builder turns into a fused graph (its builder.py).
BUILDER_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "PhiForCausalLM",
                 "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "GraniteForCausalLM", "OlmoForCausalLM",
                 "SmolLM3ForCausalLM")
# Real prompts for the parity check when the user gives none (short, varied, English and not).
PROMPTS = ("The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a small village,",
           "Die Katze sitzt auf der", "Question: What is 12 times 7?\nAnswer:", "Les étoiles brillent")


@dataclass(frozen=True)
class ExportLMConfig:
    """Settings of ``edgeft export-lm``."""

    weights: str = setting("int4", "Weight format of the bundle.", choices=("fp32", "int8", "int4"))
    int4_method: str = setting("hqq", "INT4 algorithm: hqq (best measured), rtn (round to nearest).",
                               choices=("hqq", "rtn"))
    block_size: int = setting(32, "Weights per quantization block along the input dimension.", choices=(16, 32, 64, 128))
    int4_head: str = setting("int8", "INT4 bundles: the LM head and tied embedding at int8 (accurate) or int4 (smaller).",
                             choices=("int8", "int4"))
    head_block: int = setting(64, "Weights per block of the int8 LM head.", choices=(32, 64, 128))
    adapter: str = setting("branch", "INT4 of a LoRA fine-tune: its adapter as a side branch (keeps what it "
                           "learned) or merged into the 4-bit weights (3.7 MB smaller).", choices=("branch", "merged"))
    adapter_bits: int = setting(4, "INT4 of a LoRA fine-tune: bits of the adapter branch (8: 3 MB larger).",
                                choices=(4, 8))
    accuracy_level: int = setting(4, "MatMulNBits compute: 4 = int8 activations (fastest), 1 = fp32.", choices=(0, 1, 2, 3, 4))
    route: str = setting("auto", "auto: the builder for the families it knows, else the exporter.",
                         choices=("auto", "builder", "exporter"))
    parity_prompts: int = setting(4, "Prompts of the greedy-token parity check (N).", ge=1)
    parity_tokens: int = setting(16, "New greedy tokens per prompt that must equal PyTorch's (M).", ge=1)
    atol: float = setting(1e-3, "Max |Δlogit| between PyTorch and the FP32 graph.", gt=0)
    context_length: int | None = setting(None, "Context window (default: the model's max_position_embeddings).", ge=2)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class ExportLMResult:
    bundle: Path
    manifest: Manifest
    parity: dict[str, Any]
    metrics: dict[str, Any]


def export_lm(model_dir: str | Path, out: str | Path, cfg: ExportLMConfig = ExportLMConfig(),
              progress: Progress = silent, prompts: Sequence[str] = (), eval_texts: Sequence[str] = ()) -> ExportLMResult:
    """Export ``model_dir`` (a causal LM folder) to the bundle ``out``.

    Args:
        prompts: real prompts for the parity check (default: PROMPTS).
        eval_texts: texts for perplexity of FP32 and of the variant (none: perplexity is not measured).
    Raises:
        ModelError (not a causal LM), ParityError (the FP32 graph differs from PyTorch), ConfigError.
    """
    from edgeft.compress.bundle_writer import check_output, write_bundle

    model_dir, dest = Path(model_dir), check_output(out)
    torch_model, hf_tok, config = _load(model_dir)
    arch = (config.architectures or ["?"])[0]
    route = cfg.route if cfg.route != "auto" else ("builder" if arch in BUILDER_ARCHS else "exporter")
    if route == "builder" and arch not in BUILDER_ARCHS:
        raise ConfigError(f"--route builder: onnxruntime-genai's builder has no {arch}; use --route exporter")
    ctx = cfg.context_length or int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 2048))
    with tempfile.TemporaryDirectory(prefix=".export-lm-", dir=dest.parent if dest.parent.exists() else None) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        progress(f"building the FP32 decoder graph of {arch} ({route})")
        fp32 = _build_builder(model_dir, tmp / "fp32") if route == "builder" else _build_exporter(torch_model, tmp / "fp32")
        _select_positions(fp32)
        spec = _spec(fp32, config, hf_tok, ctx, route)
        tok_file = tmp / "tokenizer.json"
        hf_tok.backend_tokenizer.save(str(tok_file), pretty=False)  # SmolLM2: 1.6 MB instead of 3.5 MB indented
        build_s = time.perf_counter() - t0
        progress(f"checking parity with PyTorch ({cfg.parity_prompts} prompts x {cfg.parity_tokens} greedy tokens)")
        ref = _generator(fp32, spec, tok_file)
        parity = check_parity(torch_model, hf_tok, ref, list(prompts) or list(PROMPTS)[: cfg.parity_prompts], cfg)
        model = fp32
        if cfg.weights != "fp32":
            progress(f"quantizing the weights to {cfg.weights}" + (f" ({cfg.int4_method})" if cfg.weights == "int4" else ""))
            model, branches = quantize_lm(fp32, tmp / cfg.weights, cfg, model_dir)
        variant = _generator(model, spec, tok_file) if model != fp32 else ref
        metrics = _compare(ref, variant, parity["prompts"], cfg.parity_tokens, eval_texts, progress)
        manifest = Manifest(
            task="text-generation", labels=[], max_length=ctx, inputs=["input_ids"] + (
                ["attention_mask"] if spec["attention_mask"] else []), outputs=["logits"],
            pad_token_id=int(spec["pad_token_id"]), architecture=config.model_type, base_model=str(model_dir),
            data_fingerprint=_fingerprint(model_dir), opset=_opset(model),
            min_onnxruntime="1.20", parity=parity, metrics=metrics,
            quantization={} if cfg.weights == "fp32" else {
                "weights": cfg.weights, "format": "MatMulNBits", "block_size": cfg.block_size,
                "accuracy_level": cfg.accuracy_level, **({"method": cfg.int4_method} if cfg.weights == "int4" else {}),
                **({"adapter": f"int{cfg.adapter_bits} branch on {branches} projections"} if branches else {})},
            extra={"generation": spec, "export": {"route": route, "seconds": round(build_s, 1)}})
        files = {"model.onnx": model, "model.onnx.data": model.with_name(model.name + ".data"), "tokenizer.json": tok_file}
        progress(f"writing {dest}")
        write_bundle(dest, files, manifest)
    return ExportLMResult(dest, manifest, parity, metrics)


def _load(model_dir: Path):
    import torch  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} has no config.json: give a Hugging Face causal LM folder (what `edgeft train "
                         "--task text-generation` writes)")
    config = AutoConfig.from_pretrained(model_dir)
    if not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in config.architectures or ()):
        raise ModelError(f"{model_dir}: config.json names architectures {config.architectures}; export-lm needs a "
                         "causal LM (…ForCausalLM / …LMHeadModel); for classifiers use `edgeft export`")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"{model_dir}: the runtime needs a fast tokenizer (tokenizer.json)")
    return model, tok, config


def _build_builder(model_dir: Path, out: Path) -> Path:
    """onnxruntime-genai's builder, FP32 (every quantization is ours, afterwards)."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(out), "-p", "fp32",
           "-e", "cpu", "-c", str(out.parent / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (out / "model.onnx").is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"onnxruntime-genai's builder failed on {model_dir}: {tail[0]}; try --route exporter")
    return out / "model.onnx"


def _build_exporter(model, out: Path) -> Path:
    """transformers' OnnxExporter: the multi-token ``decode`` graph (prefills from an empty cache), fused for CPU."""
    import torch
    from transformers.exporters import OnnxExporter
    from transformers.exporters.configs import OnnxConfig

    from edgeft.compress.export import quiet

    ids = torch.tensor([[1, 2, 3, 4]])
    with quiet():
        ex = OnnxExporter().export_for_generation(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                                  OnnxConfig(dynamic=True, ort_fusions="cpu"), multi_token_decode=True)
        ex.save_pretrained(out)
    # One external-data file named after the graph, as the bundle lists it.
    import onnx

    m = onnx.load(str(out / "decode.onnx"))
    onnx.save(m, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return out / "model.onnx"


HEAD_OPS = ("MatMul", "Gemm", "FusedMatMul")


def _select_positions(model: Path) -> None:
    """Feed the LM head only the positions in a new ``logits_positions`` input (int64, (n,)): generation
    asks for the last one. On SmolLM2 INT4 (AMD EPYC, 1 thread, a 128-token prompt) that took TTFT from
    1,173 to 827 ms and peak RSS from 313 to 295 MB, with the same tokens (benchmarks/results/generate-amd.json);
    perplexity asks for all.
    The head is the first MatMul found walking back from ``logits``; without one the graph is left as it is."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(model), load_external_data=False)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    node = producer.get("logits")
    while node is not None and node.op_type not in HEAD_OPS:
        node = producer.get(node.input[0]) if node.input else None
    if node is None:
        return
    hidden = node.input[0]
    node.input[0] = hidden + "/logits_positions"
    g.node.insert(list(g.node).index(node), helper.make_node("Gather", [hidden, "logits_positions"], [node.input[0]],
                                                             name="/logits_positions/Gather", axis=1))
    g.input.append(helper.make_tensor_value_info("logits_positions", TensorProto.INT64, ["positions"]))
    onnx.save(m, str(model))  # the graph only: its external data file is unchanged


def _spec(model: Path, config, tok, ctx: int, route: str) -> dict[str, Any]:
    """The manifest's ``generation`` section: tensor names, cache shape, special tokens, template."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ins, outs = [i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]
    past_in = [n for n in ins if n not in ("input_ids", "attention_mask", "position_ids", "logits_positions")]
    present = [n for n in outs if n != "logits"]
    if len(past_in) != len(present):
        raise ModelError(f"{model}: {len(past_in)} cache inputs but {len(present)} cache outputs")
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    gen = getattr(tok, "eos_token_id", None)
    eos_ids = sorted({int(i) for i in eos + [gen] if i is not None})
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0] if eos_ids else 0
    return {"context_length": ctx, "past": [{"input": i, "output": o} for i, o in zip(past_in, present)],
            "kv_heads": int(kv), "head_dim": int(head_dim), "attention_mask": "attention_mask" in ins,
            "logits_positions": "logits_positions" in ins,
            "eos_token_ids": eos_ids, "pad_token_id": int(pad), "bos_token": tok.bos_token, "eos_token": tok.eos_token,
            "chat_template": tok.chat_template if isinstance(tok.chat_template, str) else None, "route": route}


def _generator(model: Path, spec: dict, tok_file: Path):
    """The runtime's Generator on an unbundled graph (the bundle is written only after every check)."""
    from types import SimpleNamespace

    from tokenizers import Tokenizer

    from edgeft.runtime.generate import Generator
    from edgeft.runtime.session import SessionSettings, open_session

    bundle = SimpleNamespace(manifest=SimpleNamespace(extra={"generation": spec}), source=model.parent)
    return Generator(bundle, open_session(model, SessionSettings(threads=1, memory_arena=False)),  # as served
                     Tokenizer.from_file(str(tok_file)))


def check_parity(model, hf_tok, gen, prompts: list[str], cfg: ExportLMConfig) -> dict[str, Any]:
    """FP32 graph vs PyTorch: max |Δlogit| over every prompt position, greedy tokens vs ``model.generate``."""
    import numpy as np
    import torch

    diffs, same, first_diff = [], 0, []
    for p in prompts:
        ids = gen.encode(p)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0].numpy()
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=cfg.parity_tokens, do_sample=False, pad_token_id=hf_tok.pad_token_id or 0,
                                 eos_token_id=None)[0, len(ids):].tolist()  # past EOS, as ignore_eos (min_new_tokens
            # would forbid EOS, so a model whose argmax is EOS, any fine-tuned one, would differ there)
        got, _ = gen.forward(ids, gen.empty_cache())
        diffs.append(float(np.abs(got - want).max()))
        ours = gen.generate(ids, max_new_tokens=cfg.parity_tokens, ignore_eos=True).token_ids
        same += ours == ref
        first_diff.append(next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None))
    report = {"max_abs_diff": max(diffs), "atol": cfg.atol, "prompts": prompts, "new_tokens": cfg.parity_tokens,
              "greedy_identical": same, "greedy_prompts": len(prompts), "first_divergence": first_diff}
    if report["max_abs_diff"] > cfg.atol or same < len(prompts):
        raise ParityError(f"the FP32 ONNX decoder differs from PyTorch: max |Δlogit| {report['max_abs_diff']:.2e} "
                          f"(atol {cfg.atol:g}), greedy tokens identical for {same}/{len(prompts)} prompts x "
                          f"{cfg.parity_tokens} tokens; try --route exporter")
    return report


def _compare(ref, variant, prompts, tokens: int, texts, progress) -> dict[str, Any]:
    """The variant vs FP32: free-running greedy agreement (and first divergence), teacher-forced top-1
    agreement (argmax after FP32's own prefix, llama.cpp's "same top p": each near-tie flip counts once,
    where free-running it misaligns every later token), and both perplexities."""
    import numpy as np

    agree = forced = 0
    firsts = []
    for p in prompts:
        ids = ref.encode(p)
        a, b = (g.generate(ids, max_new_tokens=tokens, ignore_eos=True).token_ids for g in (ref, variant))
        agree += sum(x == y for x, y in zip(a, b))
        firsts.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None))
        logits, _ = variant.forward(ids + a[:-1], variant.empty_cache())  # every position after FP32's prefix
        forced += int((logits[len(ids) - 1:].argmax(-1) == a).sum())
    n = tokens * len(prompts)
    out: dict[str, Any] = {"greedy_token_agreement": agree / n, "first_divergence": firsts, "top1_agreement": forced / n}
    if texts:
        progress(f"perplexity on {len(texts)} texts")
        f, v = ref.perplexity(texts), variant.perplexity(texts) if variant is not ref else None
        out["fp32"] = f
        if v:
            out["variant"] = {**v, "change": v["perplexity"] / f["perplexity"] - 1}
    return out


def quantize_lm(fp32: Path, out: Path, cfg: ExportLMConfig, model_dir: Path | None = None) -> tuple[Path, int]:
    """Weight-only MatMulNBits (``cfg.weights``), written as ``out/model.onnx`` + ``model.onnx.data``; with
    the number of projections whose LoRA adapter (``model_dir/adapter``) is kept as a side branch."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    from edgeft.compress import lora_branch

    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(fp32))
    bits = 8 if cfg.weights == "int8" else 4
    adapter = lora_branch.read_adapter(model_dir) if bits == 4 and cfg.adapter == "branch" and model_dir else None
    branches = lora_branch.split_adapter(model, model_dir, adapter) if adapter else []
    if bits == 4 and cfg.int4_method == "hqq":
        algo = mq.HQQWeightOnlyQuantConfig(block_size=cfg.block_size, bits=4)
    else:
        algo = mq.DefaultWeightOnlyQuantConfig(block_size=cfg.block_size, is_symmetric=False,
                                               accuracy_level=cfg.accuracy_level, bits=bits)
    head = next((n for n in model.graph.node if n.op_type == "MatMul" and "logits" in n.output), None)
    consts = {i.name for i in model.graph.initializer}
    int8_head = bits == 4 and cfg.int4_head == "int8" and head is not None and head.input[1] in consts
    q = mq.MatMulNBitsQuantizer(model, bits=bits, block_size=cfg.block_size, is_symmetric=False,
                                accuracy_level=cfg.accuracy_level, algo_config=algo,
                                nodes_to_exclude=([head.name] if int8_head else []) + branches)
    _quiet_ort_logging()
    q.process()
    model = q.model.model
    if algo.algorithm == "HQQ":
        _integer_zero_points(model, cfg.accuracy_level)
    if int8_head:
        _symmetric_matmul(model, head.name, 8, cfg.head_block, cfg.accuracy_level)
    for name in branches:
        _symmetric_matmul(model, name, cfg.adapter_bits, 32 if cfg.adapter_bits == 4 else cfg.head_block, cfg.accuracy_level)
    if bits == 4:
        _share_embedding(model)
    _computed_rotary(model)
    _drop_unused(model)
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return out / "model.onnx", len(branches) // 2


def _quiet_ort_logging() -> None:
    import logging

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)


def _integer_zero_points(model, accuracy_level: int) -> None:
    """HQQ's float zero points → zero points of 0 + an FP32 offset MatMul on per-block input sums (docstring)."""
    import numpy as np
    from onnx import helper, numpy_helper as nh

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, extra, sums, casts = [], [], {}, []
    for n in g.node:
        if n.op_type != "MatMulNBits" or len(n.input) < 4 or inits[n.input[3]].data_type != 1:  # 1 = FLOAT
            nodes.append(n)
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k, cols, bs = a["K"], a["N"], a["block_size"]
        nb = -(-k // bs)
        scale = nh.to_array(inits[n.input[2]]).reshape(cols, nb)
        zero = nh.to_array(inits[n.input[3]]).reshape(cols, nb)
        x = n.input[0]
        if x not in sums:  # (…, K) → (…, nb, bs) → (…, nb): computed once per input tensor
            s = f"{x}/block_sums"
            extra += [nh.from_array(np.array([0, 0, nb, bs], np.int64), s + "/shape"),
                      nh.from_array(np.array([-1], np.int64), s + "/axes")]
            nodes += [helper.make_node("Reshape", [x, s + "/shape"], [s + "/blocks"], name=s + "/Reshape"),
                      helper.make_node("ReduceSum", [s + "/blocks", s + "/axes"], [s], name=s + "/ReduceSum", keepdims=0)]
            sums[x] = s
        # scales fp16 on disk too (SmolLM2's Q4_1 scales are fp16 in the GGUF), (N, nb) as the embedding reads them
        extra.append(nh.from_array(scale.astype(np.float16), n.input[2] + ".fp16"))
        casts.append(helper.make_node("Cast", [n.input[2] + ".fp16"], [n.input[2] + ".f32"], name=n.name + "/ScaleCast", to=1))
        n.input[2] = n.input[2] + ".f32"
        offset, y = n.name + ".offset", n.output[0]
        # (nb, N): w = s*(q - z) = s*(q - 8) + s*(8 - z): no zero-point input (MatMulNBits' default 8, 2.1 MB
        # less than a table of zeros); stored fp16 (half the disk), cast to fp32 once when constants fold
        extra.append(nh.from_array((scale * (8 - zero)).T.astype(np.float16), offset + ".fp16"))
        casts.append(helper.make_node("Cast", [offset + ".fp16"], [offset], name=n.name + "/OffsetCast", to=1))
        del n.input[3:]
        n.output[0] = y + "/codes"
        for attr in [x for x in n.attribute if x.name == "accuracy_level"]:
            n.attribute.remove(attr)
        # The LM head keeps fp32 activations: int8 ones there cost +10 % perplexity on SmolLM2 (22.7 vs 20.6).
        n.attribute.append(helper.make_attribute("accuracy_level", 1 if n.name.startswith("/lm_head/") else accuracy_level))
        nodes += [n, helper.make_node("MatMul", [sums[x], offset], [y + "/offset"], name=n.name + "/Offset"),
                  helper.make_node("Add", [y + "/codes", y + "/offset"], [y], name=n.name + "/AddOffset")]
    g.ClearField("node")
    g.node.extend(casts + nodes)  # the casts first: the shared embedding reads the LM head's offsets too
    g.initializer.extend(extra)


def _symmetric_matmul(model, name: str, bits: int, block: int, accuracy_level: int) -> None:
    """MatMul ``name`` as symmetric MatMulNBits (default zero point: no zero-point table), fp16 scales on
    disk, blocks of ``block`` (or the largest divisor of K below it): the LM head at 8 bits (and so the
    tied embedding), and the LoRA branches (edgeft.compress.lora_branch) at ``--adapter-bits``.

    SmolLM2's tied table is Q8_0 in its GGUF (8-bit, blocks of 32): at 4 bits (HQQ) it cost +12.5 %
    perplexity on 4 SQuAD test contexts (16.30 vs FP32 14.48), at 8 bits in blocks of 64 -0.3 % (14.44);
    14 MB more, paid for by fp16 scales and no zero-point tables (module docstring).
    """
    import numpy as np
    from onnx import helper, numpy_helper as nh

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    node = next(n for n in g.node if n.name == name)
    w = nh.to_array(inits[node.input[1]]).astype(np.float32)  # (K, N)
    k, cols = w.shape
    bs = math.gcd(k, block)  # smaller blocks for a K the block does not divide
    if bs < 16:
        raise ModelError(f"{name}: K={k} is not a multiple of 16; use --int4-head int4 / --adapter merged")
    top = 2 ** (bits - 1) - 1  # codes - zero point in [-top, top]: 127 or 7
    blocks = w.T.reshape(cols, k // bs, bs)  # (N, nb, bs)
    scale = (np.abs(blocks).max(-1) / top).astype(np.float16)  # (N, nb), fp16 on disk
    sc = np.where(scale == 0, 1, scale.astype(np.float32))[..., None]
    codes = (np.clip(np.round(blocks / sc), -top, top) + top + 1).astype(np.uint8)  # default zero point 2^(bits-1)
    if bits == 4:  # two codes a byte, the first in the low nibble
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    base = name.replace("/", "_").strip("_")
    g.initializer.extend([nh.from_array(codes, f"{base}.q{bits}"), nh.from_array(scale, base + ".scales_fp16")])
    g.node.insert(0, helper.make_node("Cast", [base + ".scales_fp16"], [base + ".scales"], name=name + "/ScaleCast", to=1))
    # int8 activations too: with fp32 ones (accuracy_level 1) the 8-bit head took a slow path (10 vs 61 tok/s)
    q = helper.make_node("MatMulNBits", [node.input[0], f"{base}.q{bits}", base + ".scales"], list(node.output),
                         name=f"{name}_Q{bits}", domain="com.microsoft", K=k, N=cols, bits=bits, block_size=bs,
                         accuracy_level=accuracy_level)
    node.CopyFrom(q)


def _share_embedding(model) -> None:
    """Tied embeddings (the builder's Transpose(lm_head) → Gather): read the LM head's int4 codes instead."""
    import numpy as np
    from onnx import helper, numpy_helper as nh

    g = model.graph
    by_out = {o: n for n in g.node for o in n.output}
    gather = next((n for n in g.node if n.op_type == "Gather" and n.input[0] in by_out
                   and by_out[n.input[0]].op_type == "Transpose"), None)
    if gather is None:
        return  # untied embeddings stay as they are
    head = next((n for n in g.node if n.op_type == "MatMulNBits" and n.name.startswith("/lm_head/")), None)
    if head is None:
        return
    a = {x.name: helper.get_attribute_value(x) for x in head.attribute}
    k, vocab, bs = a["K"], a["N"], a["block_size"]
    nb = -(-k // bs)
    inits = {i.name: i for i in g.initializer}
    # One (vocab, nb) scale table for both: MatMulNBits takes it 2-D as well as flat (3.5 MB not stored twice)
    scales, bits = head.input[2], a["bits"]
    if scales in inits:
        inits[scales].CopyFrom(nh.from_array(nh.to_array(inits[scales]).reshape(vocab, nb), scales))
    e, y = "/model/embed_tokens", gather.output[0]
    extra = [nh.from_array(np.array([vocab, nb * bs * bits // 8], np.int64), e + "/codes_shape")]
    offset = next((n.input[1] for n in g.node if n.name == head.name + "/Offset"), None)
    codes_out = y if offset is None else e + "/codes"
    nodes = [helper.make_node("Reshape", [head.input[1], e + "/codes_shape"], [e + "/packed"], name=e + "/Reshape"),
             helper.make_node("GatherBlockQuantized", [e + "/packed", gather.input[1], scales, *head.input[3:4]],
                              [codes_out], name=e + "/GatherBlockQuantized", domain="com.microsoft", bits=bits,
                              block_size=bs, gather_axis=0, quantize_axis=1)]
    if offset is not None:  # + the HQQ offsets of each row's blocks, repeated over the block: (b, s, nb) → (b, s, K)
        extra += [nh.from_array(np.array([-1], np.int64), e + "/axes"),
                  nh.from_array(np.array([1, 1, 1, bs], np.int64), e + "/repeat"),
                  nh.from_array(np.array([0, 0, nb * bs], np.int64), e + "/flat")]
        nodes += [helper.make_node("Transpose", [offset], [e + "/rows"], name=e + "/OffsetRows", perm=[1, 0]),
                  helper.make_node("Gather", [e + "/rows", gather.input[1]], [e + "/off"], name=e + "/OffsetGather"),
                  helper.make_node("Unsqueeze", [e + "/off", e + "/axes"], [e + "/off1"], name=e + "/Unsqueeze"),
                  helper.make_node("Expand", [e + "/off1", e + "/repeat"], [e + "/off2"], name=e + "/Expand"),
                  helper.make_node("Reshape", [e + "/off2", e + "/flat"], [e + "/off3"], name=e + "/OffsetReshape"),
                  helper.make_node("Add", [e + "/codes", e + "/off3"], [y], name=e + "/Add")]
    if nb * bs != k:
        raise ModelError(f"hidden size {k} is not a multiple of --block-size {bs}; choose a block size dividing it")
    rest = [n for n in g.node if n is not gather and n.output[0] != gather.input[0]]
    casts = [n for n in rest if n.op_type == "Cast" and n.input[0] in inits]  # fp16 constants → fp32, first
    g.ClearField("node")
    g.node.extend(casts + nodes + [n for n in rest if n not in casts])
    g.initializer.extend(extra)


def _computed_rotary(model) -> None:
    """The builder's rotary tables (``cos_cache``/``sin_cache``, context x head_dim/2 fp32: 2.1 MB of SmolLM2's
    INT4 bundle) → Cos/Sin(positions x f), computed when the session folds constants (32 KB stored).
    The frequencies f are read off the tables (atan2 at position 1, then the fp32 neighbour that best
    reproduces every position); the tables stay stored unless the computed ones match within 1e-6
    (SmolLM2: 6e-8; onnxruntime's Cos/Sin of the same angles: 1.2e-7 from the builder's)."""
    import numpy as np
    from onnx import helper, numpy_helper as nh

    inits = {i.name: i for i in model.graph.initializer}
    if "cos_cache" not in inits or "sin_cache" not in inits:
        return
    cos, sin = (nh.to_array(inits[k]).astype(np.float32) for k in ("cos_cache", "sin_cache"))
    if cos.ndim != 2 or cos.shape != sin.shape or len(cos) < 2 or np.abs(cos[0] - 1).max() or np.abs(sin[0]).max():
        return  # a scaled RoPE (mscale != 1) or another layout: keep the tables
    t = np.arange(len(cos), dtype=np.float32)
    f = np.arctan2(sin[1], cos[1]).astype(np.float32)
    if (f <= 0).any():
        return
    for i in range(f.size):  # the 129 fp32 values around the estimate, one column at a time (0.6 s for SmolLM2)
        cand = (f[i:i + 1].view(np.int32) + np.arange(-64, 65, dtype=np.int32)).view(np.float32)
        angle = t[None] * cand[:, None]
        f[i] = cand[(np.abs(np.cos(angle) - cos[:, i]) + np.abs(np.sin(angle) - sin[:, i])).max(1).argmin()]
    angle = t[:, None] * f[None]
    if max(np.abs(np.cos(angle) - cos).max(), np.abs(np.sin(angle) - sin).max()) > 1e-6:
        return
    r, g = "/rotary_tables", model.graph
    for name in ("cos_cache", "sin_cache"):
        g.initializer.remove(inits[name])
    g.initializer.extend([nh.from_array(t[:, None], r + "/positions"), nh.from_array(f[None], r + "/frequencies")])
    for n in (helper.make_node("Cos", [r + "/angles"], ["cos_cache"], name=r + "/Cos"),
              helper.make_node("Sin", [r + "/angles"], ["sin_cache"], name=r + "/Sin"),
              helper.make_node("Mul", [r + "/positions", r + "/frequencies"], [r + "/angles"], name=r + "/Mul")):
        g.node.insert(0, n)  # (context, 1) x (1, head_dim/2), first in the graph


def _drop_unused(model) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(keep)


def _opset(model: Path) -> int:
    import onnx

    m = onnx.load(str(model), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)


def _fingerprint(model_dir: Path) -> str:
    try:
        return json.loads((model_dir / "metrics.json").read_text(encoding="utf-8")).get("data_fingerprint", "")
    except (OSError, ValueError):
        return ""
