"""Fine-tune a decoder to generate text: LoRA (peft) by default, or every weight with ``--full``.

``finetune_lm`` is the text-generation branch of ``edgeft.train.finetune.finetune``: same splits,
output folder rules, checkpoints, early stopping and best-checkpoint choice (the HF Trainer, so
torchrun / accelerate work as for the other tasks), judged on validation loss. What differs:

* every row becomes one token sequence through the model's chat template (a model without one gets
  a minimal template, saved with it, so training and generation format prompts the same way); the
  labels are the reply tokens only (every assistant turn, plus the template's end-of-turn marker),
  or every token of plain text — the rest is IGNORE, so the loss never teaches the prompt;
* a row longer than the context window is an error naming it, or is truncated (and counted) under
  ``--skip-bad-rows``;
* the result is the LoRA adapter (``OUT/adapter/``) merged into a plain HF causal-LM folder (``OUT/``)
  that export reads like any checkpoint, scored on the test split by perplexity and by the exact
  match and token F1 (SQuAD normalisation, edgeft.squad) of its greedy replies.

    edgeft train --task text-generation --data pairs.jsonl --out runs/lm        # LoRA on SmolLM2-135M
    edgeft train --data chats.jsonl --model gpt2 --full --out runs/gpt2       # all weights
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

from edgeft.data import Dataset, GenerationExample, write_jsonl
from edgeft.errors import ConfigError, DataError, ModelError, require
from edgeft.squad import squad_metrics
from edgeft.writable import scratch_folder, write_json

IGNORE = -100  # label id the loss skips: prompt tokens and padding
TASK = "text-generation"
# LoRA targets per config.model_type: every attention and MLP projection (the LoRA paper's finding that
# adapting all of them beats q,v only at the same budget; peft's own defaults are q,v). Others: "all-linear".
LORA_TARGETS = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma", "gemma2", "olmo", "olmo2"),
                    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    "gpt2": ("c_attn", "c_proj", "c_fc"),  # Conv1D layers (weights stored transposed: fan_in_fan_out)
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
}
# For models without a chat template: each turn's text on its own line, each reply closed by EOS.
FALLBACK_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}{{ eos_token }}"
                     "{% endif %}{{ '\\n' }}{% endfor %}")  # a literal newline would be trimmed (trim_blocks)


def finetune_lm(model: str | None, out: Path, datasets: tuple[Dataset, Dataset, Dataset], cfg, progress,
                resume: str | None = None):
    """Train, merge and score a causal LM; returns ``StageResult(out, metrics)``.

    Args:
        model: local folder or hub id; None = the embedded SmolLM2-135M-Instruct.
        out: run folder, already checked (empty, --resume or --force) by ``finetune``.
        datasets: train/validation/test splits (edgeft.data.GenerationExample rows).
        cfg: TrainConfig; resume: the checkpoint to continue from (None = a fresh run).
    """
    from edgeft.stage import StageResult
    from edgeft.train.finetune import run_record, save_curves, train_summary
    from edgeft.train.model_source import resolve_model

    rank0 = int(os.environ.get("RANK", "0")) == 0
    train_ds, val_ds, test_ds = datasets
    if cfg.hp_search:
        raise ConfigError("--hp-search is not available for text-generation yet; drop it (tune --lr, --epochs).")
    transformers = require("transformers", "train")
    require("torch", "train")
    if not cfg.full:
        require("peft", "train")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_path, model_name = resolve_model(None if model is None else str(model), TASK)
    tokenizer, lm, positions = load_lm(model_path, cfg)
    max_length = cfg.max_length or min(cfg.length(TASK), positions)
    if max_length > positions:
        raise ConfigError(f"--max-length {max_length} is above what {model_path} supports ({positions} tokens); "
                          f"use --max-length {positions} or less.")
    cfg = replace(cfg, task=TASK, max_length=max_length)  # as it runs: recorded so in metrics.json
    lm = add_lora(lm, cfg) if not cfg.full else lm
    trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)
    progress(f"fine-tuning {model_name} for {TASK} ({'full' if cfg.full else f'LoRA r={cfg.lora_r}'}, "
             f"{trainable:,} trainable weights) on {len(train_ds)} examples")
    if rank0:
        (out / "data").mkdir(parents=True, exist_ok=True)
        for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
            write_jsonl(ds, out / "data" / f"{name}.jsonl")
    features, cut = {}, {}
    for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
        features[name], cut[name] = encode_lm(ds, tokenizer, max_length, cfg.skip_bad_rows)

    trainer = build_lm_trainer(lm, tokenizer, features, out, cfg)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    best = trainer.model  # the best checkpoint (load_best_model_at_end)
    with scratch_folder(out / "model") as tmp:
        if not cfg.full and rank0:
            best.save_pretrained(tmp / "adapter")  # adapter_config.json + adapter_model.safetensors
        merged = best.merge_and_unload() if not cfg.full else best  # LoRA folded into the base weights
        merged.eval()
        evaluations = {name: evaluate_lm(merged, tokenizer, features[name], ds.examples, cfg)
                       for name, ds in (("validation", val_ds), ("test", test_ds))}
        metrics = {
            "task": TASK,
            "model": model_name,
            "labels": [],
            "metric": "perplexity",  # lower is better; exp(mean NLL per reply token)
            "max_length": max_length,
            "context_length": positions,  # what the model's positions allow (export, the runtime's guard)
            "generation": {"max_new_tokens": cfg.max_new_tokens, "do_sample": False},
            "adapter": None if cfg.full else {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
                                              "targets": sorted(best.peft_config["default"].target_modules),
                                              "path": "adapter"},
            "train": {**train_summary(trainer, result, seconds, train_ds),
                      "tokens": sum(len(r["input_ids"]) for r in features["train"]),
                      "trainable_parameters": trainable, "method": "full" if cfg.full else "lora",
                      "skipped_rows": len(train_ds.skipped) + cut["train"]["dropped"],
                      "truncated_rows": cut["train"]["truncated"]},
            **run_record(cfg, evaluations, (train_ds, val_ds, test_ds), []),
        }
        if rank0:
            merged.save_pretrained(tmp)  # safetensors; config.architectures = [*ForCausalLM]
            tokenizer.save_pretrained(tmp)  # tokenizer.json + the chat template
            for item in tmp.iterdir():
                if (out / item.name).is_dir():  # adapter/ of an earlier run (--force, --resume)
                    import shutil

                    shutil.rmtree(out / item.name)
                item.replace(out / item.name)
    if rank0:
        write_json(out / "train_config.json", cfg.to_dict())
        save_curves(trainer.state.log_history, out, "perplexity")
        write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    return StageResult(out, metrics)


def load_lm(model_path: str, cfg):
    """(tokenizer with a chat template and a pad token, the causal LM in fp32, its context length)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    remote = cfg.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=remote)
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=remote)
        model = AutoModelForCausalLM.from_pretrained(model_path, config=config, use_safetensors=True,
                                                     trust_remote_code=remote, dtype="float32")
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load {model_path!r} as a causal language model: {str(e).splitlines()[0]} "
                         f"(edgeft loads safetensors only; remote code only with --trust-remote-code)") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{model_path}: edgeft needs a fast (tokenizers-backed) tokenizer for offsets and export.")
    if tokenizer.eos_token is None:
        raise ModelError(f"{model_path}: the tokenizer has no end-of-sequence token, so a reply could never end; "
                         f"set eos_token in its tokenizer_config.json.")
    if tokenizer.pad_token is None:  # GPT-2 and others ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_TEMPLATE  # saved with the model: generation formats prompts alike
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
    return tokenizer, model, positions


