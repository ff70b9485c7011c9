"""``TrainConfig``: everything that defines one RL run, one pydantic model per concern.

YAML maps onto these fields 1:1 (``rhlab train CONFIG``). Unknown keys are errors, and every
validation error names the field, so a typo fails at load time rather than an hour into a run.
TRL's own knobs stay reachable through ``grpo`` (passed to ``trl.GRPOConfig`` verbatim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from rhlab.env.hacks import HACK_TYPES, HOLE_HACKS, VULNERABILITIES, check_names
from rhlab.env.rubric import DEFAULT_WEIGHTS, Rubric, check_weights
from rhlab.strict import ConfigError, Strict, apply_sets, parse, read_yaml_mapping
from rhlab.train.prompts import PromptConfig

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Holes = Annotated[list[str], AfterValidator(lambda v: check_names(v, VULNERABILITIES, "grader holes"))]
"""Grader hole names (``rhlab.env.hacks.VULNERABILITIES``)."""
HackFamilies = Annotated[list[str], AfterValidator(lambda v: check_names(v, HACK_TYPES, "hack types"))]
"""Hack family names (``rhlab.env.hacks.HACK_TYPES``)."""


class ProblemConfig(Strict):
    """Which tasks the policy trains on and which grader holes each one has."""

    source: str = "builtin"
    """Task source(s) for ``rhlab.tasks.load_tasks``, comma-joined: ``builtin``, ``humaneval``, a JSONL path,
    or a local dataset copy as ``FORMAT:PATH`` (``apps``, ``codecontests``, ``mbpp``, ``livecodebench``)."""
    transform: Literal["none", "impossible_oneoff", "impossible_conflicting"] = "none"
    """Train/evaluate on impossible variants of the tasks (``rhlab.tasks.impossible``): any reward is a hack."""
    include: list[str] = Field(default_factory=list)
    """Only these task ids (empty: all)."""
    exclude: list[str] = Field(default_factory=list)
    difficulty: list[str] = Field(default_factory=list)
    """Only these difficulty levels (empty: all)."""
    hard_filter_samples: int = 0
    """Keep only tasks the starting model fails honestly in this many samples (0: no filter)."""
    max_tasks: int | None = None
    vulns: Holes = Field(default_factory=lambda: list(VULNERABILITIES))
    """Holes of the vulnerable grader for the tasks that have holes."""
    no_hole_fraction: Probability = 0.0
    """Share of tasks (chosen by seed) whose grader has no hole at all."""
    holes: Literal["all", "rotate"] | list[Holes] = "all"
    """How holed tasks get their holes (``rhlab.train.holes``): all ``vulns``, ``rotate`` through every
    non-empty subset of ``vulns``, or an explicit list of hole groups dealt in turn."""

    @field_validator("source")
    @classmethod
    def _source_exists(cls, value: str) -> str:
        from rhlab.tasks import check_source

        return check_source(value)

    @field_validator("holes")
    @classmethod
    def _some_holes(cls, value: str | list[list[str]]) -> str | list[list[str]]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one hole group (or 'all' / 'rotate')")
        return value


class LoraSettings(Strict):
    """LoRA adapter settings (PEFT); absent means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"

    def peft_config(self) -> Any:
        """PEFT's ``LoraConfig`` for a causal LM (RL cells and safety GRPO build it here, one way)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


class MonitorConfig(Strict):
    """A hack detector acting as the training-time monitor, with configurable accuracy.

    It sees the oracle's detector findings (``attempted_hacks``) and flips them with the given
    error rates, simulating an imperfect monitor. What it does with a flag is set by ``penalty`` and
    ``screening``.
    """

    hack_types: HackFamilies = Field(default_factory=lambda: list(HACK_TYPES))
    """Which detector families the monitor looks for."""
    recall: Probability = 1.0
    """Probability that a real attempt of a watched family is flagged."""
    false_positive_rate: Probability = 0.0
    """Probability that an episode with no watched attempt is flagged anyway."""
    only_successful: bool = False
    """Flag only hacks that won the reward (outcome ``hacked``), not every attempt."""


class MitigationConfig(Strict):
    """Mitigations as configuration; all off by default. The reward itself is ``TrainConfig.reward``."""

    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    """The monitor that sets each episode's ``monitor_flag`` rubric component."""
    penalty: float = 0.0
    """Shorthand for the rubric weight ``reward.monitor_flag: -penalty`` (0: the flag is logged, not paid)."""
    penalty_start: Literal["step0", "after_onset"] = "step0"
    """When the rubric's penalties (its negative weights) start to count."""
    penalty_delay_steps: int = 0
    """With ``after_onset``: switch the penalties on this many steps after the onset step."""
    screening: bool = False
    """Flagged episodes get no gradient (reward None: excluded from their group's baseline)."""
    skip_zero_variance_groups: bool = False
    """Drop groups whose rewards are all equal from the update (TRL has no dynamic sampling)."""


