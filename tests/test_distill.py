"""Distillation: layer-copied students, the KD loss, the transfer set, cached teacher logits, resume, CLI."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace

import pytest
from tiny_models import cue_rows
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.compress.distill import (UNLABELED, DistillConfig, KDCollator, attach_teacher_logits, augment,
                                     cut_layers, distill, distillation_loss, encode_transfer, evenly_spaced,
                                     find_layers, flops_per_token, hidden_mse, layer_pairs, read_texts, run_model,
                                     transfer_set, unlabeled_examples, word_neighbours)
from edgeft.train.finetune import IGNORE
from edgeft.data import TokenExample, read_dataset
from edgeft.errors import ConfigError, DataError, ModelError
from edgeft.stage import Splits
from edgeft.train.config import TrainConfig
from edgeft.train.finetune import finetune

FAST = dict(batch_size=16, lr=3e-3, max_length=32, patience=0, precision="fp32")
LAYER_LISTS = {"bert": "bert.encoder.layer", "distilbert": "distilbert.transformer.layer",
               "roberta": "roberta.encoder.layer", "gpt2": "transformer.h"}
LAYER_FIELDS = {"bert": "num_hidden_layers", "distilbert": "n_layers", "roberta": "num_hidden_layers", "gpt2": "n_layer"}


@pytest.fixture(scope="module")
def cue(tmp_path_factory, tiny_models):
    """(cue-word data, a tiny BERT teacher fine-tuned on it to 100 % test accuracy, with confident logits).

    edgeft train keeps the first checkpoint that reaches 100 %, whose two logits may be only ±0.03
    apart (it varies from session to session: tests/tiny_models.py's tokenizer ids are not stable). At
    T = 2 such soft targets carry almost no signal, unlike a real fine-tuned model's (±3–4), so the
    head is scaled to a mean gap of 4 on the training rows: argmax and accuracy stay the same.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("cue")
    data = cue_rows(root / "cue.jsonl")
    teacher = root / "teacher"
    m = finetune(tiny_models("bert"), teacher, Splits(data), TrainConfig(epochs=6, **FAST)).metrics
    assert m["test"]["accuracy"] == 1.0
    model, tok = AutoModelForSequenceClassification.from_pretrained(teacher), AutoTokenizer.from_pretrained(teacher)
    rows = [dict(tok(json.loads(line)["text"])) for line in data.read_text().splitlines()]
    gap = float(np.mean([abs(o[1] - o[0]) for o in run_model(model, rows, tok)]))
    with torch.no_grad():
        model.classifier.weight.mul_(4 / gap)
        model.classifier.bias.mul_(4 / gap)
    model.save_pretrained(teacher)
    return data, teacher


def deep_model(arch: str, layers: int = 4, seed: int = 0):
    """A tiny random classifier like tests/tiny_models.py's, with more layers to choose from."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tiny_models import _config

    config = _config(arch, 600, 2, {0: "negative", 1: "positive"}, {})
    config.num_hidden_layers = layers
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


# --- the student ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta", "gpt2"])
def test_cut_layers_copies_the_teachers_tensors_bit_for_bit(arch, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    teacher = deep_model(arch)
    name, blocks = find_layers(teacher)
    assert name == LAYER_LISTS[arch] and len(blocks) == 4
    student = cut_layers(teacher, (1, 3))
    assert getattr(student.config, LAYER_FIELDS[arch]) == 2 and len(find_layers(student)[1]) == 2

    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, tensor in s_state.items():
        source = key
        if key.startswith(name + "."):
            index, rest = key[len(name) + 1:].split(".", 1)
            source = f"{name}.{(1, 3)[int(index)]}.{rest}"  # student block j is teacher block keep[j]
        assert torch.equal(tensor, t_state[source]), key
    assert len(s_state) < len(t_state)  # blocks 0 and 2 are gone

    student.save_pretrained(tmp_path)  # a normal HF folder that the Auto classes load
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[2, 40, 41, 42, 3]])
    # Same tensors, but a reloaded model's buffers sit at other addresses, and some CPUs' kernels
    # round differently on differently aligned memory (1e-9 seen on an AMD EPYC): close, not equal.
    torch.testing.assert_close(loaded(input_ids=ids).logits, student.eval()(input_ids=ids).logits,
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("teacher, student, keep", [
    (6, 3, (0, 2, 5)),
    (12, 6, (0, 2, 4, 7, 9, 11)),  # DistilBERT's choice for BERT-base
    (6, 2, (0, 5)),
    (4, 4, (0, 1, 2, 3)),
    (2, 1, (1,)),  # one layer: the last, which the head was trained on
])
def test_default_layers_are_evenly_spaced(teacher, student, keep):
    assert evenly_spaced(teacher, student) == keep


@pytest.mark.parametrize("n_s, n_t, keep, model_type, pairs", [
    (3, 6, (0, 2, 5), "bert", [(0, 0), (1, 1), (2, 3), (3, 6)]),
    (2, 4, None, "bert", [(0, 0), (1, 2), (2, 4)]),  # a pretrained student: uniform
    (2, 4, (0, 1), "gpt2", [(0, 0), (1, 1)]),  # GPT-2's last state is post-LayerNorm: no partner
])
def test_hidden_state_layer_mapping(n_s, n_t, keep, model_type, pairs):
    assert layer_pairs(n_s, n_t, keep, model_type) == pairs


def test_flops_per_token_is_the_analytic_count():
    from transformers import BertConfig, DistilBertConfig, GPT2Config

    h, f, s = 384, 1536, 25  # MiniLM's sizes at SST-2's mean length
    per_layer = 2 * (4 * h * h + 2 * h * f + 2 * s * h)
    assert flops_per_token(BertConfig(hidden_size=h, intermediate_size=f, num_hidden_layers=6), s) == 6 * per_layer
    assert flops_per_token(DistilBertConfig(dim=h, hidden_dim=f, n_layers=3), s) == 3 * per_layer
    assert flops_per_token(GPT2Config(n_embd=h, n_layer=2), s) == 2 * 2 * (4 * h * h + 2 * h * 4 * h + 2 * s * h)


# --- the loss -------------------------------------------------------------------------------------

def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def _kl(t, s, temperature):
    pt, ps = _softmax([x / temperature for x in t]), _softmax([x / temperature for x in s])
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))


def test_kd_loss_matches_a_hand_computed_value():
    import torch

    student = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.5, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, -1.0]])
    labels = torch.tensor([0, IGNORE])  # the second row is unlabeled: KD term only
    out = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.25)

    kd = (_kl([0.0, 2.0, 0.0], [1.0, 0.0, -1.0], 2.0) + _kl([3.0, 0.0, -1.0], [0.0, 0.5, 0.0], 2.0)) / 2
    ce = -math.log(_softmax([1.0, 0.0, -1.0])[0])  # the labelled row only
    assert out["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.25 * ce + 0.75 * 4 * kd, rel=1e-6)  # T² = 4
    # The same KL as torch's own (batchmean over rows).
    ref = torch.nn.functional.kl_div(torch.log_softmax(student / 2, -1), torch.log_softmax(teacher / 2, -1),
                                     reduction="batchmean", log_target=True)
    assert out["kd"].item() == pytest.approx(ref.item(), rel=1e-6)
    out["loss"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_kd_loss_edge_cases():
    import torch

    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    same = distillation_loss(logits, logits, torch.tensor([1, 0]), temperature=3.0, alpha=0.0)
    assert same["kd"].item() == pytest.approx(0.0, abs=1e-7) and same["loss"].item() == pytest.approx(0.0, abs=1e-6)
    unlabeled = distillation_loss(logits, logits.flip(0), torch.tensor([IGNORE, IGNORE]), 2.0, 0.5)
    assert unlabeled["ce"].item() == 0.0 and math.isfinite(unlabeled["loss"].item())  # no NaN from an empty mean

    # Token task: only masked positions count, and the mean is over them.
    s = torch.tensor([[[1.0, 0.0], [5.0, -5.0], [0.0, 1.0]]])  # (batch 1, seq 3, 2 labels)
    t = torch.tensor([[[0.0, 1.0], [-9.0, 9.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, IGNORE, IGNORE]])  # position 2: an unlabeled word, KD only
    mask = torch.tensor([[1.0, 0.0, 1.0]])  # position 1: a non-first sub-token
    out = distillation_loss(s, t, labels, temperature=1.0, alpha=0.5, mask=mask)
    assert out["kd"].item() == pytest.approx((_kl([0, 1], [1, 0], 1) + _kl([0, 0], [0, 1], 1)) / 2, rel=1e-6)
    assert out["ce"].item() == pytest.approx(-math.log(_softmax([1.0, 0.0])[1]), rel=1e-6)


def test_hidden_mse_counts_real_tokens_only():
    import torch

    a = torch.zeros(1, 3, 2)  # (batch, seq, hidden)
    b = torch.zeros(1, 3, 2)
    b[0, 2] = 100.0  # a padding position: ignored
    b[0, 0, 0] = 2.0
    mask = torch.tensor([[1, 1, 0]])
    # one pair, 2 real tokens × 2 features: (2² + 0 + 0 + 0) / 4
    assert hidden_mse((a,), (b,), [(0, 0)], mask).item() == pytest.approx(1.0)


# --- the transfer set -----------------------------------------------------------------------------

def test_transfer_set_grows_with_unlabeled_text_and_augmentation(cue, tmp_path):
    from transformers import AutoTokenizer

    data, teacher = cue
    train = read_dataset(data)
    (tmp_path / "unl.txt").write_text("a great story\n\nawful plot and acting\nthe film was great\n")
    cfg = DistillConfig(train=TrainConfig(seed=3), unlabeled=str(tmp_path / "unl.txt"), augment=2)
    ts = transfer_set(train, cfg, "[MASK]", Splits())
    assert ts.counts() == {"labeled": 160, "unlabeled": 3, "augmented": 320, "total": 483}
    assert ts.examples[:160] == train.examples  # the training rows first, unchanged
    variants = ts.examples[163:]
    assert all(v.label == UNLABELED for v in ts.examples[160:])
    for source, pair in zip(train.examples, zip(variants[::2], variants[1::2])):
        for v in pair:
            assert v.text != source.text  # every variant changes at least one word …
            kept = v.text.split()
            assert "[MASK]" in kept or len(kept) < len(source.text.split())  # … by masking or dropping
    assert transfer_set(train, cfg, "[MASK]", Splits()).examples == ts.examples  # seeded
    other = transfer_set(train, DistillConfig(train=TrainConfig(seed=4), augment=2), "[MASK]", Splits())
    assert other.examples[160:] != variants

    tok = AutoTokenizer.from_pretrained(teacher)
    rows = encode_transfer(ts.examples, "text-classification", tok, {"negative": 0, "positive": 1}, 32)
    assert [r["labels"] for r in rows[:160]] == [int(ex.label == "positive") for ex in train.examples]
    assert all(r["labels"] == IGNORE for r in rows[160:])  # unlabeled and augmented: KD only


def test_neighbours_are_the_nearest_whole_words_by_embedding_cosine():
    import numpy as np

    vocab = {"[CLS]": 0, "good": 1, "great": 2, "bad": 3, "##ly": 4, "42": 5, "a": 6, "film": 7, "movie": 8}
    e = np.zeros((9, 3), dtype=np.float32)
    e[1], e[2], e[3] = [1, 0, 0], [0.9, 0.1, 0], [0.6, 0.8, 0]  # great is nearest to good, then bad
    e[4] = e[1]  # a continuation piece: never a neighbour, however close
    e[7], e[8] = [0, 0, 1], [0, 0.1, 1]
    e[0], e[5], e[6] = [1, 0, 0], [1, 0, 0], [1, 0, 0]  # special, digits, one letter: not words
    table = word_neighbours(e, vocab, k=2)
    assert set(table) == {"good", "great", "bad", "film", "movie"}
    assert table["good"] == ("great", "bad")
    assert table["film"][0] == "movie" and "film" not in table["film"]  # never itself


def test_neighbour_variants_swap_words_seeded_and_fall_back_to_masking():
    from edgeft.data import TextExample

    table = {"good": ("great", "fine"), "film": ("movie", "picture"), "great": ("good",), "dull": ("boring",)}
    rows = [TextExample(text="A good film , truly (dull)!", label="positive", line=1),
            TextExample(text="Good !", label="positive", line=2),
            TextExample(text="42 ?", label="negative", line=3)]  # no word with neighbours
    variants = augment(rows, 3, 0.5, "[MASK]", seed=7, neighbours=table)
    assert len(variants) == 9 and variants == augment(rows, 3, 0.5, "[MASK]", seed=7, neighbours=table)
    assert variants != augment(rows, 3, 0.5, "[MASK]", seed=8, neighbours=table)
    allowed = [{"A"}, {"good", "great", "fine"}, {"film", "movie", "picture"}, {","}, {"truly"}, {"(dull)!", "(boring)!"}]
    for v in variants[:3]:
        words = v.text.split()
        assert v.label == UNLABELED and v.text != rows[0].text  # KD only, and changed
        assert all(w in ok for w, ok in zip(words, allowed, strict=True))  # same length, punctuation kept
    assert all(v.text in ("Great !", "Fine !") for v in variants[3:6])  # the capital survives the swap
    assert all("[MASK]" in v.text or len(v.text.split()) == 1 for v in variants[6:])  # masked or dropped


def test_training_rows_keep_their_labels_and_variants_carry_the_teachers_soft_targets(cue):
    """What the student trains on: each training row with its own label, each neighbour variant with no
    label and the teacher's logits on exactly that text."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data, teacher = cue
    train = read_dataset(data)
    model, tok = AutoModelForSequenceClassification.from_pretrained(teacher).eval(), AutoTokenizer.from_pretrained(teacher)
    table = word_neighbours(model.get_input_embeddings().weight.detach().numpy(), tok.get_vocab())
    ts = transfer_set(train, DistillConfig(train=TrainConfig(seed=3), augment=2), "[MASK]", Splits(), table)
    assert ts.counts() == {"labeled": 160, "unlabeled": 0, "augmented": 320, "total": 480}
    assert ts.examples[:160] == train.examples
    swapped = [v for src, pair in zip(train.examples, zip(ts.examples[160::2], ts.examples[161::2])) for v in pair
               if len(v.text.split()) == len(src.text.split()) and "[MASK]" not in v.text]
    assert len(swapped) == 320  # every row has words with neighbours: all variants are swaps

    rows = encode_transfer(ts.examples, "text-classification", tok, {"negative": 0, "positive": 1}, 32)
    attach_teacher_logits(rows, rows, run_model(model, rows, tok), "text-classification")
    assert [r["labels"] for r in rows[:160]] == [int(ex.label == "positive") for ex in train.examples]
    assert all(r["labels"] == IGNORE for r in rows[160:])
    alone = run_model(model, [dict(tok(v.text, truncation=True, max_length=32)) for v in ts.examples[160:170]], tok)
    for row, logits in zip(rows[160:170], alone):
        np.testing.assert_allclose(row["teacher_logits"], logits, atol=1e-5)


def test_a_build_augments_small_training_splits_only(tmp_path):
    from edgeft.build import build_augment
    from edgeft.compress.distill.config import BUILD_AUGMENT, SMALL_DATA

    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_text('{"text": "a", "label": "x"}\n' * 100)
    large.write_text('{"text": "a", "label": "x"}\n' * SMALL_DATA)
    assert build_augment(DistillConfig(), Splits(small), qa=False) == BUILD_AUGMENT
    assert build_augment(DistillConfig(), Splits(large), qa=False) == 0
    assert build_augment(DistillConfig(), Splits(small), qa=True) == 0  # an answer needs its span in the context
    assert build_augment(DistillConfig(augment=0), Splits(small), qa=False) == 0  # the recipe's word wins
    assert build_augment(DistillConfig(augment=2), Splits(large), qa=False) == 2


def test_token_transfer_rows_mark_every_words_first_sub_token(tiny_models, data_dir):
    from transformers import AutoTokenizer

    ds = read_dataset(data_dir / "wnut17_200.jsonl")
    tok = AutoTokenizer.from_pretrained(tiny_models("bert", "token-classification"))
    label2id = {t: i for i, t in enumerate(ds.labels)}
    unlabeled = [TokenExample(tokens=("Heading", "to", "Herbivore"), tags=(UNLABELED,) * 3, line=1)]
    variants = augment(ds.examples[:5], 1, 0.3, None, seed=0)  # no mask token: word dropout
    assert all(len(v.tokens) == len(v.tags) < len(src.tokens) for v, src in zip(variants, ds.examples[:5]))
    rows = encode_transfer([*ds.examples[:5], *unlabeled, *variants], "token-classification", tok, label2id, 512)
    for row, ex in zip(rows, [*ds.examples[:5], *unlabeled, *variants]):
        assert sum(row["kd_mask"]) == len(ex.tokens)  # one KD position per word, labelled or not
    assert all(label == IGNORE for label in rows[5]["labels"])

    # The cached logits sit on those positions and the collator pads them with the batch.
    import numpy as np
    from transformers import DataCollatorForTokenClassification

    fake = [np.random.default_rng(i).normal(size=(len(r["input_ids"]), len(label2id))).astype(np.float32)
            for i, r in enumerate(rows)]
    attach_teacher_logits(rows, [dict(r) for r in rows], fake, "token-classification")
    batch = KDCollator(DataCollatorForTokenClassification(tok))(rows[:3])
    seq = batch["input_ids"].shape[1]
    assert batch["teacher_logits"].shape == (3, seq, len(label2id)) and batch["kd_mask"].shape == (3, seq)
    first = np.flatnonzero(rows[0]["kd_mask"])
    assert np.array_equal(batch["teacher_logits"][0, first].numpy(), fake[0][first])
    assert batch["kd_mask"].sum().item() == sum(len(ex.tokens) for ex in ds.examples[:3])


@pytest.mark.parametrize("name, content, error", [
    ("u.jsonl", '{"text": "fine"}\n{"text": \n', "u.jsonl:2: not valid JSON"),
    ("u.jsonl", '{"review": "fine"}\n', "u.jsonl:1: no text in 'text' or word list in 'tokens' (the row has 'review')"),
    ("u.csv", "review,stars\ngood,5\n", "u.csv:1: no column 'text'; the columns are 'review', 'stars'"),
    ("u.txt", "\n  \n", "u.txt: no text in the file"),
    ("u.txt", b"caf\xe9\n", "u.txt:1: byte 0xe9 is not valid UTF-8"),
])
def test_unlabeled_file_errors_name_file_and_line(tmp_path, name, content, error):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=error.replace("(", r"\(").replace(")", r"\)")):
        read_texts(path)


