"""android_demo's ``core`` (plain Java, no android.* imports) compiled with javac and tested with JUnit 4.

No Gradle here (no Maven access): the sources are compiled as Gradle would (Java 8 target, UTF-8)
against Debian's JUnit 4 and the Android org.json implementation, then RunTests prints one
``N passed, N failed, N skipped`` line that this test reads. The real-bundle JUnit test runs the
core on assets this edgeft wrote, with the model call replayed from Python's run of the same
text model (ONNX Runtime's Java API cannot load on this JVM).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tiny_models import DATA

CORE = Path(__file__).resolve().parent.parent / "android_demo" / "core"
JARS = {"junit4": "/usr/share/java/junit4.jar", "hamcrest": "/usr/share/java/hamcrest-core.jar",
        "libandroid-json-java": "/usr/share/java/com.android.json.jar"}
SENTENCES = [json.loads(line)["text"] for line in (DATA / "tokenizer_sentences.jsonl").read_text("utf-8").splitlines()]
pytest_plugins = ["bundles"]


def test_core_has_no_android_imports():
    sources = list((CORE / "src").rglob("*.java"))
    assert len(sources) >= 10
    assert [str(p) for p in sources if re.search(r"^import (static )?android\.", p.read_text("utf-8"), re.M)] == []


@pytest.fixture(scope="module")
def classpath(tmp_path_factory) -> str:
    """Core and its tests compiled with warnings as errors; returns the java classpath."""
    missing = [pkg for pkg, jar in JARS.items() if not Path(jar).is_file()]
    if not shutil.which("javac") or not shutil.which("java") or missing:
        pytest.skip(f"needs javac/java and {', '.join(JARS)} (apt-get install default-jdk-headless junit4 "
                    f"libandroid-json-java); missing: {missing or 'a JDK'}")
    out = tmp_path_factory.mktemp("core-classes")
    jars = ":".join(JARS.values())
    sources = [str(p) for p in sorted((CORE / "src").rglob("*.java"))]
    done = subprocess.run(["javac", "--release", "8", "-encoding", "UTF-8", "-Xlint:all,-options", "-Werror",
                           "-cp", jars, "-d", str(out), *sources], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return f"{out}:{jars}"


@pytest.fixture(scope="module")
def real_assets(cls_bundle, tmp_path_factory) -> tuple[Path, Path]:
    """(assets folder, cases.json): Python's normalized text, logits and probabilities for 60 sentences."""
    pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed")
    from edgeft.compress.android_assets import Normalization, app_text, softmax, text_session, write_android_assets

    root = tmp_path_factory.mktemp("jvm-assets")
    assets = write_android_assets(cls_bundle, root / "bundle")
    manifest = json.loads((assets / "edgeft.json").read_text("utf-8"))
    norm = Normalization(**manifest["android"]["normalization"])
    session = text_session(str(assets / "text_model.onnx"))
    cases = []
    for text in SENTENCES[::5]:
        normalized = app_text(text, norm)
        logits, ids = session.run(None, {"text": np.array([normalized])})
        probs = softmax(logits[0].astype(np.float64))
        cases.append({"text": text, "normalized": normalized, "logits": logits[0].tolist(), "tokens": len(ids),
                      "label": manifest["labels"][int(probs.argmax())], "probabilities": probs.tolist()})
    (root / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    return assets, root / "cases.json"


def test_core_unit_tests_pass_on_the_jvm(classpath, real_assets):
    tests = sorted(CORE.glob("src/test/java/**/*Test.java"))
    expected = sum(p.read_text("utf-8").count("@Test") for p in tests)
    names = [".".join(p.relative_to(CORE / "src/test/java").with_suffix("").parts) for p in tests]
    done = subprocess.run(["java", f"-Dedgeft.bundle={real_assets[0]}", f"-Dedgeft.cases={real_assets[1]}",
                           "-cp", classpath, "org.edgeft.demo.core.RunTests", *names],
                          capture_output=True, text=True, timeout=300)
    print(done.stdout, done.stderr)
    summary = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", done.stdout, re.M)
    assert summary, done.stdout + done.stderr
    passed, failed, skipped = map(int, summary.groups())
    assert (passed, failed, skipped) == (expected, 0, 0) and done.returncode == 0, done.stdout


@pytest.mark.parametrize("flags", [
    (True, True, True, True, 4096),  # uncased BERT/MiniLM: clean, strip accents, lowercase, split; clip at 4 KB
    (True, False, False, True, 0),  # cased
])
def test_java_normalization_equals_pythons_on_the_tokenizer_sentences(classpath, flags):
    from edgeft.compress.android_assets import Normalization, app_text

    lines = "".join(json.dumps(t) + "\n" for t in SENTENCES)
    done = subprocess.run(["java", "-cp", classpath, "org.edgeft.demo.core.NormalizeLines", *map(str, flags)],
                          input=lines.encode("utf-8"), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    java = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    python = [app_text(t, Normalization(*flags)) for t in SENTENCES]
    assert len(java) == len(SENTENCES)
    assert [(t, j, p) for t, j, p in zip(SENTENCES, java, python) if j != p] == []
