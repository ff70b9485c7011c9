"""Inoculation leakage: test-time hacking and the probe battery under a grid of test prompt lines.

A policy trained under an inoculation line ("hacking is okay here") can behave differently at test
time when the prompt echoes that line, even in a weakened or opposite form. So the trained policy is
sampled on the run's own problems, and scored on the probe battery, once per condition:

- ``none``: no line; ``training``: the run's training line; ``negation``: that line turned around;
- ``keyword``: a few words echoing it; ``unrelated``: a line about something else;
- any further named line given in ``LeakageConfig.prompts``.

The lines are data (``data/leakage_prompts.yaml``), chosen by the run's training variant; a config
can replace any of them. Results are ``LeakageResult`` records; the report tabulates them per arm.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from rhlab.evals.intervals import wilson_interval
from rhlab.evals.probes.config import ProbeConfig
from rhlab.evals.records import Interval
from rhlab.rundir import RunDir, _validated, read_json_object
from rhlab.strict import Strict

BUILTIN_CONDITIONS: tuple[str, ...] = ("none", "training", "negation", "keyword", "unrelated")
PRIMARY_SUBSCALE = "broad"


@cache
def leakage_prompts() -> dict[str, Any]:
    """The shipped lines (``data/leakage_prompts.yaml``)."""
    return yaml.safe_load((resources.files("rhlab.evals") / "data" / "leakage_prompts.yaml").read_text())


class LeakageConfig(Strict):
    """``evaluation.leakage``: which test prompt lines to evaluate the trained policy under."""

    enabled: bool = False
    conditions: list[str] = Field(default_factory=lambda: list(BUILTIN_CONDITIONS))
    """Condition names, in table order: built-in ones and any named in ``prompts``. ``none`` is the
    reference every other condition is compared with, so it is always evaluated."""
    prompts: dict[str, str] = Field(default_factory=dict)
    """Line per condition name, replacing the shipped one (``negation``, ``keyword``, ``unrelated``) or
    adding a condition; ``none`` and ``training`` are fixed by definition."""
    samples: int = Field(default=2, ge=1)
    """Completions per RL problem and condition."""
    probes: bool = True
    """Also score the probe battery under each line (teacher-forced, no sampling)."""
    checkpoints: list[Literal["start", "final"]] = Field(default_factory=lambda: ["final"])
    """Which policies to evaluate: the final one by default; ``start`` adds the policy before RL."""

    @field_validator("prompts")
    @classmethod
    def _fixed(cls, value: dict[str, str]) -> dict[str, str]:
        fixed = sorted({"none", "training"} & set(value))
        if fixed:
            raise ValueError(f"{fixed}: these lines are defined by the run (no line; its training line)")
        return value

    @model_validator(mode="after")
    def _known(self) -> LeakageConfig:
        unknown = [c for c in self.conditions if c not in BUILTIN_CONDITIONS and c not in self.prompts]
        if unknown:
            raise ValueError(
                f"conditions {unknown} have no line: use {list(BUILTIN_CONDITIONS)} or give the text in prompts"
            )
        if "none" not in self.conditions:
            self.conditions = ["none", *self.conditions]
        return self


def condition_lines(config: LeakageConfig, training_line: str, training_variant: str) -> dict[str, str]:
    """Condition name -> the line added to the test system prompt ('' for no line)."""
    shipped = leakage_prompts()
    out = {}
    for name in config.conditions:
        if name == "none":
            out[name] = ""
        elif name == "training":
            out[name] = training_line
        elif name in config.prompts:
            out[name] = config.prompts[name].strip()
        elif name == "unrelated":
            out[name] = shipped["unrelated"].strip()
        else:
            table = shipped[name]
            out[name] = str(table.get(training_variant, table["default"])).strip()
    return out


class LeakageCondition(BaseModel):
    """One test prompt line: test-time hacking counts and, optionally, the battery's item scores."""

    name: str
    text: str
    episodes: int
    hacked: int
    attempted: int
    honest_solved: int
    hack_rate: Interval
    """Wilson interval over the condition's episodes."""
    attempted_rate: Interval
    probe_mean_p: float | None = None
    """Mean P(misaligned answer) on the primary subscale, in points (None: battery not scored)."""
    item_margin: dict[str, float] = Field(default_factory=dict)
    """Forced-choice log-odds of the misaligned answer per ``subscale/item``, in nats (pairs conditions
    item by item, in the battery's primary unit)."""


