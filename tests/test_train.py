"""Fine-tuning: every supported architecture trains, NER aligns labels, outputs are complete."""

from __future__ import annotations

import json

import pytest

from tiny_models import cue_rows

from edgeft.errors import ConfigError, DataError, ModelError
from edgeft.train.config import TrainConfig
from edgeft.stage import Splits
from edgeft.train.finetune import encode, finetune

pytestmark = pytest.mark.slow
FAST = dict(epochs=2, batch_size=16, lr=1e-3, max_length=48, patience=0)


def SST2(data_dir) -> Splits:
    """The 300-row SST-2 slice, split 80/10/10 by the stage."""
    return Splits(data_dir / "sst2_300.jsonl")


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta", "gpt2"])
def test_each_architecture_fine_tunes_and_learns(tiny_models, tmp_path, arch):
    data = cue_rows(tmp_path / "cue.jsonl")
    m = finetune(tiny_models(arch), tmp_path / "out", Splits(data),
                 TrainConfig(epochs=6, batch_size=16, lr=3e-3, max_length=32, patience=0)).metrics
    assert m["test"]["accuracy"] >= 0.9, f"{arch} did not learn a one-word cue: {m['test']['accuracy']}"
    assert m["train"]["examples"] == 128 and (m["validation"]["n"], m["test"]["n"]) == (16, 16)
    assert set(m["test"]["per_class"]) == {"negative", "positive"}

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")  # a normal HF folder
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert AutoTokenizer.from_pretrained(tmp_path / "out").pad_token is not None
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not list((tmp_path / "out").glob("*.bin")), "no pickles in the output"


def test_ner_labels_sit_on_first_sub_tokens(tiny_models, data_dir):
    from transformers import AutoTokenizer

    from edgeft.data import read_dataset

    ds = read_dataset(data_dir / "wnut17_200.jsonl")
    tok = AutoTokenizer.from_pretrained(tiny_models("bert", "token-classification"))
    label2id = {t: i for i, t in enumerate(ds.labels)}
    rows = encode(ds, tok, label2id, max_length=512)
    for ex, row in zip(ds.examples, rows):
        labelled = [label for label in row["labels"] if label != -100]
        assert labelled == [label2id[t] for t in ex.tags]  # exactly one label per word, in order


def test_ner_fine_tunes_and_reports_entity_f1(tiny_models, data_dir, tmp_path):
    m = finetune(tiny_models("bert", "token-classification"), tmp_path / "out", Splits(data_dir / "wnut17_200.jsonl"),
                 TrainConfig(**FAST)).metrics
    assert m["task"] == "token-classification" and m["metric"] == "f1"
    assert {"precision", "recall", "f1", "per_type", "accuracy"} <= set(m["test"])
    assert m["labels"][0] == "O"


def test_metrics_json_records_what_reproduces_the_run(tiny_models, data_dir, tmp_path):
    out = tmp_path / "out"
    m = finetune(tiny_models(), out, SST2(data_dir), TrainConfig(max_steps=3, **{
        k: v for k, v in FAST.items() if k != "epochs"})).metrics
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data_fingerprint"] == m["data_fingerprint"] and len(m["data_fingerprint"]) == 64
    assert saved["seed"] == 42 and saved["config"]["lr"] == 1e-3
    assert {"torch", "transformers", "edgeft"} <= set(saved["versions"])
    assert saved["train"]["steps"] == 3
    for split in ("train", "validation", "test"):  # the split is saved for reruns
        assert (out / "data" / f"{split}.jsonl").is_file()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 3


def test_same_seed_same_result(tiny_models, data_dir, tmp_path):
    cfg = TrainConfig(max_steps=4, precision="fp32", **{k: v for k, v in FAST.items() if k != "epochs"})
    a = finetune(tiny_models(), tmp_path / "a", SST2(data_dir), cfg).metrics
    b = finetune(tiny_models(), tmp_path / "b", SST2(data_dir), cfg).metrics
    assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-6)
    assert a["test"]["confusion_matrix"] == b["test"]["confusion_matrix"]


def test_resume_continues_from_the_last_checkpoint(tiny_models, data_dir, tmp_path):
    base = dict(batch_size=16, lr=1e-3, max_length=48, patience=0, eval_steps=5, precision="fp32")
    model, data = tiny_models(), SST2(data_dir)
    full = finetune(model, tmp_path / "full", data, TrainConfig(max_steps=10, **base)).metrics
    # A run stopped after step 5 (as if killed), then resumed to step 10 with the same settings.
    finetune(model, tmp_path / "cut", data, TrainConfig(max_steps=5, **base))
    (tmp_path / "cut" / "metrics.json").unlink()
    resumed = finetune(model, tmp_path / "cut", data, TrainConfig(max_steps=10, resume=True, **base)).metrics
    assert resumed["train"]["steps"] == 10
    assert resumed["test"]["accuracy"] == pytest.approx(full["test"]["accuracy"], abs=0.034)  # 1 of 30 rows


@pytest.mark.parametrize("setting, clips", [({}, [1.0] * 3), ({"max_grad_norm": 0.0}, [])])
def test_gradients_are_clipped_at_1_by_default_and_0_turns_it_off(tiny_models, data_dir, tmp_path, monkeypatch,
                                                                   setting, clips):
    """1.0 is the Trainer's default; 0 trains as a plain PyTorch loop does (the throughput benchmark's recipe)."""
    import transformers

    seen, clip = [], transformers.Trainer._clip_grad_norm  # the Trainer's one place that clips
    monkeypatch.setattr(transformers.Trainer, "_clip_grad_norm",
                        lambda self, model: seen.append(self.args.max_grad_norm) or clip(self, model))
    fast = {k: v for k, v in FAST.items() if k != "epochs"}
    finetune(tiny_models(), tmp_path / "out", SST2(data_dir), TrainConfig(max_steps=3, **fast, **setting))
    assert seen == clips  # one clip per optimizer step, or none


def test_hp_search_runs_trials_and_keeps_the_best(tiny_models, data_dir, tmp_path):
    cfg = TrainConfig(hp_search=2, max_steps=3, batch_size=16, max_length=48, patience=0)
    m = finetune(tiny_models(), tmp_path / "out", SST2(data_dir), cfg).metrics
    trials = m["hp_search"]
    assert len(trials) == 2 and all({"learning_rate", "accuracy"} <= set(t) for t in trials)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(epochs=0), ConfigError, "--epochs must be > 0"),
    (dict(batch_size=0), ConfigError, "--batch-size must be >= 1"),
    (dict(task="summarization"), ConfigError, "--task must be one of text-classification | .* \\(got 'summarization'\\)"),
    (dict(max_length=4096), ConfigError, "--max-length 4096 is above what"),
])
def test_bad_settings_fail_before_training(tiny_models, data_dir, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        finetune(tiny_models(), tmp_path / "out", SST2(data_dir), TrainConfig(**kwargs))


def test_unseen_label_in_test_file_is_named_with_its_line(tiny_models, data_dir, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "fine", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    with pytest.raises(DataError, match=r"test.jsonl:2: label 'neutral' does not occur in the training data"):
        finetune(tiny_models(), tmp_path / "out", Splits(data_dir / "sst2_300.jsonl", test=test))


def test_not_a_model_folder(data_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="is not a model folder: it has no config.json"):
        finetune(tmp_path / "empty", tmp_path / "out", SST2(data_dir))


def test_refuses_a_non_empty_output_folder_unless_forced(tiny_models, data_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty; choose a new folder"):
        finetune(tiny_models(), tmp_path / "out", SST2(data_dir))
