"""The bad-input corpus: messy data files, out-of-range flags, damaged or hostile bundles and odd
texts, each run through the real CLI.

One row per case: how the input is made, the command, the exit code, the exact message (a
substring of the output, compared with whitespace collapsed) and, where it matters, text that
must *not* appear (e.g. progress lines proving the refusal came before any work). Every case
also asserts that no traceback was printed: the command either succeeded or ended with one
``error: …`` line. README "Reliability" and SECURITY.md list these rows.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from tiny_models import DATA
from typer.testing import CliRunner

from edgeft.runtime.manifest import file_digest

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

runner = CliRunner()
SST2 = DATA / "sst2_300.jsonl"
MB = 1 << 20


@dataclass
class Ctx:
    """What a case may use: a private temp folder, the tiny bundles and the tiny HF model."""

    tmp: Path
    bundle: Path  # tiny BERT sentiment bundle (labels negative, positive)
    ner: Path  # tiny BERT NER bundle (O, B-/I-location, B-/I-person)
    model: Path  # tiny BERT HF folder (what `edgeft train --model` takes)
    cleanup: list

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        return self.file(name, "".join(json.dumps(r) + "\n" for r in rows))

    def copy(self) -> Path:
        return Path(shutil.copytree(self.bundle, self.tmp / "b"))


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Ctx], list]  # builds the input, returns the CLI arguments
    code: int  # expected exit code: 0 = handled, 2 = user mistake, 1 = the machine (disk, mount)
    message: str  # exact substring of the output; "{tmp}": the case's temp folder, "{model}": the tiny model
    absent: str = ""  # must not be in the output (e.g. progress of work that must not start)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def evaluate(name: str, content: str | bytes, *extra: str):
    """`edgeft eval` of the tiny sentiment bundle on a data file (the runtime reads data like training)."""
    return lambda c: ["eval", c.bundle, "--data", c.file(name, content), *extra]


def evaluate_ner(rows: list[dict] | str, name: str = "ner.jsonl"):
    return lambda c: ["eval", c.ner, "--data", c.file(name, rows) if isinstance(rows, str) else c.jsonl(name, rows)]


def train(*args: str, data: Callable[[Ctx], Path] | None = None):
    """`edgeft train` on the tiny model; every case here fails before any training starts."""
    def make(c: Ctx) -> list:
        source = data(c) if data else SST2
        return ["train", "--model", c.model, "--out", c.tmp / "out", "--data", source, *args]
    return make


def rows(labels: list[str], per_label: int = 4) -> Callable[[Ctx], Path]:
    return lambda c: c.jsonl("d.jsonl", [{"text": f"text {i} {label}", "label": label}
                                         for i in range(per_label) for label in labels])


def chat(messages: list) -> Callable[[Ctx], Path]:
    return lambda c: c.jsonl("d.jsonl", [{"messages": messages}])


def tiny_lm(c: Ctx) -> Path:
    from tiny_models import make_tiny_lm

    return make_tiny_lm(c.tmp / "lm")


def long_rows(c: Ctx) -> Path:
    """Nine short pairs and, on line 4, one of 24 tokens (1 + 20 prompt words + 1 + reply + EOS)."""
    rows = [{"prompt": "film", "response": "film"} for _ in range(9)]
    rows.insert(3, {"prompt": "film " * 20, "response": "film"})
    return c.jsonl("d.jsonl", rows)


def predict(*texts: str, bundle: str = "bundle"):
    return lambda c: ["predict", getattr(c, bundle), *texts]


def tampered(mutate: Callable[[Path], None]):
    """`edgeft predict` on a copy of the tiny bundle changed by ``mutate``."""
    def make(c: Ctx) -> list:
        b = c.copy()
        mutate(b)
        return ["predict", b, "hello"]
    return make


def edit_manifest(**changes):
    def mutate(b: Path) -> None:
        data = json.loads((b / "edgeft.json").read_text())
        data.update(changes)
        (b / "edgeft.json").write_text(json.dumps(data))
    return mutate


def list_file(name: str):
    def mutate(b: Path) -> None:
        data = json.loads((b / "edgeft.json").read_text())
        data["files"][name] = {"sha256": "0" * 64, "size": 1}
        (b / "edgeft.json").write_text(json.dumps(data))
    return mutate


def rehash(b: Path) -> None:
    """Record the current model.onnx in the manifest: the damage then reaches onnxruntime."""
    data = json.loads((b / "edgeft.json").read_text())
    data["files"]["model.onnx"] = file_digest(b / "model.onnx")
    (b / "edgeft.json").write_text(json.dumps(data))


def truncate_model(keep_hash: bool):
    def mutate(b: Path) -> None:
        blob = (b / "model.onnx").read_bytes()
        (b / "model.onnx").write_bytes(blob[: len(blob) // 2])
        if keep_hash:
            rehash(b)
    return mutate


def unknown_op(b: Path) -> None:
    """Turn one node into an operator of a domain onnxruntime has never heard of."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(b / "model.onnx"))
    model.graph.node[0].op_type, model.graph.node[0].domain = "Frobnicate", "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(model, str(b / "model.onnx"))
    rehash(b)