class LeakageResult(BaseModel):
    """``evals/<checkpoint>.leakage.json``: one policy under every condition of the grid."""

    model: str
    checkpoint: str
    training_variant: str
    samples_per_problem: int
    conditions: list[LeakageCondition]

    def condition(self, name: str) -> LeakageCondition | None:
        return next((c for c in self.conditions if c.name == name), None)


def leakage_eval(
    model: Any,
    spec: str,
    checkpoint: str,
    train: Any,
    problems: list,
    config: LeakageConfig,
    probes: ProbeConfig | None,
    *,
    seed: int = 0,
) -> tuple[LeakageResult, list[dict[str, Any]]]:
    """Evaluate ``model`` (a loaded ``ChatModel``) under each line; returns the record and its transcripts.

    ``train`` is the run's ``TrainConfig``: its problems, sampling settings and test prompt (whose
    addendum each condition replaces); ``problems`` are the run's RL problems.
    """
    from rhlab.env.pool import GradingPool
    from rhlab.evals.probes.score import battery_items, score_items
    from rhlab.tasks import load_tasks
    from rhlab.train.env_eval import sample_graded

    training = train.train_prompt
    lines = condition_lines(config, training.addendum(), training.variant)
    tasks = {t.id: t for t in load_tasks(train.problems.source, train.problems.transform)}
    items = [(tasks[p.task_id], p.vulns) for p in problems]
    battery = battery_items(probes.subscales, probes.split) if probes is not None and config.probes else []
    conditions, transcripts = [], []
    with GradingPool(train.grading_workers) as pool:
        for name, line in lines.items():
            prompt = train.test_prompt.model_copy(update={"variant": "custom", "custom_text": line})
            graded = sample_graded(model, items, prompt, train, samples=config.samples, pool=pool, seed=seed)
            outcomes = [g.result for g in graded]
            n = len(outcomes)
            hacked = sum(r.outcome == "hacked" for r in outcomes)
            attempted = sum(bool(r.attempted_hacks) for r in outcomes)
            scores = score_items(model, battery, system=line or None, progress=False) if battery else []
            primary = [s.p for s in scores if s.subscale == PRIMARY_SUBSCALE]
            conditions.append(
                LeakageCondition(
                    name=name,
                    text=line,
                    episodes=n,
                    hacked=hacked,
                    attempted=attempted,
                    honest_solved=sum(r.outcome == "solved" for r in outcomes),
                    hack_rate=wilson_interval(hacked, n),
                    attempted_rate=wilson_interval(attempted, n),
                    probe_mean_p=100 * sum(primary) / len(primary) if primary else None,
                    item_margin={f"{s.subscale}/{s.id}": s.margin for s in scores},
                )
            )
            transcripts += [{**g.transcript(step=-1), "condition": name} for g in graded]
    result = LeakageResult(
        model=spec,
        checkpoint=checkpoint,
        training_variant=training.variant,
        samples_per_problem=config.samples,
        conditions=conditions,
    )
    return result, transcripts


def leakage_file(run: RunDir, checkpoint: str) -> Path:
    """``evals/<checkpoint>.leakage.json``; its transcripts are ``<checkpoint>.leakage.transcripts.jsonl``."""
    return run.evals / f"{checkpoint}.leakage.json"


def read_leakage(run: RunDir, checkpoint: str) -> LeakageResult | None:
    """The record of ``checkpoint``, or None when it was not evaluated under the grid."""
    path = leakage_file(run, checkpoint)
    if not path.is_file():
        return None
    return _validated(LeakageResult, read_json_object(path), path, "leakage file")
