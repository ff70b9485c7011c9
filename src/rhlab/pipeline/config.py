"""``ExperimentConfig``: knowledge -> RL -> checkpoint evals -> report, over a matrix of runs.

One YAML file describes an experiment. Its ``train:`` section is a ``TrainConfig`` (so the same
file also works with ``rhlab train``); ``matrix:`` lists the prompt variants and seeds to run, each
becoming its own run directory ``runs/<variant>-seed<k>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from rhlab.evals.probes.config import ProbeConfig
from rhlab.evals.runner import CORE_EVALS
from rhlab.knowledge.config import SDFConfig
from rhlab.rundir import run_name
from rhlab.strict import ConfigError, Strict, apply_sets, format_errors, parse, read_yaml_mapping
from rhlab.train.config import SandboxConfig, TrainConfig, parse_config
from rhlab.train.prompts import variants


class ArmConfig(Strict):
    """One arm of the matrix: a prompt variant plus, optionally, its own values of ``train`` fields.

    A control arm is an arm with overrides, e.g. ``{variant: control, train: {problems:
    {difficulty: [easy], no_hole_fraction: 1.0}}}``: the same RL budget on graders without holes.
    Runs are grouped by variant (their ``RunInfo``), so every arm has its own.
    """

    variant: str
    train: dict[str, Any] = Field(default_factory=dict)
    """``train`` fields replaced for this arm, merged key by key into nested sections."""


class MatrixConfig(Strict):
    """Runs = arms (or variants) x seeds; empty lists mean "the value in ``train``"."""

    variants: list[str] = Field(default_factory=list)
    arms: list[ArmConfig] = Field(default_factory=list)
    """Arms with per-arm overrides; use either ``variants`` or ``arms``."""
    seeds: list[int] = Field(default_factory=list)

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
        unknown = sorted({a.variant for a in self.arms} - set(variants()))
        if unknown:
            raise ValueError(f"arms: unknown prompt variants {unknown}; choose from {sorted(variants())}")
        arm_variants = [a.variant for a in self.arms]
        if len(set(arm_variants)) != len(arm_variants):
            raise ValueError(f"arms: each arm needs its own variant (runs are grouped by variant): {arm_variants}")
        return self


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
        if "describe_hacks" not in test.model_fields_set and test.describe_hacks != describe:
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
    def _primary_contrast_names_two_arms(self) -> ExperimentConfig:
        """A declared primary contrast must name arms this experiment trains: refused here, before any
        training, rather than when the report compares the arms hours later."""
        probes = self.evaluation.probes
        if not probes.enabled or probes.primary is None:
            return self
        arms = [a.variant for a in self.matrix.arms] or list(self.matrix.variants) or [self.train.train_prompt.variant]
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
        return TrainConfig.model_validate(merged(self.train.model_dump(exclude_unset=True), arm.train))

    def cells(self) -> list[tuple[str, TrainConfig]]:
        """(run name, resolved TrainConfig) for every matrix cell, in a stable order."""
        arms = self.matrix.arms or [
            ArmConfig(variant=v) for v in self.matrix.variants or [self.train.train_prompt.variant]
        ]
        out = []
        for arm in arms:
            train = self.arm_train(arm)
            for seed in self.matrix.seeds or [self.train.seed]:
                prompt = train.train_prompt.model_copy(
                    update={"variant": arm.variant, "describe_hacks": self.train.train_prompt.describe_hacks}
                )
                cfg = train.model_copy(update={"seed": seed, "train_prompt": prompt}, deep=True)
                out.append((run_name(arm.variant, seed), cfg))
        return out


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
