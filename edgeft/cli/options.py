"""Typer options made from config fields: a stage's flags, defaults, help and ranges are its config's.

    @app.command("train")
    @config_options(cfg=TrainConfig, splits=Splits)
    def train_command(out: Path = typer.Option(...), cfg: TrainConfig = None, splits: Splits = None): ...

The command's own parameters (paths, output switches) stay as they are; each field of each named
config becomes ``--field-name`` with the field's default and help (``edgeft.settings``), and the
command is called with the built configs, so their checks run before anything heavy is imported.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import MISSING, fields
from typing import Any, Optional

import typer

from edgeft.errors import ConfigError
from edgeft.settings import flag_of, help_of


def _option_type(hint, parse) -> Any:
    """The annotation typer sees: parsed values arrive as strings; ``X | None`` becomes Optional[X]."""
    if parse is not None:
        return Optional[str]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and len(args) < len(typing.get_args(hint)):  # X | None
        return Optional[args[0]]
    return hint


def _parameter(f, hint, given_only: bool) -> inspect.Parameter:
    m = f.metadata
    default = None if given_only or f.default is MISSING else f.default
    names = [flag_of(f)]
    if hint is bool and not given_only:
        names = [f"{flag_of(f)}/--no-{flag_of(f)[2:]}"] if f.default else [flag_of(f)]
    # by identity: 0 and 0.0 equal False, and a default of 0 is worth showing
    shown = not any(f.default is v for v in (None, MISSING, False))  # given_only: say the recipe's fallback
    text = help_of(f) + (f" Default: {f.default}." if given_only and shown else "")
    option = typer.Option(default, *names, help=text, metavar=m.get("metavar"), show_default=shown and not given_only)
    annotation = Optional[bool] if given_only and hint is bool else _option_type(hint, m.get("parse"))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def examples(*commands: str, after: str = "") -> str:
    """A command's ``--help`` epilog: its example command lines, each its own paragraph (rich keeps them apart),
    then ``after`` (a note) if given."""
    head = "Examples:" if len(commands) > 1 else "Example:"
    return "\n\n".join([head, *(f"  {c}" for c in commands), *([after] if after else [])])


def config_options(exclude: tuple[str, ...] = (), given_only: bool = False, **configs: type):
    """Add one option per field of each config to a typer command.

    Args:
        exclude: field names the command does not offer (or offers itself, with its own help).
        given_only: options default to None and the command receives ``{name: {field: value}}``
            holding only the flags the user gave (``edgeft build`` overrides its recipe with them).
        configs: parameter name → config class; the command receives the built config there.
    """

    def decorate(command):
        own = inspect.signature(command)
        generated, owner = [], {}
        for param, cls in configs.items():
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                if f.name in exclude or not f.metadata.get("cli", True) or f.name in own.parameters:
                    continue
                if f.name in owner:
                    raise TypeError(f"{f.name} is a field of two configs of {command.__name__}; exclude one")
                owner[f.name] = param
                generated.append(_parameter(f, hints[f.name], given_only))
        kept = [p for name, p in own.parameters.items() if name not in configs and name != "given"]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values: dict[str, dict] = {param: {} for param in configs}
            for name, param in owner.items():
                value = kwargs.pop(name)
                f = next(f for f in fields(configs[param]) if f.name == name)
                if value is not None and f.metadata.get("parse"):
                    try:
                        value = f.metadata["parse"](value)
                    except ConfigError as e:
                        raise ConfigError(f"{flag_of(f)} {e}") from None
                if not given_only or value is not None:
                    values[param][name] = value
            built = values if given_only else {param: configs[param](**v) for param, v in values.items()}
            return command(**kwargs, **(built if not given_only else {"given": values}))

        wrapper.__signature__ = own.replace(parameters=kept + generated)
        return wrapper

    return decorate
