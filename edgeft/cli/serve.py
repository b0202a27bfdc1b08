"""CLI command ``edgeft serve``: a bundle as a local HTTP service (edgeft.runtime.serve).

The serve extra (starlette, uvicorn) is imported only when the command runs; like every runtime
command it never imports torch or transformers, so the server starts in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.options import examples
from edgeft.cli.runtime import BUNDLE_HELP, THREADS_HELP
from edgeft.errors import require


@app.command(
    "serve",
    epilog=examples(
        "edgeft serve runs/arm64/bundle",
        "curl -s localhost:8080/v1/predict -d '{\"texts\": [\"a gripping film\"]}'",
        "edgeft serve runs/arm64/bundle --host 0.0.0.0 --token-file /etc/edgeft/token   # on the network",
        after="Routes: POST /v1/predict {\"texts\": [...]} (QA: {\"question\", \"context\"} or {\"pairs\": [...]}), GET /v1/model, GET "
              "/healthz, GET /metrics (Prometheus). Text-generation bundles: the OpenAI-compatible POST /v1/chat/completions "
              "and /v1/completions (\"stream\": true for server-sent events) and GET /v1/models, for any OpenAI client with "
              "base_url http://127.0.0.1:8080/v1. SIGTERM drains in-flight requests and exits 0.",
    ),
)
def serve_command(
    bundle: Path = typer.Argument(..., help=BUNDLE_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 = every network interface "
                                                          "(give --token-file then)."),
    port: int = typer.Option(8080, "--port", help="TCP port (0 = any free port; the start-up line names it)."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding a bearer token: every route "
                                              "but /healthz then needs 'Authorization: Bearer <token>'."),
    queue: int = typer.Option(32, "--queue", help="Requests waiting or running at once; one more is answered 503 "
                                                  "with Retry-After."),
    max_texts: int = typer.Option(64, "--max-texts", help="Texts (question-answering: pairs) per request."),
    max_body: int = typer.Option(1 << 20, "--max-body", help="Bytes per request body; a larger one is answered 413."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts of concurrent requests per model call (bundles "
                                                            "that batch padded texts; others run one text per call)."),
    drain: float = typer.Option(10.0, "--drain", help="Seconds in-flight requests may take to finish after SIGTERM."),
):
    """Serve a bundle over HTTP: predictions (or OpenAI-compatible completions), the manifest, health, metrics."""
    require("starlette", "serve", extra="serve")
    require("uvicorn", "serve", extra="serve")
    from edgeft.runtime.serve import ServeConfig, load_model, read_token, serve

    cfg = ServeConfig(host=host, port=port, threads=threads, queue=queue, max_texts=max_texts, max_body=max_body,
                      batch_size=batch_size, drain_seconds=drain)
    token = read_token(token_file) if token_file else None
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: listening on {host} without --token-file: anyone who can reach this machine can use "
                    "the model; give --token-file FILE, or keep the default --host 127.0.0.1", err=True,
                    fg=typer.colors.YELLOW)
    model = load_model(bundle, cfg)  # verifies every file's sha256: a tampered bundle stops here, exit 2
    task = model.public["task"]

    def ready(url: str) -> None:
        route = "/v1/chat/completions" if task == "text-generation" else "/v1/predict"
        typer.echo(f"serving {bundle} ({task}) on {url}: POST {url}{route}; auth {'on' if token else 'off'}; "
                   f"queue {queue}; Ctrl-C or SIGTERM stops", err=True)

    serve(model, cfg, token, on_ready=ready)
    typer.echo("stopped", err=True)
