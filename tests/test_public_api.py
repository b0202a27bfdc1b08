"""The public API where a user looks for it: ``from edgeft.runtime import Predictor``, the configs
from ``edgeft.train`` / ``edgeft.compress``; importing a package stays cheap (nothing loads until asked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edgeft.compress
import edgeft.runtime
import edgeft.train


@pytest.mark.parametrize("package, module, names", [
    (edgeft.runtime, "edgeft.runtime.predictor", ["Predictor", "Prediction", "Entity", "Entities"]),
    (edgeft.runtime, "edgeft.runtime.bundle", ["Bundle", "load_bundle"]),
    (edgeft.runtime, "edgeft.runtime.qa", ["Answer"]),
    (edgeft.runtime, "edgeft.runtime.generate", ["Generator", "Generation"]),
    (edgeft.train, "edgeft.train.config", ["TrainConfig"]),
    (edgeft.compress, "edgeft.compress.quantize", ["QuantizeConfig"]),
    (edgeft.compress, "edgeft.compress.export", ["ExportConfig"]),
    (edgeft.compress, "edgeft.compress.distill", ["DistillConfig"]),
    (edgeft.compress, "edgeft.compress.trim_vocab", ["TrimConfig"]),
])
def test_public_names_are_the_modules_own(package, module, names):
    import importlib

    for name in names:
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
        assert name in package.__all__ and name in dir(package)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="'edgeft.runtime' has no attribute 'Predicter'"):
        edgeft.runtime.Predicter  # noqa: B018


def test_importing_the_packages_loads_no_module_behind_them():
    code = ("import sys, edgeft.runtime, edgeft.train, edgeft.compress; "
            "print(sorted(m for m in sys.modules if m.startswith(('edgeft.runtime.', 'edgeft.train.', "
            "'edgeft.compress.')) or m.split('.')[0] in ('onnxruntime', 'torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