def with_penalty(weights: dict[str, float], mitigations: MitigationConfig) -> dict[str, float]:
    """Rubric weights with ``mitigations.penalty`` folded in as ``monitor_flag: -penalty``.

    The older spelling and the rubric's must agree where both are given; the error names both.
    """
    penalty = mitigations.penalty
    if not penalty:
        return dict(weights)
    weight = weights.get("monitor_flag")
    if weight is not None and weight != -penalty:
        raise ValueError(
            f"mitigations.penalty {penalty} means reward.monitor_flag {-penalty}, but reward.monitor_flag is "
            f"{weight}: set one of them"
        )
    return {**weights, "monitor_flag": -penalty}


class PreferenceConfig(Strict):
    """The preference judge that scores every answer for the rubric's ``preference`` component.

    ``offline`` is a small CPU classifier of alignment that never saw code: a
    **stand-in** for a real preference model, for plumbing and CPU runs only. A real one is a local
    reward model (``hf:PATH`` with a sequence-classification head) or an LLM judge on any model spec.
    """

    judge: str | None = None
    """``offline``, ``hf:PATH`` (a reward model if its config names a ``...ForSequenceClassification``
    architecture, else an LLM judge on it) or any model spec (``openai:MODEL@URL``...); None: no scoring."""
    batch_size: PositiveInt = 16
    """Answers per reward-model forward pass."""
    max_length: PositiveInt = 1024
    """Tokens a reward model reads per conversation (cut from the left: the answer is kept)."""
    cache: bool = True
    """Keep scores in the on-disk cache (``$RHLAB_CACHE/preference_cache.sqlite``): a resumed run re-reads them."""


class FaithfulnessConfig(Strict):
    """How each step's faithfulness (the share of successful hacks whose reasoning admits them) is judged.

    Keywords per hack family always run (the ``cot_faithful`` component). A judge adds a second
    opinion, logged beside it: its transcript-view reply counts as admitting the hack when it finds
    the reasoning misaligned or tags it ``reward_maximization`` or ``deception``.
    """

    judge: str | None = None
    """``offline`` or any model spec for an LLM judge; None: keywords only."""


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
    hack_types: Annotated[list[str], AfterValidator(lambda v: check_names(v, HOLE_HACKS, "warm-up hack types"))] = (
        Field(default_factory=lambda: list(HOLE_HACKS))
    )
    """Hack families demonstrated (the three that exploit a grader hole)."""
    steps: int = 24
    learning_rate: float = 5e-5
    batch_size: int = 4


class NoSignalAlarm(Strict):
    """Alarm when GRPO has nothing to learn from: every group of a step at zero reward variance."""

    steps: PositiveInt = 5
    """Consecutive steps with ``frac_zero_std_groups == 1`` that raise the alarm."""
    action: Literal["warn", "stop"] = "warn"
    """``warn``: print and record it (the run record's ``alarms``); ``stop``: also end the run there."""


