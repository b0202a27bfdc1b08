"""A text's answer does not depend on what else is in its batch: for every bundle kind (FP32, dynamic
INT8, static INT8, the fused graph; classification, NER, QA) the label and probabilities of a text
predicted alone equal those of the same text in any batch, order and padding (within 1e-6; bit for
bit where the bundle runs one row per call). The mechanism is the manifest's ``batching``
(runtime/manifest.py): dynamic INT8 computes one activation scale over its whole input tensor, so
those bundles run one row per call; the others pad batches, which leaves every row as it is alone.

The last test runs the real MiniLM INT8 bundle (``embedded``): 400 SST-2 sentences, batch 1 vs 32
vs reversed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

import pytest

from bundles import MAX_LENGTH
from conftest import WNUT_TAGS
from tiny_models import DATA, corpus, make_tiny_model

from edgeft.compress import quantize as q
from edgeft.compress.export import ExportConfig, export
from edgeft.compress.quantize import RECIPES, QuantizeConfig
from edgeft.runtime.predictor import Predictor
from edgeft.stage import Splits

ROOT = Path(__file__).resolve().parent.parent
FAST = {"timing_rounds": 1, "timing_calls": 3}
TOLERANCE = 1e-6  # max |Δprobability| allowed for bundles that pad batches
# (task, kind) → the batching its manifest must record
KINDS = {("text-classification", "fp32"): "padded", ("text-classification", "dynamic"): "rows",
         ("text-classification", "static"): "padded", ("text-classification", "fused"): "rows",
         ("token-classification", "fp32"): "padded", ("token-classification", "dynamic"): "rows",
         ("token-classification", "static"): "padded",
         ("question-answering", "fp32"): "padded", ("question-answering", "dynamic"): "rows",
         ("question-answering", "static"): "padded"}
DATA_FILE = {"text-classification": "sst2_300.jsonl", "token-classification": "wnut17_200.jsonl",
             "question-answering": "squad_50.jsonl"}


@pytest.fixture(scope="module")
def bundle_of(tmp_path_factory, monkeypatch_module):
    """(task, kind) → a tiny BERT bundle of that kind, made by the real exporter and quantize search."""
    root = tmp_path_factory.mktemp("invariance")
    made: dict = {}

    def get(task: str, kind: str) -> Path:
        if (task, kind) in made:
            return made[task, kind]
        hf = root / task / "hf"
        if not hf.is_dir():
            labels = ("start", "end") if task == "question-answering" else (
                WNUT_TAGS if task == "token-classification" else ("negative", "positive"))
            make_tiny_model(hf, "bert", task, labels=labels, init_range=0.5)  # labels that vary between texts
            config = json.loads((hf / "tokenizer_config.json").read_text())
            config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
            (hf / "tokenizer_config.json").write_text(json.dumps(config))
        data = DATA / DATA_FILE[task]
        if kind == "fp32":
            made[task, kind] = export(hf, root / task / kind, cfg=ExportConfig(max_length=MAX_LENGTH)).bundle
        else:
            recipe = {"fused": RECIPES["fused-ln-emb"], "dynamic": RECIPES["dyn-pc"], "static": RECIPES["static-pc"]}
            monkeypatch_module.setattr(q, "plan", lambda cfg, target: [recipe[kind]])
            source = hf if kind == "fused" else get(task, "fp32")  # the fused graph is re-exported from the folder
            made[task, kind] = q.quantize(source, root / task / kind, Splits(validation=data), QuantizeConfig(
                target="x86_64-vnni", max_length=MAX_LENGTH, **FAST)).bundle
        return made[task, kind]

    return get


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def inputs(task: str, rng: random.Random, n: int = 48) -> list:
    """Texts of random lengths (empty, short, over max_length: truncated) or QA pairs with contexts cut at
    random points (one window or several)."""
    if task == "question-answering":
        rows = [json.loads(line) for line in (DATA / "squad_50.jsonl").read_text(encoding="utf-8").splitlines()]
        return [(r["question"], r["context"][:rng.randint(0, len(r["context"]))]) for r in rng.sample(rows, n)]
    words = " ".join(corpus()).split()
    out = ["", "a"]
    while len(out) < n:
        start = rng.randrange(len(words))
        out.append(" ".join(words[start:start + rng.choice([1, 3, 8, 20, 45, 90])]))
    return out


def flat(result) -> tuple[tuple, list[float]]:
    """(what must be equal, the probabilities that must agree within the tolerance) of one result."""
    if hasattr(result, "entities"):
        return (tuple((e.label, e.start, e.end) for e in result.entities), result.truncated), \
            [e.score for e in result.entities]
    if hasattr(result, "answer"):
        return (result.answer, result.start, result.end, result.truncated), [result.score]
    return (result.label, result.truncated), list(result.scores.values())


@pytest.mark.slow
@pytest.mark.parametrize("task, kind", list(KINDS))
def test_a_text_gets_the_same_answer_alone_and_in_any_batch(bundle_of, task, kind):
    p = Predictor.load(bundle_of(task, kind), threads=1)
    assert json.loads((p.source / "edgeft.json").read_text())["batching"] == KINDS[task, kind] == p.settings.batching
    rng = random.Random(f"{task}-{kind}")
    pool = inputs(task, rng)
    alone = [flat(p.predict([x])[0]) for x in pool]
    worst = 0.0
    for _ in range(12):  # random batch sizes, orders and neighbours (so random padding)
        picked = rng.sample(range(len(pool)), rng.randint(2, len(pool)))
        batched = dataclasses.replace(p, batch_size=rng.randint(2, 17))
        for i, result in zip(picked, batched.predict([pool[i] for i in picked])):
            same, probs = flat(result)
            assert same == alone[i][0], f"{pool[i]!r}: {same} in a batch, {alone[i][0]} alone"
            worst = max(worst, *(abs(a - b) for a, b in zip(probs, alone[i][1], strict=True)), 0.0)
    if p.settings.batching == "rows":
        assert worst == 0.0  # one row per call: the very same computation
    assert worst <= TOLERANCE


@pytest.mark.slow
def test_dynamic_int8_really_depends_on_its_batch_when_padded(bundle_of):
    """Why the dynamic bundles run one row per call: forced to pad batches, the same texts move."""
    p = Predictor.load(bundle_of("text-classification", "dynamic"), threads=1)
    padded = dataclasses.replace(p, settings=dataclasses.replace(p.settings, batching="padded"))
    texts = inputs("text-classification", random.Random(1))
    alone = [padded.predict([t])[0].scores for t in texts]
    together = [r.scores for r in padded.predict(texts)]
    assert max(abs(a[k] - b[k]) for a, b in zip(alone, together) for k in a) > 1e-4


def sst2_400() -> list[str]:
    rows = itertools.chain((DATA / "sst2_300.jsonl").open(encoding="utf-8"),
                           itertools.islice((ROOT / "edgeft" / "samples" / "sst2_test.jsonl").open(encoding="utf-8"), 100))
    return [json.loads(line)["text"] for line in rows]


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory, monkeypatch_module) -> Path:
    """The embedded all-MiniLM-L6-v2 with a seeded, randomly initialised 2-label head (fine-tuning would
    take minutes here; the batching is a property of the graph, not of the weights), quantized with
    the fused-ln-emb recipe `edgeft build --target arm64` chooses (QAttention + int8 embeddings)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgeft.train.model_source import embedded_model_dir

    try:
        src = embedded_model_dir()
    except Exception as e:  # the package is a set-up step of the README, not a dependency
        pytest.skip(f"embedded MiniLM not installed: {e}")
    hf = tmp_path_factory.mktemp("minilm") / "hf"
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(src, num_labels=2, id2label={0: "negative", 1: "positive"},
                                                          label2id={"negative": 0, "positive": 1})
    model.save_pretrained(hf)
    AutoTokenizer.from_pretrained(src).save_pretrained(hf)
    monkeypatch_module.setattr(q, "plan", lambda cfg, target: [RECIPES["fused-ln-emb"]])
    return q.quantize(hf, hf.parent / "int8", Splits(validation=DATA / "sst2_300.jsonl"),
                      QuantizeConfig(target="arm64", **FAST)).bundle


