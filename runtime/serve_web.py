"""``edgeft serve-web``: the browser twin's page and one bundle over HTTP, read-only, on 127.0.0.1.

The page (``android_demo/web/``) runs the model in the browser; this server only hands out files:
the page's, four library files from its ``node_modules`` (``npm ci``, never committed) and the
bundle, verified first and then served from memory. Every URL is looked up in a fixed table (no
request path is joined to a folder, so ``..`` cannot escape), only GET and HEAD are answered, and
the page may load from this origin only (Content-Security-Policy), so it works offline.
Standard library only (plus the runtime's bundle reader).
"""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edgeft.errors import BundleError, ConfigError
from edgeft.runtime.bundle import load_bundle
from edgeft.runtime.manifest import MANIFEST_NAME

# The page's own files, next to package.json in a checkout.
WEB_DIR = Path(__file__).resolve().parent.parent / "android_demo" / "web"
PAGE_FILES = ("index.html", "app.js", "classifier.js", "style.css")
# URL under vendor/ → file under node_modules/. Only the WASM build of onnxruntime-web: its loader,
# and the one .mjs/.wasm pair it picks without WebGPU/JSEP (SIMD; threads unused, numThreads = 1).
VENDOR_FILES = {
    "ort.wasm.min.js": "onnxruntime-web/dist/ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "tokenizers.min.mjs": "@huggingface/tokenizers/dist/tokenizers.min.mjs",
}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json; charset=utf-8", ".wasm": "application/wasm"}  # .wasm: needed to stream-compile
# Same origin only; 'wasm-unsafe-eval' lets onnxruntime compile its WebAssembly, nothing else is relaxed.
CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; object-src 'none'"


@dataclass(frozen=True)
class Site:
    """What the server hands out: URL path → (bytes, content type). Built once, never changed."""

    routes: dict[str, tuple[bytes, str]]
    bundle: Path
    summary: str  # one line about the bundle, for the start-up message


def build_site(bundle_path: str | Path, web_dir: str | Path | None = None) -> Site:
    """Verify the bundle and read every file the page needs.

    Raises:
        BundleError: the bundle fails verification, or is not a text-classification bundle.
        ConfigError: the page or its node_modules are missing (the message says how to install them).
    """
    web = Path(web_dir) if web_dir else WEB_DIR
    if not all((web / name).is_file() for name in PAGE_FILES):
        raise ConfigError(f"the browser page is not at {web}: it ships in a checkout of edgeft "
                          "(android_demo/web/); clone the repository, or give its folder with --web DIR")
    missing = [rel for rel in VENDOR_FILES.values() if not (web / "node_modules" / rel).is_file()]
    if missing:
        raise ConfigError(f"{web / 'node_modules' / missing[0]} is missing: the page's libraries are not installed; "
                          f"run `npm ci` in {web} (needs Node.js and npm) and try again")
    bundle = load_bundle(bundle_path)  # hashes and format version, before anything is served
    m = bundle.manifest
    if m.task != "text-classification":
        raise BundleError(f"{bundle.source} is a {m.task} bundle; the browser page classifies text only "
                          "(use `edgeft predict` for it)")
    model = bundle.model if isinstance(bundle.model, bytes) else Path(bundle.model).read_bytes()
    routes = {f"/{name}": ((web / name).read_bytes(), _type(name)) for name in PAGE_FILES}
    routes["/"] = routes["/index.html"]
    routes |= {f"/vendor/{url}": ((web / "node_modules" / rel).read_bytes(), _type(url)) for url, rel in VENDOR_FILES.items()}
    routes |= {
        f"/bundle/{MANIFEST_NAME}": (m.to_json().encode("utf-8"), _type(MANIFEST_NAME)),
        f"/bundle/{m.model_file}": (model, "application/octet-stream"),
        f"/bundle/{m.tokenizer_file}": (bundle.tokenizer_json.encode("utf-8"), _type(m.tokenizer_file)),
    }
    summary = f"{m.task}, labels {', '.join(m.labels)}, {m.model_file} {len(model) / 1e6:.1f} MB"
    return Site(routes, bundle.source, summary)


def make_server(site: Site, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``site``, bound but not yet serving (port 0: any free port).

    Raises:
        ConfigError: the address cannot be bound (port in use, unknown host).
    """

    class Handler(BaseHTTPRequestHandler):
        server_version = "edgeft-serve-web"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            found = site.routes.get(path)
            if found is None:
                self.send_error(404, "not served here")
                return
            data, kind = found
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")  # a rebuilt bundle is picked up on reload
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
            pass  # quiet: the start-up line says where to look; errors reach the browser as status codes

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror or e}; pick another --port "
                          "(0 = any free port) or --host") from None


def _type(name: str) -> str:
    return TYPES.get(Path(name).suffix, "application/octet-stream")
