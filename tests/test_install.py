"""Packaging: the wheel holds every subpackage (train/, compress/, runtime/ mapped under edgeft.*)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_builds_and_imports_from_a_clean_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("edgeft-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("edgeft/cli/__init__.py", "edgeft/train/finetune.py", "edgeft/runtime/manifest.py",
                   "edgeft/compress/__init__.py", "edgeft/samples/sst2_train.jsonl"):
        assert module in names, f"{module} missing from the wheel"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    # Import from the installed wheel only: a fresh interpreter, cwd outside the repo.
    code = ("import edgeft, edgeft.train.finetune, edgeft.runtime.manifest, edgeft.cli;"
            "from edgeft.cli.train import sample_data; assert all(p.is_file() for p in sample_data());"
            "print(edgeft.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tmp_path / "site"))


def test_editable_install_maps_the_top_level_folders():
    import edgeft.runtime
    import edgeft.train

    assert Path(edgeft.train.__file__).parent == ROOT / "train"
    assert Path(edgeft.runtime.__file__).parent == ROOT / "runtime"
