"""edgeft.writable: a file or folder appears whole under its name, or not at all."""

from __future__ import annotations

import os

import pytest

from edgeft.writable import atomic_folder, atomic_write_text, recover, write_json


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_json(path, {"a": 1, "é": "ü"})
    write_json(path, {"a": 2})
    assert path.read_text(encoding="utf-8") == '{\n  "a": 2\n}\n' and names(path.parent) == ["report.json"]
    assert oct(path.stat().st_mode)[-3:] != "600"  # the user's umask, not mkstemp's private mode


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "a.txt", "old")
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("rename failed")))
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and names(tmp_path) == ["a.txt"]


def test_atomic_folder_swaps_a_folder_whole(tmp_path):
    dest = tmp_path / "model"
    with atomic_folder(dest) as tmp:
        (tmp / "old.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_folder(dest) as tmp:
            (tmp / "half.txt").write_text("2")
            raise RuntimeError("killed half way")
    assert names(dest) == ["old.txt"] and names(tmp_path) == ["model"]
    with atomic_folder(dest) as tmp:
        (tmp / "new.txt").write_text("3")
    assert names(dest) == ["new.txt"] and names(tmp_path) == ["model"]


def test_recover_puts_back_a_folder_a_dead_writer_moved_aside(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    dest = tmp_path / "b"
    (tmp_path / f".b.old-{dead}").mkdir()
    (tmp_path / f".b.old-{dead}" / "edgeft.json").write_text("{}")
    (tmp_path / f".b.{dead}.abc123.tmp").mkdir()  # its half-written new folder
    (tmp_path / f".b.{os.getpid()}.def456.tmp").mkdir()  # a live writer's (ours): left alone
    recover(dest)
    assert names(dest) == ["edgeft.json"]
    assert names(tmp_path) == [f".b.{os.getpid()}.def456.tmp", "b"]