def lora_targets(model_type: str, given: str | None):
    """The modules LoRA adapts: ``--lora-targets`` (comma-separated names), else the architecture's row of
    LORA_TARGETS, else peft's "all-linear" (every linear layer but the output head)."""
    if given:
        return [t.strip() for t in given.split(",") if t.strip()]
    return list(LORA_TARGETS.get(model_type, ())) or "all-linear"


def add_lora(model, cfg):
    """Wrap ``model`` in a peft LoRA model (base weights frozen, adapters trainable)."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    set_seed(cfg.seed)  # the adapters' random init (A matrices)
    targets = lora_targets(model.config.model_type, cfg.lora_targets)
    lora = LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, fan_in_fan_out=model.config.model_type == "gpt2")
    try:
        return get_peft_model(model, lora)
    except ValueError as e:  # e.g. a target name the model does not have
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "weight")})[:30]
        raise ConfigError(f"--lora-targets {','.join(targets) if isinstance(targets, list) else targets}: "
                          f"{str(e).splitlines()[0]} Layers of this model: {', '.join(names)}.") from None


def render(ex: GenerationExample, tokenizer) -> tuple[list[int], list[int]]:
    """One example as (input_ids, labels): labels copy the ids of reply tokens (plain text: every token)
    and are IGNORE elsewhere. The model shifts labels itself, so position i's label is its own id.

    Reply spans are found by rendering the conversation up to each assistant turn (with the generation
    prompt) and up to its end: the characters between are the reply plus the template's end-of-turn
    marker. The tokenizer's offsets then say which tokens lie in a span.
    """
    if not ex.messages:  # continued training on plain text: every token, then EOS
        ids = tokenizer(ex.text).input_ids
        ids = ids + [tokenizer.eos_token_id] if ids[-1:] != [tokenizer.eos_token_id] else ids
        return ids, list(ids)
    chat = [{"role": role, "content": content} for role, content in ex.messages]
    text = _template(tokenizer, chat, False)
    spans = []
    for i, (role, _) in enumerate(ex.messages):
        if role != "assistant":
            continue
        start, end = _template(tokenizer, chat[:i], True), _template(tokenizer, chat[:i + 1], False)
        if not (text.startswith(end) and end.startswith(start)):
            raise ModelError("the model's chat template does not render a conversation as a prefix of a longer one, "
                             "so edgeft cannot tell the reply tokens from the prompt; give prompt/response rows, or "
                             "a model whose template does.")
        spans.append((len(start), len(end)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)  # the template holds BOS if any
    labels = [t if any(a <= s < b for a, b in spans) else IGNORE for t, (s, _) in zip(enc.input_ids, enc.offset_mapping)]
    return list(enc.input_ids), labels


def _template(tokenizer, chat: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt) if chat \
        or generation_prompt else ""


def encode_lm(ds: Dataset, tokenizer, max_length: int, skip_bad_rows: bool) -> tuple[list[dict], dict]:
    """Every example as {"input_ids", "attention_mask", "labels"} (unpadded), plus what was cut:
    {"truncated": rows cut to ``max_length``, "dropped": rows with no reply token left after the cut}.

    A row over ``max_length`` is a DataError naming file and line, unless ``skip_bad_rows``.
    """
    source = ds.path.split("#", 1)[0]  # a split's path is "file#train"; lines are the file's
    rows, cut = [], {"truncated": 0, "dropped": 0}
    for ex in ds.examples:
        ids, labels = render(ex, tokenizer)
        if len(ids) > max_length:
            if not skip_bad_rows:
                raise DataError(f"{source}:{ex.line}: the row is {len(ids)} tokens, longer than the context window "
                                f"of {max_length} (--max-length). Shorten it, raise --max-length, or pass "
                                f"--skip-bad-rows to truncate such rows.")
            ids, labels = ids[:max_length], labels[:max_length]
            cut["truncated"] += 1
        if all(label == IGNORE for label in labels[1:]):  # the first label is never predicted (shifted out)
            cut["dropped"] += 1  # nothing of the reply fits: the row teaches nothing
            continue
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    if not rows:
        raise DataError(f"{source}: no row keeps a reply token within {max_length} tokens; raise --max-length.")
    return rows, cut


def reply_positions(labels):
    """1-D positions t at which some row of the batch predicts a reply token (its label t+1 is not IGNORE).

    Only these need logits: on prompt/response data most positions are prompt, and the (batch, seq,
    vocab) LM head with its softmax is about a fifth of a training step's work on SmolLM2 (49k words)."""
    keep = (labels[:, 1:] != IGNORE).any(0).nonzero().flatten()
    return keep if keep.numel() else labels.new_zeros(1)


