"""The ``edgeft`` command line: a thin typer layer over the stage functions.

Each stage's commands live in their own module (``train.py``, ``compress.py``, ``runtime.py``) and
import their heavy dependencies inside the command body, so ``edgeft --help`` and the runtime
commands start without loading torch. Library code raises ``EdgeftError``; the group below turns it
into one ``error: …`` line on stderr and exit code 2, so a user mistake never prints a traceback
(the same path serves the real CLI and CliRunner tests).
"""

from __future__ import annotations

import errno

import typer
from typer.core import TyperGroup

from edgeft.errors import EdgeftError


def report(message: str, code: int = 2):
    """Print one ``error: …`` line on stderr and leave with ``code`` (2: a usage/input mistake)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=code)


# A full disk or a read-only mount while writing is the machine's state, not a bug: one line naming the
# file and the fix, exit code 1. Outputs are written under a temp name and renamed when complete, so an
# earlier output under the same name is still intact.
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or choose another --out, then run the command again",
    errno.EDQUOT: "free space within your quota or choose another --out, then run the command again",
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
    errno.EACCES: "check its permissions, or choose a folder you can write to",
}


class _EdgeftGroup(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeftError as e:
            report(str(e), e.exit_code)
        except OSError as e:
            if e.errno not in _WRITE_FIXES:
                raise
            report(f"{e.filename or 'output'}: {e.strerror}; {_WRITE_FIXES[e.errno]}", 1)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # keep the order of the pipeline, not alphabetical


app = typer.Typer(
    name="edgeft",
    cls=_EdgeftGroup,
    help=(
        "Fine-tune a language model on your labeled text, compress it to INT8 ONNX and run it on a "
        "device.\n\n"
        "Typical flow:  edgeft train --data my.csv --out runs/ft  →  edgeft export runs/ft --out "
        'runs/bundle  →  edgeft predict runs/bundle "some text"'
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# Options several commands share (one definition, one help text).
QUIET = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr.")


def fail(message: str) -> None:
    """Stop with one error line and exit 2 (for checks done in the CLI layer itself)."""
    report(message)


def _version(value: bool) -> None:
    if value:
        from edgeft import __version__

        typer.echo(f"edgeft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Fine-tune a language model on your labeled text, compress it to INT8 ONNX and run it on a device."""


# Register the commands: each module adds its own to `app`, importing heavy modules lazily.
from edgeft.cli import train as _train  # noqa: E402,F401
from edgeft.cli import compress as _compress  # noqa: E402,F401
from edgeft.cli import distill as _distill  # noqa: E402,F401
from edgeft.cli import trim as _trim  # noqa: E402,F401
from edgeft.cli import runtime as _runtime  # noqa: E402,F401
from edgeft.cli import build as _build  # noqa: E402,F401
from edgeft.cli import web as _web  # noqa: E402,F401
from edgeft.cli import generate as _generate  # noqa: E402,F401
from edgeft.cli import serve as _serve  # noqa: E402,F401


def main() -> None:
    """Entry point of the ``edgeft`` script."""
    app()

