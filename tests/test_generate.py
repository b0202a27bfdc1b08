"""Text generation end to end on tiny random Llama and GPT-2 models: export (both routes), INT8/INT4,
parity with PyTorch, and the torch-free Generator (sampling, stop strings, streaming, chat, guards)."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_models import make_tiny_lm
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.compress.export_lm import ExportLMConfig, export_lm
from edgeft.errors import BundleError, ConfigError
from edgeft.runtime.generate import Generator

TEXTS = ["the cat sat on the mat", "a dog and a cat in the house"]


@pytest.fixture(scope="module")
def lm_bundles(tmp_path_factory):
    """{(arch, weights): bundle path} for a tiny Llama (builder route) and a tiny GPT-2 (exporter route)."""
    root = tmp_path_factory.mktemp("lm")
    out = {}
    for arch, weights in (("llama", "fp32"), ("llama", "int4"), ("llama", "int8"), ("gpt2", "int4")):
        src = root / arch
        if not src.exists():
            make_tiny_lm(src, arch)
        r = export_lm(src, root / f"{arch}-{weights}", ExportLMConfig(weights=weights), eval_texts=TEXTS)
        out[arch, weights] = r
    return out


@pytest.mark.parametrize("arch, weights, route", [("llama", "fp32", "builder"), ("llama", "int4", "builder"),
                                                  ("llama", "int8", "builder"), ("gpt2", "int4", "exporter")])
def test_export_is_faithful_to_pytorch(lm_bundles, arch, weights, route):
    r = lm_bundles[arch, weights]
    m = json.loads((r.bundle / "edgeft.json").read_text())
    assert m["task"] == "text-generation" and m["export"]["route"] == route
    assert r.parity["max_abs_diff"] < 1e-3
    assert r.parity["greedy_identical"] == r.parity["greedy_prompts"] == 4 and r.parity["new_tokens"] == 16
    assert set(m["files"]) == {"model.onnx", "model.onnx.data", "tokenizer.json"}
    if weights == "fp32":  # its own reference: teacher-forced argmax, position by position, is its greedy reply
        assert r.metrics["top1_agreement"] == r.metrics["greedy_token_agreement"] == 1.0
    else:
        assert m["quantization"]["weights"] == weights and m["quantization"]["format"] == "MatMulNBits"
        assert abs(r.metrics["variant"]["change"]) < 0.25  # perplexity within 25 % on a random tiny model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_lm_head_runs_only_on_the_positions_asked_for(lm_bundles, arch):
    import numpy as np

    g = Generator.load(lm_bundles[arch, "int4"].bundle, threads=1)
    assert "logits_positions" in {i.name for i in g.session.get_inputs()}
    ids = g.encode("the cat sat on the mat")
    full, _ = g.forward(ids, g.empty_cache())
    last, _ = g.forward(ids, g.empty_cache(), last=True)  # what generation asks for: the next token's logits
    assert full.shape == (len(ids), last.shape[1]) and last.shape[0] == 1
    np.testing.assert_allclose(last[0], full[-1], atol=1e-5)


def test_int4_is_smaller_than_int8_smaller_than_fp32(lm_bundles):
    size = {w: lm_bundles["llama", w].manifest.files["model.onnx.data"]["size"] for w in ("fp32", "int8", "int4")}
    assert size["int4"] < size["int8"] < size["fp32"]



def test_quantized_bundles_compute_the_rotary_tables_the_builder_stored(lm_bundles):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper as nh

    from edgeft.compress.export_lm import _computed_rotary

    fp32 = onnx.load(str(lm_bundles["llama", "fp32"].bundle / "model.onnx"))
    stored = {i.name: nh.to_array(i) for i in fp32.graph.initializer if i.name in ("cos_cache", "sin_cache")}
    assert len(stored) == 2  # the builder's FP32 graph keeps them
    _computed_rotary(fp32)
    nodes = [n for n in fp32.graph.node if n.name.startswith("/rotary_tables/")]
    consts = [i for i in fp32.graph.initializer if i.name.startswith("/rotary_tables/")]
    assert {"cos_cache", "sin_cache"}.isdisjoint(i.name for i in fp32.graph.initializer) and len(nodes) == 3
    graph = helper.make_graph(nodes, "rotary", [], [helper.make_tensor_value_info(k, 1, None) for k in stored], consts)
    computed = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                    .SerializeToString()).run(list(stored), {})
    for (name, table), got in zip(stored.items(), computed):
        assert got.shape == table.shape and np.abs(got - table).max() < 1e-6, name
    int4 = onnx.load(str(lm_bundles["llama", "int4"].bundle / "model.onnx"), load_external_data=False)
    assert "cos_cache" not in {i.name for i in int4.graph.initializer}


@pytest.mark.parametrize("bits", [4, 8])
def test_symmetric_matmul_codes_read_back_by_onnxruntime(bits):
    """The LM head (8 bits) and the LoRA branches (4 bits by default) as MatMulNBits: onnxruntime's product
    is x @ w within the rounding of a block's absmax grid (4 bits: 7 steps each side; 8 bits: 127)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper as nh

    from edgeft.compress.export_lm import _symmetric_matmul

    rng = np.random.default_rng(0)
    k, n = 96, 40
    w, x = rng.normal(size=(k, n)).astype(np.float32), rng.normal(size=(3, k)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/p/MatMul")], "p",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [nh.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    _symmetric_matmul(model, "/p/MatMul", bits, 32, accuracy_level=1)
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    codes = next(nh.to_array(i) for i in model.graph.initializer if i.name == node.input[1])
    assert codes.shape == (n, k // 32, 32 * bits // 8)  # 4 bits: two codes a byte
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    blocks = w.T.reshape(n, -1, 32)
    top = 2 ** (bits - 1) - 1
    step = (np.abs(blocks).max(-1, keepdims=True) / top).astype(np.float16).astype(np.float32)  # fp16 on disk
    dequant = (np.clip(np.round(blocks / step), -top, top) * step).reshape(n, k).T  # what the codes stand for
    np.testing.assert_allclose(y, x @ dequant, rtol=1e-3, atol=1e-3)
    error = np.linalg.norm(y - x @ w) / np.linalg.norm(x @ w)
    assert error < (0.12 if bits == 4 else 0.01)  # measured: 0.09 / 0.006 on Gaussian weights

def test_generate_without_torch_greedy_stream_equals_generate(lm_bundles):
    g = Generator.load(lm_bundles["llama", "int4"].bundle, threads=1)
    whole = g.generate("the cat", max_new_tokens=12, ignore_eos=True)
    s = g.stream("the cat", max_new_tokens=12, ignore_eos=True)
    assert "".join(s) == whole.text and s.result.token_ids == whole.token_ids and len(whole.token_ids) == 12


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generation_over_the_in_place_cache_equals_the_copying_forward(lm_bundles, arch):
    """The builder graph (llama) decodes into one bound cache buffer; its tokens and logits are the ones
    ``forward`` gives over a cache copied on every token (and GPT-2's graph keeps that loop)."""
    import numpy as np

    g = Generator.load(lm_bundles[arch, "int4"].bundle, threads=1)
    ids = g.encode("the cat sat on the mat")
    logits, step = g._decoder(ids, len(ids) + 20)
    ref, past = g.forward(ids, g.empty_cache(), last=True)
    tokens = []
    for _ in range(20):
        np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-5)
        tokens.append(int(ref[-1].argmax()))
        logits, (ref, past) = step(tokens[-1]), g.forward(tokens[-1:], past, last=True)
    assert g.generate(ids, max_new_tokens=20, ignore_eos=True).token_ids == tokens


def test_seeded_sampling_is_reproducible_and_seed_dependent(lm_bundles):
    g = Generator.load(lm_bundles["llama", "fp32"].bundle)
    a = [g.generate("the cat", max_new_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=s, ignore_eos=True).token_ids
         for s in (1, 1, 2)]
    assert a[0] == a[1] and a[0] != a[2]


def test_stop_string_ends_the_reply_and_is_not_included(lm_bundles):
    g = Generator.load(lm_bundles["llama", "fp32"].bundle)
    full = g.generate("the cat", max_new_tokens=16, ignore_eos=True).text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    r = g.generate("the cat", max_new_tokens=16, ignore_eos=True, stop=[stop])
    assert r.finish_reason == "stop" and r.text == full[: full.find(stop)] and stop not in r.text


def test_chat_template_is_applied(lm_bundles):
    g = Generator.load(lm_bundles["llama", "fp32"].bundle)
    text = g.render([{"role": "user", "content": "hi"}])
    assert text == "<|user|> hi <|assistant|> "
    assert g.encode([{"role": "user", "content": "hi"}]) == g.tokenizer.encode(text, add_special_tokens=False).ids


def test_context_length_guard_names_the_numbers(lm_bundles):
    g = Generator.load(lm_bundles["llama", "fp32"].bundle)
    with pytest.raises(ConfigError, match=r"the prompt has 4 tokens and --max-new-tokens is 200: 204 > the model's "
                                          r"context length of 128 tokens"):
        g.generate("the cat", max_new_tokens=200)


def test_tampered_external_data_is_refused(lm_bundles, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(lm_bundles["llama", "int4"].bundle, b)
    data = bytearray((b / "model.onnx.data").read_bytes())
    data[100] ^= 1
    (b / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx.data has sha256 .* the file was modified"):
        Generator.load(b)


def test_cli_generate_exit_code_and_json(lm_bundles, tmp_path):
    out = tmp_path / "g.json"
    r = CliRunner().invoke(app, ["generate", str(lm_bundles["llama", "int4"].bundle), "the cat", "--max-new-tokens", "5",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["prompt"] == "the cat" and 1 <= len(data["token_ids"]) <= 5 and data["text"] in r.output



def test_cli_export_lm_takes_every_setting_as_a_flag(lm_bundles, tmp_path):
    src = lm_bundles["llama", "fp32"].manifest.base_model
    r = CliRunner().invoke(app, ["export-lm", src, "--out", str(tmp_path / "b"), "--weights", "int8",
                                 "--parity-tokens", "4", "-q"])
    assert r.exit_code == 0, r.output
    assert "exported" in r.output and json.loads((tmp_path / "b" / "edgeft.json").read_text())["quantization"]["weights"] == "int8"
    bad = CliRunner().invoke(app, ["export-lm", src, "--out", str(tmp_path / "c"), "--adapter-bits", "5"])
    assert bad.exit_code != 0 and "--adapter-bits must be one of 4 | 8" in bad.output and "Traceback" not in bad.output

def test_cli_chat_keeps_history_and_resets(lm_bundles):
    r = CliRunner().invoke(app, ["chat", str(lm_bundles["llama", "fp32"].bundle), "--max-new-tokens", "3"],
                           input="hello\n/reset\nhi\n/exit\n")
    assert r.exit_code == 0, r.output
    assert r.output.count("> ") == 4 and "(history cleared)" in r.output


def test_runtime_generate_without_torch(lm_bundles, tmp_path):
    from test_runtime_isolation import BLOCKER
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site), "EDGEFT_BLOCK_LOG": str(tmp_path / "log")}
    proc = subprocess.run([sys.executable, "-m", "edgeft", "generate", str(lm_bundles["gpt2", "int4"].bundle), "the cat",
                           "--max-new-tokens", "4", "--stream"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "generated " in proc.stderr and not (tmp_path / "log").exists()


@pytest.mark.embedded
@pytest.mark.slow
def test_embedded_smollm2_int4_bundle(tmp_path, embedded_lm):
    r = export_lm(embedded_lm, tmp_path / "smol", ExportLMConfig(weights="int4"), eval_texts=TEXTS)
    size = sum(f["size"] for f in r.manifest.files.values())
    # measured: 97.7 MB (int4 projections, 8-bit tied head/embedding, rotary tables computed, tokenizer 1.6 MB),
    # FP32 parity 4/4
    assert size <= 100e6 and r.parity["greedy_identical"] == 4
    assert r.metrics["variant"]["change"] <= 0.10  # perplexity vs FP32: -0.2 % on 8 SQuAD test contexts
    reply = Generator.load(r.bundle).generate([{"role": "user", "content": "What is the capital of France?"}],
                                              max_new_tokens=16)
    # FP32 answers "The capital of France is Paris."; the quantized bundles' reply to one prompt flips with
    # near-ties from export to export (README, INT4 quality), so the check is on agreement with FP32 and on a
    # real reply, not on the trivia answer. Agreement is teacher-forced (4 prompts x 16 tokens after FP32's prefix): 0.97 (62/64) on an AMD EPYC
    # where free-running greedy agreement reads 0.375 (0.61 on an earlier machine: one early near-tie flips it).
    assert r.metrics["top1_agreement"] >= 0.9
    assert reply.text.strip() and len(reply.token_ids) <= 16