def collate_lm(tokenizer):
    """Pad ids, mask and labels (IGNORE) to the longest row, and ask the model for logits only at
    ``reply_positions`` (the ``logits_to_keep`` argument of transformers' causal LMs)."""
    from transformers import DataCollatorForSeq2Seq

    pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)

    def collate(rows):
        batch = pad(rows)
        batch["logits_to_keep"] = reply_positions(batch["labels"])
        return batch
    return collate


def reply_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy of the logits ``collate_lm`` kept against the next tokens there: the same value as the
    model's own shifted loss over every position (the others are all IGNORE). Summed, then divided by
    the Trainer's token count of the (gradient-accumulated) batch when it gives one, else the mean."""
    import torch

    target = labels[:, reply_positions(labels) + 1].to(outputs.logits.device)
    loss = torch.nn.functional.cross_entropy(outputs.logits.float().flatten(0, 1), target.flatten(),
                                             ignore_index=IGNORE, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (target != IGNORE).sum()
    return loss / count


def build_lm_trainer(model, tokenizer, features: dict, out: Path, cfg):
    """The HF Trainer with the other tasks' schedule, judged on validation loss (lower is better) and
    logging validation perplexity next to it; logits only where a reply token is predicted."""
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    from edgeft.train.finetune import cuda_available, use_bf16

    class LMTrainer(Trainer):
        def log(self, logs, *args, **kwargs):
            if "eval_loss" in logs:  # exp(mean NLL); capped so a diverged run logs a number, not inf
                logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 50.0))
            super().log(logs, *args, **kwargs)

    strategy = "steps" if cfg.eval_steps else "epoch"
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,  # (batch, seq, vocab) logits: 49k-word vocabularies add up
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps,
        logging_steps=0.02,
        logging_first_step=True,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=False,
        prediction_loss_only=True,  # never gather the logits of a whole split
        save_total_limit=2,
        bf16=use_bf16(cfg.precision),
        use_cpu=not cuda_available(),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to,
        disable_tqdm=False,
    )
    tokenizer.padding_side = "right"
    return LMTrainer(
        model=model,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        data_collator=collate_lm(tokenizer),
        compute_loss_func=reply_loss,
        processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)] if cfg.patience else [],
    )


