"""INT4 bundles of a LoRA fine-tune: the base weights at 4 bits, the adapter beside them at 4 bits too.

Measured on the default generative build (SmolLM2-135M-Instruct, LoRA r=16 on the shipped SQuAD
sample, `benchmarks/build_lm.py`): INT4 of the *merged* weights lost what the fine-tune taught
(token F1 57.5 → 19.0, greedy agreement with FP32 1 %, reply perplexity 1.97 → 6.64) while INT8 kept
it (57.4). The low-rank update s·B·A is smaller than one 4-bit step of the weight it is added to,
so rounding the sum mostly rounds it away. So the merged weight is split back: the base weight
W − s·B·A (for SmolLM2 that is the GGUF's own 4-bit grid again, which INT4 keeps almost exactly)
goes to 4 bits with the rest of the graph, and the adapter becomes a side branch
y = x·W_base + (x·Aᵀ)·(s·Bᵀ) of two small MatMulNBits per projection (packed q/k/v projections
share one branch with a block-diagonal B). Rounding the update *by itself* keeps it: at 8 bits the branch
made the bundle 104.8 MB, over the 100 MB target; at 4 bits (symmetric, blocks of 32 or of the rank), with
the rotary tables computed rather than stored (export_lm), the same build measured 99.9 MB of model files
and token F1 58.04 against FP32's 57.84 (benchmarks/results/build_lm.json; ``--adapter-bits 8``: the old branch).

Only onnxruntime-genai builder graphs (Llama family: ``model.layers.N.attn.qkv_proj.MatMul.weight``
and the like) are split; every projection's weight is first checked against the merged checkpoint,
and anything that does not match (another route, another layout) keeps the merged weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PEFT_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
HF_MODULE = re.compile(r"model\.layers\.(?P<i>\d+)\.(?P<block>self_attn|mlp)\.(?P<proj>\w+_proj)")
QKV = ("q_proj", "k_proj", "v_proj")  # their order in the builder's packed qkv_proj


def read_adapter(model_dir: Path) -> dict[str, tuple] | None:
    """{HF module path: (A (r, in), B (out, r), scale)} of ``model_dir/adapter`` (what edgeft train saves), or None."""
    folder = Path(model_dir) / "adapter"
    if not (folder / "adapter_config.json").is_file() or not (folder / "adapter_model.safetensors").is_file():
        return None
    from safetensors.numpy import load_file

    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA" or config.get("fan_in_fan_out") or config.get("use_dora"):
        return None
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    parts: dict[str, dict[str, object]] = {}
    for key, value in tensors.items():
        m = PEFT_KEY.fullmatch(key)
        if m:
            parts.setdefault(m["module"], {})[m["ab"]] = value
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return None  # per-module ranks: not what edgeft train writes; keep the merged weights
    r = config["r"]
    scale = config["lora_alpha"] / (r ** 0.5 if config.get("use_rslora") else r)  # as peft's LoraLayer.scaling
    out = {module: (ab["A"], ab["B"], scale) for module, ab in parts.items() if "A" in ab and "B" in ab}
    return out or None


def split_adapter(model, model_dir: Path, adapter: dict[str, tuple]) -> list[str]:
    """Rewrite ``model`` (an FP32 builder graph, in memory): each projection an adapter touched keeps
    W − s·B·A and gains the branch. Returns the branch MatMul names (for 8 bits), [] when nothing matched."""
    import numpy as np
    from onnx import helper, numpy_helper as nh
    from safetensors.numpy import load_file

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    merged = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        merged.update(load_file(str(f)))
    groups: dict[str, list[tuple[int, np.ndarray, np.ndarray, float]]] = {}  # initializer → [(column, A, B, s)]
    for module, (a, b, s) in adapter.items():
        m = HF_MODULE.fullmatch(module)
        if not m or f"{module}.weight" not in merged:
            return []
        i, proj = m["i"], m["proj"]
        own = f"model.layers.{i}.{'attn' if m['block'] == 'self_attn' else 'mlp'}.{proj}.MatMul.weight"
        packed = f"model.layers.{i}.attn.qkv_proj.MatMul.weight"
        if own in inits:
            name, col = own, 0
        elif proj in QKV and packed in inits:
            before = QKV[:QKV.index(proj)]
            name = packed
            col = sum(merged[f"model.layers.{i}.self_attn.{p}.weight"].shape[0] for p in before)
        else:
            return []
        w = nh.to_array(inits[name])
        part = w[:, col:col + b.shape[0]]
        if part.shape != merged[f"{module}.weight"].T.shape or not np.allclose(part, merged[f"{module}.weight"].T, atol=1e-6):
            return []  # not the layout this module expects: keep the merged weights
        groups.setdefault(name, []).append((col, a, b, s))

    branches, extra, new_base = [], [], {}
    by_weight = {n.input[1]: n for n in g.node if n.op_type == "MatMul" and len(n.input) == 2}
    added: dict[str, list] = {}
    for name, mods in groups.items():
        node = by_weight.get(name)
        if node is None:
            return []
        w = nh.to_array(inits[name]).astype(np.float64)  # (K, N)
        rank = sum(a.shape[0] for _, a, _, _ in mods)
        a_t = np.zeros((w.shape[0], rank))
        b_bd = np.zeros((rank, w.shape[1]))
        r0 = 0
        for col, a, b, s in mods:
            r = a.shape[0]
            a_t[:, r0:r0 + r] = a.T
            b_bd[r0:r0 + r, col:col + b.shape[0]] = s * b.T
            r0 += r
        new_base[name] = (w - a_t @ b_bd).astype(np.float32)
        y, base = node.output[0], node.name
        extra += [nh.from_array(a_t.astype(np.float32), f"{name}.lora_A"), nh.from_array(b_bd.astype(np.float32), f"{name}.lora_B")]
        added[node.name] = [helper.make_node("MatMul", [node.input[0], f"{name}.lora_A"], [y + "/lora_a"], name=base + "/LoraA"),
                            helper.make_node("MatMul", [y + "/lora_a", f"{name}.lora_B"], [y + "/lora"], name=base + "/LoraB"),
                            helper.make_node("Add", [y + "/base", y + "/lora"], [y], name=base + "/AddLora")]
        branches += [base + "/LoraA", base + "/LoraB"]
    for name, w in new_base.items():
        inits[name].CopyFrom(nh.from_array(w, name))
    nodes = []
    for n in g.node:
        if n.name in added:
            n.output[0] = n.output[0] + "/base"
            nodes += [n, *added[n.name]]
        else:
            nodes.append(n)
    g.ClearField("node")
    g.node.extend(nodes)
    g.initializer.extend(extra)
    return branches
