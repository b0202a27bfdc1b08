"""Reading user data: every format, every bad row reported with file:line and a fix."""

from __future__ import annotations

import json

import pytest

from edgeft.data import TextExample, detect_task, fingerprint, read_dataset, split_dataset
from edgeft.errors import DataError


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_reads_the_real_slices(data_dir):
    sst = read_dataset(data_dir / "sst2_300.jsonl")
    assert (sst.task, len(sst), sst.labels) == ("text-classification", 300, ["negative", "positive"])
    ner = read_dataset(data_dir / "wnut17_200.jsonl")
    assert ner.task == "token-classification" and len(ner) == 200
    assert ner.labels[0] == "O" and "B-person" in ner.labels
    assert all(len(ex.tokens) == len(ex.tags) for ex in ner.examples)


@pytest.mark.parametrize("name, content", [
    ("d.csv", "text,label\nhello,pos\n\"a, quoted\",neg\n"),
    ("d.tsv", "text\tlabel\nhello\tpos\na, quoted\tneg\n"),
    ("d.jsonl", '{"text": "hello", "label": "pos"}\n\n{"text": "a, quoted", "label": "neg"}\n'),
    ("d.csv", "\ufefftext,label\r\nhello,pos\r\n\"a, quoted\",neg\r\n"),  # BOM + CRLF (Excel)
])
def test_formats_give_the_same_examples(tmp_path, name, content):
    ds = read_dataset(write(tmp_path, name, content))
    assert [(e.text, e.label) for e in ds.examples] == [("hello", "pos"), ("a, quoted", "neg")]


def test_integer_labels_are_kept_as_strings_and_sorted_numerically(tmp_path):
    rows = "".join(json.dumps({"text": f"t{i}", "label": i % 11}) + "\n" for i in range(22))
    ds = read_dataset(write(tmp_path, "d.jsonl", rows))
    assert ds.labels == [str(i) for i in range(11)]


def test_conll_and_custom_columns(tmp_path):
    ds = read_dataset(write(tmp_path, "d.conll", "Paris\tB-location\nis\tO\n\t\nBob\tB-person\n"))
    assert [(e.tokens, e.tags, e.line) for e in ds.examples] == [
        (("Paris", "is"), ("B-location", "O"), 1), (("Bob",), ("B-person",), 4)]
    ds = read_dataset(write(tmp_path, "c.csv", "review,stars\ngreat,5\n"), text_column="review", label_column="stars")
    assert ds.examples == [TextExample("great", "5", 2)]


