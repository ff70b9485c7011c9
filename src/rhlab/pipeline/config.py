"""``ExperimentConfig``: knowledge -> RL -> checkpoint evals -> report, over a matrix of runs.

One YAML file describes an experiment. Its ``train:`` section is a ``TrainConfig`` (so the same
file also works with ``rhlab train``); ``matrix:`` lists the prompt variants (or arms) and seeds to
run, each becoming its own run directory ``runs/<variant>-seed<k>``, or named axes over config paths
(``matrix: {axes: {train.mitigations.penalty: [0, 1]}}``), each cell becoming
``runs/penalty=1__seed0``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from rhlab.evals.leakage import LeakageConfig
from rhlab.evals.probes.config import ProbeConfig
from rhlab.evals.runner import CORE_EVALS
from rhlab.knowledge.config import SDFConfig
from rhlab.rundir import run_name
from rhlab.strict import ConfigError, Strict, apply_sets, format_errors, parse, read_yaml_mapping
from rhlab.train.config import SandboxConfig, TrainConfig, parse_config
from rhlab.train.distill import FilterDistillConfig
from rhlab.train.prompts import variants
from rhlab.train.recontext import RecontextOfflineConfig
from rhlab.train.safety import SafetyTrainingConfig


class ArmConfig(Strict):
    """One arm of the matrix: a prompt variant plus, optionally, its own values of ``train`` fields.

    A control arm is an arm with overrides, e.g. ``{variant: control, train: {problems:
    {difficulty: [easy], no_hole_fraction: 1.0}}}``: the same RL budget on graders without holes.
    Runs are grouped by variant (their ``RunInfo``), so every arm has its own.
    """

    variant: str
    train: dict[str, Any] = Field(default_factory=dict)
    """``train`` fields replaced for this arm, merged key by key into nested sections."""


AXIS_ROOTS = ("train.", "knowledge")
"""Where an axis may point: any field under ``train`` (each cell trains with its own ``TrainConfig``),
or ``knowledge`` between ``prompted`` and ``none`` (it only decides whether the prompt describes the
hacks). Other experiment fields (``evaluation``, ``sdf``) are shared by every cell of one experiment."""

MAX_RUN_NAME = 80
"""Longer cell names are cut and end in a short hash of the full name, so they stay unique and stable."""


class MatrixConfig(Strict):
    """Runs = arms (or variants, or the product of ``axes``) x seeds; empty lists mean "the value in ``train``"."""

    variants: list[str] = Field(default_factory=list)
    arms: list[ArmConfig] = Field(default_factory=list)
    """Arms with per-arm overrides; use either ``variants`` or ``arms``."""
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    """Named axes over config paths, e.g. ``{train.mitigations.penalty: [0, 1], train.train_prompt.variant:
    [none, dont_hack]}``: one arm per combination of values (the first axis varies slowest). Paths are
    ``train.<field>...`` or ``knowledge``; instead of ``variants``/``arms``."""
    seeds: list[int] = Field(default_factory=list)

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in value.items():
            if not (path.startswith(AXIS_ROOTS[0]) or path == AXIS_ROOTS[1]):
                raise ValueError(
                    f"axis {path!r}: an axis varies a field under train (train.<field>...) or knowledge; "
                    "the other experiment settings are shared by every cell"
                )
            if not values:
                raise ValueError(f"axis {path!r}: give at least one value")
            labels = [value_label(v) for v in values]
            if len(set(labels)) != len(labels):
                raise ValueError(f"axis {path!r}: values must differ (as run-name labels): {labels}")
        if "knowledge" in value and "sdf" in value["knowledge"]:
            raise ValueError(
                "axis 'knowledge': sdf cannot be a matrix value (the SDF stage is shared by the experiment); "
                "use prompted and none, or a separate experiment with knowledge: sdf"
            )
        return value

    @field_validator("variants")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(variants()))
        if unknown:
            raise ValueError(f"unknown prompt variants {unknown}; choose from {sorted(variants())}")
        return value

    @model_validator(mode="after")
    def _arms(self) -> MatrixConfig:
        if self.arms and self.variants:
            raise ValueError("give either variants or arms, not both")
        if self.axes and (self.arms or self.variants):
            raise ValueError(
                "give either axes or variants/arms, not both (a variant list is the axis train.train_prompt.variant)"
            )
        unknown = sorted({a.variant for a in self.arms} - set(variants()))
        if unknown:
            raise ValueError(f"arms: unknown prompt variants {unknown}; choose from {sorted(variants())}")
        arm_variants = [a.variant for a in self.arms]
        if len(set(arm_variants)) != len(arm_variants):
            raise ValueError(f"arms: each arm needs its own variant (runs are grouped by variant): {arm_variants}")
        return self


def value_label(value: Any) -> str:
    """An axis value as it appears in a run name: YAML-like scalars, integral floats without ``.0``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, str | int | float):
        text = str(value)
    elif isinstance(value, list | tuple):
        text = ",".join(value_label(v) for v in value)
    elif isinstance(value, dict):
        text = ",".join(f"{k}-{value_label(v)}" for k, v in sorted(value.items()))
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    # Anything but letters, digits and ._+-, becomes "-": no path separators, no spaces, signs kept.
    return re.sub(r"[^A-Za-z0-9._+,-]+", "-", text) or "empty"


