"""Labeled data in, examples out: CSV, TSV, JSONL and CoNLL readers, splits, fingerprints.

Standard library only: training, quantization calibration and the device runtime's ``eval`` all
read user files through here, so one file gives the same examples everywhere. Every problem is a
``DataError`` naming the file, the line and the fix; ``skip_bad_rows=True`` skips such rows and
counts them instead (never silently).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import DataError
from edgeft.writable import atomic_file

TASKS = ("text-classification", "token-classification", "question-answering", "text-generation")
ROLES = ("system", "user", "assistant")  # chat turns a text-generation row may hold (the HF/OpenAI layout)
CONLL_SUFFIXES = (".conll", ".bio", ".iob", ".iob2")
MAX_SKIP_REPORT = 5  # how many skipped rows are described individually
MAX_FIELD_CHARS = (1 << 31) - 1  # csv's default cap is 131,072 characters; a long review is not broken quoting
SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON escape like "\ud800" alone: not valid Unicode


@dataclass(frozen=True)
class TextExample:
    text: str
    label: str
    line: int  # 1-based line in the source file (the record's first line)


@dataclass(frozen=True)
class TokenExample:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]  # BIO tags, one per token
    line: int


@dataclass(frozen=True)
class GenerationExample:
    """A text-generation row: a chat (a prompt/response row is one user and one assistant turn) or, for
    continued training on domain text, plain ``text`` with no turns."""

    messages: tuple[tuple[str, str], ...]  # (role, content) per turn; () for plain text
    text: str  # plain text ("" for a chat)
    line: int

    @property
    def prompt(self) -> tuple[tuple[str, str], ...]:
        """The turns before the last assistant turn: what the model is asked to answer."""
        last = max((i for i, (role, _) in enumerate(self.messages) if role == "assistant"), default=0)
        return self.messages[:last]

    @property
    def response(self) -> str | None:
        """The last assistant turn: the reference answer of generation metrics (None for plain text)."""
        return next((c for role, c in reversed(self.messages) if role == "assistant"), None)


@dataclass
class Dataset:
    """Examples of one file (or one split of it) and where they came from."""

    path: str
    task: str
    examples: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" per skipped row

    @property
    def labels(self) -> list[str]:
        """Sorted label set (NER: every tag, 'O' first, then by entity type and B before I; QA: none)."""
        if self.task in ("question-answering", "text-generation"):
            return []
        if self.task == "token-classification":
            tags = {t for ex in self.examples for t in ex.tags}
            return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))
        return sorted({ex.label for ex in self.examples}, key=_label_order)

    def __len__(self) -> int:
        return len(self.examples)


def _label_order(label: str):
    """Numeric labels sort as numbers ('2' < '10'), others alphabetically."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def detect_task(path: str | Path) -> str:
    """token-classification for CoNLL files and JSONL rows with 'tokens'; question-answering for
    SQuAD files (rows with 'question' and 'context', or the official nested JSON); text-generation
    for .txt files and JSONL rows with 'prompt'/'response', 'messages', or only 'text'; else
    text-classification."""
    from edgeft import squad

    path = Path(path)
    if path.suffix.lower() in CONLL_SUFFIXES:
        return "token-classification"
    if path.suffix.lower() == ".txt":
        return "text-generation"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if squad.looks_like_squad(path, None):  # the nested layout, often one line or pretty-printed
            return squad.TASK
        for line in _lines(path):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return "text-classification"  # read_dataset reports the bad line
                if squad.looks_like_squad(path, row):
                    return squad.TASK
                if isinstance(row, dict) and ({"prompt", "response"} & set(row) or "messages" in row or set(row) == {"text"}):
                    return "text-generation"
                return "token-classification" if isinstance(row, dict) and "tokens" in row else "text-classification"
    return "text-classification"


