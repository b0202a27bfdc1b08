"""A bundle that fails verification is refused, with a message naming the file and what differs,
before onnxruntime ever sees the model."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from bundles import copy_bundle, rewrite_manifest

from edgeft.errors import BundleError
from edgeft.runtime.bundle import load_bundle
from edgeft.runtime.manifest import file_digest
from edgeft.runtime.predictor import Predictor

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules


def flip_byte(b: Path) -> None:  # same size, different content
    path = b / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def listed_size_off(b: Path) -> None:
    files = json.loads((b / "edgeft.json").read_text())["files"]
    files["tokenizer.json"]["size"] = 12345
    rewrite_manifest(b, files=files)


def listed_sha_off(b: Path) -> None:
    files = json.loads((b / "edgeft.json").read_text())["files"]
    files["model.onnx"]["sha256"] = "0" * 64
    rewrite_manifest(b, files=files)


def list_file(name: str):
    def mutate(b: Path) -> None:
        files = json.loads((b / "edgeft.json").read_text())["files"]
        files[name] = {"sha256": "0" * 64, "size": 1}
        rewrite_manifest(b, files=files)
    return mutate


def symlink_out(b: Path) -> None:
    outside = b.parent / "outside.txt"
    outside.write_text("secret")
    (b / "link.txt").symlink_to(outside)
    files = json.loads((b / "edgeft.json").read_text())["files"]
    files["link.txt"] = file_digest(outside)
    rewrite_manifest(b, files=files)


def garbage_model_rehashed(b: Path) -> None:
    """Hashes match, but the model is not ONNX: onnxruntime's refusal becomes a BundleError."""
    (b / "model.onnx").write_bytes(b"not an onnx model")
    files = json.loads((b / "edgeft.json").read_text())["files"]
    files["model.onnx"] = file_digest(b / "model.onnx")
    rewrite_manifest(b, files=files)


# (case id, mutation of a fresh copy of the bundle, fragment the error must contain)
TAMPER_CASES = [
    ("one-byte-in-model", flip_byte, "model.onnx has sha256"),
    ("manifest-size-edited", listed_size_off, "bytes but the manifest says 12345"),
    ("manifest-sha-edited", listed_sha_off, "model.onnx has sha256"),
    ("model-missing", lambda b: (b / "model.onnx").unlink(), "model.onnx is missing"),
    ("manifest-missing", lambda b: (b / "edgeft.json").unlink(), "has no edgeft.json: not a bundle"),
    ("future-version", lambda b: rewrite_manifest(b, format_version=2),
     "format version 2, but this edgeft reads up to version 1: upgrade edgeft"),
    ("version-zero", lambda b: rewrite_manifest(b, format_version=0), "supported versions are 1..1"),
    ("version-missing", lambda b: rewrite_manifest(b, format_version=None), "no integer format_version"),
    ("version-string", lambda b: rewrite_manifest(b, format_version="1"), "no integer format_version (found '1')"),
    ("dotdot-name", list_file("../x"), "names the file '../x', which is outside the bundle folder"),
    ("absolute-name", list_file("/etc/passwd"), "names the file '/etc/passwd', which is outside the bundle folder"),
    ("backslash-name", list_file("..\\x"), "outside the bundle folder"),
    ("symlink-out", symlink_out, "resolves outside the bundle folder"),
    ("not-json", lambda b: (b / "edgeft.json").write_text("{not json"), "edgeft.json is not valid JSON"),
    ("json-list", lambda b: (b / "edgeft.json").write_text("[1, 2]"), "must hold a JSON object, not list"),
    ("key-missing", lambda b: rewrite_manifest(b, pad_token_id=None), "incomplete: missing pad_token_id"),
    ("bad-types", lambda b: rewrite_manifest(b, max_length="64", task="summarization"),
     ("task 'summarization' is not one of ['text-classification', 'token-classification', 'question-answering', "
      "'text-generation']; "
      "max_length must be an integer > 1, not '64'")),
    ("unknown-input", lambda b: rewrite_manifest(b, inputs=["input_ids", "pixel_values"]), "inputs must include"),
    ("label-removed", lambda b: rewrite_manifest(b, labels=["negative"]),
     "a text-classification manifest with 1 labels needs rank 2 ending in 1"),
    ("input-dropped", lambda b: rewrite_manifest(b, inputs=["input_ids", "attention_mask"]),
     "the model's inputs are ['attention_mask', 'input_ids', 'token_type_ids'] but the manifest lists"),
    ("garbage-model", garbage_model_rehashed, "onnxruntime cannot load model.onnx"),
    ("onnxruntime-too-old", lambda b: rewrite_manifest(b, min_onnxruntime="99.1"),
     "needs onnxruntime ≥ 99.1, but 1."),
]


