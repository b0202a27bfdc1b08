"""Trim a model's vocabulary to the tokens a domain uses, shrinking the embedding matrix.

A 30k-token WordPiece vocabulary is 11.7 M of MiniLM's 22.7 M parameters, yet a domain corpus uses
a few thousand of those tokens. ``trim_vocab(model_dir, corpus, out, cfg)`` keeps

* the special and added tokens (and every id the config or the post-processor names),
* every token the corpus produces at least ``min_count`` times; with ``max_tokens`` the most frequent
  of them up to that many tokens in all, and any room left filled with the base vocabulary's pieces in
  id order (a WordPiece/BPE vocabulary lists its common pieces first, so words the corpus never had
  keep more of their whole-word pieces; on the SST-2 sample this kept more test sentences' tokenization
  unchanged than stopping at a corpus count did, at the same size),
* by default every single-character piece ("x" and "##x" for WordPiece, the byte alphabet for
  byte-level BPE), so an unseen word falls apart into characters instead of becoming [UNK],
* for BPE, the parts of every kept token's merges (the merge "closure"), so that each kept token
  can still be built; a merge survives when its two parts and its result do,

and rewrites ``tokenizer.json`` and the embedding rows (plus a tied or untied output embedding and
its bias, and ``config.vocab_size``) with the same old→new map, recorded in ``vocab_map.json``.

Why the corpus' tokenization does not change: new ids are assigned in old-id order, and
* WordPiece is greedy longest-match-first: every piece it chose on the corpus is kept, and any
  longer candidate was not in the old vocabulary, so it is not in the new one either;
* BPE applies the lowest-ranked available merge first: the kept merges are a subset in the same
  order that contains every merge the corpus used, so the same merge wins at every step.
The stage checks this with numbers rather than trusting it: on corpus rows the token ids (mapped
back) must be identical and the logits equal (max |Δ| is reported), and on held-out text it reports
the fraction of inputs whose ids changed and the accuracy before and after.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from edgeft.errors import ConfigError, ModelError, require
from edgeft.settings import check, setting
from edgeft.stage import Progress, Splits, StageResult, silent
from edgeft.writable import atomic_folder, write_json

SUPPORTED = ("WordPiece", "BPE")
PREFIX_SPACE_MODELS = ("roberta", "gpt2")  # byte-level BPE: pre-split words need add_prefix_space (as in train)
LOGIT_ATOL = 1e-5  # the same weights on the same ids: in practice the difference is exactly 0


@dataclass(frozen=True)
class TrimConfig:
    """Settings of ``edgeft trim-vocab`` and the recipe's ``[trim]`` section."""

    keep_chars: bool = setting(True, "Keep every single-character piece, so unseen words become characters, not [UNK].")
    min_count: int = setting(1, "Keep a corpus token only if it occurs at least N times.", ge=1)
    max_tokens: int | None = setting(None, "Keep at most N tokens: the special and character pieces, the corpus' most "
                                           "frequent tokens, then the base vocabulary in id order (not set: no cap; "
                                           "edgeft build caps a student trained on augmented text at 1/8 of the FP32 "
                                           "teacher's size).", ge=1)
    max_length: int = setting(128, "Tokens per example for the logit check and the validation scores.", ge=2)
    check_rows: int = setting(512, "Corpus rows (seeded sample) whose logits are compared with the original's.", ge=1)
    force: bool = setting(False, "Replace a non-empty output folder.")
    seed: int = setting(0, "Seed of the corpus rows sampled for the logit check.")

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict:
        return asdict(self)


