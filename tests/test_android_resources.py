"""android_demo's manifest and resources compile and link with aapt2 against the Android platform's resources.

No APK is built here (no android.jar, no dexer); this catches malformed XML, missing strings or ids
and references to resources the platform lacks, which is why the app uses platform (@android:)
themes and widgets only. Debian's framework-res.apk is API 29.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "android_demo" / "app"
FRAMEWORK = Path("/usr/share/android-framework-res/framework-res.apk")

pytestmark = pytest.mark.skipif(
    not shutil.which("aapt2") or not FRAMEWORK.is_file(),
    reason="needs aapt2 and framework-res.apk (apt-get install android-sdk-build-tools android-framework-res)")


def gradle(name: str) -> str:
    """A value from app/build.gradle.kts, e.g. namespace or minSdk."""
    found = re.search(rf'^\s*{name}\s*=\s*"?([\w.]+)"?', (APP / "build.gradle.kts").read_text(), re.M)
    assert found, f"{name} not found in app/build.gradle.kts"
    return found.group(1)


def link(tmp: Path, manifest: str) -> subprocess.CompletedProcess:
    """aapt2 compile + link as the Android Gradle Plugin would: the package comes from `namespace`."""
    compiled = tmp / "res.zip"
    done = subprocess.run(["aapt2", "compile", "--dir", str(APP / "src/main/res"), "-o", str(compiled)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (tmp / "AndroidManifest.xml").write_text(
        manifest.replace("<manifest ", f'<manifest package="{gradle("namespace")}" ', 1), encoding="utf-8")
    return subprocess.run(["aapt2", "link", "-I", str(FRAMEWORK), "--manifest", str(tmp / "AndroidManifest.xml"),
                           "--min-sdk-version", gradle("minSdk"), "--target-sdk-version", gradle("targetSdk"),
                           "--version-code", gradle("versionCode"), "--version-name", gradle("versionName"),
                           "--java", str(tmp / "gen"), "-o", str(tmp / "resources.apk"), str(compiled)],
                          capture_output=True, text=True, timeout=120)


def test_manifest_and_resources_link_and_define_what_the_kotlin_code_uses(tmp_path):
    done = link(tmp_path, (APP / "src/main/AndroidManifest.xml").read_text(encoding="utf-8"))
    assert done.returncode == 0, done.stdout + done.stderr
    r_java = (tmp_path / "gen" / "org" / "edgeft" / "demo" / "R.java").read_text()
    kotlin = "".join(p.read_text(encoding="utf-8") for p in (APP / "src/main/java").rglob("*.kt"))
    used = set(re.findall(r"\bR\.(\w+)\.(\w+)", kotlin))
    assert {("layout", "activity_main"), ("id", "input"), ("string", "benchmark")} <= used
    defined = {(kind, name) for kind, body in re.findall(r"static final class (\w+) \{(.*?)\n  \}", r_java, re.S)
               for name in re.findall(r"int (\w+)=", body)}
    assert used - defined == set()


def test_a_theme_the_platform_lacks_fails_the_link(tmp_path):
    """The check can fail: an AndroidX/Material theme is not in framework-res, so linking must stop."""
    manifest = (APP / "src/main/AndroidManifest.xml").read_text(encoding="utf-8")
    material = re.sub(r'android:theme="[^"]+"', 'android:theme="@style/Theme.MaterialComponents.DayNight"', manifest)
    done = link(tmp_path, material)
    assert done.returncode != 0 and "Theme.MaterialComponents.DayNight" in done.stderr + done.stdout
