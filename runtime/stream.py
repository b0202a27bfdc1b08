"""Stream texts through a Predictor: a file of any size, or stdin, in chunks, at constant memory.

``edgeft predict --input`` sits on this. Rows come from ``.jsonl`` (a ``text`` field; QA:
``question`` and ``context``) or ``.txt`` (one text per line; stdin too, or JSON rows for QA), and
answers go out as one JSON object per line, each with its input line number, so output and input
stay aligned. Rows are read lazily: a pipe's line is answered as soon as its chunk is full
(``chunk=1``: at once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from edgeft.errors import DataError


def check_input(path: Path, qa: bool = False) -> None:
    """Refuse, before any work, an input file that is missing or of a kind ``read_rows`` cannot read."""
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    if path.suffix.lower() not in (".jsonl", ".txt"):
        raise DataError(f"--input {path}: use a .jsonl file (rows with a 'text' field) or a .txt file (one text per line)")
    if qa and path.suffix.lower() != ".jsonl":
        raise DataError(f"--input {path}: a question-answering bundle reads .jsonl rows with 'question' and 'context'")


def read_rows(lines: Iterable[bytes], source: Path, txt: bool = False, qa: bool = False
              ) -> Iterator[tuple[int, str | tuple[str, str]]]:
    """(line number, text or (question, context)) for each input line; blank JSONL lines are skipped.

    Args:
        lines: raw lines as a binary file or pipe yields them.
        source: the file's name, for messages (``<stdin>``); its suffix says .txt or JSONL unless ``txt``.
        txt: every line is a text (stdin for a classifier); qa: JSON rows with question and context.
    Raises:
        DataError naming ``source:line`` for a line that is not UTF-8 or not the expected JSON.
    """
    for n, line in enumerate(lines, 1):
        item = read_row(source, n, line, txt=txt, qa=qa)
        if item is not None:
            yield n, item


def read_row(path: Path, n: int, line: bytes, txt: bool = False, qa: bool = False):
    """One input line → its text, or (question, context) for QA (None for a blank JSONL line);
    DataError naming file:line otherwise."""
    text = decode_line(path, n, line)
    if txt or path.suffix.lower() == ".txt":
        return text.rstrip("\r\n")  # every line is a text, even an empty one: output lines stay aligned
    if not text.strip():
        return None
    row = json_line(path, n, text)
    if qa:
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "context")):
            raise DataError(f"{path}:{n}: expected an object with string fields 'question' and 'context'")
        return row["question"], row["context"]
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise DataError(f"{path}:{n}: expected an object with a string field 'text'")
    return row["text"]


def decode_line(path: Path, n: int, line: bytes) -> str:
    """Line ``n`` of ``path`` as text; DataError naming file:line when it is not UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{n}: not UTF-8 ({e}); convert the file to UTF-8") from None


def json_line(path: Path, n: int, text: str):
    """Line ``n`` of a JSONL file parsed; DataError naming file:line when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{n}: not valid JSON ({e}); write one JSON object per line") from None


def predict_stream(predictor, rows: Iterable[tuple[int, object]], out: TextIO, chunk: int = 512) -> tuple[int, int]:
    """Predict ``rows`` (from ``read_rows``) ``chunk`` at a time and write one JSON line per row to ``out``,
    flushed after every chunk.

    Returns:
        (rows answered, rows truncated to the bundle's max length).
    """
    count = truncated = 0
    batch: list[tuple[int, object]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            truncated += _flush(predictor, batch, out)
            count, batch = count + len(batch), []
    truncated += _flush(predictor, batch, out)
    return count + len(batch), truncated


def _flush(predictor, batch: list[tuple[int, object]], out: TextIO) -> int:
    if not batch:
        return 0
    results = predictor.predict([item for _, item in batch])
    for (n, _), result in zip(batch, results):
        out.write(json.dumps({"line": n, **result.to_dict()}, ensure_ascii=False) + "\n")
    out.flush()
    return sum(r.truncated for r in results)
