"""The transfer set and the teacher cache: the rows the student learns from (training rows, unlabeled
text, augmented variants), encoded, with the teacher's logits computed once and stored in each row.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgeft.data import Dataset, TextExample, TokenExample, write_jsonl
from edgeft.errors import DataError
from edgeft.stage import Splits
from edgeft.train.finetune import IGNORE, encode
from edgeft.squad import QAExample, to_row
from edgeft.writable import atomic_file
from edgeft.compress.distill.config import DistillConfig
from edgeft.compress.distill.student import QA


NEIGHBOURS = 15  # replacement candidates per word, as TinyBERT's K
UNLABELED = "\x00unlabeled"  # label of transfer rows that have none (unlabeled text, augmented variants)
NO_LABEL = -1  # its id while encoding: marks the KD positions, then becomes IGNORE


@dataclass(frozen=True)
class TransferSet:
    """The rows the student learns from: labeled training rows, then unlabeled, then augmented."""

    examples: list
    labeled: int
    unlabeled: int
    augmented: int

    def counts(self) -> dict:
        return {"labeled": self.labeled, "unlabeled": self.unlabeled, "augmented": self.augmented,
                "total": len(self.examples)}


def read_texts(path: str | Path, text_column: str = "text", tokens_column: str = "tokens"
               ) -> list[tuple[int, str | list[str]]]:
    """Unlabeled text as (line, text or word list): .txt (a text per line), .jsonl (``text`` or a
    ``tokens`` list), .csv/.tsv (the text column), .conll (words). Labels, if any, are ignored."""
    from edgeft.data import CONLL_SUFFIXES, read_dataset, read_text

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    suffix = path.suffix.lower()
    rows: list[tuple[int, str | list[str]]] = []
    if suffix in CONLL_SUFFIXES:
        ds = read_dataset(path, task="token-classification")
        rows = [(ex.line, list(ex.tokens)) for ex in ds.examples]
    elif suffix in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}).") from None
            if not isinstance(row, dict):
                value = None
            elif isinstance(row.get(tokens_column), list):
                value = row[tokens_column]
            else:
                value = row.get(text_column)
            words_ok = isinstance(value, list) and value and all(isinstance(w, str) and w.strip() for w in value)
            if not (isinstance(value, str) and value.strip() or words_ok):
                have = ", ".join(map(repr, row)) if isinstance(row, dict) else type(row).__name__
                raise DataError(f"{path}:{number}: no text in {text_column!r} or word list in {tokens_column!r} "
                                f"(the row has {have}). Name the column with --text-column / --tokens-column.")
            rows.append((number, value))
    elif suffix in (".csv", ".tsv", ".tab"):
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="," if suffix == ".csv" else "\t")
        if text_column not in (reader.fieldnames or []):
            have = ", ".join(map(repr, reader.fieldnames or [])) or "none"
            raise DataError(f"{path}:1: no column {text_column!r}; the columns are {have}. "
                            f"Name yours with --text-column.")
        for row in reader:
            if (row.get(text_column) or "").strip():
                rows.append((reader.line_num, row[text_column]))
    else:  # plain text: one text per line
        rows = [(n, line) for n, line in enumerate(read_text(path).splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no text in the file; it needs at least one non-empty row.")
    return rows


def unlabeled_examples(path: str | Path, task: str, text_column: str = "text", tokens_column: str = "tokens") -> list:
    """``read_texts`` as examples of ``task`` whose label is UNLABELED (words split on whitespace)."""
    out = []
    for line, value in read_texts(path, text_column, tokens_column):
        if task == "token-classification":
            words = value if isinstance(value, list) else value.split()
            out.append(TokenExample(tokens=tuple(words), tags=(UNLABELED,) * len(words), line=line))
        else:
            text = value if isinstance(value, str) else " ".join(value)
            out.append(TextExample(text=text, label=UNLABELED, line=line))
    return out


def word_neighbours(embeddings, vocab: dict[str, int], k: int = NEIGHBOURS) -> dict[str, tuple[str, ...]]:
    """Each whole-word token of ``vocab`` → its ``k`` nearest whole words by cosine similarity of the
    model's input embeddings (``embeddings``: (vocab, hidden) array).

    These are the replacement candidates of neighbour augmentation. TinyBERT takes them from a masked
    LM's predictions and GloVe neighbours; all-MiniLM-L6-v2 ships no MLM head, so the teacher's own
    word embeddings play GloVe's part (neighbours of "good": excellent, bad, great, better, best, …).
    A neighbour may reverse the meaning ("bad"): that is why variants are labelled by the teacher.
    Whole words: alphabetic tokens of two letters or more, not a continuation piece ("##ing"); a
    byte-level BPE word is its "Ġ"-prefixed form, written without the prefix.
    """
    import numpy as np

    words: dict[str, int] = {}
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        core = token[1:] if token.startswith("Ġ") else token
        if len(core) > 1 and core.isalpha() and not token.startswith("##") and i < len(embeddings):
            words.setdefault(core, i)
    if len(words) <= k:
        return {}
    names = list(words)
    vectors = np.asarray(embeddings, dtype=np.float32)[list(words.values())]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    table = {}
    for start in range(0, len(names), 2048):  # (2048, words) similarities at a time: ~250 MB for 30k words
        sim = vectors[start:start + 2048] @ vectors.T
        for r in range(len(sim)):
            sim[r, start + r] = -np.inf  # not itself
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        for r, row in enumerate(top):
            best = row[np.argsort(-sim[r, row], kind="stable")]
            table[names[start + r]] = tuple(names[j] for j in best)
    return table


WORD = re.compile(r"^(\W*)([^\W\d_]+)(\W*)$")  # punctuation around one alphabetic word: "(great!" → "(", "great", "!"


def _candidates(word: str, table: dict[str, tuple[str, ...]]):
    """(punctuation before, core, punctuation after, the core's neighbours), or None when it has none."""
    m = WORD.match(word)
    choices = m and (table.get(m[2]) or table.get(m[2].lower()))
    return (m[1], m[2], m[3], choices) if choices else None


def swap_word(word: str, table: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """``word`` with its core replaced by one of its neighbours (first-letter case and surrounding
    punctuation kept); ``word`` must have some (``_candidates``)."""
    before, core, after, choices = _candidates(word, table)
    new = rng.choice(choices)
    return before + (new[0].upper() + new[1:] if core[0].isupper() else new) + after


def augment(examples: Sequence, n: int, prob: float, mask_token: str | None, seed: int,
            neighbours: dict[str, tuple[str, ...]] | None = None) -> list:
    """``n`` variants of each example, seeded.

    With ``neighbours`` (``word_neighbours``): each word that has neighbours is replaced by a random
    one of them with probability ``prob`` (TinyBERT's augmentation, Jiao et al. 2020). The new words
    also reach a trimmed vocabulary, which is built from the transfer set. A row with no such word
    falls back to the rule below.

    Otherwise: either each word replaced by ``mask_token`` with probability ``prob`` (masked-word, as
    in BERT's pre-training) or each word dropped with that probability (word dropout).

    Every variant changes at least one word. Variants are KD-only (UNLABELED): changing the word that
    carries the label can change it, and the teacher's soft labels say what it became (Tang et al.
    2019; TinyBERT). A one-word row without a mask token or a neighbour cannot change: no variants.
    """
    rng = random.Random(seed)
    out = []
    for ex in examples:
        words = list(ex.tokens) if isinstance(ex, TokenExample) else ex.text.split()
        swappable = [i for i, w in enumerate(words) if neighbours and _candidates(w, neighbours)]
        for _ in range(n):
            if swappable:
                hit = {i for i in swappable if rng.random() < prob} or {rng.choice(swappable)}
                variant = [swap_word(w, neighbours, rng) if i in hit else w for i, w in enumerate(words)]
            else:
                use_mask = mask_token is not None and (len(words) < 2 or rng.random() < 0.5)
                if not use_mask and len(words) < 2:
                    break
                hit = [rng.random() < prob for _ in words]
                if not any(hit):
                    hit[rng.randrange(len(words))] = True
                if use_mask:
                    variant = [mask_token if h else w for w, h in zip(words, hit)]
                else:
                    if all(hit):  # keep at least one word
                        hit[rng.randrange(len(words))] = False
                    variant = [w for w, h in zip(words, hit) if not h]
            if isinstance(ex, TokenExample):
                out.append(TokenExample(tokens=tuple(variant), tags=(UNLABELED,) * len(variant), line=ex.line))
            else:
                out.append(TextExample(text=" ".join(variant), label=UNLABELED, line=ex.line))
    return out


def transfer_set(train: Dataset, cfg: DistillConfig, mask_token: str | None, splits: Splits,
                 neighbours: dict[str, tuple[str, ...]] | None = None) -> TransferSet:
    """Training rows + unlabeled rows (``cfg.unlabeled``) + ``cfg.augment`` variants per training row
    (neighbour swaps with ``neighbours``, else masked or dropped words)."""
    t = cfg.train
    extra = unlabeled_examples(cfg.unlabeled, train.task, splits.text_column, splits.tokens_column) if cfg.unlabeled else []
    variants = augment(train.examples, cfg.augment, cfg.augment_prob, mask_token, t.seed, neighbours) \
        if cfg.augment else []
    return TransferSet([*train.examples, *extra, *variants], len(train), len(extra), len(variants))


def encode_transfer(examples: Sequence, task: str, tokenizer, label2id: dict[str, int], max_length: int,
                    qa: dict | None = None) -> list[dict]:
    """``finetune.encode`` for rows that may lack a label, plus ``kd_mask`` for token classification.

    An UNLABELED row is encoded with the placeholder id NO_LABEL, which lands exactly where a label
    would (each word's first sub-token): that marks the KD positions, then becomes IGNORE.
    Question answering: every window of every training question (``qa``: window settings).
    """
    if task == QA:
        return encode(Dataset(path="transfer", task=task, examples=list(examples)), tokenizer, {}, max_length, qa)
    rows = encode(Dataset(path="transfer", task=task, examples=list(examples)), tokenizer,
                  {**label2id, UNLABELED: NO_LABEL}, max_length)
    for row in rows:
        if task == "token-classification":
            row["kd_mask"] = [int(label != IGNORE) for label in row["labels"]]  # (seq,) 1 = a word's first sub-token
            row["labels"] = [IGNORE if label == NO_LABEL else label for label in row["labels"]]
        elif row["labels"] == NO_LABEL:
            row["labels"] = IGNORE
    return rows


def attach_teacher_logits(rows: list[dict], teacher_rows: list[dict], outputs: list, task: str) -> None:
    """Store the teacher's logits in each student row (the cache the Trainer reads every epoch).

    Sequence task: (labels,) per row. Token task: the teacher's logits at its own first sub-tokens
    (one per word) are placed at the student's first sub-tokens, so a student with a different
    tokenizer still gets one target per word; words cut off by either tokenizer's truncation drop out.
    """
    import numpy as np

    for row, t_row, logits in zip(rows, teacher_rows, outputs, strict=True):
        if task == QA:  # (seq, 2): start and end logits of every token of the window, all positions count
            row["teacher_logits"] = np.asarray(logits, dtype=np.float32)
            row["kd_mask"] = np.ones(len(row["input_ids"]), dtype=np.float32)
            continue
        if task != "token-classification":
            row["teacher_logits"] = np.asarray(logits, dtype=np.float32)  # (labels,)
            continue
        words = logits[np.flatnonzero(t_row["kd_mask"])]  # (words, labels)
        positions = np.flatnonzero(row["kd_mask"])[: len(words)]
        full = np.zeros((len(row["input_ids"]), words.shape[1]), dtype=np.float32)  # (seq, labels)
        full[positions] = words[: len(positions)]
        mask = np.zeros(len(row["input_ids"]), dtype=np.float32)
        mask[positions] = 1.0
        row["teacher_logits"], row["kd_mask"] = full, mask


def run_model(model, rows: Sequence[dict], tokenizer, batch_size: int = 64, desc: str | None = None) -> list:
    """Logits of ``model`` for encoded rows, no grad, fp32, in batches of similar length.

    Returns:
        Per row, in input order: (labels,) for a sequence head, (len(input_ids), classes) for a per-token one.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import DataCollatorWithPadding

    names = set(inspect.signature(model.forward).parameters)  # DistilBERT's forward takes no token_type_ids
    if "input_ids" not in names:  # a forward(*args, **kwargs) wrapper: pass every model input
        names = set(tokenizer.model_input_names)
    collate = DataCollatorWithPadding(tokenizer)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # less padding per batch
    out: list = [None] * len(rows)
    was_training = model.training
    model.eval()
    with torch.no_grad(), tqdm(total=len(rows), desc=desc, disable=desc is None, leave=False) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([{k: v for k, v in rows[i].items() if k in names and k != "labels"} for i in chunk])
            result = model(**{k: v.to(device) for k, v in batch.items()})
            logits = result.logits if getattr(result, "logits", None) is not None else \
                torch.stack([result.start_logits, result.end_logits], -1)  # QA: (batch, seq, 2)
            logits = logits.float().cpu().numpy()
            for b, i in enumerate(chunk):
                if logits.ndim == 3:  # (batch, seq, classes): keep the row's real tokens
                    n = len(rows[i]["input_ids"])
                    offset = logits.shape[1] - n if tokenizer.padding_side == "left" else 0
                    out[i] = np.ascontiguousarray(logits[b, offset:offset + n])
                else:
                    out[i] = logits[b]
            bar.update(len(chunk))
    model.train(was_training)
    return out


def write_splits(out: Path, train_ds: Dataset, val_ds: Dataset, test_ds: Dataset, transfer: TransferSet) -> None:
    """The splits (as edgeft train saves them) and the transfer set with each row's origin, for reruns."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
        write_jsonl(ds, out / "data" / f"{name}.jsonl")
    origins = ["train"] * transfer.labeled + ["unlabeled"] * transfer.unlabeled + ["augmented"] * transfer.augmented
    with atomic_file(out / "data" / "transfer.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex, origin in zip(transfer.examples, origins, strict=True):
            row = to_row(ex) if isinstance(ex, QAExample) else \
                {"text": ex.text, "label": None if ex.label == UNLABELED else ex.label} \
                if isinstance(ex, TextExample) else {"tokens": list(ex.tokens),
                                                     "tags": None if UNLABELED in ex.tags else list(ex.tags)}
            f.write(json.dumps({**row, "origin": origin}, ensure_ascii=False) + "\n")
