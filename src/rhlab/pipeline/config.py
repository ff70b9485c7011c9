"""``ExperimentConfig``: knowledge -> RL -> checkpoint evals -> report, over a matrix of runs.

One YAML file describes an experiment. Its ``train:`` section is a ``TrainConfig`` (so the same
file also works with ``rhlab train``); ``matrix:`` lists the prompt variants and seeds to run, each
becoming its own run directory ``runs/<variant>-seed<k>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from rhlab.evals.runner import CORE_EVALS
from rhlab.train.config import ConfigError, Strict, TrainConfig, format_errors, read_yaml_mapping
from rhlab.train.prompts import variants


class MatrixConfig(Strict):
    """Runs = variants x seeds; empty lists mean "the value in ``train``"."""

    variants: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)

    @field_validator("variants")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(variants()))
        if unknown:
            raise ValueError(f"unknown prompt variants {unknown}; choose from {sorted(variants())}")
        return value


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
    include_start: bool = True
    """Also evaluate the starting policy (step 0): the misalignment baseline before RL."""

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
    sdf: dict[str, Any] = Field(default_factory=dict)
    """``rhlab.knowledge.SDFConfig`` fields, used when ``knowledge: sdf``."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    evaluation: EvalSchedule = Field(default_factory=EvalSchedule)

    def cells(self) -> list[tuple[str, TrainConfig]]:
        """(run name, resolved TrainConfig) for every matrix cell, in a stable order."""
        out = []
        for variant in self.matrix.variants or [self.train.train_prompt.variant]:
            for seed in self.matrix.seeds or [self.train.seed]:
                prompt = self.train.train_prompt.model_copy(
                    update={"variant": variant, "describe_hacks": self.knowledge == "prompted"}
                )
                cfg = self.train.model_copy(update={"seed": seed, "train_prompt": prompt}, deep=True)
                out.append((f"{variant}-seed{seed}", cfg))
        return out


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file and the field."""
    path = Path(path)
    data = read_yaml_mapping(path, "experiment config")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_errors(exc)}") from None
    if config.knowledge == "sdf":
        from rhlab.knowledge import SDFConfig

        try:
            SDFConfig.model_validate(config.sdf)
        except ValidationError as exc:
            raise ConfigError(f"{path}: sdf: {format_errors(exc)}") from None
    return config