def trim_vocab(model_dir: str | Path, out_dir: str | Path, splits: Splits, cfg: TrimConfig = TrimConfig(),
               progress: Progress = silent) -> StageResult:
    """Write a copy of ``model_dir`` with a vocabulary trimmed to ``splits.train``; returns the folder
    and its ``trim_report.json``.

    Args:
        model_dir: local HF folder with ``tokenizer.json`` (WordPiece or BPE) and safetensors weights.
        out_dir: the trimmed HF folder, ``vocab_map.json`` and ``trim_report.json``; written to a
            temp folder first and moved into place when complete.
        splits: ``train`` is the in-domain corpus (anything ``distill.read_texts`` reads; labels are
            ignored); ``validation``, if given, is a held-out labeled file scored before and after.
    Raises:
        ModelError for an unsupported tokenizer or model, DataError for bad files, ConfigError for
        a non-empty output folder without ``force``.
    """
    from edgeft.compress.distill import read_texts, task_of
    from edgeft.train.outputs import check_output_dir
    from edgeft.versions import versions
    from edgeft.train.model_source import resolve_model

    out = Path(out_dir)
    check_output_dir(out, force=cfg.force)  # the same refusal as train's (no --resume here)
    transformers = require("transformers", "trim-vocab")
    require("torch", "trim-vocab")
    transformers.utils.logging.set_verbosity_error()  # "sequence longer than max length" while counting
    transformers.utils.logging.disable_progress_bar()

    source = Path(resolve_model(str(model_dir))[0])
    spec = read_tokenizer_spec(source)
    corpus = splits.train
    texts = [value for _, value in read_texts(corpus, splits.text_column, splits.tokens_column)]
    progress(f"loading {source}")
    model, tokenizer = load(source, words=isinstance(texts[0], list))
    task = task_of(model.config)

    progress(f"counting the tokens of {len(texts)} corpus rows")
    counts = Counter(i for ids in tokenize(tokenizer, texts)["input_ids"] for i in ids)  # old id → occurrences
    keep, breakdown = plan(spec, counts, cfg, protected_ids(spec, tokenizer, model.config))
    new_to_old = sorted(keep)  # stable order: ids below the first dropped one (e.g. [PAD] = 0) do not move
    old_to_new = {old: new for new, old in enumerate(new_to_old)}
    vocab_before = model.config.vocab_size
    if new_to_old[-1] >= vocab_before:
        raise ModelError(f"{source}: tokenizer.json has id {new_to_old[-1]} but the embedding matrix only "
                         f"{vocab_before} rows; the folder's tokenizer and model do not belong together.")

    with atomic_folder(out) as tmp:  # moved into place only when complete
        progress(f"writing the trimmed model ({vocab_before} → {len(new_to_old)} tokens)")
        trimmed = trim_model(model, new_to_old, old_to_new)
        trimmed.save_pretrained(tmp)
        write_tokenizer(source, tmp, remap_spec(spec, old_to_new), old_to_new)
        write_json(tmp / "vocab_map.json", {"vocab_size_before": vocab_before, "vocab_size_after": len(new_to_old),
                                            "new_to_old": new_to_old,
                                            "old_to_new": {str(o): n for o, n in old_to_new.items()}})
        model2, tokenizer2 = load(tmp, words=isinstance(texts[0], list))  # what users will load: the real check

        progress("checking logits on corpus rows")
        sample = random.Random(cfg.seed).sample(texts, min(cfg.check_rows, len(texts)))
        check = compare(model, tokenizer, model2, tokenizer2, sample, new_to_old, cfg.max_length)
        if check["max_abs_logit_diff"] > LOGIT_ATOL:  # same ids, same rows: only a bug can make them differ
            raise ModelError(f"the trimmed model's logits differ from the original's by up to "
                             f"{check['max_abs_logit_diff']:.3g} on corpus rows with identical token ids "
                             f"(tolerance {LOGIT_ATOL}); nothing was written. Please report this with the model.")
        report = {
            "model": str(model_dir),
            "tokenizer": spec["model"]["type"],
            "corpus": str(corpus),
            "corpus_rows": len(texts),
            "keep_chars": cfg.keep_chars,
            "min_count": cfg.min_count,
            "max_tokens": cfg.max_tokens,
            "vocab": {"before": vocab_before, "after": len(new_to_old), **breakdown},
            "parameters": {"before": _parameters(model), "after": _parameters(model2)},
            "size_bytes": {"before": _weights_bytes(source), "after": _weights_bytes(tmp)},
            "corpus_check": {"rows": check["rows"], "ids_identical": check["ids_identical"],
                             "max_abs_logit_diff": check["max_abs_logit_diff"]},
            "validation": None,
            "config": cfg.to_dict(),
            "versions": versions(),
        }
        if splits.validation:
            progress(f"scoring {splits.validation} before and after")
            report["validation"] = validation_report(model, tokenizer, model2, tokenizer2, new_to_old, task, cfg,
                                                     splits)
        if splits.test:
            report["test"] = changed_share(tokenizer, tokenizer2, Path(splits.test), splits, new_to_old, cfg.max_length)
        write_json(tmp / "trim_report.json", report)  # out, if it exists (empty, or --force), is replaced
    return StageResult(out, report)


