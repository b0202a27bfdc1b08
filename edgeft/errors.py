"""Typed errors. Library code raises these; only the CLI turns them into one message and exit code 2.

Every message says what is wrong, where (file, line, flag) and what to do about it, so a user
never has to read a traceback for a mistake of their own.
"""

from __future__ import annotations


class EdgeftError(Exception):
    """Base class: a problem the user can fix. The CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


class DataError(EdgeftError):
    """A data file cannot be used as given (missing, empty, bad row, unknown label, …)."""


class ModelError(EdgeftError):
    """A model folder or name cannot be loaded as the task needs."""


class ConfigError(EdgeftError):
    """A flag or config value is out of range or inconsistent."""


class MissingExtraError(EdgeftError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, command: str, extra: str = "train", module: str | None = None):
        what = f" ({module} is not installed)" if module else ""
        super().__init__(
            f"`edgeft {command}` needs the {extra!r} extra{what}: "
            f'pip install "edgeft[{extra}]"  (CPU-only torch: pip install "torch==2.13.0" "edgeft[{extra}]")'
        )


class BundleError(EdgeftError):
    """A bundle is missing, malformed, tampered with or of an unsupported format version."""


class ParityError(EdgeftError):
    """The ONNX export does not reproduce the PyTorch model within tolerance."""


def require(module: str, command: str, extra: str = "train"):
    """Import ``module`` or raise MissingExtraError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(command, extra, module) from None
