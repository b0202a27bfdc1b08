"""Public names of a subpackage, imported from their modules on first use (PEP 562).

``from edgeft.runtime import Predictor`` works, while ``import edgeft.runtime`` stays cheap and
torch-free: a name's module is imported only when the name is asked for.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each public name to the
    submodule (relative to the package) that defines it."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
