"""Text-generation bundles in the runtime commands: predict (arguments and --input files), eval
(perplexity as training computes it, exact match / F1 of greedy replies), bench (TTFT, prefill and
decode tokens/s, peak RSS per thread count) and inspect; bad rows and options of the wrong kind of
bundle give one message, no traceback."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from test_generate import lm_bundles  # noqa: F401  (the tiny Llama/GPT-2 bundles, built once per module)
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.data import read_dataset
from edgeft.runtime.generate import Generator
from edgeft.runtime.generate_eval import evaluate_generation, score_row, scored_tokens

pytest_plugins = ["bundles"]  # cls_bundle: an encoder bundle, for the options of the other kind

runner = CliRunner()
PROMPTS = ['{"prompt": "the cat"}', "", '{"messages": [{"role": "user", "content": "a dog"}]}', '{"prompt": "a house"}']
EVAL_ROWS = [{"prompt": "the cat", "response": "sat on the mat"},
             {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a dog"}]},
             {"text": "a dog and a cat in the house"}]


@pytest.fixture
def bundle(lm_bundles):  # noqa: F811
    return lm_bundles["llama", "int4"].bundle


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_file_writes_a_reply_per_prompt_row_with_its_line(bundle, tmp_path):
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["predict", str(bundle), "--input", str(write(tmp_path / "p.jsonl", PROMPTS)),
                            "--output", str(out), "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    got = rows(out)
    assert [g["line"] for g in got] == [1, 3, 4]  # the blank line 2 is skipped, lines stay aligned
    assert all(1 <= len(g["token_ids"]) <= 4 and g["finish_reason"] in ("eos", "length") for g in got)
    assert "replied to 3 prompt(s)" in r.output


def test_a_reply_does_not_depend_on_the_other_rows(bundle, tmp_path):
    """Greedy, and seeded sampling (every row gets its own sampler with the same seed)."""
    for extra in ([], ["--temperature", "1.0", "--seed", "7"]):
        alone, together = tmp_path / "alone.jsonl", tmp_path / "together.jsonl"
        opts = ["--max-new-tokens", "6", *extra]
        runner.invoke(app, ["predict", str(bundle), "-i", str(write(tmp_path / "a.jsonl", PROMPTS[3:])), "-o",
                            str(alone), *opts])
        runner.invoke(app, ["predict", str(bundle), "-i", str(write(tmp_path / "b.jsonl", PROMPTS)), "-o",
                            str(together), *opts])
        assert rows(alone)[0]["token_ids"] == rows(together)[-1]["token_ids"]


def test_predict_prompt_arguments_print_the_replies(bundle):
    g = Generator.load(bundle)
    expected = g.generate([{"role": "user", "content": "the cat"}], max_new_tokens=5).text  # the template applies
    r = runner.invoke(app, ["predict", str(bundle), "the cat", "--max-new-tokens", "5"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == expected


@pytest.mark.parametrize("line, message", [
    ('{"prompt": 3}', r"p.jsonl:2: expected an object with a string 'prompt' or a 'messages' list"),
    ("{not json", r"p.jsonl:2: not valid JSON"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}', r"p.jsonl:2: message 1 has the unknown role 'robot'"),
    ('{"prompt": "' + "cat " * 200 + '"}', r"p.jsonl:2: the prompt has \d+ tokens .* context length of 128"),
])
def test_a_bad_prompt_row_names_file_and_line_without_traceback(bundle, tmp_path, line, message):
    r = runner.invoke(app, ["predict", str(bundle), "-i", str(write(tmp_path / "p.jsonl", [PROMPTS[0], line])),
                            "--max-new-tokens", "4"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert re.search(message, r.output), r.output


@pytest.mark.parametrize("args, message", [
    (["--question", "who?", "--context", "x"], "--question/--context are for question-answering bundles"),
])
def test_encoder_options_on_a_generative_bundle_are_refused(bundle, args, message):
    r = runner.invoke(app, ["predict", str(bundle), *args])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("command, message", [
    (["predict", "{b}", "a film", "--max-new-tokens", "5"], "--max-new-tokens: for text-generation bundles"),
    (["eval", "{b}", "--data", "{d}", "--max-new-tokens", "5"], "--max-new-tokens: for text-generation bundles"),
    (["bench", "{b}", "--new-tokens", "5"], "--new-tokens: for text-generation bundles"),
])
def test_generation_options_on_an_encoder_bundle_are_refused(cls_bundle, tmp_path, command, message):
    data = write(tmp_path / "t.jsonl", ['{"text": "a film", "label": "positive"}'])
    r = runner.invoke(app, [c.format(b=cls_bundle, d=data) for c in command])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_eval_perplexity_counts_reply_tokens_as_training_does(bundle, tmp_path):
    """Perplexity over the reply tokens of chats/pairs and every token (then EOS) of plain text, recomputed
    here by hand from the graph's logits; EM/F1 over the two rows with a reference reply."""
    data = write(tmp_path / "test.jsonl", [json.dumps(r) for r in EVAL_ROWS])
    g = Generator.load(bundle)
    nll, n = 0.0, 0
    for ex in read_dataset(data, task="text-generation").examples:
        ids, scored = scored_tokens(g, ex)
        logits, _ = g.forward(ids, g.empty_cache())
        for t in range(1, len(ids)):
            if scored[t]:
                z = logits[t - 1].astype(np.float64)
                nll += np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[t]]
                n += 1
    pair = read_dataset(data, task="text-generation").examples[0]
    ids, scored = scored_tokens(g, pair)
    reply = g.tokenizer.decode([i for i, s in zip(ids, scored) if s])
    assert reply.replace(" ", "").startswith("satonthemat")  # the reply is scored, the prompt is not
    m = evaluate_generation(g, data, max_new_tokens=4)
    assert m["tokens"] == n and m["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-6)
    assert m["n"] == 3 and m["generated"] == 2 and 0 <= m["f1"] <= 1 and len(m["samples"]) == 2


@pytest.mark.parametrize("arch, weights", [("llama", "int4"), ("gpt2", "int4")])  # builder and exporter routes
def test_eval_prefills_each_prompt_once_for_its_score_and_its_reply(lm_bundles, arch, weights, tmp_path):  # noqa: F811
    """A reply row's prompt is prefilled once: the reference reply is scored after that cache (the same NLL
    as one pass over the whole row) and the greedy reply decodes from it (the reply generate() gives)."""
    g = Generator.load(lm_bundles[arch, weights].bundle)
    data = write(tmp_path / "test.jsonl", [json.dumps(r) for r in EVAL_ROWS])
    examples = read_dataset(data, task="text-generation").examples
    asked = [[{"role": r, "content": c} for r, c in ex.prompt] for ex in examples if ex.response is not None]
    for ex, prompt in zip([ex for ex in examples if ex.response is not None], asked):
        ids, scored = scored_tokens(g, ex)
        nll, n, prefill = score_row(g, ids, scored, g.encode(prompt))
        whole_nll, whole_n, none = score_row(g, ids, scored, [])
        assert prefill is not None and none is None  # the shared path ran, and the whole-row pass is its check
        assert n == whole_n > 0 and nll == pytest.approx(whole_nll, rel=1e-5)
    m = evaluate_generation(g, data, max_new_tokens=6, keep_replies=True)
    assert m["replies"] == [g.generate(p, max_new_tokens=6).text.strip() for p in asked]
    assert len(m["replies"]) == 2


def test_cli_eval_prints_and_writes_the_metrics(bundle, tmp_path):
    out = tmp_path / "e.json"
    data = write(tmp_path / "test.jsonl", [json.dumps(r) for r in EVAL_ROWS])
    r = runner.invoke(app, ["eval", str(bundle), "--data", str(data), "--max-new-tokens", "4", "--json", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["task"] == "text-generation" and f"perplexity {m['perplexity']:.4f}" in r.output
    assert "exact match" in r.output and "on 2 replies" in r.output


def test_cli_eval_bad_row_names_the_line(bundle, tmp_path):
    data = write(tmp_path / "test.jsonl", [json.dumps(EVAL_ROWS[0]), '{"prompt": "x", "response": ""}'])
    r = runner.invoke(app, ["eval", str(bundle), "--data", str(data)])
    assert r.exit_code != 0 and "test.jsonl:2: empty or missing 'response'" in r.output
    assert "--skip-bad-rows" in r.output and "Traceback" not in r.output


def test_cli_bench_reports_ttft_prefill_decode_and_rss_per_thread_count(lm_bundles, tmp_path):  # noqa: F811
    out = tmp_path / "b.json"
    a, b = lm_bundles["llama", "int4"].bundle, lm_bundles["gpt2", "int4"].bundle
    r = runner.invoke(app, ["bench", str(a), str(b), "--threads", "1,2", "--runs", "2", "--prompt-tokens", "32",
                            "--new-tokens", "8", "--json", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert [(row["model"], row["threads"]) for row in report["rows"]] == [
        (a.name, 1), (b.name, 1), (a.name, 2), (b.name, 2)]
    for row in report["rows"]:
        assert row["ttft_ms"] > 0 and row["prefill_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0
        assert 10 < row["peak_rss_mb"] < 1000 and row["runs"] == 2
    assert report["settings"]["prompt_tokens"] == 32 and "TTFT ms" in r.output and "decode tok/s" in r.output


def test_cli_bench_refuses_encoder_options_and_too_long_prompts(bundle):
    r = runner.invoke(app, ["bench", str(bundle), "--seq-len", "16"])
    assert r.exit_code != 0 and "--seq-len: for encoder bundles" in r.output
    r = runner.invoke(app, ["bench", str(bundle), "--runs", "1"])  # 128 + 64 tokens > the tiny model's 128
    assert r.exit_code != 0 and "--prompt-tokens 128 + --new-tokens 64 > the context length" in r.output
    assert "Traceback" not in r.output


def test_inspect_shows_what_a_generative_bundle_needs(lm_bundles, tmp_path):  # noqa: F811
    out = tmp_path / "i.json"
    r = runner.invoke(app, ["inspect", str(lm_bundles["llama", "int8"].bundle), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "text-generation: int8 weights, context 128 tokens, chat template yes" in r.output
    assert "max_new_tokens 128, temperature 0.0" in r.output and "labels" not in r.output
    g = json.loads(out.read_text())["generation"]
    assert g["weights"] == "int8" and g["context_length"] == 128 and g["chat_template"] is True
    assert g["size_bytes"] == sum(f.stat().st_size for f in lm_bundles["llama", "int8"].bundle.iterdir()
                                  if f.name != "edgeft.json")
