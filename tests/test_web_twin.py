"""The browser twin (android_demo/web/): `edgeft serve-web` serves the page and a bundle, and the
page, run in headless Chromium, gives the labels and probabilities the Python runtime gives.

The first tests check the server itself and need no browser (the page's library files are faked).
The last one drives the real page: it needs Node.js, Debian's chromium and `npm ci` done in
android_demo/web (`.ci/run` installs all three) and is skipped, with the reason, where one is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bundles import build_tiny_bundle
from tiny_models import DATA
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.runtime.predictor import Predictor
from edgeft.runtime.serve_web import PAGE_FILES, VENDOR_FILES, WEB_DIR, build_site, make_server

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored; CI keeps the screenshot from here
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LABELS = ("negative", "neutral", "positive")
TOLERANCE = 1e-4  # max |Δprobability| between the browser (WASM) and the Python runtime (native ORT)


def rows() -> list[str]:
    """Real test sentences plus the inputs where a tokenizer port usually goes wrong."""
    sst2 = [json.loads(line)["text"] for line in (DATA / "sst2_300.jsonl").read_text(encoding="utf-8").splitlines()]
    bank = [json.loads(line)["text"] for line in (DATA / "banking77_300.jsonl").read_text(encoding="utf-8").splitlines()]
    tricky = ["", "   ", "Café crème à Zürich, naïve résumé", "İstanbul ΕΛΛΗΝΙΚΆ Tiếng Việt 한국어 日本語",
              "emoji 😀👍🏽 and a ZWJ family 👨‍👩‍👧", "[CLS] literal [SEP] tokens [PAD]", "tab\there\nnew line",
              "ﬁne ＦＵＬＬ width", "a\x00b", "lone \ud800 surrogate", "x" * 400, " ".join(["word"] * 150)]
    return sst2[:40] + bank[:10] + tricky


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny 3-label BERT classifier whose label depends on the text (init std 0.5: see make_tiny_model)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("web"), labels=LABELS, init_range=0.5)[0]


@pytest.fixture
def fake_web(tmp_path) -> Path:
    """The page's files, and stand-ins for its node_modules: enough to test the server without npm."""
    web = tmp_path / "web"
    for name in PAGE_FILES:
        (web / name).parent.mkdir(parents=True, exist_ok=True)
        (web / name).write_text(f"/* {name} */")
    for rel in VENDOR_FILES.values():
        (web / "node_modules" / rel).parent.mkdir(parents=True, exist_ok=True)
        (web / "node_modules" / rel).write_bytes(b"\0asm" if rel.endswith(".wasm") else b"// lib")
    return web


@pytest.fixture
def served(cls_bundle, fake_web):
    """get(path, method) → (status, headers, body) from a live server on 127.0.0.1, any free port."""
    server = make_server(build_site(cls_bundle, fake_web), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def get(path: str, method: str = "GET"):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, b""

    yield get
    server.shutdown()
    server.server_close()


def test_serves_the_page_its_libraries_and_the_verified_bundle(served, cls_bundle):
    status, headers, body = served("/")
    assert status == 200 and body == b"/* index.html */" and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]  # the page can load nothing off-site
    status, headers, body = served("/vendor/ort-wasm-simd-threaded.wasm")
    assert status == 200 and headers["Content-Type"] == "application/wasm" and body == b"\0asm"
    for name in ("model.onnx", "tokenizer.json"):
        status, _, body = served(f"/bundle/{name}")
        assert status == 200 and body == (cls_bundle / name).read_bytes()
    _, _, body = served("/bundle/edgeft.json?reload=1")
    assert json.loads(body)["files"] == json.loads((cls_bundle / "edgeft.json").read_text())["files"]


@pytest.mark.parametrize("path", ["/bundle/../edgeft.json", "/../../etc/passwd", "/node_modules/onnxruntime-web/package.json",
                                  "/vendor/ort.min.js", "/bundle/", "/tests/test_web_twin.py"])
def test_serves_nothing_outside_its_table(served, path):
    assert served(path)[0] == 404


def test_is_read_only(served):
    assert served("/bundle/model.onnx", "HEAD")[0] == 200
    assert served("/bundle/model.onnx", "PUT")[0] == 501
    assert served("/", "POST")[0] == 501


