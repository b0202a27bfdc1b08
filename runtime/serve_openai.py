"""OpenAI-compatible routes of ``edgeft serve`` for text-generation bundles.

    edgeft serve runs/lm/bundle
    python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8080/v1', api_key='-');
               print(c.chat.completions.create(model='bundle', messages=[{'role': 'user', 'content': 'Hi'}]))"

``POST /v1/chat/completions`` (messages through the bundle's chat template), ``POST /v1/completions``
(a plain prompt), each streamed as server-sent events with ``"stream": true`` (one ``data:`` chunk
per text piece, then ``data: [DONE]``), and ``GET /v1/models``: the layout every OpenAI client
library, llama.cpp's ``llama-server``, Ollama and vLLM speak, so an existing client only changes its
base URL. The model name a client sends is not checked (the server has one model; /v1/models names it).

Differences a client may notice: without ``temperature`` a reply is greedy, as ``edgeft generate`` (the
OpenAI API's default is 1.0); ``max_tokens`` defaults to 128 new tokens, capped by the context window;
``n`` must be 1, penalties other than 0 and log-probabilities are refused with 400 (not silently
ignored); ``top_k``, ``repetition_penalty`` and ``ignore_eos`` (a fixed number of tokens, for load
tests) are accepted as extensions, as llama-server does.
Errors name the field and the fix in the OpenAI layout (``{"error": {"message", "type", "param",
"code"}}``), the one OpenAI clients show in the exception they raise.

One reply is generated at a time (a single decoder, no batching: a reply never depends on another
request), in the model thread of the server's bounded queue. A client that disconnects mid-stream
stops its generation at the next token; the server goes on with the next request.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgeft.runtime.serve import RequestError, _kind

DEFAULT_MAX_TOKENS = 128  # as `edgeft generate --max-new-tokens`
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Fields clients send at their neutral value: accepted only at it (a real use would be silently wrong).
NEUTRAL = {"n": (1,), "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0), "logprobs": (False, None),
           "echo": (False, None), "best_of": (1, None), "suffix": (None,), "logit_bias": (None, {}),
           "top_logprobs": (None, 0), "response_format": (None, {"type": "text"}), "tools": (None, []),
           "tool_choice": (None, "none"), "parallel_tool_calls": (None, False, True)}
IGNORED = ("model", "user", "metadata", "store", "service_tier")  # no effect on the reply


@dataclass
class Ask:
    """One completion request, checked: what to give ``Generator.stream`` and how to answer."""

    prompt: Any  # a string, or chat messages
    options: dict[str, Any] = field(default_factory=dict)  # Generator.stream keyword arguments
    stream: bool = False
    include_usage: bool = False


def parse(data: dict[str, Any], chat: bool, gen) -> Ask:
    """A /v1/chat/completions (``chat``) or /v1/completions body → an Ask, or a RequestError naming the field."""
    allowed = ({"messages"} if chat else {"prompt"}) | {"max_tokens", "max_completion_tokens", "temperature", "top_p",
                                                        "top_k", "seed", "stop", "stream", "stream_options",
                                                        "repetition_penalty", "ignore_eos"} | set(NEUTRAL) | set(IGNORED)
    for key in data:
        if key not in allowed:
            raise RequestError(400, f'unknown field "{key}"; this server takes {", ".join(sorted(allowed - set(NEUTRAL)))}')
    for key, values in NEUTRAL.items():
        if key in data and data[key] not in values:
            raise RequestError(400, f'field "{key}" = {json.dumps(data[key])} is not supported; leave it out')
    if data.get("model") is not None and not isinstance(data["model"], str):
        raise RequestError(400, f'field "model" must be a string, not a JSON {_kind(data["model"])}')
    prompt = _messages(data, gen) if chat else _prompt(data)
    ids = gen.encode(prompt)
    room = gen.context_length - len(ids)
    if room < 1:
        raise RequestError(400, f"the prompt has {len(ids)} tokens, the model's context length is {gen.context_length}; "
                                "send a shorter prompt (or fewer messages)")
    key = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
    max_tokens = _number(data, key, int, 1, None, None)
    if max_tokens is not None and max_tokens > room:
        raise RequestError(400, f'field "{key}" is {max_tokens}, but the prompt has {len(ids)} tokens and the context '
                                f"length is {gen.context_length}: at most {room} new tokens fit; lower it")
    stop = data.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)):
        raise RequestError(400, 'field "stop" must be a string or a list of at most 4 strings')
    stream = data.get("stream") or False
    if not isinstance(stream, bool):
        raise RequestError(400, f'field "stream" must be true or false, not a JSON {_kind(stream)}')
    so = data.get("stream_options") or {}
    if not isinstance(so, dict) or set(so) - {"include_usage"} or not isinstance(so.get("include_usage", False), bool):
        raise RequestError(400, 'field "stream_options" must be {"include_usage": true|false}')
    options = {"max_new_tokens": max_tokens or min(DEFAULT_MAX_TOKENS, room),
               "temperature": _number(data, "temperature", float, 0, 2, 0.0),
               "top_p": _number(data, "top_p", float, 0, 1, 1.0), "top_k": _number(data, "top_k", int, 0, None, 0),
               "seed": _number(data, "seed", int, None, None, None), "stop": tuple(stop or ()),
               "repetition_penalty": _number(data, "repetition_penalty", float, 0, None, 1.0),
               "ignore_eos": data.get("ignore_eos") is True}
    if not isinstance(data.get("ignore_eos", False), bool):
        raise RequestError(400, 'field "ignore_eos" must be true or false')
    if options["top_p"] == 0 or options["repetition_penalty"] == 0:
        raise RequestError(400, 'fields "top_p" and "repetition_penalty" must be > 0')
    return Ask(prompt, options, bool(stream), bool(so.get("include_usage")))


def _number(data: dict, key: str, kind: type, low, high, default):
    if data.get(key) is None:
        return default
    value = data[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or float(value).is_integer())
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        span = f"in [{low}, {high}]" if high is not None else f">= {low}" if low is not None else ""
        raise RequestError(400, f'field "{key}" must be {"an integer" if kind is int else "a number"} {span}, '
                                f"not {json.dumps(value)}".replace("  ", " ").rstrip())
    return kind(value)


def _messages(data: dict, gen) -> list[dict[str, str]]:
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        got = "missing" if "messages" not in data else f"a JSON {_kind(messages)}" if messages != [] else "empty"
        raise RequestError(400, f'field "messages" is {got}; send [{{"role": "user", "content": "..."}}]')
    if not gen.chat_template:
        raise RequestError(400, "this model has no chat template; use /v1/completions with a plain prompt")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise RequestError(400, f'field "messages[{i}].role" is {json.dumps(role)}; use one of system, user, assistant')
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": "..."}]: the OpenAI content-part form
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise RequestError(400, f'field "messages[{i}].content": only text parts ({{"type": "text", "text": '
                                        '"..."}) are supported')
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise RequestError(400, f'field "messages[{i}].content" must be a string, not a JSON {_kind(content)}')
        out.append({"role": ROLES[m["role"]], "content": content})
    return out


def _prompt(data: dict) -> str:
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        got = "missing" if "prompt" not in data else f"a JSON {_kind(prompt)}"
        raise RequestError(400, f'field "prompt" is {got}; send one string (a list of one string also works)')
    return prompt


# ---- answers ------------------------------------------------------------------------------------------
def reason(result) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def usage(result) -> dict[str, int]:
    n = len(result.token_ids)
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": n, "total_tokens": result.prompt_tokens + n}


def whole(chat: bool, rid: str, name: str, result) -> dict[str, Any]:
    """The non-streaming answer, as the OpenAI API lays it out."""
    choice = ({"index": 0, "message": {"role": "assistant", "content": result.text}} if chat else
              {"index": 0, "text": result.text})
    return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": name, "choices": [{**choice, "logprobs": None, "finish_reason": reason(result)}],
            "usage": usage(result)}


def chunk(chat: bool, rid: str, name: str, piece: str | None, finish: str | None = None, first: bool = False) -> bytes:
    """One server-sent event of a stream (``piece`` None: the closing chunk with ``finish``)."""
    if chat:
        delta = {"role": "assistant", "content": ""} if first else {} if piece is None else {"content": piece}
        choice = {"index": 0, "delta": delta}
    else:
        choice = {"index": 0, "text": piece or ""}
    body = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
            "model": name, "choices": [{**choice, "logprobs": None, "finish_reason": finish}]}
    return event(body)


def event(body: Any) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


# ---- routes -------------------------------------------------------------------------------------------
def routes(model, queue_ref: dict, read, answer, endpoint) -> list:
    """Starlette routes for a text-generation Model; ``read`` gives a request's JSON body, ``answer`` a JSON
    response, ``endpoint`` turns RequestError into its status."""
    from starlette.requests import ClientDisconnect
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    gen = model.runner

    def completion(chat: bool):
        @endpoint
        async def handle(request):
            ask = parse(await read(request), chat, gen)
            rid = f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}"
            queue = queue_ref["q"]
            if not ask.stream:
                result = await queue.call(lambda: gen.generate(ask.prompt, **ask.options))
                queue.metrics.tokens += len(result.token_ids)
                return answer(200, whole(chat, rid, model.name, result))
            stream = gen.stream(ask.prompt, **ask.options)
            cancel = threading.Event()
            queue.admit()  # released when the response ends, however it ends (Events.__call__)

            async def events():
                if chat:
                    yield chunk(chat, rid, model.name, None, first=True)
                done: dict[str, Any] = {}
                async for piece in pieces(queue, stream, cancel, done):
                    yield chunk(chat, rid, model.name, piece)
                if "error" in done:  # the status is sent already: the error is the stream's last event
                    yield event({"error": f"internal error ({type(done['error']).__name__}) while generating"})
                    return
                result = done["result"]
                queue.metrics.tokens += len(result.token_ids)
                yield chunk(chat, rid, model.name, None, reason(result))
                if ask.include_usage:
                    yield event({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                                 "created": int(time.time()), "model": model.name, "choices": [], "usage": usage(result)})
                yield b"data: [DONE]\n\n"

            class Events(StreamingResponse):
                async def __call__(self, scope, receive, send):
                    try:
                        await super().__call__(scope, receive, send)
                    except (ClientDisconnect, OSError):
                        pass  # the client left: its generation stops at the next token (below)
                    finally:
                        cancel.set()
                        queue.leave()

            return Events(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return handle

    @endpoint
    async def models(request):
        return answer(200, {"object": "list", "data": [{"id": model.name, "object": "model", "created": 0,
                                                          "owned_by": "edgeft"}]})

    return [Route("/v1/chat/completions", completion(True), methods=["POST"]),
            Route("/v1/completions", completion(False), methods=["POST"]), Route("/v1/models", models, methods=["GET"])]


async def pieces(queue, stream, cancel: threading.Event, done: dict):
    """The text pieces of ``stream``, generated in the queue's model thread; ``done`` gets its "result" or
    "error". Setting ``cancel`` stops the generation at the next token."""
    loop = asyncio.get_running_loop()
    out: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(out.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopped)
            cancel.set()

    def work() -> None:
        try:
            for piece in ([] if cancel.is_set() else stream):
                if cancel.is_set():
                    queue.metrics.cancelled += 1
                    return
                put(("piece", piece))
            put(("result", stream.result))
        except Exception as e:  # noqa: BLE001 (handed to the stream, reported there by type only)
            put(("error", e))

    queue.metrics.model_calls += 1
    loop.run_in_executor(queue.pool, work)  # the one model thread: after the replies before it
    while True:
        kind, value = await out.get()
        if kind != "piece":
            done[kind] = value
            return
        yield value
