"""SQuAD data and metric: both file layouts read to the same examples, bad rows are named, splits
keep paragraphs whole, and exact match / F1 agree with hand-computed values of the official
evaluate-v1.1.py rules."""

from __future__ import annotations

import json

import pytest

from edgeft.data import detect_task, fingerprint, read_dataset, split_dataset, write_jsonl
from edgeft.errors import DataError
from edgeft.squad import exact_match_score, f1_score, normalize_answer, squad_metrics

SLICE = "squad_50.jsonl"


def rows(data_dir) -> list[dict]:
    return [json.loads(line) for line in (data_dir / SLICE).read_text(encoding="utf-8").splitlines()]


def nested(rows: list[dict]) -> dict:
    """The official layout (dev-v1.1.json) holding the same questions: articles → paragraphs → qas."""
    articles: dict[str, dict[str, list]] = {}
    for r in rows:
        qas = articles.setdefault(r["title"], {}).setdefault(r["context"], [])
        qas.append({"id": r["id"], "question": r["question"], "answers": [
            {"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]})
    return {"version": "1.1", "data": [
        {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paras.items()]}
        for title, paras in articles.items()]}


def test_jsonl_slice_reads_as_question_answering(data_dir):
    ds = read_dataset(data_dir / SLICE)
    assert ds.task == "question-answering" and len(ds) == 50 and ds.labels == []
    ex = ds.examples[0]
    assert ex.question == "What kind of economy does Victoria have?"
    assert ex.answers == ("diversified", "highly diversified", "highly diversified") and ex.starts == (34, 27, 27)
    for ex in ds.examples:  # every reference answer is where answer_start says
        assert all(ex.context[s:s + len(t)] == t for t, s in zip(ex.answers, ex.starts))


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty-printed"])
def test_official_nested_json_gives_the_same_examples(data_dir, tmp_path, indent):
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(nested(rows(data_dir)), indent=indent), encoding="utf-8")
    assert detect_task(path) == "question-answering"
    got, want = read_dataset(path), read_dataset(data_dir / SLICE)
    key = [(e.id, e.question, e.context, e.answers, e.starts) for e in want.examples]
    assert [(e.id, e.question, e.context, e.answers, e.starts) for e in got.examples] == key
    assert fingerprint(got) == fingerprint(want)  # the content, not the layout


def test_saved_split_reads_back_identically(data_dir, tmp_path):
    ds = read_dataset(data_dir / SLICE)
    write_jsonl(ds, tmp_path / "copy.jsonl")
    assert read_dataset(tmp_path / "copy.jsonl").examples == ds.examples


@pytest.mark.parametrize("change, message", [
    (lambda r: r["answers"].update(answer_start=[35, 27, 27]),
     "answer 'diversified' is not at character 35 of the context (found 'iversified:')"),
    (lambda r: r.pop("answers"), "no 'answers'"),
    (lambda r: r.update(question="  "), "empty or missing 'question'"),
    (lambda r: r["answers"].update(text=["diversified"]), "'answers' needs as many answer_start values as texts"),
])
def test_bad_rows_name_file_line_and_fix(data_dir, tmp_path, change, message):
    first, second, third = rows(data_dir)[:3]
    lines = [second, first, third]  # the row at line 2 is the first question of the slice
    change(first)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_dataset(path)
    assert f"bad.jsonl:2: {message}" in str(e.value) and "--skip-bad-rows" in str(e.value)
    ds = read_dataset(path, skip_bad_rows=True)
    assert len(ds) == 2 and len(ds.skipped) == 1


def test_nested_bad_row_is_named_by_its_json_path(data_dir, tmp_path):
    doc = nested(rows(data_dir)[:3])
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 0
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.json:data\[0\]\.paragraphs\[0\]\.qas\[1\]: answer .* is not at "
                                        r"character 0 of the context"):
        read_dataset(path)


def test_unanswerable_question_is_allowed(tmp_path):
    path = tmp_path / "v2.jsonl"
    path.write_text(json.dumps({"question": "Who won?", "context": "Nobody played.",
                                "answers": {"text": [], "answer_start": []}}) + "\n")
    (ex,) = read_dataset(path).examples
    assert ex.answers == () and ex.starts == ()


def test_split_keeps_each_paragraph_in_one_part(data_dir):
    ds = read_dataset(data_dir / SLICE)
    parts = split_dataset(ds, 0.1, 0.1, seed=3)
    contexts = [{ex.context for ex in part.examples} for part in parts]
    assert sum(len(p) for p in parts) == 50 and all(len(p) > 0 for p in parts)
    assert not (contexts[0] & contexts[1] or contexts[0] & contexts[2] or contexts[1] & contexts[2])
    again = split_dataset(ds, 0.1, 0.1, seed=3)
    assert [p.examples for p in again] == [p.examples for p in parts]  # seeded


def test_split_needs_three_paragraphs(data_dir, tmp_path):
    one = [r for r in rows(data_dir) if r["context"] == rows(data_dir)[0]["context"]]
    path = tmp_path / "one.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in one) + "\n")
    with pytest.raises(DataError, match="1 distinct context\\(s\\); a train/validation/test split by paragraph "
                                        "needs at least 3"):
        split_dataset(read_dataset(path))


# --- the metric: each value computed by hand from evaluate-v1.1.py's rules -------------------------

@pytest.mark.parametrize("text, normalized", [
    ("The  Denver Broncos!", "denver broncos"),
    ("U.S. Army", "us army"),  # punctuation dropped, not replaced by a space
    ("a theater, an idea", "theater idea"),  # articles only as whole words
    ("café—bar", "café—bar"),  # the em dash is not in string.punctuation
])
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize("prediction, truth, em, f1", [
    ("Denver Broncos", "the Denver Broncos.", 1.0, 1.0),
    ("Denver Broncos won", "Denver Broncos", 0.0, 0.8),  # P = 2/3, R = 1
    ("x y y", "y y z", 0.0, 2 / 3),  # counts, not sets: 2 shared tokens, P = R = 2/3
    ("Broncos", "Denver Broncos", 0.0, 2 / 3),  # P = 1, R = 1/2
    ("", "Denver", 0.0, 0.0),
    ("the", "The", 1.0, 0.0),  # both normalise to "": equal strings, but no shared token
    ("café—bar", "café bar", 0.0, 0.0),
])
def test_exact_match_and_f1(prediction, truth, em, f1):
    assert exact_match_score(prediction, truth) == em
    assert f1_score(prediction, truth) == pytest.approx(f1)


def test_metric_takes_the_best_reference_and_averages():
    refs = [["Denver Broncos", "Broncos"], ["Denver Broncos"], ["Carolina Panthers"], []]
    preds = ["Broncos", "Denver Broncos won", "Seattle", ""]
    m = squad_metrics(refs, preds)
    # per question: EM 1, 0, 0, 1 (empty answer to an unanswerable question); F1 1, 0.8, 0, 1
    assert m["exact_match"] == pytest.approx(2 / 4) and m["f1"] == pytest.approx(2.8 / 4)
    assert m["n"] == 4 and m["no_answer"] == 1
    assert squad_metrics([[]], ["something"])["f1"] == 0.0