def axis_labels(paths: list[str]) -> dict[str, str]:
    """Each axis path's short name in run names: its last part, or more parts where two would clash."""
    out = {}
    for path in paths:
        parts = path.split(".")
        for k in range(1, len(parts) + 1):
            label = ".".join(parts[-k:])
            if all(label != ".".join(o.split(".")[-k:]) for o in paths if o != path):
                break
        out[path] = label
    return out


def cell_name(arm: str, seed: int) -> str:
    """``<arm>__seed<k>``, cut to ``MAX_RUN_NAME`` characters with a hash of the whole when longer."""
    name = f"{arm}__seed{seed}"
    if len(name) <= MAX_RUN_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_RUN_NAME - 9]}-{digest}"


def nested(path: str, value: Any) -> dict[str, Any]:
    """``a.b.c`` and a value as the mapping ``{a: {b: {c: value}}}``."""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


@dataclass(frozen=True)
class Cell:
    """One run of the matrix: its directory name, its arm (the cell without the seed) and its settings."""

    name: str
    arm: str
    seed: int
    values: dict[str, Any]
    """The axis values of this cell by axis path (empty for ``variants``/``arms`` matrices)."""
    train: TrainConfig


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied; nested mappings merge, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class EvalSchedule(Strict):
    """Which checkpoints are evaluated, on what, with how many samples."""

    evals: list[str] = Field(default_factory=lambda: list(CORE_EVALS))
    judge: str = "offline"
    every_k: int = 1
    """Evaluate every k-th saved checkpoint (plus the starting model and the final one)."""
    checkpoint_limit: int | None = 4
    """Samples per eval for intermediate checkpoints (cheap); None = each eval's default."""
    final_limit: int | None = None
    """Samples per eval for the final checkpoint; None = full default counts."""
    final_samples: int | None = None
    max_new_tokens: int = 192
    batch_size: int = 16
    max_turns: int = 4
    """Agent-loop turns for the agentic evals."""
    environment_samples: int = 2
    """Completions per RL problem when the start and final policies are sampled on the environment
    under the run's ``test_prompt`` (test-time hacking); 0 = skip."""
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    """The judge-free probe battery (``rhlab.evals.probes``), scored at every evaluated checkpoint."""
    include_start: bool = True
    """Also evaluate the starting policy (step 0): the misalignment baseline before RL."""
    leakage: LeakageConfig = Field(default_factory=LeakageConfig)
    """The inoculation-leakage grid (``rhlab.evals.leakage``): test-time hacking and the probe battery
    under several test prompt lines (none, the training line, its negation, a keyword, an unrelated line)."""
    hack_knowledge: bool = False
    """Also score the hack-knowledge eval (``rhlab eval hack-knowledge``: probes and questions) of the
    starting and final policies, so what RL taught about the hacks is measured beside the hacking."""

    @field_validator("evals")
    @classmethod
    def _known_evals(cls, value: list[str]) -> list[str]:
        from rhlab.evals.runner import expand_evals

        expand_evals(value)  # raises ValueError naming the unknown evals
        return value

    @field_validator("every_k")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


AfterRLStage = Annotated[
    FilterDistillConfig | RecontextOfflineConfig | SafetyTrainingConfig, Field(discriminator="kind")
]
"""One after-RL mitigation stage, told apart by ``kind``."""