# --------------------------------------------------------------------------------------------------
# What to keep


def read_tokenizer_spec(folder: Path) -> dict:
    """The folder's ``tokenizer.json`` as a dict, refused unless its model is WordPiece or BPE."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelError(f"{folder} has no tokenizer.json; trim-vocab rewrites that file, so the model needs a fast "
                         f"(tokenizers) tokenizer saved with it.")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        kind = spec["model"]["type"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a tokenizers file ({e}).") from None
    if kind not in SUPPORTED:
        raise ModelError(f"{path}: the tokenizer model is {kind}; trim-vocab handles {' and '.join(SUPPORTED)} "
                         f"(BERT/MiniLM/DistilBERT, RoBERTa, GPT-2). The model was left unchanged.")
    return spec


def protected_ids(spec: dict, tokenizer, config) -> set[int]:
    """Ids that must survive whatever the corpus says: added/special tokens, the unk and pad tokens,
    the post-processor's tokens ([CLS], [SEP], <s>, …) and every ``*_token_id`` of the config."""
    ids = {t["id"] for t in spec.get("added_tokens") or ()}
    ids |= set(tokenizer.all_special_ids)
    token_id = {**spec["model"]["vocab"], **{t["content"]: t["id"] for t in spec.get("added_tokens") or ()}}
    names = set(_processor_tokens(spec.get("post_processor")))
    if spec["model"].get("unk_token"):
        names.add(spec["model"]["unk_token"])
    if spec.get("padding"):
        ids.add(spec["padding"]["pad_id"])
    ids |= {token_id[n] for n in names if n in token_id}
    for key, value in config.to_dict().items():
        if key.endswith("_token_id") and value is not None:
            ids |= {v for v in (value if isinstance(value, list) else [value]) if 0 <= v < config.vocab_size}
    return ids


def is_char_piece(token: str, model: dict) -> bool:
    """A single character, alone or with the continuing-subword prefix / end-of-word suffix ("x", "##x", "x</w>"),
    or a byte-fallback piece ("<0x41>")."""
    prefix = model.get("continuing_subword_prefix") or ""
    suffix = model.get("end_of_word_suffix") or ""
    core = token[len(prefix):] if prefix and token.startswith(prefix) else token
    core = core[: -len(suffix)] if suffix and core.endswith(suffix) else core
    return len(core) == 1 or (bool(model.get("byte_fallback")) and len(token) == 6 and token.startswith("<0x"))


def _merges(model: dict) -> list[tuple[str, str]]:
    """BPE merges as pairs (tokenizers writes [a, b] lists; older files "a b" strings)."""
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model.get("merges") or ()]


def _merge_result(a: str, b: str, model: dict) -> str:
    """What merging a and b gives: as tokenizers' BPE, b loses the continuing-subword prefix."""
    prefix = model.get("continuing_subword_prefix") or ""
    return a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)


