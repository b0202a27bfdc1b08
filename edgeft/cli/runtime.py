"""CLI commands of the runtime stage (see edgeft.runtime)."""

from edgeft.cli import app  # noqa: F401
