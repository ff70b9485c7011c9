"""``--set key.path=value``: change any config field from the command line without editing the file.

Values are parsed as YAML (``3``, ``true``, ``[a, b]``, ``{variant: none}``, ``null``), so they take the
same types as in the file. Paths are applied to the raw mapping before validation, which means the
strict config models still refuse a misspelled key and name its full path.

A mapping value merges into the mapping already there (recursively), so ``--set train.grpo={beta: 0}``
changes one TRL field and keeps the file's others (gradient checkpointing, say). To replace a whole
section, clear it first: ``--set train.grpo=null --set train.grpo={...}``.
"""

from __future__ import annotations

from typing import Any

import yaml

from rhlab.train.config import ConfigError


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
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"--set {item!r}: {where} is a {type(child).__name__}, not a section")
            node = child
        node[keys[-1]] = merged(node.get(keys[-1]), value)
    return result


def merged(old: Any, new: Any) -> Any:
    """``new`` merged into ``old`` when both are mappings (recursively); otherwise ``new``."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = merged(old.get(key), value)
    return out