def plan(spec: dict, counts: Counter, cfg: TrimConfig, protected: set[int]) -> tuple[set[int], dict]:
    """The old ids to keep, and how many came from each reason (for the report)."""
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    keep = set(protected)
    breakdown = {"special": len(keep)}
    chars = {i for t, i in vocab.items() if is_char_piece(t, model)} - keep if cfg.keep_chars else set()
    room = cfg.max_tokens - len(keep | chars) if cfg.max_tokens else len(vocab)
    if room < 0:
        raise ConfigError(f"--max-tokens {cfg.max_tokens} is below the {len(keep | chars)} special and character "
                          f"pieces every trimmed vocabulary keeps; raise it (or use --no-keep-chars)")
    ranked = sorted((i for i, n in counts.items() if n >= cfg.min_count and i not in keep),
                    key=lambda i: (-counts[i], i))  # most frequent first; character pieces are kept anyway
    corpus = {i for i in ranked if i in chars} | set([i for i in ranked if i not in chars][:room])
    keep |= corpus
    breakdown["from_corpus"] = len(corpus)
    if cfg.max_tokens:
        breakdown["corpus_dropped"] = len(ranked) - len(corpus)
    chars -= keep
    keep |= chars
    breakdown["chars"] = len(chars)
    if cfg.max_tokens:  # fill what is left with the base vocabulary's first pieces ([unused] slots excluded)
        fill = [i for t, i in sorted(vocab.items(), key=lambda kv: kv[1])
                if i not in keep and not (t.startswith("[") and t.endswith("]"))][: cfg.max_tokens - len(keep)]
        keep |= set(fill)
        breakdown["from_base"] = len(fill)
    if model["type"] == "BPE":
        produced_by: dict[str, list[tuple[str, str]]] = {}
        for a, b in _merges(model):
            produced_by.setdefault(_merge_result(a, b, model), []).append((a, b))
        token_of = {i: t for t, i in vocab.items()}
        stack, before = [token_of[i] for i in keep if i in token_of], len(keep)
        while stack:  # every part of every merge that builds a kept token (recursively)
            for a, b in produced_by.get(stack.pop(), ()):
                for part in (a, b):
                    if part in vocab and vocab[part] not in keep:
                        keep.add(vocab[part])
                        stack.append(part)
        breakdown["for_merges"] = len(keep) - before
    return keep, breakdown


# --------------------------------------------------------------------------------------------------
# Rewriting the tokenizer and the model


def remap_spec(spec: dict, old_to_new: dict[int, int]) -> dict:
    """``tokenizer.json`` with only the kept tokens renumbered: vocab, merges, added tokens, padding, post-processor."""
    new = copy.deepcopy(spec)
    model = new["model"]
    kept = {t: old_to_new[i] for t, i in model["vocab"].items() if i in old_to_new}
    model["vocab"] = dict(sorted(kept.items(), key=lambda kv: kv[1]))
    if model["type"] == "BPE":
        merges = [m for m, (a, b) in zip(model.get("merges") or (), _merges(spec["model"]))
                  if a in kept and b in kept and _merge_result(a, b, model) in kept]
        model["merges"] = merges  # same order = same ranks
    for token in new.get("added_tokens") or ():
        token["id"] = old_to_new[token["id"]]
    token_id = {**kept, **{t["content"]: t["id"] for t in new.get("added_tokens") or ()}}
    if new.get("padding"):
        new["padding"]["pad_id"] = token_id[new["padding"]["pad_token"]]
    _remap_processor(new.get("post_processor"), token_id)
    return new


def _processor_tokens(proc: dict | None) -> list[str]:
    """Token strings a post-processor inserts."""
    if not proc:
        return []
    kind = proc.get("type")
    if kind == "TemplateProcessing":
        return [t for s in proc.get("special_tokens", {}).values() for t in s["tokens"]]
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [proc["sep"][0], proc["cls"][0]]
    if kind == "Sequence":
        return [t for p in proc.get("processors", ()) for t in _processor_tokens(p)]
    return []  # ByteLevel and others insert no tokens