@pytest.mark.parametrize("mutate, message", [c[1:] for c in TAMPER_CASES], ids=[c[0] for c in TAMPER_CASES])
def test_tampered_folder_is_refused(cls_bundle, tmp_path, mutate, message):
    b = copy_bundle(cls_bundle, tmp_path / "b")
    mutate(b)
    with pytest.raises(BundleError) as err:
        Predictor.load(b)
    assert message in str(err.value)


def test_verification_runs_before_any_session(cls_bundle, tmp_path, monkeypatch):
    import onnxruntime

    def no_session(*args, **kwargs):
        raise AssertionError("an InferenceSession was created for a tampered bundle")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    b = copy_bundle(cls_bundle, tmp_path / "b")
    flip_byte(b)
    with pytest.raises(BundleError, match="model.onnx has sha256"):
        Predictor.load(b)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="bundle not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(BundleError, match="neither a bundle folder nor a .zip"):
        load_bundle(tmp_path / "x.txt")


def zip_bundle(src: Path, dst: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, prefix + f.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return dst


@pytest.mark.parametrize("prefix", ["", "my-bundle/"], ids=["root", "one-folder"])
def test_zip_bundle_predicts_like_folder(cls_bundle, tmp_path, prefix):
    z = zip_bundle(cls_bundle, tmp_path / "b.zip", prefix)
    texts = ["a warm and funny film", "", "bad"]
    assert Predictor.load(z).predict(texts) == Predictor.load(cls_bundle).predict(texts)


ZIP_CASES = [
    ("zip-slip-dotdot", {"../evil.txt": b"x"}, "names the file '../evil.txt', which is outside the bundle folder"),
    ("zip-slip-absolute", {"/tmp/evil.txt": b"x"}, "names the file '/tmp/evil.txt', which is outside"),
    ("zip-slip-nested", {"a/../../evil.txt": b"x"}, "outside the bundle folder"),
]


@pytest.mark.parametrize("extra, message", [c[1:] for c in ZIP_CASES], ids=[c[0] for c in ZIP_CASES])
def test_zip_slip_is_refused(cls_bundle, tmp_path, extra, message):
    z = zip_bundle(cls_bundle, tmp_path / "b.zip", extra=extra)
    with pytest.raises(BundleError) as err:
        load_bundle(z)
    assert message in str(err.value)


def test_zip_member_size_and_bomb_guard(cls_bundle, tmp_path):
    b = copy_bundle(cls_bundle, tmp_path / "b")
    size = (b / "tokenizer.json").stat().st_size
    (b / "tokenizer.json").write_bytes((b / "tokenizer.json").read_bytes() + b" " * 10_000)  # grown, not re-hashed
    z = zip_bundle(b, tmp_path / "b.zip")
    with pytest.raises(BundleError, match=f"tokenizer.json declares {size + 10_000} bytes but the manifest says {size}"):
        load_bundle(z)
    ok = zip_bundle(cls_bundle, tmp_path / "ok.zip")
    with pytest.raises(BundleError, match="over the 1000-byte limit"):
        load_bundle(ok, max_bytes=1000)


def test_zip_tampered_member(cls_bundle, tmp_path):
    b = copy_bundle(cls_bundle, tmp_path / "b")
    flip_byte(b)
    with pytest.raises(BundleError, match="model.onnx has sha256"):
        load_bundle(zip_bundle(b, tmp_path / "b.zip"))


def test_zip_without_manifest_and_broken_zip(cls_bundle, tmp_path):
    z = tmp_path / "empty.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(BundleError, match="holds no edgeft.json"):
        load_bundle(z)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(zip_bundle(cls_bundle, tmp_path / "full.zip").read_bytes()[:-100])  # cut central directory
    with pytest.raises(BundleError):
        load_bundle(broken)


def test_verified_bundle_reports_sizes(cls_bundle):
    b = load_bundle(cls_bundle)
    assert b.sizes == {name: os.path.getsize(cls_bundle / name) for name in ("model.onnx", "tokenizer.json")}
    assert b.manifest.task == "text-classification" and isinstance(b.model, str)
