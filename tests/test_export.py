"""``edgeft export``: parity on every architecture and task, the manifest, atomic writes, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeft.compress.bundle_writer import write_bundle
from edgeft.compress.export import ExportConfig, export
from edgeft.errors import ConfigError, DataError, ModelError, ParityError
from edgeft.runtime.manifest import Manifest, file_digest
from edgeft.stage import Splits

CASES = [  # (arch, task, expected ONNX inputs); BERT's tokenizer is given segment ids below
    ("bert", "text-classification", ["input_ids", "attention_mask", "token_type_ids"]),
    ("bert", "token-classification", ["input_ids", "attention_mask", "token_type_ids"]),
    ("distilbert", "text-classification", ["input_ids", "attention_mask"]),
    ("distilbert", "token-classification", ["input_ids", "attention_mask"]),
    ("roberta", "text-classification", ["input_ids", "attention_mask"]),
    ("roberta", "token-classification", ["input_ids", "attention_mask"]),
    ("gpt2", "text-classification", ["input_ids", "attention_mask"]),
    ("gpt2", "token-classification", ["input_ids", "attention_mask"]),
]
SENTENCES = ["a gripping , beautiful film", "dull", "the plot goes nowhere and the jokes fall flat , sadly"]


def with_segment_ids(src: Path, dst: Path) -> Path:
    """A copy of a tiny model whose tokenizer also returns token_type_ids (as BERT's real one does)."""
    shutil.copytree(src, dst)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    cfg_path.write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    """(arch, task) → model folder; BERT and DistilBERT with segment-id tokenizers."""
    root = tmp_path_factory.mktemp("export-models")
    out = {}
    for arch, task, _ in CASES:
        path = tiny_models(arch, task)
        if arch in ("bert", "distilbert"):  # DistilBERT's forward has no token_type_ids: dropped again
            path = with_segment_ids(path, root / f"{arch}-{task}")
        out[arch, task] = path
    return out


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """(arch, task) → ExportResult with default settings, exported once per module."""
    root = tmp_path_factory.mktemp("exported")
    done = {}

    def get(arch: str, task: str):
        if (arch, task) not in done:
            done[arch, task] = export(models[arch, task], root / f"{arch}-{task}")
        return done[arch, task]

    return get


def torch_labels(model_dir: Path, texts: list[str]) -> list[str]:
    """PyTorch reference predictions, batch 1 (one text at a time)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for text in texts:
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}).logits
        out.append(model.config.id2label[int(logits.argmax())])
    return out


@pytest.mark.parametrize("arch, task, inputs", CASES, ids=[f"{a}-{t.split('-')[0]}" for a, t, _ in CASES])
def test_export_parity_and_manifest(exported, arch, task, inputs):
    result = exported(arch, task)
    p, m = result.parity, result.manifest
    assert p.passed and p.tokenizer_match and p.argmax_agreement == 1.0
    assert max(p.max_abs_diff.values()) < 1e-4 and list(p.max_abs_diff) == ["logits"]
    # several batch sizes and lengths, padded batches, and one batch cut at max_length
    assert len(p.shapes) == 6 and {b for b, _ in p.shapes} >= {1, 2, 4, 8} and (3, m.max_length) in p.shapes
    assert m.inputs == inputs and m.outputs == ["logits"] and m.architecture == arch and m.task == task
    assert m.max_length == 128 and m.opset == 18 and m.quantization == {} and m.pad_token_id == 0
    on_disk = json.loads((result.bundle / "edgeft.json").read_text())
    assert on_disk["parity"] == p.to_dict() and on_disk["versions"]["torch"]
    assert set(m.files) == {"model.onnx", "tokenizer.json"}
    for name, digest in m.files.items():
        assert file_digest(result.bundle / name) == digest


def test_runtime_predicts_what_pytorch_predicts(models, exported):
    from edgeft.runtime.predictor import Predictor

    bundle = exported("gpt2", "text-classification").bundle
    got = [p.label for p in Predictor.load(bundle, threads=1, batch_size=2).predict(SENTENCES)]
    assert got == torch_labels(models["gpt2", "text-classification"], SENTENCES)


def test_parity_failure_reports_numbers(models, exported, tmp_path):
    """Perturb one weight of a good export: the check must fail with per-output evidence."""
    import onnx
    from onnx import numpy_helper

    from edgeft.compress.export import base_manifest, load_model, write_tokenizer
    from edgeft.compress.parity import check_parity

    loaded = load_model(models["roberta", "text-classification"])
    good = exported("roberta", "text-classification").bundle
    model = onnx.load(str(good / "model.onnx"))
    for t in model.graph.initializer:
        if t.name == "classifier.out_proj.weight":
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) + 0.05, t.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    write_tokenizer(loaded, tmp_path / "tok.json")
    m = base_manifest(loaded, 18)
    report = check_parity(loaded.model, bad, tmp_path / "tok.json", m, SENTENCES, raise_on_failure=False)
    assert not report.passed and report.max_abs_diff["logits"] > 1e-3
    with pytest.raises(ParityError) as e:
        check_parity(loaded.model, bad, tmp_path / "tok.json", m, SENTENCES)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: the ONNX export does not reproduce the PyTorch model (shapes 1x")
    assert f"- logits: max |Δ| = {report.max_abs_diff['logits']:.2e} ✗ (atol 1e-04)" in msg
    assert "- argmax agreement: " in msg and msg.endswith("raise --atol.")


def small_bundle(tmp_path: Path, tag: str) -> tuple[dict, Manifest]:
    """Files and manifest of a stand-in bundle (write_bundle does not look inside the files)."""
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"model " + tag.encode() * 1000)
    (src / "tokenizer.json").write_text('{"tag": "%s"}' % tag)
    files = {name: src / name for name in ("model.onnx", "tokenizer.json")}
    return files, Manifest("text-classification", ["a", "b"], 8, ["input_ids"], ["logits"], 0)


def snapshot(path: Path) -> dict:
    return {p.name: file_digest(p) for p in ([path] if path.is_file() else path.iterdir())}


@pytest.mark.parametrize("zipped", [False, True])
def test_failure_mid_write_leaves_destination_as_it_was(tmp_path, monkeypatch, zipped):
    import edgeft.compress.bundle_writer as bw

    out = tmp_path / "out"
    out.mkdir()
    dest = out / ("b.zip" if zipped else "b")
    write_bundle(dest, *small_bundle(tmp_path, "old"), zipped=zipped)
    before = snapshot(dest)

    def broken(path):  # fail after the files were copied, before the manifest is written
        raise OSError("disk full")

    monkeypatch.setattr(bw, "file_digest", broken)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(dest, *small_bundle(tmp_path, "new"), zipped=zipped)
    assert snapshot(dest) == before
    with pytest.raises(OSError, match="disk full"):
        write_bundle(out / "fresh", *small_bundle(tmp_path, "fresh"), zipped=zipped)
    assert sorted(p.name for p in out.iterdir()) == [dest.name]  # nothing new, no temp folder left behind


def test_failure_at_the_final_rename_restores_the_old_bundle(tmp_path, monkeypatch):
    import edgeft.writable as writable

    dest = tmp_path / "out" / "b"
    write_bundle(dest, *small_bundle(tmp_path, "old"))
    before = snapshot(dest)
    real = writable.os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".tmp"):  # the new bundle moving into place
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(writable.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        write_bundle(dest, *small_bundle(tmp_path, "new"))
    assert snapshot(dest) == before and sorted(p.name for p in dest.parent.iterdir()) == ["b"]


def test_replacing_a_bundle_swaps_it_whole(tmp_path):
    dest = tmp_path / "out" / "b"
    write_bundle(dest, *small_bundle(tmp_path, "old"))
    files, m = small_bundle(tmp_path, "new")
    write_bundle(dest, files, m)
    assert snapshot(dest)["model.onnx"] == file_digest(files["model.onnx"])
    assert json.loads((dest / "edgeft.json").read_text())["files"] == m.files
    assert sorted(p.name for p in dest.parent.iterdir()) == ["b"] and oct(dest.stat().st_mode)[-3:] != "700"


def test_write_bundle_never_replaces_a_user_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    m = Manifest("text-classification", ["a", "b"], 8, ["input_ids"], ["logits"], 0)
    with pytest.raises(ConfigError) as e:
        write_bundle(tmp_path / "mine", {}, m)
    assert str(e.value) == f"--out {tmp_path / 'mine'} exists and is not an edgeft bundle; choose another path or remove it."
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def masked_lm_folder(tmp_path: Path) -> Path:
    path = tmp_path / "mlm"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    return path


def test_bad_inputs_have_exact_messages(models, exported, data_dir, tmp_path):
    bundle = exported("bert", "text-classification").bundle
    neutral = tmp_path / "neutral.jsonl"
    neutral.write_text('{"text": "fine", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    cases = [
        (tmp_path / "nope", ExportConfig(), ModelError,
         f"{tmp_path / 'nope'}: no such folder; pass the folder `edgeft train` wrote (config.json, model.safetensors, "
         f"tokenizer files)."),
        (data_dir, ExportConfig(), ModelError,
         f"{data_dir} is not a model folder: it has no config.json. Pass the folder `edgeft train` wrote (config.json, "
         f"model.safetensors, tokenizer files)."),
        (bundle, ExportConfig(), ModelError,
         f"{bundle} is an edgeft bundle, not a model folder; export takes the fine-tuned model folder (quantize takes "
         f"either)."),
        (masked_lm_folder(tmp_path), ExportConfig(), ModelError,
         f"{tmp_path / 'mlm'}: config.json names architectures ['BertForMaskedLM']; edgeft exports models with a "
         f"sequence- or token-classification or question-answering head (e.g. BertForSequenceClassification). "
         f"Fine-tune with `edgeft train` first."),
        (models["bert", "text-classification"], ExportConfig(max_length=512), ConfigError,
         f"--max-length 512 exceeds what {models['bert', 'text-classification']} can take (128 tokens); use "
         f"--max-length 128 or less."),
        (models["bert", "text-classification"], Splits(validation=data_dir / "wnut17_200.jsonl"), DataError,
         f"{data_dir / 'wnut17_200.jsonl'} holds token-classification rows but the model does text-classification; "
         f"pass a file with text and label columns."),
        (models["bert", "text-classification"], Splits(validation=neutral), DataError,
         f"{neutral}:2: label 'neutral' does not occur in the model's labels (known: negative, positive). Fix the "
         f"label or add examples of it to the training data."),
    ]
    for source, cfg, error, message in cases:  # cfg: the stage config, or the splits whose data is wrong
        splits, cfg = (cfg, ExportConfig()) if isinstance(cfg, Splits) else (Splits(), cfg)
        with pytest.raises(error) as e:
            export(source, tmp_path / "out", splits, cfg)
        assert str(e.value) == message
        assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"^--opset must be in \[13, 23\] \(got 9\)$"):
        ExportConfig(opset=9)


def test_cli_export_with_data_zip(models, data_dir, tmp_path):
    """--data gives parity inputs and the FP32 score, which equals what `edgeft eval` gets at batch 1."""
    import zipfile

    from edgeft.cli import app
    from edgeft.runtime.evaluate import evaluate
    from edgeft.runtime.predictor import Predictor

    data = data_dir / "wnut17_200.jsonl"
    result = CliRunner().invoke(app, ["export", str(models["bert", "token-classification"]), "--out",
                                      str(tmp_path / "b.zip"), "--zip", "--data", str(data), "--max-length", "64"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(f"exported {tmp_path / 'b.zip'}: max |Δlogit| ")
    assert "  fp32        f1 " in result.stdout and "  parity      6 shapes" in result.stdout
    assert "checking parity with PyTorch" in result.stderr  # progress goes to stderr …
    assert "[torch.onnx]" not in result.output and "Traceback" not in result.output  # … exporter chatter nowhere
    assert sorted(zipfile.ZipFile(tmp_path / "b.zip").namelist()) == ["edgeft.json", "model.onnx", "tokenizer.json"]
    m = json.loads(zipfile.ZipFile(tmp_path / "b.zip").read("edgeft.json"))
    assert m["max_length"] == 64 and m["metrics"]["fp32"]["n"] == 200 and m["parity"]["passed"]
    scores = evaluate(Predictor.load(tmp_path / "b.zip", threads=1, batch_size=1), data)
    assert scores["f1"] == pytest.approx(m["metrics"]["fp32"]["value"], abs=1e-12)


def test_cli_bad_input_exit_code(tmp_path):
    from edgeft.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "b"), "--quiet"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {tmp_path / 'nope'}: no such folder;")  # --quiet: the error only
    assert not (tmp_path / "b").exists()


def test_fp32_bundle_logits_match_pytorch_at_long_padded_shape(models, exported):
    """The parity grid's (3, max_length) cell, rechecked by hand through the runtime's own forward."""
    import torch
    from transformers import AutoModelForTokenClassification

    from edgeft.runtime.predictor import Predictor

    path = models["roberta", "token-classification"]
    p = Predictor.load(exported("roberta", "token-classification").bundle, threads=1, batch_size=3)
    ids = [e.ids for e in p.tokenizer.encode_batch([" ".join(["word"] * 200), "short one", "a b c d e"])]
    assert [len(i) for i in ids][0] == 128  # truncated at max_length
    got = p.forward(ids)
    model = AutoModelForTokenClassification.from_pretrained(path, use_safetensors=True).eval()
    for row, logits in zip(ids, got):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long)).logits
        np.testing.assert_allclose(logits, ref[0].numpy(), atol=1e-4)


def test_training_metrics_fill_base_model_and_fingerprint(tmp_path):
    from edgeft.compress.export import _training_info

    (tmp_path / "metrics.json").write_text(json.dumps({"model": "all-MiniLM-L6-v2 (embedded)",
                                                       "data_fingerprint": "ab12"}))
    assert _training_info(tmp_path) == {"base_model": "all-MiniLM-L6-v2 (embedded)", "data_fingerprint": "ab12",
                                        "max_length": None, "qa": {}}
    qa = {"doc_stride": 128, "max_question_tokens": 64, "max_answer_tokens": 30}  # a QA run's windows
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "m", "max_length": 384, "qa": qa}))
    assert _training_info(tmp_path)["qa"] == qa and _training_info(tmp_path)["max_length"] == 384
    (tmp_path / "metrics.json").write_text("{broken")
    assert _training_info(tmp_path) == {}