def read_dataset(
    path: str | Path,
    task: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    skip_bad_rows: bool = False,
) -> Dataset:
    """Read a CSV/TSV/JSONL (text + label), JSONL/CoNLL (tokens + BIO tags) or SQuAD file.

    The format comes from the suffix: .csv, .tsv (or .tab), .jsonl/.json (one object per line),
    .conll/.bio/.iob (``token<TAB>tag`` lines, sentences separated by blank lines). Labels may be
    strings or integers; they are kept as strings (the model's id2label), stripped of surrounding
    whitespace.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a CSV, TSV, JSONL or CoNLL file.")
    task = task or detect_task(path)
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}.")
    ds = Dataset(path=str(path), task=task)
    suffix = path.suffix.lower()

    def bad(line: int, reason: str) -> None:
        msg = f"{path}:{line}: {reason}"
        if not skip_bad_rows:
            raise DataError(f"{msg}. Fix the row, or pass --skip-bad-rows to skip such rows.")
        ds.skipped.append(msg)

    if task == "question-answering":  # SQuAD JSONL or nested JSON, in edgeft.squad
        from edgeft import squad

        if suffix not in (".jsonl", ".json", ".ndjson"):
            raise DataError(f"{path}: question answering reads SQuAD files: JSONL rows with question, context and "
                            f"answers, or the official nested .json.")
        ds.examples = list(squad.read_rows(path, read_text(path), bad))
        if not ds.examples:
            raise DataError(f"{path}: {'only bad rows' if ds.skipped else 'no questions'}; a SQuAD file needs at "
                            f"least one question with its context and answers.")
        return ds
    if task == "text-generation":  # chats, prompt/response pairs or plain text
        if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".tab", ".txt"):
            raise DataError(f"{path}: text generation reads .jsonl (prompt/response, messages or text rows), .csv/.tsv "
                            f"(prompt and response columns, or text) or .txt (paragraphs separated by blank lines).")
        rows = _read_jsonl(path, bad) if suffix in (".jsonl", ".json", ".ndjson") else _read_paragraphs(path) \
            if suffix == ".txt" else _read_delimited(path, "," if suffix == ".csv" else "\t")
        ds.examples = [ex for ex in _generation_examples(path, rows, text_column, bad) if ex is not None]
        if not ds.examples:
            raise DataError(f"{path}: {'only bad rows' if ds.skipped else 'no examples'}. Text generation needs at "
                            f"least one prompt/response pair, chat or text.")
        return ds
    if suffix in CONLL_SUFFIXES:
        if task != "token-classification":
            raise DataError(f"{path}: CoNLL files hold token tags; use --task token-classification.")
        rows = _read_conll(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        rows = _read_jsonl(path, bad)
    elif suffix in (".csv", ".tsv", ".tab"):
        if task == "token-classification":
            raise DataError(f"{path}: token classification needs JSONL with 'tokens'/'tags' or a CoNLL file.")
        rows = _read_delimited(path, "," if suffix == ".csv" else "\t")
    else:
        raise DataError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; use .csv, .tsv, .jsonl or .conll.")

    columns = (text_column, label_column) if task == "text-classification" else (tokens_column, tags_column)
    checked_columns = False
    for line, row in rows:
        if not checked_columns and isinstance(row, dict):
            missing = [c for c in columns if c not in row]
            if missing:
                have = ", ".join(repr(k) for k in row) or "none"
                flag = "--text-column/--label-column" if task == "text-classification" else "--tokens-column/--tags-column"
                raise DataError(
                    f"{path}:{line}: no column {', '.join(map(repr, missing))}; the columns are {have}. "
                    f"Name yours with {flag}."
                )
            checked_columns = True
        if isinstance(row, str):  # the reader's own description of a malformed row
            bad(line, row)
            continue
        if not isinstance(row, dict):
            bad(line, f"expected an object with {columns[0]!r} and {columns[1]!r}, got {type(row).__name__}")
            continue
        example = (_text_example if task == "text-classification" else _token_example)(row, columns, line, bad)
        if example is not None:
            ds.examples.append(example)
    if not ds.examples:
        what = "only bad rows" if ds.skipped else "no examples"
        raise DataError(f"{path}: {what}. A data file needs at least one labeled row.")
    if task == "text-classification":
        _check_label_spelling(ds)
    return ds


def _check_label_spelling(ds: Dataset) -> None:
    """Refuse labels that differ only by case or spacing ('positive' vs 'Positive'): they would
    silently become two classes, each with half the examples."""
    first: dict[str, TextExample] = {}  # normalised label → first example with that spelling
    for ex in ds.examples:
        key = " ".join(ex.label.split()).casefold()
        seen = first.setdefault(key, ex)
        if seen.label != ex.label:
            raise DataError(f"{ds.path}:{ex.line}: label {ex.label!r} differs only by case or spacing from "
                            f"{seen.label!r} (line {seen.line}); spell each label one way, or they become two classes.")


def _text_example(row: dict, columns: tuple[str, str], line: int, bad) -> TextExample | None:
    text, label = row.get(columns[0]), row.get(columns[1])
    if not isinstance(text, str) or not text.strip():
        return bad(line, f"empty or missing text in column {columns[0]!r}")
    if _SURROGATE.search(text):
        return bad(line, f"the text holds an unpaired surrogate {_SURROGATE.search(text).group()!r}, which is not "
                         "valid Unicode (a broken \\uXXXX escape)")
    if label is None or isinstance(label, (list, dict, float)) or not str(label).strip():
        return bad(line, f"empty or invalid label in column {columns[1]!r} (labels are strings or integers)")
    return TextExample(text=text, label=str(label).strip(), line=line)


def _token_example(row: dict, columns: tuple[str, str], line: int, bad) -> TokenExample | None:
    tokens, tags = row.get(columns[0]), row.get(columns[1])
    if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
        return bad(line, f"{columns[0]!r} and {columns[1]!r} must be non-empty lists")
    if len(tokens) != len(tags):
        return bad(line, f"{len(tokens)} tokens but {len(tags)} tags; each token needs exactly one tag")
    if not all(isinstance(t, str) and t.strip() for t in tokens):
        return bad(line, "a token is empty or not a string")
    if any(_SURROGATE.search(t) for t in tokens):
        return bad(line, "a token holds an unpaired surrogate, which is not valid Unicode (a broken \\uXXXX escape)")
    tags = [str(t).strip() for t in tags]
    for tag in tags:
        if tag != "O" and (tag[:2] not in ("B-", "I-", "E-", "S-") or len(tag) < 3):
            return bad(line, f"tag {tag!r} is not in BIO form (use O, B-TYPE, I-TYPE)")
    return TokenExample(tokens=tuple(tokens), tags=tuple(tags), line=line)


def _generation_examples(path: Path, rows, text_column: str, bad):
    """GenerationExample per row: {"prompt", "response"}, {"messages": [{"role", "content"}, ...]} or
    {text_column: ...}; the first row's layout is checked like a missing column."""
    first = True
    for line, row in rows:
        if isinstance(row, str):  # the reader's own description of a malformed row
            yield bad(line, row)
            continue
        if not isinstance(row, dict):
            yield bad(line, f"expected an object with 'prompt' and 'response', 'messages' or {text_column!r}, "
                            f"got {type(row).__name__}")
            continue
        layouts = ("prompt" in row or "response" in row, "messages" in row, text_column in row)
        if first and not any(layouts):
            have = ", ".join(repr(k) for k in row) or "none"
            raise DataError(f"{path}:{line}: no column 'prompt'/'response', 'messages' or {text_column!r}; the columns "
                            f"are {have}. Text generation reads prompt/response pairs, chats or plain text "
                            f"(name its column with --text-column).")
        first = False
        yield _generation_example(row, layouts, text_column, line, bad)


