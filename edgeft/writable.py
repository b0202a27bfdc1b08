"""Write outputs safely: check that a path can be written before any work starts, then write
files and folders atomically.

``os.access`` is not enough: it answers yes to root on a read-only mount (a write-protected SD
card, a container's read-only volume), so the check creates and removes a real temp file in the
nearest folder that exists. A training run or an export that would fail only when it saves its
result, minutes later, fails here instead, with the flag and the folder named.

Every file or folder edgeft writes goes through ``atomic_file`` / ``atomic_folder``: it is written
under a temp name beside its destination and renamed into place (``os.replace``, atomic on one
filesystem) only when complete, so a crash, a full disk or a kill -9 leaves the destination absent
or as it was, never half-written. The temp names carry the writer's pid, so the next writer can tell
a dead writer's leftovers from a live one's and clean them up (``recover``).

Standard library only (the runtime's commands use it too).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

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


def temp_beside(dest: str | Path) -> Path:
    """A fresh, not yet existing path beside ``dest``: ``.<name>.<pid>.<random>.tmp`` (what ``recover`` finds)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for the caller to write; rename it onto ``path`` when the
    block completes. On an exception the temp file is removed and ``path`` is left as it was.

    The file is created by the caller (``open``, ``savefig``, ``zipfile``), so it gets the usual
    permissions (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data) -> Path:
    """``data`` as indented UTF-8 JSON (non-JSON values as ``str``) plus a newline, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def scratch_folder(beside: str | Path) -> Iterator[Path]:
    """A new empty folder beside ``beside`` (named as ``temp_beside``), removed when the block ends."""
    tmp = temp_beside(beside)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()  # 0777 less the umask, like any folder the user makes (mkdtemp would give 0700)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(dest: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``dest`` for the caller to fill; when the block completes it
    replaces ``dest`` (``replace_folder``). On an exception it is removed and ``dest`` is left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover(dest)
    with scratch_folder(dest) as tmp:
        yield tmp
        replace_folder(tmp, dest)


def replace_folder(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an existing ``dest`` is moved aside first and restored on failure.

    Between the two renames ``dest`` is absent for a moment; a writer killed there leaves the old
    folder as ``.<name>.old-<pid>``, which ``recover`` puts back.
    """
    if not dest.exists():
        os.replace(new, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def recover(dest: str | Path) -> None:
    """Clean up after a writer of ``dest`` that was killed (kill -9, power loss) before it could: remove
    its temp files and folders, and if it died between moving the old ``dest`` aside and renaming the
    new one into place, put the old one back. What a still-running writer has beside ``dest`` is left alone."""
    dest = Path(dest)
    name = re.escape(dest.name)
    temp = re.compile(rf"\.{name}\.(\d+)\.[a-z0-9_]+\.tmp(\.zip)?")  # temp_beside's names (and older mkdtemp ones)
    moved = re.compile(rf"\.{name}\.old-(\d+)")  # replace_folder's previous folder
    for path in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
        match = temp.fullmatch(path.name) or moved.fullmatch(path.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if match.re is moved and not dest.exists():
            os.replace(path, dest)  # the previous folder, complete: it had only been moved aside
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; not a pid at all
        return True
    return True
