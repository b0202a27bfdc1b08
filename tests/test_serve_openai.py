"""`edgeft serve` on a text-generation bundle, met by the real `openai` client (base_url on 127.0.0.1):
chat and plain completions, streamed and not, equal to the torch-free Generator's replies; seeded
sampling; stop strings; /v1/models; every bad field a 400 naming it; a client that leaves mid-stream
stops its generation and the server goes on; the server never imports torch."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'edgeft[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'edgeft[serve]'")
openai = pytest.importorskip("openai", reason="the test extra is not installed: pip install 'edgeft[test]'")

from serving import Server  # noqa: E402
from test_runtime_isolation import BLOCKER  # noqa: E402
from tiny_models import make_tiny_lm  # noqa: E402

from edgeft.compress.export_lm import ExportLMConfig, export_lm  # noqa: E402
from edgeft.runtime.generate import Generator  # noqa: E402

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the cat sat on the mat"}]
POSITIONS = 2048  # room for a stream long enough to leave in the middle of


@pytest.fixture(scope="module")
def lm_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-lm")
    src = make_tiny_lm(root / "llama", positions=POSITIONS)
    return export_lm(src, root / "bundle", ExportLMConfig(weights="int8"), eval_texts=["the cat sat on the mat"]).bundle


@pytest.fixture(scope="module")
def server(lm_bundle, tmp_path_factory):
    """The server process with torch and transformers blocked (a device has neither)."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(BLOCKER)
    s = Server(lm_bundle, "--threads", "1", env={"PYTHONPATH": str(site), "EDGEFT_BLOCK_LOG": str(site / "log")})
    yield s
    rc, log = s.stop()
    assert rc == 0 and "Traceback" not in log, log
    assert not (site / "log").exists(), (site / "log").read_text()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def gen(lm_bundle):
    return Generator.load(lm_bundle, threads=1)


def test_chat_completion_is_the_generators_reply(client, gen):
    r = client.chat.completions.create(model="bundle", messages=CHAT, max_tokens=12)
    want = gen.generate(CHAT, max_new_tokens=12)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "bundle"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == want.text
    assert r.choices[0].finish_reason == {"eos": "stop", "stop": "stop", "length": "length"}[want.finish_reason]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (want.prompt_tokens, len(want.token_ids))
    assert r.usage.total_tokens == want.prompt_tokens + len(want.token_ids)