@pytest.mark.slow
@pytest.mark.embedded
def test_real_minilm_int8_bundle_gives_the_same_answers_at_batch_1_32_and_reversed(minilm_int8):
    texts = sst2_400()
    p = Predictor.load(minilm_int8, threads=1, batch_size=32)
    assert p.settings.batching == "rows" and p.manifest.quantization["candidate"] == "fused-ln-emb"
    alone = [p.predict([t])[0] for t in texts]
    for other in (p.predict(texts), p.predict(texts[::-1])[::-1]):
        assert sum(a.label != b.label for a, b in zip(alone, other)) == 0
        assert max(abs(a.scores[k] - b.scores[k]) for a, b in zip(alone, other) for k in a.scores) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("kind, says", [("dynamic", "batching: rows (one text per model call"),
                                        ("fp32", "batching: padded (up to 32 length-sorted texts per model call)")])
def test_eval_prints_the_batching_and_scores_what_batch_1_scores(bundle_of, tmp_path, kind, says):
    from typer.testing import CliRunner

    from edgeft.cli import app
    from edgeft.runtime.evaluate import evaluate

    bundle, data = bundle_of("text-classification", kind), DATA / "sst2_300.jsonl"
    result = CliRunner().invoke(app, ["eval", str(bundle), "--data", str(data), "--batch-size", "32", "--threads", "1",
                                      "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert says in result.output
    printed = json.loads((tmp_path / "eval.json").read_text())
    one = evaluate(Predictor.load(bundle, threads=1, batch_size=1), data)
    assert printed["batching"] == one["batching"] == KINDS["text-classification", kind]
    assert (printed["accuracy"], printed["macro_f1"]) == (one["accuracy"], one["macro_f1"])
    assert f"accuracy {one['accuracy']:.4f}" in result.output
