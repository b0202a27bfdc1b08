"""``edgeft serve-web``: serve the browser twin (android_demo/web/) and a bundle on 127.0.0.1.

Runtime-side: standard library and the bundle reader only (no torch, no onnxruntime needed here:
the model runs in the browser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.options import examples


@app.command(
    "serve-web",
    epilog=examples(
        "cd android_demo/web && npm ci && cd -     # once: the page's libraries (onnxruntime-web, tokenizers.js)",
        "edgeft serve-web runs/arm64/bundle        # then open http://127.0.0.1:8765/",
        "edgeft serve-web runs/arm64/bundle.zip --port 0   # any free port; the URL is printed",
    ),
)
def serve_web_command(
    bundle: Path = typer.Argument(..., help="Text-classification bundle folder or .zip; verified before serving."),
    port: int = typer.Option(8765, help="TCP port (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Anything but a loopback address exposes "
                                               "the page and the model to the network."),
    web: Optional[Path] = typer.Option(None, help="The page's folder (default: android_demo/web of this checkout)."),
):
    """Classify text in the browser: serve the page and BUNDLE read-only; the model runs in the browser tab."""
    from edgeft.runtime.serve_web import build_site, make_server

    site = build_site(bundle, web)
    server = make_server(site, host, port)
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: listening on {host}: other machines can load the page and download the model",
                    err=True, fg=typer.colors.YELLOW)
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    typer.echo(f"serving {site.bundle} ({site.summary}) at http://{shown}:{bound_port}/ — Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()