def test_unlabeled_readers(tmp_path):
    (tmp_path / "u.jsonl").write_text('{"text": "one two"}\n{"tokens": ["three", "four"]}\n')
    (tmp_path / "u.csv").write_text('text,label\n"five, six",x\n')
    assert read_texts(tmp_path / "u.jsonl") == [(1, "one two"), (2, ["three", "four"])]
    assert read_texts(tmp_path / "u.csv") == [(2, "five, six")]
    words = unlabeled_examples(tmp_path / "u.jsonl", "token-classification")
    assert [ex.tokens for ex in words] == [("one", "two"), ("three", "four")]
    assert [ex.text for ex in unlabeled_examples(tmp_path / "u.jsonl", "text-classification")] == ["one two", "three four"]


# --- runs -----------------------------------------------------------------------------------------

def _count_rows(monkeypatch, cls) -> list[int]:
    """Patch ``cls.forward`` to record the batch size of every call."""
    calls: list[int] = []
    forward = cls.forward

    @functools.wraps(forward)  # keeps the signature that callers inspect
    def counting(self, *args, **kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", counting)
    return calls


@pytest.mark.slow
def test_a_fresh_student_learns_the_task_from_the_teachers_logits_alone(cue, tiny_models, tmp_path, monkeypatch):
    """α = 0: no label reaches the student. A random DistilBERT starts at chance and ends >= 90 %."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

    data, teacher = cue
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_models("distilbert"))
    tok = AutoTokenizer.from_pretrained(tiny_models("distilbert"))
    test_rows = [json.loads(line) for line in (teacher / "data" / "test.jsonl").read_text().splitlines()]
    enc = [dict(tok(r["text"])) for r in test_rows]
    fresh_acc = np.mean([int(o.argmax()) == int(r["label"] == "positive") for o, r in zip(run_model(fresh, enc, tok), test_rows)])
    assert fresh_acc < 0.9

    teacher_rows = _count_rows(monkeypatch, BertForSequenceClassification)  # the teacher is a BERT, the student not
    cfg = DistillConfig(train=TrainConfig(epochs=4, **FAST), student=str(tiny_models("distilbert")), alpha=0.0,
                        augment=1)
    m = distill(teacher, tmp_path / "kd", Splits(data, test=teacher / "data" / "test.jsonl"), cfg).metrics
    c = m["comparison"]
    assert c["student"] >= 0.9 and c["teacher"] == 1.0 and c["drop"] == pytest.approx(1.0 - c["student"])
    assert m["train"]["transfer"] == {"labeled": 144, "unlabeled": 0, "augmented": 144, "total": 288}
    # Teacher logits cached: 4 epochs over 288 rows, yet the teacher saw each row once (+ the test split once).
    assert sum(teacher_rows) == 288 + len(test_rows)
    curve = [kd for _, kd in m["train"]["kd_curve"]]  # KL at T, per logged step
    assert sum(curve[-3:]) < 0.8 * sum(curve[:3]), curve
    assert c["parameters"]["student"] > 0 and c["flops_per_token"]["student"] > 0 and 0.9 <= c["agreement"] <= 1.0
    out = tmp_path / "kd"
    assert AutoModelForSequenceClassification.from_pretrained(out).config.model_type == "distilbert"
    assert not list(out.glob("*.bin")) and (out / "metrics.json").is_file() and (out / "curves.png").is_file()


@pytest.fixture(scope="module")
def layer_student(cue, tmp_path_factory):
    """(folder, metrics) of a 1-layer student cut from the cue teacher, with every transfer-set option on."""
    data, teacher = cue
    root = tmp_path_factory.mktemp("layer-student")
    (root / "unl.txt").write_text("\n".join(f"the film was {w}" for w in ("great", "awful") * 10) + "\n")
    cfg = DistillConfig(train=TrainConfig(epochs=2, **FAST), layers=1, unlabeled=str(root / "unl.txt"), augment=1,
                        hidden_loss=True)
    return root / "kd", distill(teacher, root / "kd", Splits(data), cfg).metrics


@pytest.mark.slow
def test_a_layer_student_with_unlabeled_and_augmented_rows(layer_student):
    out, m = layer_student
    assert m["student"] == {"source": "teacher layers", "keep_layers": [1], "layers": 1}
    assert m["train"]["transfer"] == {"labeled": 128, "unlabeled": 20, "augmented": 128, "total": 276}
    assert m["comparison"]["student"] >= 0.9
    assert m["comparison"]["layers"] == {"teacher": 2, "student": 1}
    assert m["comparison"]["flops_per_token"]["student"] * 2 == m["comparison"]["flops_per_token"]["teacher"]
    assert m["train"]["last_losses"].keys() == {"ce_loss", "kd_loss", "hidden_loss"}
    origins = [json.loads(line)["origin"] for line in (out / "data" / "transfer.jsonl").read_text().splitlines()]
    assert origins.count("unlabeled") == 20 and origins.count("augmented") == 128


@pytest.mark.slow
def test_distilled_and_trimmed_student_goes_through_export_and_the_runtime(layer_student, tmp_path):
    """The output is a normal HF folder: trim-vocab, export and the device runtime take it unchanged."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import edgeft.compress.export as export
    from edgeft.compress.trim_vocab import TrimConfig, trim_vocab
    from edgeft.runtime.predictor import Predictor

    student, _ = layer_student
    test_file = student / "data" / "test.jsonl"
    report = trim_vocab(student, tmp_path / "trim", Splits(student / "data" / "train.jsonl", test_file), TrimConfig()).metrics
    assert report["corpus_check"]["max_abs_logit_diff"] == 0.0
    result = export.export(tmp_path / "trim", tmp_path / "bundle", Splits(validation=test_file))
    assert result.parity.passed and result.parity.argmax_agreement == 1.0

    texts = [json.loads(line)["text"] for line in test_file.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(tmp_path / "trim")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "trim").eval()
    with torch.no_grad():
        expected = model(**tok(texts, padding=True, return_tensors="pt")).logits.argmax(-1).numpy()
    got = [p.label for p in Predictor.load(result.bundle).predict(texts)]
    assert got == [model.config.id2label[int(i)] for i in np.asarray(expected)]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["distilbert", "roberta", "gpt2"])
