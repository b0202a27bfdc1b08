"""`--help` pages are snapshots: a changed default, range or help line shows up in the diff, on purpose.

After changing a setting, regenerate and review the pages:

    EDGEFT_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_help.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeft.cli import app

SNAPSHOTS = Path(__file__).parent / "snapshots" / "help"
UPDATE = os.environ.get("EDGEFT_UPDATE_SNAPSHOTS") == "1"
COMMANDS = [""] + list(typer.main.get_command(app).commands)


def help_page(command: str) -> str:
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, prog_name="edgeft", env={"COLUMNS": "110", "TERMINAL_WIDTH": "110",
                                                                    "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.splitlines()) + "\n"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c or "edgeft")
def test_help_page_matches_its_snapshot(command):
    path = SNAPSHOTS / f"{command or 'edgeft'}.txt"
    page = help_page(command)
    if UPDATE:
        path.write_text(page, encoding="utf-8")
    assert path.exists(), f"no snapshot for `edgeft {command} --help`: run with EDGEFT_UPDATE_SNAPSHOTS=1, review it"
    assert page == path.read_text(encoding="utf-8"), (
        f"`edgeft {command} --help` changed; if on purpose, regenerate with EDGEFT_UPDATE_SNAPSHOTS=1 and review")


def test_every_snapshot_belongs_to_a_command():
    names = {c or "edgeft" for c in COMMANDS}
    assert {p.stem for p in SNAPSHOTS.glob("*.txt")} <= names


def test_help_pages_show_each_settings_default_and_range_once():
    """The generated options carry the config's own default and range (not a copy in the CLI)."""
    train = help_page("train")
    assert "[default: 5e-05]" in train and "Range: [0, 1)." in train
    def budget_row(page: str) -> str:
        return " ".join(page.split("--max-accuracy-drop ", 1)[1].split("--", 1)[0].replace("│", " ").split())

    build, quantize = budget_row(help_page("build")), budget_row(help_page("quantize"))
    assert build.replace("Default: 0.01.", "") .split() == quantize.replace("[default: 0.01]", "").split()
    assert "Range: [-1, 1]. Default: 0.01." in build and "[default: 0.01]" in quantize  # one default, one range