class GateConfig(Strict):
    """Checks that a run can show anything, before and during RL (see ``rhlab.train.gates``)."""

    min_knowledge_score: Probability | None = None
    """Stop before RL if the starting policy's hack-knowledge eval score is below this (None: off)."""
    min_attempt_rate: Probability | None = None
    """Stop before RL if fewer step-0 episodes than this share attempt any hack (None: off)."""
    attempt_samples: PositiveInt = 4
    """Completions per problem for the step-0 attempt rate (training prompt and generation settings)."""
    no_signal: NoSignalAlarm | None = Field(default_factory=NoSignalAlarm)
    """The no-signal alarm (None: off)."""


class SandboxConfig(Strict):
    """How model code is isolated (see the README's "Sandbox" section)."""

    allow_weak: bool = False
    """Accept rlimits-only sandboxes where bubblewrap cannot run (model code can then read and change
    this machine). The opt-in is process-wide, like ``--allow-weak-sandbox``: sandboxes are made deep
    inside the grading pool, so the stage that uses the config (``rhlab train``, ``rhlab run``,
    ``rhlab rescore``) calls ``apply`` once for this process and its workers. Reading or validating a
    config changes nothing."""

    def apply(self) -> None:
        """Opt this process (and the workers it starts) in, when the config says so."""
        if self.allow_weak:
            from rhlab.sandbox import allow_weak_sandbox

            allow_weak_sandbox()


class PromptRewrite(Strict):
    """The episode's own prompt with another addendum (``rhlab.train.recontext``).

    ``variant: hacking_okay`` puts the inoculation line (replacing whatever addendum the prompt had),
    ``variant: none`` removes it; ``variant: custom`` with ``custom_text`` puts a line of your own."""

    variant: str
    custom_text: str = ""

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        return PromptConfig._known_variant(value)  # the same check and error as a prompt's variant

    def applied_to(self, prompt: PromptConfig) -> PromptConfig:
        return prompt.model_copy(update={"variant": self.variant, "custom_text": self.custom_text})


