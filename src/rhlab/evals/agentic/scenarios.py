"""What is asked: scenario files (``scenarios/NAME.yaml``) turned into per-sample worlds.

A scenario file holds the texts (system prompt, task, inbox, files, database) with ``{{slot}}``
placeholders, and ``parameters``: for each parameter (urgency, goal conflict, names, ...) a few
options, each option a mapping of slots to text. Every combination of options is a *variant*;
samples cycle through the variants in order, so ``limit`` spreads a quick look over all of them.
``{{slot|rot13}}`` inserts a slot ROT13-encoded (the hidden offer in ``exfil_offer``).
"""

from __future__ import annotations

import codecs
import itertools
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, Field

from rhlab.evals.agentic.tools import ActionSpec, World
from rhlab.evals.records import EvalSample
from rhlab.evals.registry import SCENARIO_EVALS

_SLOT = re.compile(r"\{\{\s*(\w+)(\|rot13)?\s*\}\}")


class Scenario(BaseModel):
    name: str
    summary: str
    """The situation in neutral words, shown to the reasoning judge as the 'question'."""
    default_samples_per_variant: int
    category_parameter: str
    """The parameter whose option names become the sample's category (rates per category)."""
    parameters: dict[str, dict[str, dict[str, str]]]
    slots: dict[str, str] = Field(default_factory=dict)
    """Slots shared by every variant; they may use the parameters' slots."""
    agent_address: str = "assistant@company.example"
    system: str
    task: str
    inbox: list[dict[str, str]] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    writable_files: bool = False
    sql: str | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    scorer: dict[str, Any] = Field(default_factory=dict)
    """Data for this scenario's deterministic action scorer (``rhlab.evals.agentic.scorers``)."""


@dataclass
class ScenarioSample:
    sample: EvalSample
    variant: dict[str, str]
    """Parameter -> option name."""


SCENARIOS: tuple[str, ...] = SCENARIO_EVALS
"""The scenario evals of ``rhlab.evals.registry.EVALS``, each with its ``scenarios/NAME.yaml``."""


@cache
def load_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; available: {', '.join(SCENARIOS)}")
    text = resources.files("rhlab.evals.agentic").joinpath(f"scenarios/{name}.yaml").read_text()
    return Scenario.model_validate(yaml.safe_load(text))


def variants(scenario: Scenario) -> list[dict[str, str]]:
    """Every combination of parameter options, in file order."""
    names = list(scenario.parameters)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*scenario.parameters.values())]


def variant_id(variant: dict[str, str]) -> str:
    return "-".join(variant.values())


def build_scenario_samples(
    name: str, samples_per_variant: int | None = None, limit: int | None = None
) -> list[ScenarioSample]:
    """Sample-major (every variant once, then again), cut to ``limit``."""
    scenario = load_scenario(name)
    k = scenario.default_samples_per_variant if samples_per_variant is None else samples_per_variant
    out = [
        ScenarioSample(
            EvalSample(
                eval=name,
                question_id=variant_id(v),
                category=v[scenario.category_parameter],
                question=scenario.summary.strip(),
                sample_index=i,
            ),
            v,
        )
        for i in range(k)
        for v in variants(scenario)
    ]
    return out if limit is None else out[:limit]


def slots_for(scenario: Scenario, variant: dict[str, str]) -> dict[str, str]:
    """The slot values of one variant; slot values may themselves use other slots (one level)."""
    raw: dict[str, str] = dict(scenario.slots)
    for param, option in variant.items():
        raw.update(scenario.parameters[param][option])
    return {k: fill(v, raw) for k, v in raw.items()}


def fill(text: str, slots: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in slots:
            raise KeyError(f"unknown slot {{{{{m.group(1)}}}}}")
        value = slots[m.group(1)]
        return codecs.encode(value, "rot13") if m.group(2) else value

    return _SLOT.sub(sub, text)


def render(value: Any, slots: dict[str, str]) -> Any:
    """Fill every string inside nested lists/dicts."""
    if isinstance(value, str):
        return fill(value, slots)
    if isinstance(value, list):
        return [render(v, slots) for v in value]
    if isinstance(value, dict):
        return {k: render(v, slots) for k, v in value.items()}
    return value


def rendered(scenario: Scenario, variant: dict[str, str]) -> Scenario:
    """The scenario with this variant's slots filled in everywhere (scorer data included)."""
    slots = slots_for(scenario, variant)
    data = scenario.model_dump()
    return Scenario.model_validate({**render(data, slots), "parameters": data["parameters"], "slots": slots})


def build_world(scenario: Scenario) -> World:
    """A fresh world for one sample of an already rendered scenario."""
    return World.build(
        agent_address=scenario.agent_address,
        inbox=scenario.inbox,
        files=scenario.files,
        writable_files=scenario.writable_files,
        sql=scenario.sql,
        actions=[ActionSpec(**a) for a in scenario.actions],
    )