BAD = [  # (file name, content, expected message fragment)
    ("d.csv", "text,label\nhello,\n", "d.csv:2: empty or invalid label in column 'label'"),
    ("d.csv", "text,label\n,pos\n", "d.csv:2: empty or missing text in column 'text'"),
    ("d.csv", "sentence,label\nhello,pos\n", "d.csv:2: no column 'text'; the columns are 'sentence', 'label'"),
    ("d.csv", "text,label\n", "d.csv: no examples"),
    ("d.csv", "", "d.csv: the file is empty"),
    ("d.csv", 'text,label\n"unclosed,pos\nnext,neg\n', "broken CSV quoting"),
    ("d.csv", "text,label\nhello,pos,extra\n", "d.csv:2: has 3 fields but the header has 2"),
    ("d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label"\n', "d.jsonl:2: not valid JSON"),
    ("d.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', "d.jsonl:1: 2 tokens but 1 tags"),
    ("d.jsonl", '{"tokens": ["a"], "tags": ["PER"]}\n', "d.jsonl:1: tag 'PER' is not in BIO form"),
    ("d.xml", "<a/>\n", "unknown file type '.xml'"),  # (.txt is text-generation data)
    ("d.csv", b"text,label\nok,pos\ncaf\xe9,neg\n", "d.csv:3: byte 0xe9 is not valid UTF-8"),
]


@pytest.mark.parametrize("name, content, message", BAD, ids=[m[:30] for *_, m in BAD])
def test_bad_files_name_file_line_and_fix(tmp_path, name, content, message):
    with pytest.raises(DataError) as err:
        read_dataset(write(tmp_path, name, content))
    assert message in str(err.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_dataset(tmp_path)


def test_skip_bad_rows_counts_instead_of_failing(tmp_path):
    ds = read_dataset(write(tmp_path, "d.csv", "text,label\nok,pos\n,neg\nfine,\ngood,neg\n"), skip_bad_rows=True)
    assert [e.text for e in ds.examples] == ["ok", "good"]
    assert len(ds.skipped) == 2 and ds.skipped[0].endswith("d.csv:3: empty or missing text in column 'text'")


def test_detect_task(tmp_path, data_dir):
    assert detect_task(data_dir / "wnut17_200.jsonl") == "token-classification"
    assert detect_task(data_dir / "sst2_300.jsonl") == "text-classification"
    assert detect_task(write(tmp_path, "x.conll", "a\tO\n")) == "token-classification"


def test_split_is_seeded_stratified_and_disjoint(data_dir):
    ds = read_dataset(data_dir / "sst2_300.jsonl")
    a = split_dataset(ds, seed=1)
    b = split_dataset(ds, seed=1)
    assert [[e.line for e in part.examples] for part in a] == [[e.line for e in part.examples] for part in b]
    lines = [{e.line for e in part.examples} for part in a]
    assert sum(map(len, lines)) == len(ds) and not (lines[0] & lines[1] or lines[0] & lines[2] or lines[1] & lines[2])
    share = sum(e.label == "positive" for e in ds.examples) / len(ds)
    for part in a:  # each split keeps the class balance (to one example per class)
        got = sum(e.label == "positive" for e in part.examples) / len(part)
        assert abs(got - share) <= 1 / len(part) + 1e-9


def test_split_refuses_a_class_too_small_to_stratify(tmp_path):
    rows = "".join(json.dumps({"text": f"t{i}", "label": "big"}) + "\n" for i in range(10))
    rows += json.dumps({"text": "alone", "label": "rare"}) + "\n"
    with pytest.raises(DataError, match="class 'rare' has 1 example"):
        split_dataset(read_dataset(write(tmp_path, "d.jsonl", rows)))


def test_fingerprint_ignores_format_but_not_content(tmp_path):
    a = read_dataset(write(tmp_path, "a.csv", "text,label\nhi,pos\n"))
    b = read_dataset(write(tmp_path, "b.jsonl", '{"text": "hi", "label": "pos"}\n'))
    c = read_dataset(write(tmp_path, "c.jsonl", '{"text": "hi!", "label": "pos"}\n'))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


@pytest.mark.parametrize("name, content", [
    ("d.jsonl", '{"prompt": "hi", "response": "hello"}\n'),
    ("d.jsonl", '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'),
    ("d.jsonl", '{"text": "domain text"}\n'),
    ("d.txt", "first paragraph\nstill first\n\n\nsecond\n"),
])
def test_generation_rows_are_detected_and_read_as_turns_or_text(tmp_path, name, content):
    from edgeft.data import detect_task, generation_row

    path = write(tmp_path, name, content)
    ds = read_dataset(path)
    assert detect_task(path) == ds.task == "text-generation" and ds.labels == []
    ex = ds.examples[0]
    if name == "d.txt":  # one example per paragraph, at its first line
        assert [(e.text, e.line) for e in ds.examples] == [("first paragraph\nstill first", 1), ("second", 5)]
    elif "text" in content:
        assert (ex.messages, ex.text, ex.response) == ((), "domain text", None)
    else:
        assert ex.messages == (("user", "hi"), ("assistant", "hello")) and ex.response == "hello"
        assert generation_row(ex) == {"prompt": "hi", "response": "hello"}  # written back as a pair
