"""One definition per setting: its default, help text and valid range, written once on a config field.

Every stage config is a frozen dataclass whose fields are made with ``setting(...)``. From those
fields come, with nothing written twice:

* the checks (``check(cfg)`` in ``__post_init__``: every range and choice, all problems at once);
* the typer options of the stage's command (``edgeft.cli.options``);
* the recipe's sections (``edgeft.recipe``) and the comments of the resolved ``recipe.toml``.

A setting that two configs share (the accuracy budget of ``quantize`` and ``build``, say) is
declared on one of them and reused with ``same_as(Config, "name")``, so a default cannot drift.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, Field, field, fields
from typing import Any, Callable, Sequence

from edgeft.errors import ConfigError


def setting(default: Any = MISSING, help: str = "", *, choices: Sequence | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None, flag: str | None = None,
            parse: Callable[[str], Any] | None = None, metavar: str | None = None, cli: bool = True,
            default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field with its help text and valid range.

    Args:
        default: the default (``None`` = "not set": the stage derives it, and the help says how).
        help: one line for ``--help`` and the recipe comment; say what the value means and its unit.
        choices: allowed values (strings).
        ge, gt, le, lt: bounds (``None`` values always pass: they mean "derive it").
        flag: the CLI flag when it is not ``--field-name``.
        parse: for values typer cannot take directly (tuples, dicts): the CLI passes a string through it.
        cli: False keeps the field out of the generated options (set by code, not by users).
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "flag": flag, "parse": parse, "metavar": metavar, "cli": cli}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def same_as(cls: type, name: str, **changes) -> Any:
    """Reuse another config's field (default, help, range): one setting, declared once."""
    f = next(f for f in fields(cls) if f.name == name)
    default = changes.pop("default", f.default)
    meta = {**f.metadata, **changes}
    if f.default_factory is not MISSING:
        return field(default_factory=f.default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def parse_json_object(text: str) -> dict:
    """For dict-valued settings given on the command line (``--hp-space '{"learning_rate": [1e-5, 3e-5]}'``)."""
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"must be a JSON object like '{{\"learning_rate\": [1e-5, 3e-5]}}', got {text!r}")
    return value


def parse_int_list(text: str) -> tuple[int, ...]:
    """For tuple-of-int settings given on the command line (``--keep-layers 0,2,5``)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"takes comma-separated layer numbers like 0,2,4 (got {text!r})") from None


def flag_of(f: Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def range_text(f: Field) -> str:
    """``[0, 1)``, ``>= 1``, ``> 0``, ``one of a | b``, or '' when the field has no range."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + " | ".join(map(str, m["choices"]))
    low = ("[", m["ge"]) if m.get("ge") is not None else ("(", m["gt"]) if m.get("gt") is not None else None
    high = ("]", m["le"]) if m.get("le") is not None else (")", m["lt"]) if m.get("lt") is not None else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return ""


def _in_range(value, m) -> bool:
    if m.get("choices") and value not in m["choices"]:
        return False
    try:
        return not ((m.get("ge") is not None and value < m["ge"]) or (m.get("gt") is not None and value <= m["gt"])
                    or (m.get("le") is not None and value > m["le"]) or (m.get("lt") is not None and value >= m["lt"]))
    except TypeError:
        return False


def problems(cfg) -> list[str]:
    """Every field whose value is outside its declared range or choices, as ``--flag must be … (got …)``."""
    out = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is None or isinstance(value, bool) or not (f.metadata.get("choices") or range_text(f)):
            continue
        if not _in_range(value, f.metadata):
            out.append(f"{flag_of(f)} must be {range_text(f)} (got {value!r})")
    return out


def check(cfg, extra: Sequence[str] = ()) -> None:
    """Raise one ConfigError naming every problem at once (as torchtune's config errors do)."""
    found = problems(cfg) + [p for p in extra if p]
    if found:
        raise ConfigError("; ".join(found))


def help_of(f: Field) -> str:
    """The field's help with its range appended: what ``--help`` and the recipe comments show."""
    text, rng = f.metadata.get("help", ""), range_text(f)
    return f"{text} Range: {rng.removeprefix('in ')}." if rng and not f.metadata.get("choices") else text


def replace_known(cfg, **values):
    """``dataclasses.replace`` with only the keys the config has (the build's shared settings)."""
    names = {f.name for f in fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in values.items() if k in names})
