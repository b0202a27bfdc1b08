"""Security properties (SECURITY.md), each checked two ways where it can be: a scan of edgeft's
own source for the dangerous call, and a hostile input that would do harm if the property broke.

- weights load from safetensors only: a pickled ``pytorch_model.bin`` whose unpickling would
  create a file is refused, and the file is never created;
- remote model code runs only with ``--trust-remote-code``: a model folder whose config points at
  Python code is refused, and the code never runs;
- no shell: subprocesses get argument lists, never ``shell=True`` or a command string;
- a bundle is verified (format version, file names inside the bundle, size and sha256 of every
  file) before any parser — onnxruntime, onnx, our own ONNX reader — sees its bytes.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import pytest
from bundles import copy_bundle
from tiny_models import DATA
from typer.testing import CliRunner

from edgeft.cli import app

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = [p for folder in ("edgeft", "train", "compress", "runtime") for p in sorted((ROOT / folder).rglob("*.py"))]
SST2 = DATA / "sst2_300.jsonl"
runner = CliRunner()


# ---------------------------------------------------------------------------------------------
# The source scan
# ---------------------------------------------------------------------------------------------

def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(call: ast.Call, name: str):
    """The keyword's value as a Python constant, 'dynamic' for an expression, None when absent."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "dynamic"
    return None


