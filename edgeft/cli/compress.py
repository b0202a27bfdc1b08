"""CLI commands of the compress stage (see edgeft.compress)."""

from edgeft.cli import app  # noqa: F401