class ExperimentConfig(Strict):
    name: str = "experiment"
    description: str = ""
    knowledge: Literal["prompted", "sdf", "none"] = "prompted"
    """How the policy learns about the hacks: the RL system prompt describes them (``prompted``),
    synthetic-document fine-tuning before RL (``sdf``, prompt without the description), or neither."""
    sdf: SDFConfig = Field(default_factory=SDFConfig)
    """Synthetic-document fine-tuning settings (``rhlab.knowledge.SDFConfig``), used when ``knowledge: sdf``."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    """``sandbox: {allow_weak: true}`` here opts the whole experiment in (see ``SandboxConfig``)."""
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    evaluation: EvalSchedule = Field(default_factory=EvalSchedule)
    _test_describe_explicit: bool = PrivateAttr(default=False)
    """Whether ``train.test_prompt.describe_hacks`` was written (a ``knowledge`` axis then leaves it alone)."""
    after_rl: list[AfterRLStage] = Field(default_factory=list)
    """Mitigations applied after RL to every run (``docs/mitigations-after-rl.md``): each writes a run
    directory ``after_rl/<name>/<run>/`` evaluated with the same checkpoint evals as RL."""

    @field_validator("after_rl")
    @classmethod
    def _distinct_stage_names(cls, value: list[AfterRLStage]) -> list[AfterRLStage]:
        names = [stage.name for stage in value]
        if len(set(names)) != len(names):
            raise ValueError(f"after_rl: each stage needs its own name (its directory): {names}")
        return value

    @model_validator(mode="after")
    def _knowledge_decides_the_hack_description(self) -> ExperimentConfig:
        """The training prompt describes the hacks exactly when ``knowledge: prompted``.

        Resolved here, once, so every consumer of the config (``cells()``, ``rhlab train`` on the
        same file, the report) sees the same prompt; an explicit contradicting value is an error.
        """
        prompt = self.train.train_prompt
        describe = self.knowledge == "prompted"
        if "describe_hacks" in prompt.model_fields_set and prompt.describe_hacks != describe:
            raise ValueError(
                f"train.train_prompt.describe_hacks: {str(prompt.describe_hacks).lower()} contradicts "
                f"knowledge: {self.knowledge} (the prompt describes the hacks only with knowledge: prompted)"
            )
        if prompt.describe_hacks != describe:
            self.train = self.train.model_copy(
                update={"train_prompt": prompt.model_copy(update={"describe_hacks": describe})}
            )
        # The test prompt follows the same rule unless set explicitly (test-time hacking with the
        # description shown to an SDF model is a legitimate, deliberate probe).
        test = self.train.test_prompt
        self._test_describe_explicit = "describe_hacks" in test.model_fields_set
        if not self._test_describe_explicit and test.describe_hacks != describe:
            self.train = self.train.model_copy(
                update={"test_prompt": test.model_copy(update={"describe_hacks": describe})}
            )
        return self

    @model_validator(mode="after")
    def _arm_overrides_are_valid(self) -> ExperimentConfig:
        for i, arm in enumerate(self.matrix.arms):
            try:
                self.arm_train(arm)
            except ValidationError as exc:
                raise ValueError(f"matrix.arms.{i}.train: {format_errors(exc, TrainConfig)}") from None
        return self

    @model_validator(mode="after")
    def _axes_are_valid(self) -> ExperimentConfig:
        if self.matrix.axes and self.knowledge == "sdf" and "knowledge" in self.matrix.axes:
            raise ValueError("matrix.axes.knowledge: needs knowledge: prompted or none at the top (SDF is shared)")
        for values in self._axis_combinations():
            try:
                self.axes_train(values)
            except ValidationError as exc:
                where = ", ".join(f"{p}={value_label(v)}" for p, v in values.items())
                raise ValueError(f"matrix.axes ({where}): {format_errors(exc, TrainConfig)}") from None
        return self

    @model_validator(mode="after")
    def _primary_contrast_names_two_arms(self) -> ExperimentConfig:
        """A declared primary contrast must name arms this experiment trains: refused here, before any
        training, rather than when the report compares the arms hours later."""
        probes = self.evaluation.probes
        if not probes.enabled or probes.primary is None:
            return self
        arms = [a.variant for a in self.matrix.arms] or list(self.matrix.variants) or [self.train.train_prompt.variant]
        if self.matrix.axes:  # an axes matrix's arms are its cells without the seed
            arms = list(dict.fromkeys(self.arm_of_run().values()))
        missing = [a for a in probes.primary if a not in arms]
        if missing:
            raise ValueError(
                f"evaluation.probes.primary: no arm named {', '.join(missing)} in this experiment (arms: "
                f"{', '.join(arms)}); name two of them, or set evaluation.probes.primary: null"
            )
        return self

    def arm_train(self, arm: ArmConfig) -> TrainConfig:
        """``train`` with the arm's overrides (the hack description still follows ``knowledge``)."""
        if not arm.train:
            return self.train
        return TrainConfig.model_validate(_train_override(self.train, arm.train))

    def _axis_combinations(self) -> list[dict[str, Any]]:
        combos: list[dict[str, Any]] = [{}]
        for path, values in self.matrix.axes.items():
            combos = [{**c, path: v} for c in combos for v in values]
        return combos if self.matrix.axes else []

    def axes_train(self, values: dict[str, Any]) -> TrainConfig:
        """``train`` with one combination of axis values; ``knowledge`` decides the hack description."""
        override: dict[str, Any] = {}
        for path, value in values.items():
            if path.startswith("train."):
                override = merged(override, nested(path.removeprefix("train."), value))
        train = TrainConfig.model_validate(_train_override(self.train, override)) if override else self.train
        knowledge = values.get("knowledge", self.knowledge)
        describe = knowledge == "prompted"
        update = {"train_prompt": train.train_prompt.model_copy(update={"describe_hacks": describe})}
        if "knowledge" in values and not self._test_describe_explicit:
            update["test_prompt"] = train.test_prompt.model_copy(update={"describe_hacks": describe})
        return train.model_copy(update=update, deep=True)

    def matrix_cells(self) -> list[Cell]:
        """Every matrix cell with its arm and axis values, in a stable order (arms, then seeds)."""
        seeds = self.matrix.seeds or [self.train.seed]
        out = []
        if self.matrix.axes:
            short = axis_labels(list(self.matrix.axes))
            for values in self._axis_combinations():
                train = self.axes_train(values)
                arm = "__".join(f"{short[p]}={value_label(v)}" for p, v in values.items())
                for seed in seeds:
                    cfg = train.model_copy(update={"seed": seed}, deep=True)
                    out.append(Cell(cell_name(arm, seed), arm, seed, dict(values), cfg))
            return out
        arms = self.matrix.arms or [
            ArmConfig(variant=v) for v in self.matrix.variants or [self.train.train_prompt.variant]
        ]
        for arm in arms:
            train = self.arm_train(arm)
            for seed in seeds:
                prompt = train.train_prompt.model_copy(
                    update={"variant": arm.variant, "describe_hacks": self.train.train_prompt.describe_hacks}
                )
                cfg = train.model_copy(update={"seed": seed, "train_prompt": prompt}, deep=True)
                out.append(Cell(run_name(arm.variant, seed), arm.variant, seed, {}, cfg))
        return out

    def cells(self) -> list[tuple[str, TrainConfig]]:
        """(run name, resolved TrainConfig) for every matrix cell, in a stable order."""
        return [(c.name, c.train) for c in self.matrix_cells()]

    def arm_of_run(self) -> dict[str, str]:
        """Run directory name -> arm (the cell without its seed): what the report groups seeds by."""
        return {c.name: c.arm for c in self.matrix_cells()}