def test_streamed_chat_joins_to_the_same_reply(client, gen):
    chunks = list(client.chat.completions.create(model="bundle", messages=CHAT, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    want = gen.generate(CHAT, max_new_tokens=12)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text and len(chunks) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length" == want.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(want.token_ids) == 12
    assert len({c.id for c in chunks}) == 1


def test_plain_completions_streamed_and_not(client, gen):
    want = gen.generate("the cat", max_new_tokens=10)
    r = client.completions.create(model="bundle", prompt="the cat", max_tokens=10)
    assert r.object == "text_completion" and r.choices[0].text == want.text
    pieces = [c.choices[0].text for c in client.completions.create(model="bundle", prompt="the cat", max_tokens=10,
                                                                   stream=True)]
    assert "".join(pieces) == want.text and len(pieces) > 2


def test_seeded_sampling_is_reproducible_and_is_the_generators(client, gen):
    def ask(seed):
        return client.chat.completions.create(model="m", messages=CHAT, max_tokens=16, temperature=1.0, top_p=0.9,
                                              seed=seed).choices[0].message.content
    want = gen.generate(CHAT, max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7).text
    assert ask(7) == ask(7) == want
    assert ask(8) != want  # 16 sampled tokens from a 600-word vocabulary: another seed gives another text


def test_stop_strings_end_the_reply(client, gen):
    full = gen.generate("the cat", max_new_tokens=16).text
    words = full.split()
    assert len(words) > 3, full
    stop = " " + words[2]
    r = client.completions.create(model="bundle", prompt="the cat", max_tokens=16, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_models_and_model_name_the_bundle(client, server, lm_bundle):
    assert [m.id for m in client.models.list().data] == ["bundle"]
    info = server.client.get("/v1/model").json()
    assert info["task"] == "text-generation" and info["context_length"] == POSITIONS and info["chat_template"] is True
    r = server.client.post("/v1/predict", json={"texts": ["a"]})
    assert r.status_code == 404 and "/v1/chat/completions" in r.json()["error"]["message"]


BAD = [  # (route, body, the error says)
    ("chat", {}, 'field "messages" is missing'),
    ("chat", {"messages": []}, 'field "messages" is empty'),
    ("chat", {"messages": "hi"}, 'field "messages" is a JSON string'),
    ("chat", {"messages": [{"role": "tool", "content": "x"}]}, 'field "messages[0].role" is "tool"'),
    ("chat", {"messages": [{"role": "user", "content": 3}]}, 'field "messages[0].content" must be a string'),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text parts"),
    ("chat", {"messages": CHAT, "n": 2}, 'field "n" = 2 is not supported'),
    ("chat", {"messages": CHAT, "frequency_penalty": 0.5}, 'field "frequency_penalty" = 0.5 is not supported'),
    ("chat", {"messages": CHAT, "temperature": 3}, 'field "temperature" must be a number in [0, 2], not 3'),
    ("chat", {"messages": CHAT, "max_tokens": 0}, 'field "max_tokens" must be an integer >= 1, not 0'),
    ("chat", {"messages": CHAT, "max_tokens": 1.5}, 'field "max_tokens" must be an integer >= 1, not 1.5'),
    ("chat", {"messages": CHAT, "max_tokens": 10 ** 6}, "at most"),
    ("chat", {"messages": CHAT, "stop": ["a", "b", "c", "d", "e"]}, 'field "stop" must be a string or a list of at most 4'),
    ("chat", {"messages": CHAT, "stream": "yes"}, 'field "stream" must be true or false'),
    ("chat", {"messages": CHAT, "stream": 1}, 'field "stream" must be true or false'),
    ("chat", {"messages": CHAT, "top_p": 0}, 'fields "top_p" and "repetition_penalty" must be > 0'),
    ("chat", {"messages": CHAT, "prompt": "x"}, 'unknown field "prompt"'),
    ("chat", {"messages": CHAT, "ignore_eos": 1}, 'field "ignore_eos" must be true or false'),
    ("completions", {"prompt": 3}, 'field "prompt" is a JSON number'),
    ("completions", {"prompt": "the " * (POSITIONS + 10)}, "the model's context length is 2048"),
]


@pytest.mark.parametrize("route, body, says", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_fields_get_a_400_naming_the_field(server, route, body, says):
    r = server.client.post(f"/v1/{'chat/completions' if route == 'chat' else 'completions'}", json=body)
    assert r.status_code == 400 and says in r.json()["error"]["message"], r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "Traceback" not in r.text and "/tmp" not in r.text


def test_the_client_gets_an_openai_error_it_can_read(client):
    with pytest.raises(openai.BadRequestError, match='field "n" = 3 is not supported'):
        client.chat.completions.create(model="bundle", messages=CHAT, n=3)


def metric(server, name: str) -> float:
    text = server.client.get("/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_a_client_that_leaves_mid_stream_stops_its_generation(server, client, gen):
    before = metric(server, "edgeft_streams_cancelled_total")
    # ~1.5 s of tokens (ignore_eos: llama-server's extension, so the reply cannot end early)
    stream = client.completions.create(model="bundle", prompt="the cat", max_tokens=POSITIONS - 64, stream=True,
                                       extra_body={"ignore_eos": True})
    first = next(iter(stream))
    stream.close()  # hang up after the first piece
    assert first.choices[0].text
    deadline = time.perf_counter() + 30
    while metric(server, "edgeft_streams_cancelled_total") == before or metric(server, "edgeft_queue_depth") != 0:
        assert time.perf_counter() < deadline, server.client.get("/metrics").text
        time.sleep(0.05)
    # the server goes on: the next request is answered, with the reply it gets alone
    r = client.chat.completions.create(model="bundle", messages=CHAT, max_tokens=8)
    assert r.choices[0].message.content == gen.generate(CHAT, max_new_tokens=8).text
    assert metric(server, "edgeft_queue_depth") == 0


def test_metrics_count_generated_tokens(server, gen):
    before = metric(server, "edgeft_generated_tokens_total")
    server.client.post("/v1/completions", json={"prompt": "the cat", "max_tokens": 5})
    assert metric(server, "edgeft_generated_tokens_total") - before == len(gen.generate("the cat", max_new_tokens=5).token_ids)


def test_with_a_token_the_openai_client_sends_it_as_its_api_key(lm_bundle, tmp_path):
    token = "s3cret-token-for-the-tests-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    s = Server(lm_bundle, "--threads", "1", "--token-file", tmp_path / "token")
    try:
        def ask(key):
            c = openai.OpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0, timeout=60)
            return c.completions.create(model="bundle", prompt="the cat", max_tokens=3).choices[0].text
        with pytest.raises(openai.AuthenticationError, match="the Authorization header is wrong"):
            ask("not-the-token")
        assert ask(token)
        assert s.client.get("/healthz").status_code == 200
    finally:
        assert s.stop()[0] == 0
