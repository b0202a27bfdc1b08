"""``edgeft serve``: one bundle as a local HTTP service (Starlette on uvicorn: the ``serve`` extra).

    edgeft serve runs/arm64/bundle                      # http://127.0.0.1:8080
    curl -s localhost:8080/v1/predict -d '{"texts": ["a gripping film"]}'

Routes: ``POST /v1/predict`` (``{"texts": [...]}``; QA: ``{"question", "context"}`` or ``{"pairs": [...]}``,
answered ``{"results": [<the Python API's to_dict()>, ...]}``), ``GET /v1/model`` (the manifest's public
part), ``GET /healthz``, ``GET /metrics`` (Prometheus text). Text-generation bundles get the
OpenAI-compatible ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` instead of
/v1/predict (edgeft.runtime.serve_openai).

One model, one worker thread: every request waits in one bounded queue (``--queue``: waiting or
running; one more is answered 503 with Retry-After, so a burst never builds a backlog the device
cannot clear). While the model runs, new requests gather; the worker then takes all of them (up to
``batch_size`` texts) in one ``Predictor.predict`` call, which batches as the bundle's manifest says
is exact ("padded": length-sorted padded batches; "rows": one text per model call; see
edgeft.runtime.session), so a text's answer never depends on the texts of other requests.

Requests are checked before they queue: the body must be JSON under ``max_body`` bytes (413), with
the fields of the task and at most ``max_texts`` texts; every refusal is one ``{"error": "..."}``
naming the field and the fix. A text longer than the model reads is answered, with ``truncated:
true``, as ``edgeft predict`` does. Nothing a client sends can put a traceback, a stack or a file
path of this machine into a response or a log line: unexpected exceptions are answered 500 with
their type name only.

With a token file, every route but /healthz needs ``Authorization: Bearer <token>`` (compared in
constant time); without one the server should only listen on 127.0.0.1 (the default). SIGTERM stops
accepting, lets in-flight requests finish for up to ``drain_seconds`` and exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeft.errors import ConfigError, EdgeftError

log = logging.getLogger("edgeft.serve")
PUBLIC_ROUTES = ("/healthz",)  # answered without a token: a health check must not need the secret
# Latency histogram buckets, seconds (Prometheus' default spacing, from 1 ms: a batch-1 INT8 call is ~2 ms).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens and what it accepts."""

    host: str = "127.0.0.1"  # loopback only; 0.0.0.0 exposes the model to the network
    port: int = 8080
    threads: int | None = None  # onnxruntime intra-op threads (None: the bundle target's / the cores)
    queue: int = 32  # requests accepted and not yet answered (waiting or running); one more gets 503
    max_texts: int = 64  # texts (QA: pairs) per request
    max_body: int = 1 << 20  # bytes of one request body; more → 413
    batch_size: int = 32  # texts per model call (bundles that batch "padded")
    drain_seconds: float = 10.0  # SIGTERM: how long in-flight requests may take to finish
    retry_after: int = 1  # seconds, sent with every 503

    def __post_init__(self):
        for name in ("queue", "max_texts", "max_body", "batch_size", "retry_after"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 1, not {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, not {self.port}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, not {self.threads}")


class RequestError(Exception):
    """A request the server refuses: HTTP status + the one-line message the client gets."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def read_token(path: str | Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped)."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--token-file {p}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file {p}: the token must be one word of at least 16 characters; make one with "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`")
    return token


# ---- the model behind the routes ---------------------------------------------------------------------
@dataclass
class Model:
    """A loaded bundle: its Predictor, what /v1/model shows, and its name."""

    runner: Any  # edgeft.runtime.predictor.Predictor
    public: dict[str, Any]
    name: str


def load_model(bundle: str | Path, cfg: ServeConfig) -> Model:
    """Verify and load the bundle (every file's sha256 first: a tampered bundle raises BundleError)."""
    from edgeft.runtime.predictor import Predictor

    if _peek_task(Path(bundle)) == "text-generation":
        from edgeft.runtime.generate import Generator

        runner = Generator.load(bundle, threads=cfg.threads)
        public = {**public_manifest(runner.bundle.manifest), "context_length": runner.context_length,
                  "chat_template": bool(runner.chat_template)}
    else:
        runner = Predictor.load(bundle, threads=cfg.threads, batch_size=cfg.batch_size)
        public = public_manifest(runner.manifest)
    return Model(runner, public, Path(bundle).name.removesuffix(".zip"))


def _peek_task(path: Path) -> str:
    """The task in a bundle folder's manifest, unverified (only to choose the loader, which verifies)."""
    try:
        return str(json.loads((path / "edgeft.json").read_text(encoding="utf-8")).get("task", ""))
    except (OSError, ValueError, AttributeError):
        return ""  # a .zip or a broken bundle: the Predictor's loader says what is wrong


def public_manifest(m) -> dict[str, Any]:
    """What a client may see of the manifest: task, labels, versions, hashes, accuracy; no local paths."""
    metrics = {k: v for k, v in (m.metrics or {}).items() if k != "split"}
    if m.metrics.get("split"):
        metrics["split"] = Path(str(m.metrics["split"])).name  # the file's name, not where it lives here
    quant = m.quantization or {}
    return {"task": m.task, "labels": list(m.labels), "max_length": m.max_length, "format_version": m.format_version,
            "created": m.created, "architecture": m.architecture, "base_model": Path(m.base_model).name if m.base_model else "",
            "batching": m.batching or None, "target": (m.target or {}).get("name"),
            "quantization": {k: quant[k] for k in ("mode", "candidate", "weights", "format") if k in quant},
            "files": {name: {"sha256": f["sha256"], "size": f["size"]} for name, f in m.files.items()},
            "metrics": metrics, "versions": dict(m.versions or {})}


# ---- metrics ------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    """Counters, a latency histogram and the queue depth, rendered in the Prometheus text format."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)  # (route, status) → count
    latency: dict[str, list[float]] = field(default_factory=dict)  # route → [count per bucket..., sum, count]
    texts: int = 0  # texts (pairs) answered
    tokens: int = 0  # new tokens generated (text-generation bundles)
    cancelled: int = 0  # streams whose client left before the end (their generation stopped there)
    model_calls: int = 0  # Predictor.predict calls: texts / model_calls = the mean micro-batch
    depth: int = 0  # requests waiting or running now
    limit: int = 0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[route, status] = self.requests.get((route, status), 0) + 1
        h = self.latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
        for i, upper in enumerate(BUCKETS):
            if seconds <= upper:
                h[i] += 1
        h[-2] += seconds
        h[-1] += 1

    def render(self) -> str:
        out = ["# HELP edgeft_requests_total HTTP requests answered, by route and status.",
               "# TYPE edgeft_requests_total counter"]
        out += [f'edgeft_requests_total{{route="{r}",code="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())]
        out += ["# HELP edgeft_errors_total HTTP requests answered with a status of 400 or more.",
                "# TYPE edgeft_errors_total counter"]
        out += [f'edgeft_errors_total{{route="{r}",code="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())
                if s >= 400]
        out += ["# HELP edgeft_request_seconds Time from request to the end of the response.",
                "# TYPE edgeft_request_seconds histogram"]
        for route, h in sorted(self.latency.items()):
            out += [f'edgeft_request_seconds_bucket{{route="{route}",le="{b}"}} {int(n)}' for b, n in zip(BUCKETS, h)]
            out += [f'edgeft_request_seconds_bucket{{route="{route}",le="+Inf"}} {int(h[-1])}',
                    f'edgeft_request_seconds_sum{{route="{route}"}} {h[-2]:.6f}',
                    f'edgeft_request_seconds_count{{route="{route}"}} {int(h[-1])}']
        for name, kind, value, text in (
                ("queue_depth", "gauge", self.depth, "Requests waiting or running now."),
                ("queue_limit", "gauge", self.limit, "Requests that may wait or run at once; more get 503."),
                ("texts_total", "counter", self.texts, "Texts (question-answering: pairs) answered."),
                ("model_calls_total", "counter", self.model_calls, "Predictor calls; texts per call = micro-batch size."),
                ("generated_tokens_total", "counter", self.tokens, "New tokens generated (text-generation bundles)."),
                ("streams_cancelled_total", "counter", self.cancelled, "Streams stopped early: the client left."),
):
            out += [f"# HELP edgeft_{name} {text}", f"# TYPE edgeft_{name} {kind}", f"edgeft_{name} {value}"]
        return "\n".join(out) + "\n"


# ---- the bounded queue and its worker -----------------------------------------------------------------
class Busy(RequestError):
    def __init__(self, limit: int, retry_after: int):
        super().__init__(503, f"the server is busy: {limit} requests are already waiting or running; retry in "
                              f"{retry_after} s", {"Retry-After": str(retry_after)})


class Queue:
    """One worker thread runs the model; requests wait here (at most ``limit`` of them, running included).

    ``predict`` gathers the texts of every request waiting when the worker is free (up to ``batch``)
    into one call of ``run``.
    """

    def __init__(self, run: Callable[[list], list], limit: int, batch: int, metrics: Metrics, retry_after: int):
        self.run, self.limit, self.batch, self.metrics, self.retry_after = run, limit, batch, metrics, retry_after
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="edgeft-model")
        self.jobs: deque[tuple[list, asyncio.Future]] = deque()  # (items, future); at most `limit` long
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def admit(self) -> None:
        """Count one more request in, or refuse it (503) when the queue is full."""
        if self.metrics.depth >= self.limit:
            raise Busy(self.limit, self.retry_after)
        self.metrics.depth += 1

    def leave(self) -> None:
        self.metrics.depth -= 1

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in the model thread, after the calls before it (one text-generation reply at a time)."""
        self.admit()
        try:
            self.metrics.model_calls += 1
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn)
        finally:
            self.leave()

    async def predict(self, items: list) -> list:
        """The results of ``run`` for ``items``, computed with those of the requests waiting beside them."""
        self.admit()
        try:
            future = asyncio.get_running_loop().create_future()
            self.jobs.append((items, future))
            self.wake.set()
            if self.task is None:
                self.task = asyncio.get_running_loop().create_task(self._work())
            return await future  # a client that leaves cancels it, and its texts are skipped
        finally:
            self.leave()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.jobs:
                self.wake.clear()
                await self.wake.wait()
                continue
            jobs, n = [], 0  # every waiting request that fits in one call, in arrival order
            while self.jobs and (not jobs or n + len(self.jobs[0][0]) <= self.batch):
                items, future = self.jobs.popleft()
                if not future.done():
                    jobs.append((items, future))
                    n += len(items)
            if not jobs:
                continue
            flat = [x for items, _ in jobs for x in items]
            try:
                results = await loop.run_in_executor(self.pool, self.run, flat)
            except Exception as e:  # noqa: BLE001 (handed to each waiting request, answered 500 there)
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.metrics.model_calls += 1
            self.metrics.texts += len(flat)
            k = 0
            for items, future in jobs:
                if not future.done():
                    future.set_result(results[k:k + len(items)])
                k += len(items)

    def close(self) -> None:
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---- requests -----------------------------------------------------------------------------------------
async def read_json(request, cfg: ServeConfig) -> dict[str, Any]:
    """The request body as a JSON object; 413 over ``max_body`` bytes (checked while reading, not trusted
    from Content-Length), 400 when it is not a JSON object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cfg.max_body:
        raise RequestError(413, f"the body is {int(declared):,} bytes, over the limit of {cfg.max_body:,}; send fewer "
                                f"or shorter texts per request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cfg.max_body:
            raise RequestError(413, f"the body is over the limit of {cfg.max_body:,} bytes; send fewer or shorter "
                                    "texts per request")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8; send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the body is not JSON ({e.msg} at line {e.lineno} column {e.colno}); send an "
                                'object such as {"texts": ["some text"]}') from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the body is a JSON {_kind(data)}, not an object; send an object such as "
                                '{"texts": ["some text"]}')
    return data


def predict_items(data: dict[str, Any], qa: bool, cfg: ServeConfig) -> list:
    """The texts (QA: (question, context) pairs) of a /v1/predict body, or a RequestError naming the field."""
    if qa:
        if "pairs" in data:
            _only(data, ("pairs",), '{"pairs": [{"question": "...", "context": "..."}]}')
            pairs = _list(data["pairs"], "pairs", cfg, '{"pairs": [{"question": "...", "context": "..."}]}')
            return [_pair(p, f"pairs[{i}]") for i, p in enumerate(pairs)]
        if "question" in data or "context" in data:
            _only(data, ("question", "context"), '{"question": "...", "context": "..."}')
            return [_pair(data, "the body")]
        raise RequestError(400, 'this bundle answers questions: send {"question": "...", "context": "..."} or '
                                '{"pairs": [{"question": "...", "context": "..."}, ...]}')
    example = '{"texts": ["some text", ...]}'
    if "texts" not in data:
        hint = ' ("text" → "texts": a list, even for one text)' if "text" in data else ""
        raise RequestError(400, f'missing field "texts"{hint}; send {example}')
    _only(data, ("texts",), example)
    texts = _list(data["texts"], "texts", cfg, example)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise RequestError(400, f'field "texts[{i}]" is a JSON {_kind(t)}, not a string; send strings only')
    return texts


def _list(value: Any, name: str, cfg: ServeConfig, example: str) -> list:
    if not isinstance(value, list):
        raise RequestError(400, f'field "{name}" must be a list, not a JSON {_kind(value)}; send {example}')
    if not value:
        raise RequestError(400, f'field "{name}" is empty; send at least one')
    if len(value) > cfg.max_texts:
        raise RequestError(400, f'field "{name}" has {len(value)} items, over the limit of {cfg.max_texts} per request; '
                                f"split them into several requests")
    return value


def _pair(item: Any, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise RequestError(400, f'{where} must be an object {{"question": "...", "context": "..."}}, not a JSON {_kind(item)}')
    for key in ("question", "context"):
        if not isinstance(item.get(key), str):
            got = "missing" if key not in item else f"a JSON {_kind(item[key])}"
            raise RequestError(400, f'field "{key}" of {where} is {got}; it must be a string')
    return item["question"], item["context"]


def _only(data: dict[str, Any], allowed: tuple[str, ...], example: str) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise RequestError(400, f'unknown field "{extra[0]}"; send {example}')


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


# ---- the app ------------------------------------------------------------------------------------------
def build_app(model: Model, cfg: ServeConfig, token: str | None = None):
    """The ASGI app: Starlette routes inside a guard that checks the token and records every request."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import Response
    from starlette.routing import Route

    metrics = Metrics(limit=cfg.queue)
    queue_ref: dict[str, Queue] = {}  # made inside the server's event loop (lifespan)

    openai = model.public["task"] == "text-generation"

    def answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(body, status, headers, media_type="application/json")

    def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """``{"error": message}``; a text-generation server answers in the OpenAI layout, whose clients show
        ``error.message`` (and only that) in the exception they raise."""
        if not openai:
            return answer(status, {"error": message}, headers)
        kind = {401: "authentication_error", 404: "not_found_error", 503: "server_busy"}.get(
            status, "invalid_request_error" if status < 500 else "server_error")
        return answer(status, {"error": {"message": message, "type": kind, "param": None, "code": status}}, headers)

    def endpoint(fn):
        """Turn RequestError into its status and message, anything else into a 500 with no details."""
        async def wrapped(request):
            try:
                return await fn(request)
            except RequestError as e:
                return refusal(e.status, e.message, e.headers)
            except EdgeftError as e:  # the library refuses the client's input
                return refusal(400, _no_paths(str(e)))
            except Exception as e:  # noqa: BLE001 (logged by type only: messages may hold paths)
                log.error("500 on %s %s: %s", request.method, request.url.path, type(e).__name__)
                return refusal(500, f"internal error ({type(e).__name__}); the server log has the request")
        return wrapped

    @endpoint
    async def healthz(request):
        return answer(200, {"status": "ok", "task": model.public["task"]})

    @endpoint
    async def model_info(request):
        return answer(200, model.public)

    @endpoint
    async def prometheus(request):
        return Response(metrics.render(), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    @endpoint
    async def predict(request):
        data = await read_json(request, cfg)
        items = predict_items(data, model.runner.is_qa, cfg)
        results = await queue_ref["q"].predict(items)
        return answer(200, {"results": [r.to_dict() for r in results]})

    def refuse(request, exc):
        allowed = {r.path: sorted(r.methods - {"HEAD"}) for r in routes}.get(request.url.path)
        if exc.status_code == 405 and allowed:
            return refusal(405, f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})
        if exc.status_code == 404:
            return refusal(404, f"no route {request.url.path[:100]}; this server has "
                                f"{', '.join(sorted({r.path for r in routes}))}")
        return refusal(exc.status_code, str(exc.detail))

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", prometheus, methods=["GET"]),
              Route("/v1/model", model_info, methods=["GET"])]
    if model.public["task"] == "text-generation":  # the OpenAI-compatible routes (edgeft.runtime.serve_openai)
        from edgeft.runtime import serve_openai

        routes += serve_openai.routes(model, queue_ref, lambda request: read_json(request, cfg), answer, endpoint)
    else:
        routes.append(Route("/v1/predict", predict, methods=["POST"]))

    async def lifespan(app):
        queue_ref["q"] = Queue(getattr(model.runner, "predict", None), cfg.queue, cfg.batch_size, metrics, cfg.retry_after)
        yield
        queue_ref["q"].close()

    import contextlib

    app = Starlette(routes=routes, exception_handlers={HTTPException: refuse}, lifespan=contextlib.asynccontextmanager(lifespan))
    return guard(app, token, metrics, {r.path for r in routes}, refusal)


def guard(app, token: str | None, metrics: Metrics, known: set[str], refusal):
    """ASGI wrapper: the bearer token (every route but PUBLIC_ROUTES) and the metrics of every request."""
    expected = f"Bearer {token}".encode() if token else None

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        route = scope["path"] if scope["path"] in known else "other"  # unknown paths share one label

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                metrics.observe(route, status[0], time.perf_counter() - start)

        if expected and scope["path"] not in PUBLIC_ROUTES:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                why = "missing" if not given else "wrong"
                response = refusal(401, f"the Authorization header is {why}; send 'Authorization: Bearer <token>' "
                                        "with the token of the server's --token-file", {"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, sending)
        await app(scope, receive, sending)

    return asgi


def _no_paths(text: str) -> str:
    """An error message without the absolute paths a library message may carry."""
    return " ".join("<path>" if w.startswith("/") and "/" in w[1:] else w for w in text.split(" "))


# ---- running ------------------------------------------------------------------------------------------
def serve(model: Model, cfg: ServeConfig, token: str | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT: then stop accepting, let in-flight requests finish (at most
    ``drain_seconds``) and return.

    Raises:
        ConfigError: the address cannot be bound.
    """
    import uvicorn

    app = build_app(model, cfg, token)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=cfg.drain_seconds, lifespan="on", server_header=False,
                            log_config=None)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers that ends
    # as a normal return (exit 0: a clean, drained stop) instead of death by the default SIGTERM action.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    sock = _bind(cfg)
    if on_ready:
        on_ready(f"http://{cfg.host if ':' not in cfg.host else f'[{cfg.host}]'}:{sock.getsockname()[1]}")
    server.run(sockets=[sock])


def _bind(cfg: ServeConfig):
    """The listening socket, bound here so that a port in use is one clear error (and port 0 is resolved)."""
    import socket

    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio switches Nagle off (TCP_NODELAY) only on sockets that say TCP, and
    # with Nagle on, every keep-alive response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}; pick another --port or "
                          "--host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
