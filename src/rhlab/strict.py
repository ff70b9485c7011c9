"""The base of every config model: unknown keys are errors, and every error names its full path.

A typo such as ``train_prompt: {varaint: dont_hack}`` must fail at load time, not train with the
default prompt for an hour. Every pydantic model that YAML or a CLI maps onto derives from
``Strict``; ``parse`` turns a ``ValidationError`` into one ``ConfigError`` line such as::

    exp.yaml: train.train_prompt.varaint: unknown key (did you mean 'variant'?)

This module imports nothing from rhlab, so any config model can use it without import cycles.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)
_FIELD = re.compile(r"[A-Za-z_][\w-]*")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field's full dotted path."""


class Strict(BaseModel):
    """A config model that refuses unknown keys (nested models inherit this)."""

    model_config = ConfigDict(extra="forbid")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, tuple) or origin is typing.Annotated:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _model_at(model: type[BaseModel] | None, loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (list indices and dict keys are stepped over)."""
    for part in loc:
        if model is None:
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = _model_in(field.annotation)
    return model


def _message(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    if err["type"] != "extra_forbidden":
        return err["msg"].removeprefix("Value error, ")
    key = str(err["loc"][-1])
    owner = _model_at(model, err["loc"][:-1])
    if owner is None:
        return "unknown key"
    close = difflib.get_close_matches(key, list(owner.model_fields), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(owner.model_fields)}"
    return f"unknown key ({hint})"


def format_errors(exc: ValidationError, model: type[BaseModel] | None = None, prefix: Sequence[str | int] = ()) -> str:
    """Every error of ``exc`` as ``full.dotted.path: message``, joined into one line.

    ``model`` (the validated class) lets an unknown key get a "did you mean" hint; ``prefix`` is
    prepended to every path, for models validated as a section of a larger file.
    """
    errors = [(_path(prefix, err["loc"]), err) for err in exc.errors()]
    # A value that fits no member of a union fails once per member; keep the member that explains it
    # (``holes: [[x]]`` is a wrong hole name, not "should be 'all' or 'rotate'").
    deeper = [path for path, err in errors if err["type"] != "literal_error"]
    parts = []
    for path, err in errors:
        if err["type"] == "literal_error" and any(d.startswith(f"{path}.") for d in deeper):
            continue
        line = f"{path}: {_message(err, model)}" if path else _message(err, model)
        if line not in parts:
            parts.append(line)
    return "; ".join(parts)


def _path(prefix: Sequence[str | int], loc: Sequence[str | int]) -> str:
    """``train.problems.holes.1``: field names and list indices, without pydantic's union-member tags."""
    return ".".join(str(p) for p in (*prefix, *loc) if isinstance(p, int) or _FIELD.fullmatch(p))


def parse(model: type[M], data: Any, where: str, prefix: Sequence[str | int] = ()) -> M:
    """Validate ``data`` as ``model``, or raise a one-line ``ConfigError`` that starts with ``where``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_errors(exc, model, prefix)}") from None


def read_yaml_mapping(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file's top-level mapping, or a ``ConfigError`` saying what is wrong with the file."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


# --- ``--set key.path=value``: change any config field from the command line without editing the file.
# Values are parsed as YAML (``3``, ``true``, ``[a, b]``, ``{variant: none}``, ``null``), so they take the
# same types as in the file. Paths are applied to the raw mapping before validation, so the strict
# models still refuse a misspelled key and name its full path. A mapping value merges into the mapping
# already there (recursively), so ``--set train.grpo={beta: 0}`` changes one TRL field and keeps the
# file's others; to replace a whole section, clear it first (``--set train.grpo=null``).


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.steps=2"`` -> (["train", "steps"], 2)."""
    path, eq, raw = item.partition("=")
    keys = [k.strip() for k in path.split(".")]
    if not eq or not all(keys):
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.steps=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return keys, value


def apply_sets(data: dict[str, Any], items: list[str] | None) -> dict[str, Any]:
    """A copy of ``data`` with every ``--set`` applied in order (later ones win)."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in items or []:
        keys, value = parse_set(item)
        node: Any = result
        for depth, key in enumerate(keys[:-1]):
            if isinstance(node, list):
                node = node[_list_index(item, keys, depth, node)]
                continue
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict | list):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is a {type(child).__name__}, not a section")
            node = child
        if isinstance(node, list):  # an existing entry of a list: after_rl.0.grpo.steps=4
            index = _list_index(item, keys, len(keys) - 1, node)
            node[index] = merged(node[index], value)
        else:
            node[keys[-1]] = merged(node.get(keys[-1]), value)
    return result


def _list_index(item: str, keys: list[str], depth: int, node: list[Any]) -> int:
    """``keys[depth]`` as an index into the list ``node`` (lists are addressed by position)."""
    where = ".".join(keys[:depth])
    if not keys[depth].isdigit():
        raise ConfigError(f"--set {item!r}: {where} is a list: address an entry by its position, e.g. {where}.0")
    index = int(keys[depth])
    if index >= len(node):
        raise ConfigError(f"--set {item!r}: {where} has {len(node)} entries (positions 0 to {len(node) - 1})")
    return index


def merged(old: Any, new: Any) -> Any:
    """``new`` merged into ``old`` when both are mappings (recursively); otherwise ``new``."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = merged(old.get(key), value)
    return out


def cli_options(model: type[M], fields: Sequence[str]) -> Any:
    """Decorate a typer command so that ``fields`` of ``model`` become its options; it receives ``config``.

    Names (``--batch-size``), defaults and help come from the model (its field docstrings), and the
    values are validated by it, so a CLI cannot drift from the config the pipeline reads (TRL derives
    its command lines from its config dataclasses the same way). A bad value exits 2 with the model's
    own error line.
    """
    import functools
    import inspect

    import typer

    def option(name: str) -> inspect.Parameter:
        info = model.model_fields[name]
        annotation = _cli_type(info.annotation)
        flag = name.replace("_", "-")
        names = [f"--{flag}/--no-{flag}"] if annotation is bool else [f"--{flag}"]
        help_text = (info.description or "").strip().split("\n\n")[0].replace("\n", " ")
        default = typer.Option(info.get_default(call_default_factory=True), *names, help=help_text)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    def decorate(command: Any) -> Any:
        hints = typing.get_type_hints(command)  # the command's module may postpone its annotations
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.name != "config"
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in fields}
            try:
                config = model(**values)
            except ValidationError as exc:
                flags = {name: f"--{name.replace('_', '-')}" for name in fields}
                message = format_errors(exc, model)
                for name, flag in flags.items():
                    message = re.sub(rf"\b{name}:", f"{flag}:", message)
                typer.echo(f"error: {message}", err=True)
                raise typer.Exit(2) from None
            return command(config=config, **kwargs)

        params = [*own, *(option(name) for name in fields)]
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}  # typer reads these, not the command's
        del wrapper.__wrapped__
        return wrapper

    return decorate


def _cli_type(annotation: Any) -> Any:
    """A command-line type for a field's annotation: ``X | None`` is ``X``, a ``Literal`` of strings is ``str``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _cli_type(args[0]) if len(args) == 1 else str
    if origin is typing.Literal:
        return str
    return annotation