def test_every_architecture_distills_with_hidden_states(arch, tiny_models, data_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = DistillConfig(train=TrainConfig(max_steps=2, **FAST), layers=1, hidden_loss=True, augment=1)
    m = distill(tiny_models(arch), tmp_path / "kd", Splits(data_dir / "sst2_300.jsonl"), cfg).metrics
    assert m["train"]["steps"] == 2 and m["train"]["last_losses"]["hidden_loss"] > 0
    assert m["comparison"]["layers"] == {"teacher": 2, "student": 1}
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "kd")
    assert student.config.model_type == arch and getattr(student.config, LAYER_FIELDS[arch]) == 1


@pytest.mark.slow
def test_token_classification_distills(tiny_models, data_dir, tmp_path):
    (tmp_path / "unl.jsonl").write_text('{"tokens": ["Heading", "to", "Herbivore"]}\n{"text": "RT @BBC : US news"}\n')
    cfg = DistillConfig(train=TrainConfig(max_steps=3, **FAST), layers=1, unlabeled=str(tmp_path / "unl.jsonl"))
    m = distill(tiny_models("bert", "token-classification"), tmp_path / "kd", Splits(data_dir / "wnut17_200.jsonl"), cfg).metrics
    assert m["task"] == "token-classification" and m["metric"] == "f1"
    assert {"f1", "per_type"} <= set(m["teacher_test"]) and 0 <= m["comparison"]["agreement"] <= 1
    assert m["train"]["transfer"]["unlabeled"] == 2 and m["train"]["steps"] == 3


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(cue, tmp_path):
    import shutil

    data, teacher = cue
    cfg = DistillConfig(train=TrainConfig(max_steps=6, eval_steps=3, batch_size=16, lr=1e-3, max_length=32, patience=0,
                                          precision="fp32"), layers=1)
    full = distill(teacher, tmp_path / "run", Splits(data), cfg).metrics
    # As if killed between the checkpoints at steps 3 and 6: no later checkpoint, no finished model.
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "checkpoint-6")
    (tmp_path / "run" / "metrics.json").unlink()
    resumed = distill(teacher, tmp_path / "run", Splits(data), replace(cfg, train=replace(cfg.train, resume=True))).metrics
    assert resumed["train"]["steps"] == 6
    # The history continues the checkpoint's (steps 1–3 logged once, not run again), and steps 4–6 retrace
    # the uninterrupted run: same data order, dropout and optimizer state.
    assert [s for s, _ in resumed["train"]["kd_curve"]] == [1, 2, 3, 4, 5, 6]
    assert [kd for _, kd in resumed["train"]["kd_curve"]] == pytest.approx(
        [kd for _, kd in full["train"]["kd_curve"]], rel=1e-4)
    assert resumed["test"]["confusion_matrix"] == full["test"]["confusion_matrix"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_distill_to_completion(tiny_models, data_dir, tmp_path):
    """The multi-GPU path: each rank caches the teacher logits once, the Trainer shards the rows."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547",
         "-m", "edgeft", "distill", str(tiny_models()), "--data", str(data_dir / "sst2_300.jsonl"), "--out", str(out),
         "--layers", "1", "--epochs", "1", "--max-length", "32", "--batch-size", "16", "--precision", "fp32"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["devices"] == 2
    assert metrics["train"]["steps"] == 8  # 240 rows / (16 per process x 2 processes)
    assert done.stdout.count("test accuracy: student") == 1  # one summary, from rank 0


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=1.5), "--alpha must be in [0, 1] (got 1.5)"),
    (dict(temperature=0), "--temperature must be > 0 (got 0)"),
    (dict(student="some/model", layers=2), "--student and --layers/--keep-layers exclude each other"),
    (dict(keep_layers=(2, 1)), "--keep-layers must be increasing 0-based layer numbers like 0,2,4 (got (2, 1))"),
    (dict(keep_layers=(0, 1), layers=3), "--layers 3 disagrees with --keep-layers (2 layers)"),
    (dict(augment=-1, augment_prob=1.0), "--augment must be >= 0 (got -1); --augment-prob must be in (0, 1) (got 1.0)"),
    (dict(train=TrainConfig(hp_search=2)), "hyperparameter search is not available for distill"),
])
def test_bad_settings_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError) as e:
        DistillConfig(**kwargs)
    assert message in str(e.value)


def test_problems_found_after_loading_the_teacher(cue, tiny_models, tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    data, teacher = cue
    with pytest.raises(ConfigError, match=r"--keep-layers: the teacher has 2 layers \(0..1\)"):
        distill(teacher, tmp_path / "a", Splits(data), DistillConfig(keep_layers=(0, 2)))
    with pytest.raises(ConfigError, match=r"--layers: the teacher has 2 layers"):
        distill(teacher, tmp_path / "b", Splits(data), DistillConfig())  # the default, 3 layers, from a 2-layer teacher

    narrow = tmp_path / "narrow"  # a pretrained student of another width cannot imitate hidden states
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=600, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, max_position_embeddings=128)).save_pretrained(narrow)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (narrow / name).write_bytes((teacher / name).read_bytes())
    with pytest.raises(ConfigError, match=r"--hidden-loss compares hidden states .* hidden size \(32; the student has 16\)"):
        distill(teacher, tmp_path / "c", Splits(data), DistillConfig(student=str(narrow), hidden_loss=True))

    (narrow / "config.json").write_text((narrow / "config.json").read_text().replace("ForSequenceClassification",
                                                                                     "ForMaskedLM"))
    with pytest.raises(ModelError, match=r"the teacher must be a fine-tuned classifier \(config.architectures is "
                                         r"\['BertForMaskedLM'\]\); fine-tune it with `edgeft train` first"):
        distill(narrow, tmp_path / "e", Splits(data), DistillConfig(layers=1))

    (tmp_path / "ner.jsonl").write_text('{"tokens": ["a"], "tags": ["O"]}\n')
    with pytest.raises(DataError, match="holds token-classification data but the teacher .* is a text-classification"):
        distill(teacher, tmp_path / "d", Splits(tmp_path / "ner.jsonl"), DistillConfig(layers=1))


# --- CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_cli_distill_prints_the_comparison_and_writes_metrics(cue, tmp_path):
    data, teacher = cue
    result = run("distill", teacher, "--data", data, "--out", tmp_path / "kd", "--layers", "1", "--max-steps", "4",
                 "--max-length", "32", "--precision", "fp32", "--augment", "1", "--temperature", "3")
    assert result.exit_code == 0, result.output
    assert "transfer    128 labeled + 0 unlabeled + 128 augmented = 256 rows" in result.output
    assert "test accuracy: student " in result.output and "(teacher 1.0000, drop" in result.output
    assert "Traceback" not in result.output
    metrics = json.loads((tmp_path / "kd" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and metrics["config"]["temperature"] == 3.0
    assert json.loads((tmp_path / "kd" / "distill_config.json").read_text())["augment"] == 1


@pytest.mark.parametrize("args, message", [
    (["--keep-layers", "0,x"], "--keep-layers takes comma-separated layer numbers like 0,2,4 (got '0,x')"),
    (["--alpha", "2"], "--alpha must be in [0, 1] (got 2.0)"),
    (["--student", "x", "--layers", "2"], "--student and --layers/--keep-layers exclude each other"),
    (["--layers", "1", "--unlabeled", "missing.txt"], "missing.txt: no such file"),
    ([], "--layers: the teacher has 2 layers (0..1); the student can keep at most that many"),
])
def test_cli_distill_user_mistakes_exit_2(cue, tmp_path, args, message):
    data, teacher = cue
    result = run("distill", teacher, "--data", data, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_distill_bad_teacher_and_labels(cue, tmp_path):
    data, teacher = cue
    (tmp_path / "empty").mkdir()
    result = run("distill", tmp_path / "empty", "--data", data, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "is not a model folder: it has no config.json" in result.output
    (tmp_path / "new.jsonl").write_text("".join(json.dumps({"text": f"meh {i}", "label": ["neutral", "positive"][i % 2]})
                                                + "\n" for i in range(20)))
    result = run("distill", teacher, "--data", tmp_path / "new.jsonl", "--out", tmp_path / "o", "--layers", "1")
    assert result.exit_code == 2 and "label 'neutral' does not occur in the teacher's labels" in result.output
    assert "Traceback" not in result.output