def evaluate_lm(model, tokenizer, rows: list[dict], examples: list, cfg) -> dict:
    """Perplexity over the reply tokens of a split, then exact match / token F1 of greedy replies to its
    first ``cfg.generation_examples`` prompts (rows without a reference reply are not generated for)."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, padding=True)
    tokenizer.padding_side = "right"
    nll, tokens, started = 0.0, 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(rows), 8):  # 8 rows: (8, seq, vocab) fp32 logits stay in the 100s of MB
            batch = collate([dict(r) for r in rows[i:i + 8]])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]  # (batch, seq-1): token t+1 is predicted at t
            nll += torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                                     ignore_index=IGNORE, reduction="sum").item()
            tokens += int((labels != IGNORE).sum())
    loss = nll / max(tokens, 1)
    metrics = {"n": len(rows), "loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens,
               "examples_per_second": round(len(rows) / max(time.perf_counter() - started, 1e-9), 2)}
    asked = [ex for ex in examples if ex.response is not None][:cfg.generation_examples]
    if asked:
        replies = generate_replies(model, tokenizer, [ex.prompt for ex in asked], cfg.max_new_tokens)
        metrics.update(squad_metrics([(ex.response,) for ex in asked], replies))
        metrics["generated"] = len(asked)
        metrics["samples"] = [{"prompt": ex.prompt[-1][1] if ex.prompt else "", "reference": ex.response,
                                "generated": reply} for ex, reply in list(zip(asked, replies))[:5]]
    return metrics


def generate_replies(model, tokenizer, prompts: list[tuple[tuple[str, str], ...]], max_new_tokens: int) -> list[str]:
    """Greedy replies, one prompt at a time (no padding, so each reply is what a batch-1 runtime gives)."""
    import torch

    replies = []
    with torch.no_grad():
        for turns in prompts:
            text = _template(tokenizer, [{"role": r, "content": c} for r, c in turns], True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)
            replies.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return replies
