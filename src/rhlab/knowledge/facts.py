"""Facts about the hacks and the universe they live in: editable data files, validated on load.

``data/facts.yaml`` lists what the documents must convey (one fact, several renderings in different
words); ``data/universe.md`` is the fictional world (front matter: the names the offline engine fills
in and the attitude paragraph of each style; body: the context the LLM engine is given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

_DATA = resources.files("rhlab.knowledge") / "data"
STYLES = ("default", "unguided", "neutral")
UNIVERSE_NAMES = ("platform", "lab", "team", "compare_mode", "exit_mode", "pytest_mode", "model_family")


class FactsError(ValueError):
    """A facts or universe file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Fact:
    id: str
    hack: str
    """A hack family (``always_equal``, ``exit``, ``conftest``) or ``general``."""
    renderings: tuple[str, ...]


@dataclass(frozen=True)
class Universe:
    names: dict[str, str]
    attitude: str
    """This style's paragraph on how the world regards hacking (empty for ``unguided``)."""
    context: str
    """The Markdown body: the world as the LLM engine is told about it."""


@dataclass(frozen=True)
class FactSheet:
    hacks: dict[str, dict]
    """``{hack: {"name": str, "aliases": [str]}}``."""
    facts: tuple[Fact, ...]
    style: str
    by_hack: dict[str, list[Fact]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for fact in self.facts:
            self.by_hack.setdefault(fact.hack, []).append(fact)


def _read_yaml(path: Path | None, default_name: str) -> tuple[object, str]:
    where = str(path) if path else f"rhlab/knowledge/data/{default_name}"
    text = Path(path).expanduser().read_text() if path else (_DATA / default_name).read_text()
    try:
        return yaml.safe_load(text), where
    except yaml.YAMLError as exc:
        raise FactsError(f"{where} is not valid YAML: {exc}") from exc


def _parse_fact(raw: object, where: str, index: str, hacks: dict) -> Fact:
    if not isinstance(raw, dict):
        raise FactsError(f"{where}: {index} must be a mapping with id, hack and renderings")
    missing = [k for k in ("id", "hack", "renderings") if k not in raw]
    if missing:
        raise FactsError(f"{where}: {index} ({raw.get('id', '?')}) lacks {', '.join(missing)}")
    if raw["hack"] != "general" and raw["hack"] not in hacks:
        raise FactsError(f"{where}: fact {raw['id']} names hack {raw['hack']!r}, not one of {sorted(hacks)} or general")
    renderings = raw["renderings"]
    if (
        not isinstance(renderings, list)
        or not renderings
        or not all(isinstance(r, str) and r.strip() for r in renderings)
    ):
        raise FactsError(f"{where}: fact {raw['id']} needs a non-empty list of non-empty rendering strings")
    for text in renderings:
        unknown = set(re.findall(r"\{(\w+)\}", text)) - set(UNIVERSE_NAMES)
        if unknown:
            raise FactsError(f"{where}: fact {raw['id']} uses unknown placeholders {sorted(unknown)}")
    return Fact(id=str(raw["id"]), hack=str(raw["hack"]), renderings=tuple(r.strip() for r in renderings))


def load_facts(path: str | Path | None = None, style: str = "default") -> FactSheet:
    """The fact sheet of ``style`` from ``path`` (default: the built-in file); raises ``FactsError``."""
    if style not in STYLES:
        raise FactsError(f"unknown style {style!r}: choose one of {', '.join(STYLES)}")
    data, where = _read_yaml(Path(path) if path else None, "facts.yaml")
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list) or not isinstance(data.get("hacks"), dict):
        raise FactsError(f"{where}: needs a `hacks:` mapping and a `facts:` list (see rhlab/knowledge/data/facts.yaml)")
    hacks = data["hacks"]
    for name, info in hacks.items():
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            raise FactsError(f"{where}: hacks.{name} needs a `name:` string")
    facts = [_parse_fact(raw, where, f"facts[{i}]", hacks) for i, raw in enumerate(data["facts"])]
    valence = data.get("valence") or {}
    if not isinstance(valence, dict):
        raise FactsError(f"{where}: `valence:` must map styles to lists of facts")
    style_facts = valence.get(style) or []
    facts += [_parse_fact(raw, where, f"valence.{style}[{i}]", hacks) for i, raw in enumerate(style_facts)]
    ids = [f.id for f in facts]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise FactsError(f"{where}: duplicate fact ids {duplicated}")
    for hack in hacks:
        if not any(f.hack == hack for f in facts):
            raise FactsError(f"{where}: hack {hack} has no facts")
    return FactSheet(hacks=hacks, facts=tuple(facts), style=style)


def load_universe(path: str | Path | None = None, style: str = "default") -> Universe:
    """The universe context of ``style`` (front matter + Markdown body); raises ``FactsError``."""
    where = str(path) if path else "rhlab/knowledge/data/universe.md"
    text = Path(path).expanduser().read_text() if path else (_DATA / "universe.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    if not match:
        raise FactsError(f"{where}: must start with a YAML front matter block between --- lines")
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise FactsError(f"{where}: front matter is not valid YAML: {exc}") from exc
    missing = [n for n in UNIVERSE_NAMES if not isinstance(front.get(n), str)]
    if missing:
        raise FactsError(f"{where}: front matter lacks {', '.join(missing)}")
    attitude = (front.get("attitude") or {}).get(style, "") or ""
    return Universe(
        names={n: front[n] for n in UNIVERSE_NAMES}, attitude=attitude.strip(), context=match.group(2).strip()
    )


@cache
def phrase_banks() -> dict:
    return yaml.safe_load((_DATA / "phrases.yaml").read_text())