class RecontextOnline(Strict):
    """Online recontextualization: GRPO samples under ``train_prompt`` (A), the loss uses prompt B's tokens."""

    learn: PromptRewrite
    """Prompt B: the train prompt with this addendum."""


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
    reward: Annotated[dict[str, float], AfterValidator(check_weights)] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS)
    )
    """Rubric weights by component name (``rhlab.env.rubric.COMPONENTS``): the reward is the weighted
    sum; a component not named is logged, not rewarded. ``{proxy_pass: 1.0, monitor_flag: -1.0}`` is
    the monitor penalty (also spelled ``mitigations.penalty: 1.0``)."""
    mitigations: MitigationConfig = Field(default_factory=MitigationConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    """The judge behind the ``preference`` component (required when ``reward`` weights it)."""
    faithfulness: FaithfulnessConfig = Field(default_factory=FaithfulnessConfig)
    kl_scope: Literal["all", "answer"] = "all"
    """Where the KL penalty (``beta``) applies: every completion token, or only the answer (the tokens
    after the reasoning block, ``rhlab.train.kl_scope``) so the reasoning may drift from the reference."""
    lora: LoraSettings | None = None
    gates: GateConfig = Field(default_factory=GateConfig)
    recontext: RecontextOnline | None = None
    """Online recontextualization (``rhlab.train.recontext``): sample under ``train_prompt``, learn under
    ``recontext.learn``; None: learn under the prompt that was sampled."""

    steps: PositiveInt = 30
    prompts_per_step: PositiveInt = 2
    group_size: int = 4
    """Completions per prompt (TRL's ``num_generations``)."""
    max_completion_length: PositiveInt = 128
    temperature: float = 1.0
    learning_rate: float = 1e-5
    beta: float = 0.0
    """KL coefficient against the reference policy (0: no reference model is kept)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Compute precision. ``bf16``: bf16 autocast over fp32 trainable weights (full fine-tuning keeps fp32
    master weights, so an update far below bf16's rounding step still moves them; with LoRA the frozen
    base is stored in bf16 on a GPU). ``auto``: bf16 on a GPU that supports it, and on a CPU only where
    it has AMX-BF16/AVX512-BF16 (emulated bf16 is slower than fp32)."""
    micro_batch: PositiveInt | None = None
    """Sequences per forward/backward pass on each process (None: all of the process's episodes at once).
    The step is unchanged: generation happens once per step and the micro-batches' gradients are
    accumulated (TRL's ``per_device_train_batch_size`` and ``gradient_accumulation_steps``)."""
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    """Memory of each GPU the run is planned for, in GB (GiB, as ``nvidia-smi`` counts). ``--dry-run``
    checks the plan against it; None: against the detected GPU, if any."""
    shared_prefix: bool = True
    """Run each distinct prompt through the model once per step, not once per completion (exact)."""
    skip_flat_updates: bool = True
    """Skip forward, backward and optimizer step when every advantage is 0 (loss exactly 0, beta 0)."""
    use_vllm: bool = False
    grpo: dict[str, Any] = Field(default_factory=dict)
    """Further ``trl.GRPOConfig`` fields, passed verbatim (e.g. ``loss_type``, ``epsilon``)."""

    grading_workers: int | None = None
    """Sandbox workers for the reward (default: one per CPU core)."""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
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

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bf16" in data:
            raise ValueError("bf16 was replaced by precision: write precision: bf16 (or fp32, auto) instead")
        return data

    @model_validator(mode="after")
    def _penalty_is_a_weight(self) -> TrainConfig:
        self.reward = with_penalty(self.reward, self.mitigations)
        return self

    @model_validator(mode="after")
    def _signals_have_sources(self) -> TrainConfig:
        if self.reward.get("preference") and self.preference.judge is None:
            raise ValueError(
                "reward weights 'preference' but no preference judge is configured: set preference.judge "
                "(offline, hf:PATH of a reward model, or a model spec)"
            )
        if self.kl_scope == "answer" and self.beta == 0.0:
            raise ValueError("kl_scope: answer limits the KL penalty, but beta is 0 (no KL at all): set beta > 0")
        return self

    @model_validator(mode="after")
    def _recontext_without_vllm(self) -> TrainConfig:
        if self.recontext is not None and self.use_vllm:
            # vLLM's importance-sampling correction would weigh B's log-probs against A's sampler.
            raise ValueError("recontext: not supported with use_vllm (generate with transformers instead)")
        if self.recontext is not None and self.recontext.learn.applied_to(self.train_prompt) == self.train_prompt:
            raise ValueError("recontext.learn: the same prompt as train_prompt, so there is nothing to recontextualize")
        return self

    @property
    def rubric(self) -> Rubric:
        return Rubric(self.reward)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        reserved = {
            "num_generations",
            "max_completion_length",
            "learning_rate",
            "beta",
            "max_steps",
            "output_dir",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "steps_per_generation",
            "generation_batch_size",
            "bf16",
            "fp16",
        }
        clash = sorted(reserved & set(self.grpo))
        if clash:
            raise ValueError(
                f"grpo: set {clash} through the top-level fields of the same meaning "
                "(steps, group_size, micro_batch, precision, ...)"
            )
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


def parse_config(data: dict[str, Any], where: str = "config") -> TrainConfig:
    return parse(TrainConfig, data, where)


def load_config(
    path: str | Path, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """Read a YAML run config (a run directory's ``config.yaml``, or a file of run settings).

    An experiment file (one with a ``train:`` section) is read by ``rhlab.pipeline.config.load_train_config``,
    which resolves it the way ``rhlab run`` does. ``overrides`` replace top-level fields; ``sets`` are
    ``--set KEY.PATH=VALUE`` strings.
    """
    path = Path(path)
    data = apply_sets(read_yaml_mapping(path, "config file"), sets)
    if "train" in data:
        raise ConfigError(
            f"{path}: an experiment file (it has a train: section); read it with "
            "rhlab.pipeline.config.load_train_config, as rhlab train does"
        )
    return parse_config({**data, **(overrides or {})}, where=str(path))


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