def garbage_tokenizer(b: Path) -> None:
    (b / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    data = json.loads((b / "edgeft.json").read_text())
    data["files"]["tokenizer.json"] = file_digest(b / "tokenizer.json")
    (b / "edgeft.json").write_text(json.dumps(data))


def symlink_out(b: Path) -> None:
    secret = b.parent / "secret.txt"
    secret.write_text("not yours")
    (b / "notes.txt").symlink_to(secret)
    data = json.loads((b / "edgeft.json").read_text())
    data["files"]["notes.txt"] = file_digest(secret)
    (b / "edgeft.json").write_text(json.dumps(data))


def zipped(extra: dict[str, bytes] | None = None, declare: int | None = None, cut: int = 0):
    """`edgeft predict` on a .zip of the tiny bundle plus ``extra`` members.

    ``declare``: patch the central directory so each extra member claims this many bytes — a zip
    bomb's signature (a tiny archive that says it inflates to gigabytes), without the gigabytes.
    ``cut``: drop this many bytes from the end (a truncated download).
    """
    def make(c: Ctx) -> list:
        z = c.tmp / "bundle.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(c.bundle.iterdir()):
                zf.write(f, f.name)
            for name, data in (extra or {}).items():
                zf.writestr(name, data)
        blob = bytearray(z.read_bytes())
        if declare is not None:
            at = blob.find(b"PK\x01\x02")  # central directory entries: size at +24, name length at +28
            while at != -1:
                (length,) = struct.unpack_from("<H", blob, at + 28)
                if blob[at + 46:at + 46 + length].decode() in (extra or {}):
                    struct.pack_into("<I", blob, at + 24, declare)
                at = blob.find(b"PK\x01\x02", at + 46)
        z.write_bytes(bytes(blob[: len(blob) - cut]))
        return ["predict", z, "hello"]
    return make


def nonempty(c: Ctx) -> Path:
    folder = c.tmp / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder


def readonly(c: Ctx) -> Path:
    """A folder nobody can write to. Root ignores permission bits, so as root it is a read-only
    tmpfs mount (skipped where mounting is not allowed)."""
    folder = c.tmp / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        c.cleanup.append(lambda: folder.chmod(0o755))
        return folder
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    c.cleanup.append(lambda: subprocess.run(["umount", str(folder)], check=True))
    return folder


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

OK2 = "on 2 examples"
BIG = "word " * (MB // 5)  # 1 MB of text, thousands of tokens over max_length
HUGE_LINE = "word " * (5 * MB // 5)  # a 5 MB single line

CASES = [
    # --- data files: encodings and line endings -----------------------------------------------
    Case("data-utf8-bom-csv", evaluate("d.csv", "\ufefftext,label\ngood film,positive\ndull,negative\n"), 0, OK2),
    Case("data-utf8-bom-jsonl", evaluate("d.jsonl", '\ufeff{"text": "good", "label": "positive"}\n'
                                                    '{"text": "dull", "label": "negative"}\n'), 0, OK2),
    Case("data-crlf-csv", evaluate("d.csv", "text,label\r\ngood film,positive\r\ndull,negative\r\n"), 0, OK2),
    Case("data-crlf-inside-quotes", evaluate("d.csv", 'text,label\r\n"two\r\nlines",positive\r\ndull,negative\r\n'), 0, OK2),
    Case("data-latin1", evaluate("d.csv", "text,label\ncafé,positive\n".encode("latin-1")), 2,
         "d.csv:2: byte 0xe9 is not valid UTF-8. Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or remove the row."),
    Case("data-mixed-encodings", evaluate("d.csv", "text,label\ngood,positive\n".encode() + "naïve,negative\n".encode("cp1252")),
         2, "d.csv:3: byte 0xef is not valid UTF-8"),
    Case("data-utf16", evaluate("d.csv", "text,label\ngood,positive\n".encode("utf-16")), 2,
         "d.csv: the file is UTF-16 encoded; edgeft reads UTF-8. Re-save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8 d.csv > d-utf8.csv)."),
    # --- data files: CSV structure ---------------------------------------------------------------
    Case("data-broken-quoting", evaluate("d.csv", 'text,label\n"good,positive\ndull,negative\n'), 2,
         "d.csv:3: broken CSV quoting (unexpected end of data). Quote fields that contain the delimiter, and double any "
         "quote inside a quoted field."),
    Case("data-quote-inside-field", evaluate("d.csv", 'text,label\n"good" film,positive\n'), 2,
         "d.csv:2: broken CSV quoting (',' expected after '\"')"),
    Case("data-semicolon-delimiter", evaluate("d.csv", "text;label\ngood;positive\n"), 2,
         "d.csv:1: the header 'text;label' reads as one column: the file looks semicolon-separated, but .csv files are read "
         "as comma-separated. Save it with commas as .csv, or with tabs as .tsv."),
    Case("data-tabs-in-csv", evaluate("d.csv", "text\tlabel\ngood\tpositive\n"), 2, "the file looks tab-separated, but .csv"),
    Case("data-commas-in-tsv", evaluate("d.tsv", "text,label\ngood,positive\n"), 2,
         "the file looks comma-separated, but .tsv files are read as tab-separated"),
    Case("data-duplicate-column", evaluate("d.csv", "text,label,text\ngood,positive,dull\n"), 2,
         "d.csv:1: column 'text' appears 2 times in the header; give each column its own name."),
    Case("data-missing-column", evaluate("d.csv", "text,stars\ngood,5\n"), 2,
         "d.csv:2: no column 'label'; the columns are 'text', 'stars'. Name yours with --text-column/--label-column."),
    Case("data-missing-key-jsonl", evaluate("d.jsonl", '{"review": "good", "label": "positive"}\n'), 2,
         "d.jsonl:1: no column 'text'; the columns are 'review', 'label'."),
    Case("data-short-row", evaluate("d.csv", "text,label\ngood,positive\ndull\n"), 2,
         "d.csv:3: has 1 fields but the header has 2 (comma-separated). Fix the row, or pass --skip-bad-rows"),
    Case("data-header-only", evaluate("d.csv", "text,label\n"), 2, "d.csv: no examples. A data file needs at least one labeled row."),
    Case("data-empty-csv", evaluate("d.csv", ""), 2, "d.csv: the file is empty. It needs a header line and at least one row."),
    Case("data-empty-jsonl", evaluate("d.jsonl", "\n\n"), 2, "d.jsonl: no examples."),
    Case("data-5mb-line-csv", evaluate("d.csv", f"text,label\n{HUGE_LINE},positive\n"), 0, "on 1 examples (1 truncated"),
    Case("data-5mb-line-jsonl", evaluate("d.jsonl", json.dumps({"text": HUGE_LINE, "label": "positive"}) + "\n"), 0,
         "on 1 examples (1 truncated"),
    # --- data files: rows and labels -----------------------------------------------------------
    Case("data-label-case", train(data=rows(["positive", "Positive", "negative"])), 2,
         "d.jsonl:2: label 'Positive' differs only by case or spacing from 'positive' (line 1); spell each label one way, "
         "or they become two classes."),
    Case("data-label-inner-space", train(data=rows(["very good", "very  good", "bad"])), 2,
         "label 'very  good' differs only by case or spacing from 'very good'"),
    Case("data-label-outer-space", evaluate("d.csv", "text,label\ngood, positive \ndull,negative\n"), 0, OK2),
    Case("data-one-example-class", train(data=lambda c: c.jsonl("d.jsonl", [*({"text": f"t{i}", "label": "a"} for i in range(9)),
                                                                           {"text": "lonely", "label": "b"}])), 2,
         "d.jsonl: class 'b' has 1 example(s); a stratified train/validation/test split needs at least 3 per class. Add "
         "examples, drop the class, or pass --validation and --test files."),
    Case("data-single-label", train(data=rows(["only"], 10)), 2,
         "only one label ('only') in the training data; a classifier needs at least two."),
    Case("data-unknown-label", evaluate("d.csv", "text,label\ngood,positive\nmeh,neutral\n"), 2,
         "d.csv:3: label 'neutral' does not occur in the bundle's labels (known: negative, positive)"),
    Case("data-empty-text", evaluate("d.csv", 'text,label\ngood,positive\n"  ",negative\n'), 2,
         "d.csv:3: empty or missing text in column 'text'. Fix the row, or pass --skip-bad-rows to skip such rows."),
    Case("data-float-label", evaluate("d.jsonl", '{"text": "good", "label": 0.5}\n'), 2,
         "d.jsonl:1: empty or invalid label in column 'label' (labels are strings or integers)"),
    Case("data-skip-bad-rows", evaluate("d.csv", 'text,label\ngood,positive\n"  ",negative\ndull,negative\n', "--skip-bad-rows"),
         0, "on 2 examples (0 truncated, 1 skipped"),
    Case("data-jsonl-not-object", evaluate("d.jsonl", '["good", "positive"]\n'), 2,
         "d.jsonl:1: expected an object with 'text' and 'label', got list"),
    Case("data-jsonl-broken-line", evaluate("d.jsonl", '{"text": "good", "label": "positive"}\n{"text": "dull",\n'), 2,
         "d.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes at column 17)"),
    Case("data-jsonl-lone-surrogate", evaluate("d.jsonl", '{"text": "bad \\ud800 film", "label": "negative"}\n'), 2,
         "d.jsonl:1: the text holds an unpaired surrogate '\\ud800', which is not valid Unicode (a broken \\uXXXX escape)."),
    Case("data-jsonl-escaped-null", evaluate("d.jsonl", '{"text": "a\\u0000b", "label": "negative"}\n'), 0, "on 1 examples"),
    Case("data-jsonl-raw-null-byte", evaluate("d.jsonl", b'{"text": "a\x00b", "label": "negative"}\n'), 2,
         "d.jsonl:1: not valid JSON (Invalid control character at"),
    Case("data-csv-null-byte", evaluate("d.csv", b"text,label\na\x00b,negative\n"), 0, "on 1 examples"),
    Case("data-ner-not-bio", evaluate_ner([{"tokens": ["Meet", "Jo"], "tags": ["O", "PER"]}]), 2,
         "ner.jsonl:1: tag 'PER' is not in BIO form (use O, B-TYPE, I-TYPE)."),
    Case("data-ner-length-mismatch", evaluate_ner([{"tokens": ["Meet", "Jo"], "tags": ["O"]}]), 2,
         "ner.jsonl:1: 2 tokens but 1 tags; each token needs exactly one tag."),
    Case("data-conll-missing-tag", evaluate_ner("Meet\tO\nJo\n", "ner.conll"), 2, "ner.conll:2: expected 'token<TAB>tag', got 'Jo'."),
    Case("data-unknown-suffix", evaluate("d.xlsx", "PK\x03\x04"), 2,
         "d.xlsx: unknown file type '.xlsx'; use .csv, .tsv, .jsonl or .conll."),
    Case("data-is-a-folder", lambda c: ["eval", c.bundle, "--data", c.tmp], 2, "is a folder; pass a CSV, TSV, JSONL or CoNLL file."),
    Case("data-missing-file", lambda c: ["eval", c.bundle, "--data", c.tmp / "nope.csv"], 2, "nope.csv: no such file."),
    # --- data files: text generation (read before any model is loaded; the long row needs a tiny LM) ---
    Case("gen-chat-no-assistant", train(data=chat([{"role": "user", "content": "hi"}])), 2,
         "d.jsonl:1: the chat has no assistant turn with text; the model learns the assistant's replies, so each chat "
         "needs at least one. Fix the row, or pass --skip-bad-rows to skip such rows."),
    Case("gen-chat-unknown-role", train(data=chat([{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "yo"}])),
         2, "d.jsonl:1: message 1 has the unknown role 'bot'; roles are system, user, assistant."),
    Case("gen-chat-message-not-object", train(data=chat(["hi", {"role": "assistant", "content": "yo"}])), 2,
         "d.jsonl:1: message 1 must be an object with string 'role' and 'content'."),
    Case("gen-chat-messages-not-list", train(data=lambda c: c.jsonl("d.jsonl", [{"messages": "hi"}])), 2,
         "d.jsonl:1: 'messages' must be a non-empty list of {\"role\", \"content\"} objects."),
    Case("gen-empty-response", train(data=lambda c: c.jsonl("d.jsonl", [{"prompt": "hi", "response": " "}])), 2,
         "d.jsonl:1: empty or missing 'response'; a prompt/response row needs both as text."),
    Case("gen-prompt-without-response", train(data=lambda c: c.jsonl("d.jsonl", [{"prompt": "hi"}])), 2,
         "d.jsonl:1: empty or missing 'response'"),
    Case("gen-no-layout", train("--task", "text-generation", data=lambda c: c.jsonl("d.jsonl", [{"review": "good"}])), 2,
         "d.jsonl:1: no column 'prompt'/'response', 'messages' or 'text'; the columns are 'review'."),
    Case("gen-lone-surrogate", train(data=lambda c: c.file("d.jsonl", '{"prompt": "bad \\ud800", "response": "x"}\n')), 2,
         "d.jsonl:1: the text holds an unpaired surrogate '\\ud800', which is not valid Unicode"),
    Case("gen-empty-txt", train(data=lambda c: c.file("d.txt", "\n \n")), 2,
         "d.txt: no examples. Text generation needs at least one prompt/response pair, chat or text."),
    Case("gen-row-over-context", lambda c: ["train", "--model", tiny_lm(c), "--out", c.tmp / "out", "--max-length", "16",
                                            "--data", long_rows(c)], 2,
         "d.jsonl:4: the row is 24 tokens, longer than the context window of 16 (--max-length). Shorten it, raise "
         "--max-length, or pass --skip-bad-rows to truncate such rows."),
    # --- CLI values ----------------------------------------------------------------------------------
    Case("cli-epochs-zero", train("--epochs", "0"), 2, "error: --epochs must be > 0 (got 0.0)"),
    Case("cli-epochs-negative", train("--epochs", "-1"), 2, "error: --epochs must be > 0 (got -1.0)"),
    Case("cli-batch-size-zero", train("--batch-size", "0"), 2, "error: --batch-size must be >= 1 (got 0)"),
    Case("cli-lr-negative", train("--lr", "-0.1"), 2, "error: --lr must be > 0 (got -0.1)"),
    Case("cli-max-length-above-positions", train("--max-length", "100000"), 2,
         "--max-length 100000 is above what {model} supports (128 tokens); use --max-length 128 or less."),
    Case("cli-unknown-task", train("--task", "translation"), 2,
         "--task must be one of text-classification | token-classification | question-answering | text-generation"),
    Case("cli-hp-space-not-json", train("--hp-search", "2", "--hp-space", "{lr: 1}"), 2,
         "--hp-space must be a JSON object like '{\"learning_rate\": [1e-5, 3e-5]}', got '{lr: 1}'"),
    Case("cli-resume-without-checkpoint", lambda c: ["train", "--model", c.model, "--data", SST2, "--out", c.tmp / "new", "--resume"],
         2, "--resume: no checkpoint in {tmp}/new/checkpoints to continue from; run without --resume."),
    Case("cli-unknown-target-quantize", lambda c: ["quantize", c.bundle, "--data", SST2, "--out", c.tmp / "q", "--target", "pi9"],
         2, "unknown target 'pi9'; valid targets: arm64, rpi4, rpi5, android-arm64, x86_64"),
    Case("cli-unknown-target-build", lambda c: ["build", "--model", c.model, "--target", "pi9", "--dry-run", "--out", c.tmp / "o"],
         2, "target 'pi9' is unknown; choose one of: arm64, rpi4, rpi5, android-arm64, x86_64"),
    Case("cli-opset-unsupported", lambda c: ["export", c.model, "--out", c.tmp / "b", "--opset", "7"], 2,
         "--opset must be in [13, 23] (got 7)"),
    Case("cli-predict-batch-size-zero", lambda c: ["predict", c.bundle, "hi", "--batch-size", "0"], 2, "--batch-size must be ≥ 1, not 0"),
    Case("cli-predict-threads-zero", lambda c: ["predict", c.bundle, "hi", "--threads", "0"], 2, "--threads must be ≥ 1, not 0"),
    Case("cli-predict-nothing", lambda c: ["predict", c.bundle], 2, "error: give texts as arguments"),  # … or --input
    Case("cli-out-is-a-file", lambda c: ["train", "--model", c.model, "--data", SST2, "--out", c.file("out", "x")], 2,
         "--out {tmp}/out is a file; choose a folder path."),
    Case("cli-out-not-empty-train", lambda c: ["train", "--model", c.model, "--data", SST2, "--out", nonempty(c)], 2,
         "--out {tmp}/out is not empty; choose a new folder, pass --resume to continue that run, or --force to replace it."),
    Case("cli-out-not-empty-train-force", lambda c: ["train", "--model", c.model, "--data", c.tmp / "no.csv", "--out", nonempty(c),
                                                     "--force"], 2, "no.csv: no such file"),  # --force got past the check
    Case("cli-out-not-empty-build", lambda c: ["build", "--model", c.model, "--target", "arm64", "--dry-run", "--out", nonempty(c)],
         2, "--out {tmp}/out is not empty and not an edgeft build folder; choose a new folder, or pass --force to build into it"),
    Case("cli-out-not-empty-build-force", lambda c: ["build", "--model", c.model, "--target", "arm64", "--dry-run", "--force",
                                                     "--out", nonempty(c)], 0, "recipe OK; data:"),
    Case("cli-out-not-a-bundle-export", lambda c: ["export", c.model, "--out", nonempty(c)], 2,
         "--out {tmp}/out exists and is not an edgeft bundle; choose another path or remove it.", absent="loading"),
    Case("cli-out-read-only-train", lambda c: ["train", "--model", c.model, "--data", SST2, "--out", readonly(c) / "run"], 2,
         "--out {tmp}/ro/run: cannot write in {tmp}/ro ("),
    Case("cli-out-read-only-export", lambda c: ["export", c.model, "--out", readonly(c) / "b"], 2,
         "--out {tmp}/ro/b: cannot write in {tmp}/ro (", absent="loading"),
    Case("cli-out-read-only-quantize", lambda c: ["quantize", c.bundle, "--data", SST2, "--out", readonly(c) / "q"], 2,
         "--out {tmp}/ro/q: cannot write in {tmp}/ro (", absent="FP32"),
    # --- bundles -------------------------------------------------------------------------------------
    Case("bundle-truncated-model", tampered(truncate_model(keep_hash=False)), 2,
         "bytes but the manifest says"),  # then the size and "; the bundle was changed after it was written"
    Case("bundle-truncated-model-rehashed", tampered(truncate_model(keep_hash=True)), 2,
         "{tmp}/b: onnxruntime cannot load model.onnx"),
    Case("bundle-manifest-not-json", tampered(lambda b: (b / "edgeft.json").write_text("{not json")), 2,
         "{tmp}/b/edgeft.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
         "the bundle is damaged — rebuild it"),
    Case("bundle-manifest-empty", tampered(lambda b: (b / "edgeft.json").write_text("")), 2, "edgeft.json is not valid JSON"),
    Case("bundle-manifest-missing", tampered(lambda b: (b / "edgeft.json").unlink()), 2,
         "{tmp}/b has no edgeft.json: not a bundle (build one with `edgeft export`)"),
    Case("bundle-future-format", tampered(edit_manifest(format_version=99)), 2,
         "{tmp}/b/edgeft.json has format version 99, but this edgeft reads up to version 1: upgrade edgeft (pip install -U edgeft)"),
    Case("bundle-file-outside-dotdot", tampered(list_file("../x")), 2,
         "{tmp}/b/edgeft.json names the file '../x', which is outside the bundle folder; a bundle may only list files inside itself"),
    Case("bundle-file-outside-absolute", tampered(list_file("/etc/passwd")), 2,
         "names the file '/etc/passwd', which is outside the bundle folder"),
    Case("bundle-model-file-outside", tampered(edit_manifest(model_file="../model.onnx")), 2, "files has no entry for '../model.onnx'"),
    Case("bundle-symlink-out", tampered(symlink_out), 2, "{tmp}/b/notes.txt resolves outside the bundle folder; refusing to read it"),
    Case("bundle-unknown-op", tampered(unknown_op), 2,
         "{tmp}/b: model.onnx uses an operator this onnxruntime does not have: com.example:Frobnicate."),
    Case("bundle-tokenizer-not-tokenizer", tampered(garbage_tokenizer), 2, "{tmp}/b: tokenizer.json is not a tokenizers file"),
    Case("bundle-zip-slip", zipped({"../evil.txt": b"x"}), 2,
         "{tmp}/bundle.zip (zip entry) names the file '../evil.txt', which is outside the bundle folder"),
    Case("bundle-zip-absolute-entry", zipped({"/etc/cron.d/evil": b"x"}), 2, "names the file '/etc/cron.d/evil', which is outside"),
    Case("bundle-zip-bomb", zipped({f"pad{i}.bin": b"0" * 16 for i in range(3)}, declare=0xF000_0000), 2,
         "over the 8589934592-byte limit; refusing it (a zip bomb, or not a bundle)"),
    Case("bundle-zip-truncated", zipped(cut=200), 2, "{tmp}/bundle.zip is neither a bundle folder nor a .zip file"),
    Case("bundle-not-found", lambda c: ["predict", c.tmp / "nope", "hi"], 2,
         "bundle not found: {tmp}/nope (give the folder `edgeft export` wrote, or its .zip)"),
    # --- texts -----------------------------------------------------------------------------------------
    Case("text-empty", predict(""), 0, "predicted 1 text(s)"),
    Case("text-whitespace-only", predict(" \t\n "), 0, "predicted 1 text(s)"),
    Case("text-1mb", predict(BIG), 0, "1 truncated to 64 tokens"),
    Case("text-1mb-one-word", predict("x" * MB), 0, "predicted 1 text(s)"),
    Case("text-rtl", predict("هذا فيلم رائع", "הסרט הזה נהדר"), 0, "predicted 2 text(s)"),
    Case("text-bidi-override", predict("\u202egnirob\u202c film"), 0, "predicted 1 text(s)"),
    Case("text-zero-width", predict("\u200b\u200c\u200d\u2060\ufeff", "good\u200bfilm"), 0, "predicted 2 text(s)"),
    Case("text-combining-marks", predict("e" + "\u0301" * 500), 0, "predicted 1 text(s)"),
    Case("text-ner-rtl-zero-width", predict("Meet José\u200b in القاهرة", "\u200b", "", bundle="ner"), 0, "predicted 3 text(s)"),
    Case("text-input-file-mixed", lambda c: ["predict", c.bundle, "--input", c.jsonl("t.jsonl", [
        {"text": ""}, {"text": "   "}, {"text": BIG}, {"text": "שלום"}, {"text": "\u200b"}, {"text": "bad \ud800 escape"}])],
         0, "predicted 6 text(s)"),
    Case("text-input-crlf-txt", lambda c: ["predict", c.bundle, "--input", c.file("t.txt", "good\r\n\r\ndull\r\n")], 0,
         "predicted 3 text(s)"),
    Case("text-input-undecodable", lambda c: ["predict", c.bundle, "--input", c.file("t.txt", b"good\ncaf\xe9\n")], 2,
         "t.txt:2: not UTF-8"),
]


@pytest.fixture
def ctx(tmp_path, cls_bundle, ner_bundle, tiny_models):
    c = Ctx(tmp_path, cls_bundle, ner_bundle, tiny_models(), [])
    yield c
    for undo in reversed(c.cleanup):
        undo()


def test_the_corpus_is_large_and_ids_are_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx: Ctx):
    args = [str(a) for a in case.make(ctx)]
    result = runner.invoke(app(), args)
    output = " ".join(result.output.split())  # long messages may wrap
    # No traceback: the command returned, or stopped through typer.Exit / SystemExit (one error line).
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.exit_code == case.code, result.output
    message = case.message.replace("{tmp}", str(ctx.tmp)).replace("{model}", str(ctx.model))
    assert " ".join(message.split()) in output, result.output
    if case.code:
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.output
    if case.absent:
        assert case.absent not in result.output, result.output


def app():
    from edgeft.cli import app as edgeft

    return edgeft
