"""Check that an output path can be written before any work starts.

``os.access`` is not enough: it answers yes to root on a read-only mount (a write-protected SD
card, a container's read-only volume), so the check creates and removes a real temp file in the
nearest folder that exists. A training run or an export that would fail only when it saves its
result, minutes later, fails here instead, with the flag and the folder named.

Standard library only (the runtime's commands use it too).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgeft.errors import ConfigError


def check_writable(out: str | Path, flag: str = "--out") -> None:
    """Raise ConfigError unless files can be created where ``out`` is (or will be).

    Args:
        out: the output file or folder; it need not exist yet.
        flag: the option that named it, for the message.
    """
    out = Path(out)
    folder = out if out.is_dir() else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {out}: {folder} is a file, not a folder; choose another path.")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".edgeft-write-check-"):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {out}: cannot write in {folder} ({e.strerror}); "
                          "choose a folder you can write to.") from None
