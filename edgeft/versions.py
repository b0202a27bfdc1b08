"""Versions of the libraries that shaped a result, recorded in metrics.json, manifests and reports."""

from __future__ import annotations

import platform
from importlib import metadata

TOOLS = ("edgeft", "torch", "transformers", "accelerate", "onnx", "onnxruntime", "onnxscript", "tokenizers", "numpy")


def versions() -> dict[str, str]:
    """Python and every installed package of TOOLS (reading package metadata imports none of them)."""
    found = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