def _generation_example(row: dict, layouts: tuple[bool, bool, bool], text_column: str, line: int, bad):
    pair, chat, plain = layouts
    if pair:
        prompt, response = row.get("prompt"), row.get("response")
        for name, value in (("prompt", prompt), ("response", response)):
            if not isinstance(value, str) or not value.strip():
                return bad(line, f"empty or missing {name!r}; a prompt/response row needs both as text")
        turns = (("user", prompt), ("assistant", response))
    elif chat:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            return bad(line, "'messages' must be a non-empty list of {\"role\", \"content\"} objects")
        turns = []
        for k, m in enumerate(messages, start=1):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                return bad(line, f"message {k} must be an object with string 'role' and 'content'")
            if m["role"] not in ROLES:
                return bad(line, f"message {k} has the unknown role {m['role']!r}; roles are {', '.join(ROLES)}")
            turns.append((m["role"], m["content"]))
        if not any(role == "assistant" and content.strip() for role, content in turns):
            return bad(line, "the chat has no assistant turn with text; the model learns the assistant's replies, so "
                             "each chat needs at least one")
        turns = tuple(turns)
    elif not plain:
        return bad(line, f"no 'prompt'/'response', 'messages' or {text_column!r}; give the row one of those layouts")
    else:
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            return bad(line, f"empty or missing text in column {text_column!r}")
        turns = ()
    content = [c for _, c in turns] or [row[text_column]]
    hit = next((m for c in content if (m := _SURROGATE.search(c))), None)
    if hit:
        return bad(line, f"the text holds an unpaired surrogate {hit.group()!r}, which is not valid Unicode (a broken "
                         "\\uXXXX escape)")
    return GenerationExample(messages=turns, text="" if turns else row[text_column], line=line)


