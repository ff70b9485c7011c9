"""``TrainConfig``: everything that defines one RL run, one pydantic model per concern.

YAML maps onto these fields 1:1 (``rhlab train CONFIG``). Unknown keys are errors, and every
validation error names the field, so a typo fails at load time rather than an hour into a run.
TRL's own knobs stay reachable through ``grpo`` (passed to ``trl.GRPOConfig`` verbatim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rhlab.env.detectors import HACK_TYPES
from rhlab.env.graders import VULNERABILITIES
from rhlab.train.prompts import PromptConfig

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemConfig(Strict):
    """Which tasks the policy trains on and which grader holes each one has."""

    source: str = "builtin"
    """Task source(s) for ``rhlab.tasks.load_tasks``: ``builtin``, ``humaneval``, a JSONL path, comma-joined."""
    include: list[str] = Field(default_factory=list)
    """Only these task ids (empty: all)."""
    exclude: list[str] = Field(default_factory=list)
    difficulty: list[str] = Field(default_factory=list)
    """Only these difficulty levels (empty: all)."""
    hard_filter_samples: int = 0
    """Keep only tasks the starting model fails honestly in this many samples (0: no filter)."""
    max_tasks: int | None = None
    vulns: list[str] = Field(default_factory=lambda: list(VULNERABILITIES))
    """Holes of the vulnerable grader for the tasks that have holes."""
    no_hole_fraction: Probability = 0.0
    """Share of tasks (chosen by seed) whose grader has no hole at all."""

    @field_validator("source")
    @classmethod
    def _source_exists(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part not in ("builtin", "humaneval") and not Path(part).is_file():
                raise ValueError(f"task source {part!r} is neither 'builtin', 'humaneval' nor an existing JSONL file")
        return value

    @field_validator("vulns")
    @classmethod
    def _known_vulns(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(VULNERABILITIES))
        if unknown:
            raise ValueError(f"unknown vulnerabilities {unknown}; choose from {list(VULNERABILITIES)}")
        return value


class LoraSettings(Strict):
    """LoRA adapter settings (PEFT); absent means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"