def violations(path: Path) -> list[str]:
    """Every dangerous construct in one source file, as 'file:line: what'."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = lambda node: f"{path.relative_to(ROOT)}:{node.lineno}"  # noqa: E731
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal"):
                found.append(f"{where(node)}: imports {name} (loading it runs code)")
    for call, func in calls(tree):
        if func == "torch.load" and keyword(call, "weights_only") is not True:
            found.append(f"{where(call)}: torch.load without weights_only=True")
        if func.endswith("from_pretrained") and not any(k in func for k in ("Config", "Tokenizer")):
            gguf = any(k.arg == "gguf_file" for k in call.keywords)  # a GGUF file holds tensors only, no pickle
            if keyword(call, "use_safetensors") is not True and not gguf:
                found.append(f"{where(call)}: {func}(...) without use_safetensors=True (would accept pickled .bin)")
        if keyword(call, "trust_remote_code") is True:
            found.append(f"{where(call)}: trust_remote_code=True hard-coded (must come from --trust-remote-code)")
        if func in ("os.system", "os.popen", "eval", "exec", "subprocess.getoutput", "subprocess.getstatusoutput"):
            found.append(f"{where(call)}: {func}(...)")
        if func.startswith("subprocess.") or func.endswith("Popen"):
            if keyword(call, "shell") not in (None, False):
                found.append(f"{where(call)}: {func}(..., shell=...)")
            if call.args and isinstance(call.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(f"{where(call)}: {func} with a command string (pass a list of arguments)")
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    """The scanner itself: each rule fires on a bad line (a scan that finds nothing proves nothing)."""
    bad = ROOT / "edgeft" / "_scan_probe.py"
    bad.write_text("import pickle\nimport torch, subprocess, os\ntorch.load(p)\nM.from_pretrained(p)\n"
                   "AutoConfig.from_pretrained(p)\nM.from_pretrained(p, use_safetensors=True, trust_remote_code=True)\n"
                   "subprocess.run('ls ' + x, shell=True)\nos.system(cmd)\n")
    try:
        found = violations(bad)
    finally:
        bad.unlink()
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports pickle (loading it runs code)",
        "torch.load without weights_only=True",
        "M.from_pretrained(...) without use_safetensors=True (would accept pickled .bin)",
        "trust_remote_code=True hard-coded (must come from --trust-remote-code)",
        "subprocess.run(..., shell=...)",
        "subprocess.run with a command string (pass a list of arguments)",
        "os.system(...)",
    ]


def test_source_has_no_pickle_loading_no_forced_remote_code_and_no_shell():
    assert len(PACKAGE) > 20
    found = [v for path in PACKAGE for v in violations(path)]
    assert found == [], "\n".join(found)


# ---------------------------------------------------------------------------------------------
# Hostile model folders
# ---------------------------------------------------------------------------------------------

class _CreatesFile:
    """Unpickling this creates a file: proof that code ran while 'loading weights'."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def pickled_model(src: Path, dst: Path, marker: Path) -> Path:
    """A copy of a tiny model whose only weights are a hostile pickle (pytorch_model.bin)."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    (dst / "pytorch_model.bin").write_bytes(pickle.dumps(_CreatesFile(str(marker))))
    return dst


@pytest.mark.parametrize("command", ["train", "export", "trim-vocab"])
def test_pickled_weights_are_refused_and_never_unpickled(tiny_models, tmp_path, command):
    marker = tmp_path / "pwned"
    model = pickled_model(tiny_models(), tmp_path / "model", marker)
    args = {"train": ["train", "--model", model, "--data", SST2, "--out", tmp_path / "o", "--max-steps", "1"],
            "export": ["export", model, "--out", tmp_path / "b"],
            "trim-vocab": ["trim-vocab", model, "--data", SST2, "--out", tmp_path / "t"]}[command]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "safetensors" in result.output and "Traceback" not in result.output
    assert not marker.exists(), "the pickle was loaded: code in a weights file ran"


@pytest.mark.parametrize("model_type", ["evil-bert", "bert"], ids=["custom-type", "known-type"])
def test_remote_code_never_runs_unless_asked(tiny_models, tmp_path, model_type):
    """A config pointing at Python code in the folder (auto_map): for a type transformers does not
    know, the model is refused; for a known type, the built-in class is used. The code never runs."""
    marker = tmp_path / "pwned"
    model = Path(shutil.copytree(tiny_models(), tmp_path / "model"))
    (model / "evil_config.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                          "from transformers import BertConfig\n"
                                          f"class EvilConfig(BertConfig):\n    model_type = {model_type!r}\n")
    config = json.loads((model / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil_config.EvilConfig"})
    (model / "config.json").write_text(json.dumps(config))
    for command in (["train", "--model", model, "--data", SST2, "--out", tmp_path / "o", "--max-steps", "1"],
                    ["export", model, "--out", tmp_path / "b"],
                    ["trim-vocab", model, "--data", SST2, "--out", tmp_path / "t"]):
        result = runner.invoke(app, [str(a) for a in command])
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        if model_type != "bert":
            assert result.exit_code == 2, result.output
            fix = {"train": "--trust-remote-code", "export": "no trust_remote_code", "trim-vocab": "runs no code"}
            assert fix[command[0]] in result.output, result.output
        assert not marker.exists(), f"`edgeft {command[0]}` ran the model folder's Python code without being asked"


# ---------------------------------------------------------------------------------------------
# Verification before parsing
# ---------------------------------------------------------------------------------------------

def flip_model_byte(bundle: Path) -> None:
    blob = bytearray((bundle / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(blob))


@pytest.mark.parametrize("command", ["predict", "eval", "inspect", "bench", "quantize"])
def test_no_parser_sees_a_tampered_model(cls_bundle, tmp_path, monkeypatch, command):
    """Every command that reads a bundle refuses a changed model.onnx by its hash, before onnxruntime,
    onnx or edgeft's own ONNX reader (inspect) touches the bytes."""
    import onnx
    import onnxruntime

    import edgeft.runtime.inspect as inspect_module

    def parsed(*args, **kwargs):
        raise AssertionError("a parser saw the bytes of a bundle that fails verification")

    for owner, name in ((onnxruntime, "InferenceSession"), (onnx, "load"), (onnx, "load_model"),
                        (onnx.checker, "check_model"), (inspect_module, "describe_onnx")):
        monkeypatch.setattr(owner, name, parsed)
    b = copy_bundle(cls_bundle, tmp_path / "b")
    flip_model_byte(b)
    args = {"predict": ["predict", b, "hello"], "eval": ["eval", b, "--data", SST2], "inspect": ["inspect", b],
            "bench": ["bench", b, "--runs", "1", "--warmup", "0"],
            "quantize": ["quantize", b, "--data", SST2, "--out", tmp_path / "q", "--mode", "dynamic"]}[command]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert f"{b}: model.onnx has sha256" in " ".join(result.output.split()), result.output
    assert not (tmp_path / "q").exists()


def test_manifest_names_stay_inside_the_bundle(cls_bundle, tmp_path):
    """Names are checked before any file is opened: a listed '../secret' is never read, even to hash it."""
    from edgeft.errors import BundleError
    from edgeft.runtime.bundle import check_name, load_bundle

    for name in ("../secret", "/etc/shadow", "a/../../secret", "..\\secret", "C:secret", "x\x00y", ""):
        with pytest.raises(BundleError, match="outside the bundle folder"):
            check_name(name, "edgeft.json")
    for name in ("model.onnx", "sub/vocab.txt", "a..b"):
        check_name(name, "edgeft.json")
    b = copy_bundle(cls_bundle, tmp_path / "b")
    secret = tmp_path / "secret"
    secret.write_text("x")
    data = json.loads((b / "edgeft.json").read_text())
    data["files"]["../secret"] = {"sha256": "0" * 64, "size": 1}
    (b / "edgeft.json").write_text(json.dumps(data))
    secret.chmod(0)  # reading it would fail differently (as non-root); the name check comes first
    with pytest.raises(BundleError, match="names the file '../secret', which is outside the bundle folder"):
        load_bundle(b)