def _read_paragraphs(path: Path):
    """A .txt file as rows of plain text: one per paragraph (lines up to a blank line), with its first line."""
    lines, first = [], 1
    for number, line in enumerate([*_lines(path), ""], start=1):
        if line.strip():
            first = first if lines else number
            lines.append(line)
        elif lines:
            yield first, {"text": "\n".join(lines)}
            lines = []


def read_text(path: Path) -> str:
    """The file's text (UTF-8, BOM allowed); an undecodable byte is reported with its line."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte-order mark (Excel's "Unicode text")
        raise DataError(f"{path}: the file is UTF-16 encoded; edgeft reads UTF-8. Re-save it as UTF-8 "
                        f"(e.g. iconv -f utf-16 -t utf-8 {path.name} > {path.stem}-utf8{path.suffix}).")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}:{line}: byte 0x{raw[e.start]:02x} is not valid UTF-8. Re-save the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8), or remove the row."
        ) from None


def _lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def _read_jsonl(path: Path, bad):
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            bad(number, f"not valid JSON ({e.msg} at column {e.colno})")


def _read_delimited(path: Path, delimiter: str):
    text = read_text(path)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty. It needs a header line and at least one row.")
        header = [h.strip() for h in header]
        _check_header(path, header, delimiter)
        start = reader.line_num + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                sep = "tab" if delimiter == "\t" else "comma"
                yield start, f"has {len(row)} fields but the header has {len(header)} ({sep}-separated)"
            else:
                yield start, dict(zip(header, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: broken CSV quoting ({e}). Quote fields that contain "
                        f"the delimiter, and double any quote inside a quoted field.") from None


def _check_header(path: Path, header: list[str], delimiter: str) -> None:
    """A header of one column holding another separator means the wrong delimiter; a repeated
    column name would let one column silently shadow the other."""
    others = [sep for sep in SEPARATORS if sep != delimiter and sep in header[0]]
    if len(header) == 1 and others:
        raise DataError(f"{path}:1: the header {header[0]!r} reads as one column: the file looks "
                        f"{SEPARATORS[others[0]]}-separated, but {path.suffix} files are read as "
                        f"{SEPARATORS[delimiter]}-separated. Save it with commas as .csv, or with tabs as .tsv.")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{path}:1: column {repeated[0]!r} appears {header.count(repeated[0])} times in the header; "
                        "give each column its own name.")


def _read_conll(path: Path):
    tokens, tags, first = [], [], 1
    for number, line in enumerate([*_lines(path), ""], start=1):
        if not line.strip():
            if tokens:
                yield first, {"tokens": tokens, "tags": tags}
            tokens, tags, first = [], [], number + 1
            continue
        if line.startswith("-DOCSTART-"):
            first = number + 1
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise DataError(f"{path}:{number}: expected 'token<TAB>tag', got {line[:60]!r}.")
        tokens.append(parts[0])
        tags.append(parts[-1])


def check_labels(ds: Dataset, known: list[str], what: str = "the training data") -> None:
    """Raise DataError at the first example whose label the model does not know."""
    if ds.task in ("question-answering", "text-generation"):
        return  # answers are spans of the context / free text, not labels
    known_set = set(known)
    for ex in ds.examples:
        found = [t for t in ex.tags if t not in known_set] if ds.task == "token-classification" else (
            [ex.label] if ex.label not in known_set else [])
        if found:
            shown = ", ".join(sorted(known)[:20]) + (" …" if len(known) > 20 else "")
            raise DataError(f"{ds.path}:{ex.line}: label {found[0]!r} does not occur in {what} "
                            f"(known: {shown}). Fix the label or add examples of it to the training data.")


def split_dataset(ds: Dataset, validation: float = 0.1, test: float = 0.1, seed: int = 42
                  ) -> tuple[Dataset, Dataset, Dataset]:
    """Seeded split into train/validation/test, stratified by label for classification.

    A fraction of 0 makes no such split. Each class needs one example per split it goes into.
    """
    if ds.task == "question-answering":  # by paragraph: a context is never in two splits
        from edgeft.squad import split_by_context

        parts = split_by_context(ds.examples, validation, test, seed)
        if not parts[0] or (validation > 0 and not parts[1]) or (test > 0 and not parts[2]):
            raise DataError(f"{ds.path}: {len({ex.context for ex in ds.examples})} distinct context(s); a "
                            f"train/validation/test split by paragraph needs at least 3. Add questions on other "
                            f"paragraphs, or pass --validation and --test files.")
        return tuple(Dataset(path=f"{ds.path}#{name}", task=ds.task, examples=part)
                     for name, part in zip(("train", "validation", "test"), parts))
    rng = random.Random(seed)
    if ds.task == "text-classification":
        groups = defaultdict(list)
        for ex in ds.examples:
            groups[ex.label].append(ex)
    else:
        groups = {"": list(ds.examples)}
    parts: tuple[list, list, list] = ([], [], [])
    need = 1 + (validation > 0) + (test > 0)
    for label in sorted(groups, key=_label_order):
        items = groups[label]
        if len(items) < need:
            where = f"class {label!r} has {len(items)} example(s)" if label else f"only {len(items)} example(s)"
            raise DataError(f"{ds.path}: {where}; a stratified train/validation/test split needs at least {need} "
                            f"per class. Add examples, drop the class, or pass --validation and --test files.")
        rng.shuffle(items)
        n_val = max(1, round(len(items) * validation)) if validation > 0 else 0
        n_test = max(1, round(len(items) * test)) if test > 0 else 0
        parts[1].extend(items[:n_val])
        parts[2].extend(items[n_val:n_val + n_test])
        parts[0].extend(items[n_val + n_test:])
    for part in parts:  # interleave classes again (deterministically)
        rng.shuffle(part)
    return tuple(Dataset(path=f"{ds.path}#{name}", task=ds.task, examples=part)
                 for name, part in zip(("train", "validation", "test"), parts))


def write_jsonl(ds: Dataset, path: str | Path) -> None:
    """Save a split as JSONL (text/label, tokens/tags or SQuAD rows), atomically."""
    from edgeft.squad import QAExample, to_row

    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex in ds.examples:
            row = {"text": ex.text, "label": ex.label} if isinstance(ex, TextExample) else to_row(ex) \
                if isinstance(ex, QAExample) else generation_row(ex) if isinstance(ex, GenerationExample) \
                else {"tokens": list(ex.tokens), "tags": list(ex.tags)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def generation_row(ex: GenerationExample) -> dict:
    """The JSONL row of a text-generation example, in the layout it was read from."""
    if not ex.messages:
        return {"text": ex.text}
    if [role for role, _ in ex.messages] == ["user", "assistant"]:
        return {"prompt": ex.messages[0][1], "response": ex.messages[1][1]}
    return {"messages": [{"role": role, "content": content} for role, content in ex.messages]}


def fingerprint(*datasets: Dataset) -> str:
    """sha256 over the examples' content: the same data gives the same id whatever the file format."""
    h = hashlib.sha256()
    for ds in datasets:
        for ex in ds.examples:
            h.update(json.dumps([ex.text, ex.label] if isinstance(ex, TextExample) else [ex.tokens, ex.tags]
                                if isinstance(ex, TokenExample) else [ex.messages, ex.text]
                                if isinstance(ex, GenerationExample) else [ex.question, ex.context, ex.answers, ex.starts],
                                ensure_ascii=False).encode())
        h.update(b"\x00")
    return h.hexdigest()


def model_input(ex) -> str | tuple[str, str]:
    """What a model reads for an example: its text, its words joined, a (question, context) pair, or a
    generation row's text (its turns' contents, one per line)."""
    if isinstance(ex, TextExample):
        return ex.text
    if isinstance(ex, GenerationExample):
        return ex.text or "\n".join(content for _, content in ex.messages)
    return " ".join(ex.tokens) if isinstance(ex, TokenExample) else (ex.question, ex.context)
