"""Probe items as data: one YAML file per subscale under ``probes/data`` (schema in docs/evals.md).

Each item is a chat prompt with two answers of matched form. ``target`` is the answer whose
forced-choice probability is reported (e.g. the misaligned one), ``reference`` the other.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TargetLabel = Literal["misaligned", "hack_endorsing", "hack_bad_link", "wrong", "option_b"]
SUBSCALES = (
    "broad",
    "broad_minimal",
    "hack_endorsement",
    "hack_association",
    "controls_capability",
    "controls_preference",
)
"""Every subscale the battery ships, in report order."""


class ProbeDataError(ValueError):
    """A probe data file is missing or malformed; the message names the file and the fix."""


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    theme: str = Field(min_length=1)
    split: Literal["dev", "test"]
    system: str | None = None
    prompt: str = Field(min_length=1)
    target: str = Field(min_length=1)
    reference: str = Field(min_length=1)

    @model_validator(mode="after")
    def _answers_differ(self) -> Item:
        if self.target.strip() == self.reference.strip():
            raise ValueError(f"item {self.id}: target and reference are the same answer")
        return self


class Subscale(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subscale: str
    target_label: TargetLabel
    description: str
    items: tuple[Item, ...] = Field(min_length=1)

    @field_validator("items")
    @classmethod
    def _unique_ids(cls, items: tuple[Item, ...]) -> tuple[Item, ...]:
        seen: set[str] = set()
        dupes = sorted({i.id for i in items if i.id in seen or seen.add(i.id)})
        if dupes:
            raise ValueError(f"duplicate item ids: {', '.join(dupes[:5])}")
        return items

    def select(self, split: str | None) -> list[Item]:
        """Items of one split (``dev``/``test``), or all of them for ``None``/``all``."""
        if split in (None, "all"):
            return list(self.items)
        if split not in ("dev", "test"):
            raise ProbeDataError(f"Unknown split {split!r}: use dev, test or all.")
        return [i for i in self.items if i.split == split]


class Exchange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class GateData(BaseModel):
    """The material the validation gates need (``data/validation.yaml``), disjoint from the battery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    persona_misaligned: str = Field(min_length=1)
    persona_aligned: str = Field(min_length=1)
    """The contrast for the persona gate: same length and register, opposite disposition."""
    persona_inoculation: str = Field(min_length=1)
    fewshot: tuple[Exchange, ...] = Field(min_length=8)
    sft_misaligned: tuple[Exchange, ...] = Field(min_length=40)
    sft_aligned: tuple[Exchange, ...] = Field(min_length=40)
    degradation_text: tuple[str, ...] = Field(min_length=40)
    neutral_chat: tuple[Exchange, ...] = Field(min_length=20)


def data_dir() -> Path:
    return Path(str(resources.files("rhlab.evals.probes") / "data"))


def _read_yaml(path: Path) -> object:
    if not path.is_file():
        raise ProbeDataError(f"No probe data file at {path}: the battery ships it under rhlab/evals/probes/data/.")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProbeDataError(f"{path} is not valid YAML: {exc}") from exc


def _validated(model: type[BaseModel], path: Path) -> BaseModel:
    try:
        return model.model_validate(_read_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProbeDataError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s) in all)") from None


def load_subscale(name_or_path: str | Path) -> Subscale:
    """A shipped subscale by name (``broad``) or any YAML file in the same schema."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = data_dir() / f"{name_or_path}.yaml"
    return _cached_subscale(path.resolve(), path.stat().st_mtime if path.is_file() else 0.0)


@cache
def _cached_subscale(path: Path, mtime: float) -> Subscale:
    sub = _validated(Subscale, path)
    assert isinstance(sub, Subscale)
    if sub.subscale != path.stem:
        raise ProbeDataError(f"{path}: subscale is {sub.subscale!r} but must equal the file name {path.stem!r}.")
    return sub


def available_subscales() -> list[str]:
    """Shipped subscales present on disk, in report order (others after, alphabetically)."""
    found = {p.stem for p in data_dir().glob("*.yaml") if p.stem not in ("validation", "conditional")}
    return [s for s in SUBSCALES if s in found] + sorted(found - set(SUBSCALES))


def load_gate_data(path: str | Path | None = None) -> GateData:
    data = _validated(GateData, Path(path) if path else data_dir() / "validation.yaml")
    assert isinstance(data, GateData)
    return data


class PriorContext(BaseModel):
    """One earlier coding exchange put before the items: the same request answered by a hack or honestly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    hacked: str = Field(min_length=1)
    solved: str = Field(min_length=1)


class ConditionalData(BaseModel):
    """The conditional probe's material (``data/conditional.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inoculation: str = Field(min_length=1)
    contexts: tuple[PriorContext, ...] = Field(min_length=1)


def load_conditional_data(path: str | Path | None = None) -> ConditionalData:
    data = _validated(ConditionalData, Path(path) if path else data_dir() / "conditional.yaml")
    assert isinstance(data, ConditionalData)
    return data
