"""Vocabulary trimming: ids remapped, logits identical on the corpus, unseen words → characters, BPE, CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.compress.trim_vocab import TrimConfig, trim_vocab
from edgeft.errors import ConfigError, ModelError
from edgeft.stage import Splits

ARCHS = ["bert", "distilbert", "roberta", "gpt2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """The first 100 SST-2 slice sentences as a plain-text corpus (the other 200 are held out)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    texts = [json.loads(line)["text"] for line in (data_dir / "sst2_300.jsonl").read_text().splitlines()]
    path.write_text("\n".join(texts[:100]) + "\n")
    return path


def corpus_texts(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_remaps_ids_and_keeps_corpus_logits(arch, tiny_models, corpus, data_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src, out = tiny_models(arch), tmp_path / "trim"
    report = trim_vocab(src, out, Splits(corpus, data_dir / "sst2_300.jsonl"), TrimConfig()).metrics
    v = report["vocab"]
    assert v["after"] < v["before"] == 600
    assert v["after"] == v["special"] + v["from_corpus"] + v["chars"]
    assert report["corpus_check"] == {"rows": 100, "ids_identical": 1.0, "max_abs_logit_diff": 0.0}
    assert report["parameters"]["after"] == report["parameters"]["before"] - (600 - v["after"]) * 32  # 32 = hidden
    assert report["size_bytes"]["after"] < report["size_bytes"]["before"]
    val = report["validation"]  # 100 of the 300 rows are corpus rows: only held-out rows can change
    assert val["rows"] == 300 and 0 < val["changed_inputs"] <= 200 / 300 and val["unk_rate"]["after"] == 0.0
    assert val["metric"] == "accuracy" and abs(val["before"] - val["after"]) <= 0.05

    vmap = json.loads((out / "vocab_map.json").read_text())
    new_to_old = vmap["new_to_old"]
    assert new_to_old == sorted(new_to_old) and len(new_to_old) == v["after"] == vmap["vocab_size_after"]
    assert all(vmap["old_to_new"][str(o)] == n for n, o in enumerate(new_to_old))

    # Checked here independently of the report: a normal HF folder, same ids (mapped back), same logits.
    tok, tok2 = AutoTokenizer.from_pretrained(src), AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    model2 = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model2.config.vocab_size == v["after"]
    assert torch.equal(model2.get_input_embeddings().weight, model.get_input_embeddings().weight[new_to_old])
    texts = corpus_texts(corpus)[:20]
    old, new = tok(texts, padding=True, return_tensors="pt"), tok2(texts, padding=True, return_tensors="pt")
    assert torch.equal(torch.tensor(new_to_old)[new["input_ids"]], old["input_ids"])
    assert new_to_old[tok2.pad_token_id] == tok.pad_token_id and new_to_old[model2.config.pad_token_id] == model.config.pad_token_id
    with torch.no_grad():
        assert torch.equal(model2(**new).logits, model(**old).logits)


def test_unseen_words_fall_back_to_characters_not_unk(tiny_models, corpus, data_dir, tmp_path):
    from tokenizers import Tokenizer

    src = tiny_models("bert")
    trim_vocab(src, tmp_path / "chars", Splits(corpus), TrimConfig())
    trim_vocab(src, tmp_path / "nochars", Splits(corpus), TrimConfig(keep_chars=False))
    original = Tokenizer.from_file(str(src / "tokenizer.json"))
    chars = Tokenizer.from_file(str(tmp_path / "chars" / "tokenizer.json"))
    bare = Tokenizer.from_file(str(tmp_path / "nochars" / "tokenizer.json"))
    # Whole words of the original vocabulary that the corpus never produced: trimmed away.
    gone = [w for w in original.get_vocab() if w.isalpha() and len(w) >= 5 and w not in chars.get_vocab()]
    assert len(gone) >= 10
    for word in gone:
        assert original.encode(word).tokens[1:-1] == [word]
        pieces = chars.encode(word).tokens[1:-1]
        assert "[UNK]" not in pieces and len(pieces) > 1
        assert "".join(p.removeprefix("##") for p in pieces) == word  # the word, spelled in smaller pieces
    # Held-out text of another domain: nothing unknown with the characters kept, [UNK]s without them.
    banking = [json.loads(line)["text"] for line in (data_dir / "banking77_300.jsonl").read_text().splitlines()]
    unk = {name: sum(e.tokens.count("[UNK]") for e in t.encode_batch(banking))
           for name, t in (("original", original), ("chars", chars), ("bare", bare))}
    assert unk["original"] == unk["chars"] == 0 < unk["bare"]
    assert bare.get_vocab_size() < chars.get_vocab_size()


def test_min_count_keeps_only_frequent_corpus_tokens(tiny_models, corpus, tmp_path):
    from collections import Counter

    from tokenizers import Tokenizer

    src = tiny_models("bert")
    report = trim_vocab(src, tmp_path / "t", Splits(corpus), TrimConfig(min_count=3, keep_chars=False)).metrics
    counts = Counter(t for text in corpus_texts(corpus) for t in Tokenizer.from_file(str(src / "tokenizer.json")).encode(
        text, add_special_tokens=False).tokens)
    kept = set(Tokenizer.from_file(str(tmp_path / "t" / "tokenizer.json")).get_vocab())
    assert kept == {t for t, n in counts.items() if n >= 3} | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert report["vocab"]["from_corpus"] == len(kept) - 5


def test_max_tokens_keeps_the_most_frequent_corpus_tokens_then_fills_with_base_pieces(tiny_models, corpus, data_dir,
                                                                                         tmp_path):
    from collections import Counter

    from tokenizers import Tokenizer

    src = tiny_models("bert")
    original = Tokenizer.from_file(str(src / "tokenizer.json"))
    counts = Counter(t for text in corpus_texts(corpus) for t in original.encode(text, add_special_tokens=False).tokens)
    full = trim_vocab(src, tmp_path / "full", Splits(corpus), TrimConfig()).metrics["vocab"]
    fixed = full["special"] + full["chars"] + sum(1 for t in counts if len(t.removeprefix("##")) == 1)  # always kept

    # A cap below what the corpus needs: the most frequent corpus tokens win, exactly up to the cap.
    cap = (fixed + full["after"]) // 2
    report = trim_vocab(src, tmp_path / "cap", Splits(corpus, test=data_dir / "sst2_300.jsonl"),
                        TrimConfig(max_tokens=cap)).metrics
    kept = set(Tokenizer.from_file(str(tmp_path / "cap" / "tokenizer.json")).get_vocab())
    assert len(kept) == report["vocab"]["after"] == cap and report["max_tokens"] == cap
    words = [t for t in counts if len(t.removeprefix("##")) > 1]
    dropped = [t for t in words if t not in kept]
    assert dropped and report["vocab"]["corpus_dropped"] == len(dropped) and report["vocab"]["from_base"] == 0
    assert min(counts[t] for t in words if t in kept) >= max(counts[t] for t in dropped)
    assert report["corpus_check"]["ids_identical"] < 1.0  # the dropped tokens' words are spelled in smaller pieces
    assert report["test"]["rows"] == 300 and 0 < report["test"]["changed_inputs"] <= 1

    # A cap above it: every corpus token, then the base vocabulary's first ids, never an [unused] slot.
    roomy = trim_vocab(src, tmp_path / "roomy", Splits(corpus), TrimConfig(max_tokens=full["after"] + 20)).metrics
    kept = Tokenizer.from_file(str(tmp_path / "roomy" / "tokenizer.json")).get_vocab()
    assert len(kept) == full["after"] + 20 and roomy["vocab"]["from_base"] == 20
    assert set(counts) <= set(kept) and roomy["corpus_check"]["ids_identical"] == 1.0
    ids = original.get_vocab()
    fill = [t for t in kept if t not in counts and len(t.removeprefix("##")) > 1 and not t.startswith("[")]
    first_left_out = min(i for t, i in ids.items() if t not in kept and not t.startswith("["))
    assert len(fill) == 20 and all(ids[t] < first_left_out for t in fill)  # the base vocabulary's first pieces

    with pytest.raises(ConfigError, match="--max-tokens 10 is below"):
        trim_vocab(src, tmp_path / "tiny", Splits(corpus), TrimConfig(max_tokens=10))


def byte_level_gpt2(folder):
    """A tiny GPT-2 with its own byte-level BPE tokenizer (GPT-2's kind), trained on the test slices."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    from tiny_models import corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                          show_progress=False))
    torch.manual_seed(0)
    GPT2ForSequenceClassification(GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=1, n_head=2,
                                             n_positions=128, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                             num_labels=2)).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                            model_max_length=128).save_pretrained(folder)
    return folder


def test_byte_level_bpe_keeps_merges_whose_parts_and_result_survive(corpus, tmp_path):
    from tokenizers import Tokenizer

    src = byte_level_gpt2(tmp_path / "gpt2")
    report = trim_vocab(src, tmp_path / "trim", Splits(corpus), TrimConfig()).metrics
    assert report["tokenizer"] == "BPE" and report["corpus_check"]["ids_identical"] == 1.0
    assert report["corpus_check"]["max_abs_logit_diff"] == 0.0
    spec = json.loads((tmp_path / "trim" / "tokenizer.json").read_text())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    assert len(vocab) == report["vocab"]["after"] < 500 and report["vocab"]["chars"] > 0
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
    old_merges = [tuple(m) for m in json.loads((src / "tokenizer.json").read_text())["model"]["merges"]]
    kept = [tuple(m) for m in merges]
    assert kept == [m for m in old_merges if m in set(kept)]  # a subset in the original order (= ranks)
    assert sum(c == 1 for c in (len(t) for t in vocab)) == 256  # the whole byte alphabet

    trimmed = Tokenizer.from_file(str(tmp_path / "trim" / "tokenizer.json"))
    for text in ("zzyzx qwerty", "naïve café ☃"):  # unseen: bytes, never lost
        assert trimmed.decode(trimmed.encode(text).ids) == text


def test_tied_lm_head_is_trimmed_with_the_embeddings(tiny_models, corpus, tmp_path):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    src = tmp_path / "mlm"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128, pad_token_id=0)).save_pretrained(src)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_models("bert") / name, src / name)
    report = trim_vocab(src, tmp_path / "trim", Splits(corpus), TrimConfig()).metrics
    assert report["corpus_check"]["max_abs_logit_diff"] == 0.0  # on the kept tokens' columns
    model = BertForMaskedLM.from_pretrained(tmp_path / "trim")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    assert model.cls.predictions.bias.shape == (report["vocab"]["after"],)


def test_unsupported_tokenizer_is_refused(tiny_models, corpus, tmp_path):
    from tokenizers import Tokenizer, models

    src = tmp_path / "unigram"
    shutil.copytree(tiny_models("bert"), src)
    Tokenizer(models.Unigram([("a", -1.0), ("<unk>", -5.0)], unk_id=1)).save(str(src / "tokenizer.json"))
    with pytest.raises(ModelError, match="the tokenizer model is Unigram; trim-vocab handles WordPiece and BPE"):
        trim_vocab(src, tmp_path / "out", Splits(corpus), TrimConfig())
    assert not (tmp_path / "out").exists()


def test_a_trimmed_model_that_disagrees_is_not_written(tiny_models, corpus, tmp_path, monkeypatch):
    import torch

    from edgeft.compress import trim_vocab as module

    real = module.trim_model

    def broken(*args):  # a bug that shifts one logit
        model = real(*args)
        with torch.no_grad():
            model.classifier.bias[0] += 0.5
        return model

    monkeypatch.setattr(module, "trim_model", broken)
    with pytest.raises(ModelError, match=r"logits differ from the original's by up to 0.5 on corpus rows with "
                                         r"identical token ids \(tolerance 1e-05\); nothing was written"):
        trim_vocab(tiny_models("bert"), tmp_path / "out", Splits(corpus), TrimConfig())
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_bad_settings():
    with pytest.raises(ConfigError, match=r"--min-count must be >= 1 \(got 0\)"):
        TrimConfig(min_count=0)


runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_trim_vocab_prints_a_summary_and_writes_the_report(tiny_models, corpus, data_dir, tmp_path):
    result = run("trim-vocab", tiny_models("bert"), "--data", corpus, "--out", tmp_path / "t",
                 "--validation", data_dir / "sst2_300.jsonl")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t" / "trim_report.json").read_text())
    assert f"trimmed vocab: 600 → {report['vocab']['after']} tokens" in result.output
    assert "corpus      100 rows: token ids identical 100.0 %, max |Δlogit| 0" in result.output
    assert "validation  300 rows:" in result.output and "accuracy" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.txt"], "missing.txt: no such file"),
    (["--min-count", "0"], "--min-count must be >= 1 (got 0)"),
])
def test_cli_trim_vocab_user_mistakes_exit_2(tiny_models, corpus, tmp_path, args, message):
    result = run("trim-vocab", tiny_models("bert"), "--out", tmp_path / "o", *(["--data", corpus] if "--data" not in args
                                                                               else []), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_trim_vocab_refuses_a_non_empty_output(tiny_models, corpus, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("keep")
    result = run("trim-vocab", tiny_models("bert"), "--data", corpus, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "is not empty" in result.output
    assert (tmp_path / "o" / "mine.txt").read_text() == "keep"
