"""Command-line options derived from the config dataclasses, and library errors translated to flags.

A field becomes an option once, here, from the dataclass itself: its name gives the flag (``n_train`` ->
``--n-train``), its default the option's default, its type the option's type (a ``dict`` field is typed as
JSON), and its entry in the class docstring's ``Attributes:`` section the help text. A command declares the
dataclasses it is configured by with :func:`config_command` and receives them built and validated; nothing
about a field is typed a second time.

Library errors name library parameters (``lr must be positive``); each command's field -> flag table lets
:func:`stability.cli.app.user_errors` name the flags instead (``--lr must be positive``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
import typer.models

from stability.cli.app import translated, user_errors
from stability.errors import BadInputError


def flag(name: str) -> str:
    """``n_train`` -> ``--n-train``."""
    return "--" + name.replace("_", "-")


def field_help(cls: type) -> dict[str, str]:
    """Help per field from the ``Attributes:`` section of ``cls``'s docstring (``a, b: text`` documents both)."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    out: dict[str, str] = {}
    names: list[str] = []
    for line in section.splitlines():
        entry = re.match(r"^    ([a-z_][\w, ]*):\s*(.*)$", line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                out[name] = entry.group(2)
        elif line.startswith("        ") and names:
            for name in names:
                out[name] += " " + line.strip()
        elif line.strip():
            names = []
    return {k: re.sub(r":\w+:`~?([^`]+)`", r"\1", v).replace("``", "") for k, v in out.items()}


def parse_json_dict(text: str, option: str) -> dict:
    """``text`` as a JSON object; a one-line error naming ``option`` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{option} must be a JSON object such as '{{\"widths\": [512]}}': {exc.msg}") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{option} must be a JSON object such as '{{\"widths\": [512]}}', got {text!r}")
    return value


@dataclass(frozen=True)
class Options:
    """The options of one config dataclass ``cls``: one per field, less ``exclude``.

    Attributes:
        rename: field -> parameter name, where two dataclasses of one command share a field name
            (``seed`` of the data -> ``data_seed``, flag ``--data-seed``).
        help: help text replacing the docstring's, per field.
        zero_is_none: ``int | None`` fields whose option takes 0 for ``None`` ("all", "at once").
        choices: field -> allowed values, listed in the help (the dataclass itself checks them).
    """

    cls: type
    rename: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    help: Mapping[str, str] = field(default_factory=dict)
    zero_is_none: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def fields(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.cls) if f.name not in self.exclude and f.init]

    def param_name(self, name: str) -> str:
        return self.rename.get(name, name)

    def flags(self) -> dict[str, str]:
        """Field name -> the flag that sets it."""
        return {f.name: flag(self.param_name(f.name)) for f in self.fields()}

    def parameters(self) -> list[inspect.Parameter]:
        hints = typing.get_type_hints(self.cls)
        docs = field_help(self.cls)
        params = []
        for f in self.fields():
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            kind = hints[f.name]
            text = self.help.get(f.name) or docs.get(f.name) or f.name.replace("_", " ")
            if f.name in self.choices and not all(c in text for c in self.choices[f.name]):
                text += f" One of: {', '.join(self.choices[f.name])}."
            if typing.get_origin(kind) is dict or kind is dict:
                kind, default = str, json.dumps(default)
                text += " (JSON)"
            elif f.name in self.zero_is_none:
                kind, default = int, 0 if default is None else default
                text += " 0: no limit."
            annotation = Annotated[kind, typer.Option(flag(self.param_name(f.name)), help=text)]
            params.append(inspect.Parameter(self.param_name(f.name), inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=annotation))  # fmt: skip
        return params

    def build(self, values: Mapping[str, Any]) -> Any:
        """The dataclass from the parsed option values (keyed by parameter name), errors in flags."""
        hints = typing.get_type_hints(self.cls)
        kwargs = {}
        for f in self.fields():
            value = values[self.param_name(f.name)]
            if typing.get_origin(hints[f.name]) is dict or hints[f.name] is dict:
                value = parse_json_dict(value, flag(self.param_name(f.name)))
            elif f.name in self.zero_is_none and value == 0:
                value = None
            kwargs[f.name] = value
        with translated(self.flags()):
            return self.cls(**kwargs)


def _named(param: inspect.Parameter) -> bool:
    """Whether the option declares its own flag (``typer.Option("--json")``) instead of one from its name."""
    infos = [m for m in getattr(param.annotation, "__metadata__", ()) if isinstance(m, typer.models.OptionInfo)]
    return any(isinstance(i.default, str) and i.default.startswith("-") for i in infos)


def config_command(**groups: Options) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a Typer command one option per field of each dataclass in ``groups``.

    The decorated function declares its other options as usual and one keyword parameter per group, named
    as in ``groups``; it is called with those dataclasses built from the options. A field that two groups
    share under one parameter name (e.g. ``chunk_size``) is one option setting both. The command's
    field -> flag table is ``command.flags``, for translating later library errors.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name not in groups]  # fmt: skip
        generated: dict[str, inspect.Parameter] = {}
        for options in groups.values():
            for p in options.parameters():
                if p.name in generated and generated[p.name].default != p.default:
                    raise TypeError(f"option {p.name} has two defaults; rename one")
                generated.setdefault(p.name, p)
        flags = {p.name: flag(p.name) for p in own if not _named(p)}
        for options in groups.values():
            flags = {**options.flags(), **flags}

        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            with user_errors(flags):
                built = {name: options.build(values) for name, options in groups.items()}
            return fn(**{p.name: values[p.name] for p in own}, **built)

        params = own + list(generated.values())
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.flags = flags  # type: ignore[attr-defined]
        return command

    return wrap