def test_server_needs_only_the_standard_library(cls_bundle, fake_web):
    """The model runs in the browser: serving needs neither torch nor onnxruntime, numpy, tokenizers."""
    code = ("import sys; from edgeft.cli import app; from edgeft.runtime.serve_web import build_site, make_server; "
            f"make_server(build_site({str(cls_bundle)!r}, {str(fake_web)!r}), '127.0.0.1', 0).server_close(); "
            "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'numpy', 'tokenizers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


runner = CliRunner()


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # long messages wrap
    assert "error: " in text and message in text.split("error: ", 1)[1], result.output
    assert "Traceback" not in result.output


def test_cli_says_how_to_install_the_page_libraries(cls_bundle, fake_web):
    shutil.rmtree(fake_web / "node_modules" / "onnxruntime-web")
    result = runner.invoke(app, ["serve-web", str(cls_bundle), "--web", str(fake_web)])
    assert_user_error(result, "onnxruntime-web/dist/ort.wasm.min.js is missing")
    assert f"run `npm ci` in {fake_web}" in " ".join(result.output.split())


def test_cli_refuses_what_the_page_cannot_serve(cls_bundle, ner_bundle, fake_web, tmp_path):
    assert_user_error(runner.invoke(app, ["serve-web", str(cls_bundle), "--web", str(tmp_path / "nowhere")]),
                      "the browser page is not at")
    assert_user_error(runner.invoke(app, ["serve-web", str(ner_bundle), "--web", str(fake_web)]),
                      "is a token-classification bundle; the browser page classifies text only")
    assert_user_error(runner.invoke(app, ["serve-web", str(tmp_path / "missing"), "--web", str(fake_web)]),
                      "bundle not found")
    tampered = shutil.copytree(cls_bundle, tmp_path / "tampered")
    with open(tampered / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert_user_error(runner.invoke(app, ["serve-web", str(tampered), "--web", str(fake_web)]),
                      "model.onnx is")


def test_cli_reports_a_port_in_use(cls_bundle, fake_web):
    busy = make_server(build_site(cls_bundle, fake_web), "127.0.0.1", 0)
    try:
        result = runner.invoke(app, ["serve-web", str(cls_bundle), "--web", str(fake_web),
                                     "--port", str(busy.server_address[1])])
        assert_user_error(result, f"cannot serve on 127.0.0.1:{busy.server_address[1]}")
    finally:
        busy.server_close()


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not shutil.which("node"):
        return "Node.js is not installed (apt-get install nodejs npm)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)"
    for package in ("playwright-core", *sorted({rel.split("/dist/")[0] for rel in VENDOR_FILES.values()})):
        if not (WEB_DIR / "node_modules" / package).is_dir():
            return f"{package} is not installed: run `npm ci` in {WEB_DIR}"
    return None


@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_page_in_chromium_matches_the_python_runtime(bundle, tmp_path):
    texts = rows()
    expected = Predictor.load(bundle, threads=1).predict(texts)
    assert len({p.label for p in expected}) == len(LABELS)  # every label occurs: label equality means something
    assert any(p.truncated for p in expected) and any(not p.truncated for p in expected)

    server = subprocess.Popen([sys.executable, "-m", "edgeft", "serve-web", str(bundle), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # "serving … at http://127.0.0.1:PORT/ — Ctrl-C to stop"
        assert " at http://127.0.0.1:" in line, line + server.stderr.read()
        url = line.split(" at ", 1)[1].split()[0]
        (tmp_path / "texts.json").write_text(json.dumps(texts))
        shot = tmp_path / "web-twin.png"
        proc = subprocess.run(["node", str(WEB_DIR / "check_page.mjs"), url, str(tmp_path / "texts.json"),
                               str(tmp_path / "out.json"), str(shot)],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = json.loads((tmp_path / "out.json").read_text())
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "web-twin.png")

    assert page["errors"] == [] and page["offsite"] == []  # no console errors; nothing fetched off 127.0.0.1
    assert page["status"].startswith("ready: 3 labels (negative, neutral, positive)")
    got = page["results"]
    assert [r["label"] for r in got] == [p.label for p in expected]
    assert [r["truncated"] for r in got] == [p.truncated for p in expected]
    worst = max(abs(r["scores"][k] - v) for r, p in zip(got, expected) for k, v in p.scores.items())
    summary = {"browser": page["browser"], "texts": len(texts), "max_abs_prob_diff": worst, "bench_ms": page["bench"]}
    (ARTIFACTS / "web-twin.json").write_text(json.dumps(summary, indent=1) + "\n")
    assert worst <= TOLERANCE, f"max |Δprobability| {worst:.2e} over {len(texts)} texts"
    assert page["ui"]["label"] == expected[0].label  # what the page shows after typing + Classify
    assert page["bench"]["calls"] == 20 and 0 < page["bench"]["p50"] <= page["bench"]["p90"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_page_reads_the_batching_as_the_python_runtime_does(tmp_path):
    """classifier.js's batchingOf, run by Node on a copy of the page with a stand-in tokenizers module,
    against edgeft.runtime.session.batching_of on the same manifests."""
    from edgeft.runtime.manifest import Manifest
    from edgeft.runtime.session import batching_of

    shutil.copy(WEB_DIR / "classifier.js", tmp_path / "classifier.mjs")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "tokenizers.min.mjs").write_text("export class Tokenizer {}\n")
    cases = [{}, {"quantization": {"mode": "static"}}, {"quantization": {"mode": "dynamic"}},
             {"quantization": {"mode": "dynamic"}, "batching": "padded"}, {"batching": "rows"}, {"batching": "by-length"}]
    script = ("import { batchingOf } from './classifier.mjs';\n"
              f"for (const m of {json.dumps(cases)}) {{ try {{ console.log(batchingOf(m)); }} "
              "catch (e) { console.log('error: ' + e.message); } }\n")
    (tmp_path / "check.mjs").write_text(script)
    done = subprocess.run(["node", "check.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    python = [batching_of(Manifest("text-classification", ["a"], 8, ["input_ids"], ["logits"], 0,
                                   quantization=c.get("quantization", {}), batching=c.get("batching", "")))
              for c in cases[:-1]]
    assert done.stdout.splitlines() == [*python, 'error: edgeft.json: batching "by-length" is not padded or rows; '
                                                 "this page is older than the bundle"]
    assert python == ["padded", "padded", "rows", "padded", "rows"]