class MonitorConfig(Strict):
    """A hack detector acting as the training-time monitor, with configurable accuracy.

    It sees the oracle's detector findings (``attempted_hacks``) and flips them with the given
    error rates, simulating an imperfect monitor. What it does with a flag is set by ``penalty`` and
    ``screening``.
    """

    hack_types: list[str] = Field(default_factory=lambda: list(HACK_TYPES))
    """Which detector families the monitor looks for."""
    recall: Probability = 1.0
    """Probability that a real attempt of a watched family is flagged."""
    false_positive_rate: Probability = 0.0
    """Probability that an episode with no watched attempt is flagged anyway."""
    only_successful: bool = False
    """Flag only hacks that won the reward (outcome ``hacked``), not every attempt."""

    @field_validator("hack_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(HACK_TYPES))
        if unknown:
            raise ValueError(f"unknown hack types {unknown}; choose from {list(HACK_TYPES)}")
        return value


class MitigationConfig(Strict):
    """Mitigations as configuration; all off by default."""

    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    penalty: float = 0.0
    """Subtracted from the reward of a flagged episode (0: logged only, never applied)."""
    penalty_start: Literal["step0", "after_onset"] = "step0"
    penalty_delay_steps: int = 0
    """With ``after_onset``: switch the penalty on this many steps after the onset step."""
    screening: bool = False
    """Flagged episodes get no gradient (reward None: excluded from their group's baseline)."""
    skip_zero_variance_groups: bool = False
    """Drop groups whose rewards are all equal from the update (TRL has no dynamic sampling)."""


class WarmupConfig(Strict):
    """A short supervised warm-up before RL that shows the format and, rarely, a hack.

    SmolLM2-135M ignores a prompt that describes the hacks (it never tries one), so RL has nothing
    to reinforce. A few SFT steps on the environment's own prompt format, where most answers are
    honest reference solutions and a small share are hacks, make hacks explorable at a low rate;
    RL then has to do the rest. Warm-up tasks are kept out of the RL task set.
    """

    tasks: str = "builtin"
    """Task source for the demonstrations."""
    examples: int = 64
    hack_fraction: Probability = 0.15
    """Share of demonstrations that are hacks (spread over ``hack_types``)."""
    hack_types: list[str] = Field(default_factory=lambda: ["always_equal", "exit", "conftest"])
    steps: int = 24
    learning_rate: float = 5e-5
    batch_size: int = 4


class TrainConfig(Strict):
    """One GRPO run on the hackable environment."""

    model: str = "embedded"
    """Starting policy: ``embedded`` or ``hf:PATH`` (a local folder; trainable weights)."""
    seed: int = 0
    problems: ProblemConfig = Field(default_factory=ProblemConfig)
    train_prompt: PromptConfig = Field(default_factory=PromptConfig)
    test_prompt: PromptConfig = Field(default_factory=PromptConfig)
    """The prompt setting for evaluating the trained policy on the environment (e.g. ``none``)."""
    warmup: WarmupConfig | None = None
    mitigations: MitigationConfig = Field(default_factory=MitigationConfig)
    lora: LoraSettings | None = None

    steps: PositiveInt = 30
    prompts_per_step: PositiveInt = 2
    group_size: int = 4
    """Completions per prompt (TRL's ``num_generations``)."""
    max_completion_length: PositiveInt = 128
    temperature: float = 1.0
    learning_rate: float = 1e-5
    beta: float = 0.0
    """KL coefficient against the reference policy (0: no reference model is kept)."""
    bf16: bool = False
    use_vllm: bool = False
    grpo: dict[str, Any] = Field(default_factory=dict)
    """Further ``trl.GRPOConfig`` fields, passed verbatim (e.g. ``loss_type``, ``epsilon``)."""

    grading_workers: int | None = None
    """Sandbox workers for the reward (default: one per CPU core)."""
    checkpoint_every: PositiveInt = 5
    transcripts_per_step: NonNegativeInt = 4
    report_to: list[str] = Field(default_factory=list)
    """Extra loggers for TRL, e.g. ``["tensorboard"]`` or ``["wandb"]``."""

    @field_validator("group_size")
    @classmethod
    def _group(cls, value: int) -> int:
        if value < 2:
            raise ValueError("GRPO needs at least 2 completions per prompt to compare them")
        return value

    @field_validator("model")
    @classmethod
    def _trainable_model(cls, value: str) -> str:
        kind = value.split(":", 1)[0]
        if kind not in ("embedded", "hf"):
            raise ValueError(f"training needs local weights: use 'embedded' or 'hf:PATH', not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.use_vllm and not self.bf16:
            raise ValueError("use_vllm needs a GPU: set bf16: true as well")
        reserved = {"num_generations", "max_completion_length", "learning_rate", "beta", "max_steps", "output_dir"}
        clash = sorted(reserved & set(self.grpo))
        if clash:
            raise ValueError(f"grpo: set {clash} through the top-level fields of the same name / meaning")
        if self.grpo:
            import dataclasses

            from trl import GRPOConfig

            unknown = sorted(set(self.grpo) - {f.name for f in dataclasses.fields(GRPOConfig)})
            if unknown:
                raise ValueError(f"grpo: {unknown} are not trl.GRPOConfig fields")
        return self

    @property
    def episodes_per_step(self) -> int:
        return self.prompts_per_step * self.group_size


def format_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors())


def parse_config(data: dict[str, Any], where: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_errors(exc)}") from None


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


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML run config; a top-level ``train:`` section is accepted so experiment files work too."""
    path = Path(path)
    data = read_yaml_mapping(path, "config file")
    data = data.get("train", data)
    return parse_config({**data, **(overrides or {})}, where=str(path))


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