def _remap_processor(proc: dict | None, token_id: dict[str, int]) -> None:
    if not proc:
        return
    kind = proc.get("type")
    if kind == "TemplateProcessing":
        for s in proc.get("special_tokens", {}).values():
            s["ids"] = [token_id[t] for t in s["tokens"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            proc[key] = [proc[key][0], token_id[proc[key][0]]]
    elif kind == "Sequence":
        for p in proc.get("processors", ()):
            _remap_processor(p, token_id)


def write_tokenizer(source: Path, dest: Path, spec: dict, old_to_new: dict[int, int]) -> None:
    """The new ``tokenizer.json`` plus the source's tokenizer side files with their ids renumbered.

    Slow-tokenizer vocab files (vocab.txt, vocab.json + merges.txt) are regenerated if the source had
    them, so that no stale copy of the old vocabulary is left next to the new one.
    """
    from tokenizers import Tokenizer

    text = json.dumps(spec, ensure_ascii=False, indent=2)
    Tokenizer.from_str(text)  # refuse to write a file that tokenizers cannot load
    (dest / "tokenizer.json").write_text(text + "\n", encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        if not (source / name).is_file():
            continue
        data = json.loads((source / name).read_text(encoding="utf-8"))
        if name == "tokenizer_config.json" and isinstance(data.get("added_tokens_decoder"), dict):
            data["added_tokens_decoder"] = {str(old_to_new[int(i)]): t for i, t in data["added_tokens_decoder"].items()
                                            if int(i) in old_to_new}
        if name == "added_tokens.json":
            data = {t: old_to_new[i] for t, i in data.items() if i in old_to_new}
        write_json(dest / name, data)
    tokens = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    if (source / "vocab.txt").is_file():
        (dest / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    if (source / "vocab.json").is_file():
        write_json(dest / "vocab.json", spec["model"]["vocab"])
    if (source / "merges.txt").is_file() and spec["model"]["type"] == "BPE":
        lines = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
        (dest / "merges.txt").write_text("#version: 0.2\n" + "".join(line + "\n" for line in lines), encoding="utf-8")


def trim_model(model, new_to_old: Sequence[int], old_to_new: dict[int, int]):
    """A copy of ``model`` whose vocabulary-sized tensors keep only the rows in ``new_to_old``.

    The copy is built from the config with the new ``vocab_size`` and the token ids renumbered; the
    tensors whose shape changed (input embeddings, an output embedding and its bias, tied or not)
    are exactly the vocabulary-sized ones, and take rows ``new_to_old``. Everything else is copied
    as is, strictly. Tying is the model class's business, as when it loads normally.
    """
    import torch

    old_v = model.config.vocab_size
    config = copy.deepcopy(model.config)
    config.vocab_size = len(new_to_old)
    for key, value in model.config.to_dict().items():  # pad/bos/eos/sep/… ids: RoBERTa's positions depend on pad
        if key.endswith("_token_id") and value is not None:
            remap = [old_to_new.get(v, v) for v in (value if isinstance(value, list) else [value])]
            setattr(config, key, remap if isinstance(value, list) else remap[0])
    new = type(model)(config)  # random init, overwritten below
    rows = torch.tensor(list(new_to_old), dtype=torch.long)
    shapes = {k: v.shape for k, v in new.state_dict().items()}
    state = {}
    for key, tensor in model.state_dict().items():
        if key in shapes and tensor.shape != shapes[key]:
            if tensor.shape[0] != old_v or tensor.shape[1:] != shapes[key][1:]:
                raise ModelError(f"{key}: shape {tuple(tensor.shape)} changed to {tuple(shapes[key])} with the "
                                 f"vocabulary but is not a per-token table; trim-vocab cannot handle this model.")
            tensor = tensor.index_select(0, rows).clone()  # (new vocab, …)
        state[key] = tensor
    new.load_state_dict(state, strict=True)
    return new.eval()


# --------------------------------------------------------------------------------------------------
# Loading and checking


def load(folder: Path, words: bool = False):
    """(model in eval mode, fast tokenizer) of a folder, by the class named in ``config.architectures``."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from edgeft.compress.distill import task_of

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)  # never a prompt, never code
        arch = (config.architectures or [None])[0]
        cls = getattr(transformers, arch or "", None)
        if cls is None:
            raise ModelError(f"{folder}: config.json names no transformers model class ({arch!r}); trim-vocab loads "
                             f"models by their architecture.")
        words = words or task_of(config) == "token-classification"
        extra = {"add_prefix_space": True} if words and config.model_type in PREFIX_SPACE_MODELS else {}
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **extra)
        model = cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load {folder}: {str(e).splitlines()[0]} (trim-vocab reads safetensors only and runs no code from the folder)"
                         ) from None
    return model.eval(), tokenizer


def tokenize(tokenizer, texts: Sequence, max_length: int | None = None):
    """Encode texts or word lists (a word list is joined when the rows are mixed)."""
    words = all(isinstance(t, list) for t in texts)
    items = list(texts) if words else [t if isinstance(t, str) else " ".join(t) for t in texts]
    return tokenizer(items, is_split_into_words=words, truncation=max_length is not None, max_length=max_length)


def compare(model, tokenizer, model2, tokenizer2, texts: Sequence, new_to_old: Sequence[int], max_length: int) -> dict:
    """Token ids (mapped back) and logits of the trimmed model vs the original on the same texts.

    A head over the vocabulary (masked/causal LM) is compared on the kept tokens' columns.
    """
    import numpy as np

    from edgeft.compress.distill import run_model

    old, new = tokenize(tokenizer, texts, max_length), tokenize(tokenizer2, texts, max_length)
    back = np.asarray(new_to_old)
    same = [list(back[n]) == o for n, o in zip(new["input_ids"], old["input_ids"])]
    rows_old = [dict(zip(old.keys(), values)) for values in zip(*old.values())]
    rows_new = [dict(zip(new.keys(), values)) for values in zip(*new.values())]
    idx = [i for i, s in enumerate(same) if s]  # rows whose inputs differ cannot be compared logit by logit
    out_old = run_model(model, [rows_old[i] for i in idx], tokenizer)
    out_new = run_model(model2, [rows_new[i] for i in idx], tokenizer2)
    diff = 0.0
    for a, b in zip(out_old, out_new):
        if a.shape[-1] == model.config.vocab_size and b.shape[-1] == len(new_to_old):
            a = a[..., back]  # LM head: compare the kept columns
        diff = max(diff, float(np.abs(a - b).max()))
    return {"rows": len(texts), "ids_identical": sum(same) / len(same), "max_abs_logit_diff": diff}


def validation_report(model, tokenizer, model2, tokenizer2, new_to_old, task: str | None, cfg: TrimConfig,
                      splits: Splits) -> dict:
    """Held-out text: fraction of inputs whose ids changed, [UNK] rate, and the task metric before/after."""
    from edgeft.compress.distill import read_texts, run_model, stack_outputs
    from edgeft.data import check_labels, read_dataset
    from edgeft.metrics import headline
    from edgeft.train.finetune import encode, predictions_to_metrics

    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if task else None
    if task:
        ds = read_dataset(splits.validation, task=task, **splits.columns())
        check_labels(ds, labels, f"the model's labels ({model.config.name_or_path})")
        texts = [ex.text if hasattr(ex, "text") else list(ex.tokens) for ex in ds.examples]
    else:  # no classifier head: nothing to score, ids only
        texts = [v for _, v in read_texts(splits.validation, splits.text_column, splits.tokens_column)]
    old, new = tokenize(tokenizer, texts, cfg.max_length), tokenize(tokenizer2, texts, cfg.max_length)
    report = {"path": str(splits.validation), "rows": len(texts), "changed_inputs": _changed(old, new, new_to_old),
              "unk_rate": {"before": _unk_rate(old["input_ids"], tokenizer.unk_token_id),
                           "after": _unk_rate(new["input_ids"], tokenizer2.unk_token_id)}}
    if task:
        label2id = {label: i for i, label in enumerate(labels)}
        scores = []
        for m, tok in ((model, tokenizer), (model2, tokenizer2)):
            rows = encode(ds, tok, label2id, cfg.max_length)
            scores.append(predictions_to_metrics(*stack_outputs(run_model(m, rows, tok), rows), labels, task))
        name = headline(scores[0])[0]
        report.update({"metric": name, "before": scores[0][name], "after": scores[1][name],
                       "drop": scores[0][name] - scores[1][name]})
    return report


def _changed(old, new, new_to_old: Sequence[int]) -> float:
    """The share of rows whose token ids (mapped back to the old vocabulary) differ."""
    rows = list(zip(new["input_ids"], old["input_ids"]))
    return sum([new_to_old[i] for i in n] != o for n, o in rows) / len(rows) if rows else 0.0


def changed_share(tokenizer, tokenizer2, path: Path, splits: Splits, new_to_old: Sequence[int], max_length: int) -> dict:
    """The share of a split's texts (the test split's, in a build) that the trimmed vocabulary tokenizes
    differently: the words the corpus never had, which now fall apart into shorter pieces."""
    from edgeft.compress.distill import read_texts

    texts = [v for _, v in read_texts(path, splits.text_column, splits.tokens_column)]
    return {"path": str(path), "rows": len(texts),
            "changed_inputs": _changed(tokenize(tokenizer, texts, max_length), tokenize(tokenizer2, texts, max_length),
                                       new_to_old)}


def _unk_rate(ids: Sequence[Sequence[int]], unk: int | None) -> float:
    total = sum(len(row) for row in ids)
    return sum(row.count(unk) for row in ids) / total if unk is not None and total else 0.0


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