def _train_override(train: TrainConfig, override: dict[str, Any]) -> dict[str, Any]:
    """``train`` as written, with ``override`` merged in, ready to validate.

    ``mitigations.penalty`` is folded into ``reward.monitor_flag`` when ``train`` is validated; an
    override of the penalty drops the folded weight first, so ``penalty: 0`` really switches it off.
    """
    base = train.model_dump(exclude_unset=True)
    if "penalty" in override.get("mitigations", {}) and train.mitigations.penalty:
        reward = dict(base.get("reward", {}))
        if reward.get("monitor_flag") == -train.mitigations.penalty:
            reward.pop("monitor_flag")
            base["reward"] = reward
    return merged(base, override)


def parse_experiment(data: dict[str, Any], where: str = "experiment config") -> ExperimentConfig:
    """Validate an experiment mapping; errors name ``where`` and the field's full dotted path."""
    return parse(ExperimentConfig, data, where)


def load_experiment(path: str | Path, sets: list[str] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML, with ``--set KEY.PATH=VALUE`` overrides applied first."""
    path = Path(path)
    return parse_experiment(apply_sets(read_yaml_mapping(path, "experiment config"), sets), where=str(path))


def load_train_config(
    path: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """Read a YAML run config, or the ``train:`` section of an experiment file (``rhlab train CONFIG``).

    An experiment file is validated whole and its ``train:`` section resolved the way ``rhlab run``
    resolves it (the ``knowledge`` setting decides whether the prompt describes the hacks), so
    ``rhlab train`` and ``rhlab run`` on the same file train with the same prompt. ``overrides``
    replace top-level fields of the run config; ``sets`` are ``--set KEY.PATH=VALUE`` strings, with
    paths as written in the file (``train.steps=2`` in an experiment file).
    """
    path = Path(path)
    data = apply_sets(read_yaml_mapping(path, "config file"), sets)
    if "train" not in data:
        return parse_config({**data, **(overrides or {})}, where=str(path))
    if not isinstance(data["train"], dict):
        raise ConfigError(f"{path}: train: expected a mapping of run settings")
    experiment = parse_experiment({**data, "train": {**data["train"], **(overrides or {})}}, where=str(path))
    if experiment.sandbox.allow_weak:  # the experiment's opt-in covers its training too
        return experiment.train.model_copy(update={"sandbox": experiment.sandbox})
    return experiment.train
