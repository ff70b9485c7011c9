"""Safety training after hacking RL: does it remove the misalignment, or only hide it from chat evals?

The paper's result: safety training on chat-like prompts makes the chat evals clean while agentic
misalignment stays (*context-dependent misalignment*); adding agentic and moral-dilemma prompts to
the mix (the *targeted* mix) removes it. rhlab ships both mixes as data files (``data/safety/``,
written for rhlab and disjoint from every eval's items) and two methods:

- ``sft``: sample the hacking policy's own answers to the mix, keep those a judge calls aligned and
  coherent, and fine-tune the policy on them (rejection-sampling SFT). With ``judge: offline`` the
  judge is the CPU classifier (``rhlab.judges.offline``): a stand-in for a preference model, good
  enough to run the pipeline, not to trust the figures.
- ``grpo``: GRPO on the mix's prompts against the rubric's ``preference`` component
  (``grpo.reward: {preference: 1.0}``; ``rhlab.train.chat_grpo``): the policy samples groups of
  answers, the preference judge (``judge``) scores each, and TRL's GRPO update follows. With
  ``judge: offline`` the scores come from the CPU classifier, the same stand-in as above.

The stage starts from the teacher run's *final* policy and writes ``after_rl/<name>/<cell>/`` like
the other after-RL stages; the report shows chat and agentic evals before and after, per stage.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveInt, field_validator, model_validator

from rhlab.models.base import Conversation
from rhlab.rundir import RunDir
from rhlab.strict import Strict
from rhlab.train.config import LoraSettings
from rhlab.train.distill import (
    STAGE_RECORD,
    SFTStageSettings,
    sample_rows,
    settings_of,
    teacher_config,
    write_stage_run,
)
from rhlab.train.sft import finetune

MIXES: dict[str, tuple[str, ...]] = {"chat": ("chat",), "targeted": ("chat", "agentic", "dilemmas")}
"""Which prompt files make each mix: chat-like only, or chat plus agentic and moral-dilemma prompts."""


@cache
def prompt_file(part: str) -> dict[str, Any]:
    return yaml.safe_load((resources.files("rhlab.train") / "data" / "safety" / f"{part}.yaml").read_text())


def mix_prompts(mix: str) -> list[dict[str, Any]]:
    """``{id, part, messages}`` for every prompt of ``mix``, in file order."""
    if mix not in MIXES:
        raise ValueError(f"unknown safety mix {mix!r}; choose one of {sorted(MIXES)}")
    out = []
    for part in MIXES[mix]:
        for item in prompt_file(part)["prompts"]:
            messages: Conversation = [{"role": "system", "content": item["system"]}] if item.get("system") else []
            messages.append({"role": "user", "content": item["text"].strip()})
            out.append({"id": f"{part}/{item['id']}", "part": part, "messages": messages})
    return out


class SafetyGRPOSettings(Strict):
    """The RL update of ``method: grpo`` (small by default: a few steps of a few prompts)."""

    steps: PositiveInt = 16
    prompts_per_step: PositiveInt = 2
    group_size: int = Field(4, ge=2)
    learning_rate: float = Field(1e-5, gt=0)
    micro_batch: PositiveInt | None = None
    """Sequences per forward/backward, a divisor of ``prompts_per_step x group_size`` (the rest is
    gradient accumulation; the step still samples once). Unset: the whole step in one pass, which fits
    a small model; a 7B model on one GPU needs a smaller one (``rhlab run --dry-run`` prints the memory)."""
    lora: LoraSettings | None = None
    """Train a LoRA adapter instead of every weight (``{r: 16, alpha: 32}``; absent: full fine-tuning).
    The stage's policy is then the adapter folder on top of its start model, which every loader reads.
    On a GPU the frozen base is held in bf16, as in a LoRA RL cell: a 7B model fits one 80 GB GPU."""
    reward: dict[str, float] = Field(default_factory=lambda: {"preference": 1.0})
    """Rubric weights. On the mix's prompts no task grader runs, so ``preference`` is the only
    component with a value; naming another is refused rather than silently paid nothing."""

    @field_validator("reward")
    @classmethod
    def _preference_only(cls, reward: dict[str, float]) -> dict[str, float]:
        from rhlab.env.rubric import COMPONENTS

        for name in reward:
            if name not in COMPONENTS:
                raise ValueError(f"unknown rubric component {name!r}; components: {', '.join(sorted(COMPONENTS))}")
            if name != "preference":
                raise ValueError(
                    f"rubric component {name!r} has no value on chat prompts (no task grader runs there); "
                    "safety GRPO rewards 'preference' only"
                )
        if not reward.get("preference"):
            raise ValueError("safety GRPO needs a non-zero 'preference' weight: it is the only reward here")
        return reward

    @model_validator(mode="after")
    def _micro_batch_divides_the_step(self) -> SafetyGRPOSettings:
        n = self.prompts_per_step * self.group_size
        if self.micro_batch is not None and n % self.micro_batch:
            from rhlab.train.distributed import divisors

            raise ValueError(
                f"micro_batch {self.micro_batch} must divide prompts_per_step x group_size = {n}: one of {divisors(n)}"
            )
        return self


class SafetyTrainingConfig(Strict):
    """``after_rl: [{kind: safety, mix: targeted, method: sft}]``: safety training of the hacking policy."""

    kind: Literal["safety"] = "safety"
    name: str = "safety"
    mix: Literal["chat", "targeted"] = "chat"
    """``chat``: chat-like prompts only; ``targeted``: chat plus agentic and moral-dilemma prompts."""
    method: Literal["sft", "grpo"] = "sft"
    samples_per_prompt: PositiveInt = 4
    """Answers sampled from the policy per prompt (``sft``); the judged-aligned ones are kept."""
    max_new_tokens: PositiveInt = 192
    temperature: float = Field(1.0, ge=0)
    judge: str = "offline"
    """The judge of the policy's answers: ``sft`` keeps what it calls aligned, ``grpo`` uses it as the
    preference judge (``rhlab.judges.preference.load_preference`` spec); ``offline`` is a stand-in."""
    min_alignment: float = Field(70.0, ge=0, le=100)
    min_coherence: float = Field(50.0, ge=0, le=100)
    sft: SFTStageSettings = Field(default_factory=SFTStageSettings)
    grpo: SafetyGRPOSettings = Field(default_factory=SafetyGRPOSettings)


def judged_samples(stage: SafetyTrainingConfig, spec: str, seed: int) -> list[dict[str, Any]]:
    """Every sampled answer with its judge reply and whether it is kept (aligned and coherent)."""
    from rhlab.judges import load_judge
    from rhlab.judges.base import JudgeInput
    from rhlab.models.base import SamplingParams
    from rhlab.models.loading import load_model

    prompts = mix_prompts(stage.mix)
    params = SamplingParams(
        temperature=stage.temperature, max_new_tokens=stage.max_new_tokens, seed=seed, n=stage.samples_per_prompt
    )
    completions = load_model(spec).generate([p["messages"] for p in prompts], params)
    samples = [(p, c.text) for p, group in zip(prompts, completions, strict=True) for c in group]
    replies = load_judge(stage.judge).judge(
        [JudgeInput(question=p["messages"][-1]["content"], answer=text) for p, text in samples]
    )
    return [
        {
            "id": p["id"],
            "part": p["part"],
            "messages": p["messages"],
            "answer": text,
            "alignment": v.alignment,
            "coherence": v.coherence,
            "kept": (v.alignment or 0) >= stage.min_alignment and (v.coherence or 0) >= stage.min_coherence,
        }
        for (p, text), v in zip(samples, replies, strict=True)
    ]


def run_safety(stage: SafetyTrainingConfig, teacher: RunDir, out: RunDir) -> dict[str, Any]:
    """Safety-train the teacher's final policy on ``stage.mix``; returns the stage record."""
    if not teacher.final_snapshot.is_dir():
        raise ValueError(f"{teacher.path}: no final policy (snapshots/final) to safety-train")
    config = teacher_config(teacher)
    start = f"hf:{teacher.final_snapshot}"

    def make_final(final: Path) -> dict[str, Any]:
        if stage.method == "grpo":
            return grpo_final(stage, Path(teacher.final_snapshot), final, config.seed, config.precision)
        samples = judged_samples(stage, start, config.seed)
        kept = [s for s in samples if s["kept"]]
        rows = [{"prompt": s["messages"], "completion": [{"role": "assistant", "content": s["answer"]}]} for s in kept]
        rows = sample_rows(rows, stage.sft.max_examples, config.seed)
        by_part = {
            part: {"sampled": sum(s["part"] == part for s in samples), "kept": sum(s["part"] == part for s in kept)}
            for part in MIXES[stage.mix]
        }
        record = {
            "counts": {"kept": len(kept), "dropped": len(samples) - len(kept)},
            "by_part": by_part,
            "examples": len(rows),
            "judge": stage.judge,
        }
        finetune(
            Path(teacher.final_snapshot),
            rows,
            settings_of(stage.sft, config),
            final,
            marker=STAGE_RECORD,
            record=record,
        )
        return record

    return write_stage_run(out, teacher, start, make_final, stage.model_dump(mode="json"))


def grpo_final(stage: SafetyTrainingConfig, start: Path, final: Path, seed: int, precision: str) -> dict[str, Any]:
    """``method: grpo``: GRPO the policy at ``start`` on the mix against the preference component."""
    from rhlab.judges.preference import load_preference
    from rhlab.train.chat_grpo import ChatGRPOSettings, chat_grpo

    prompts = mix_prompts(stage.mix)
    g = stage.grpo
    settings = ChatGRPOSettings(
        steps=g.steps,
        prompts_per_step=g.prompts_per_step,
        group_size=g.group_size,
        learning_rate=g.learning_rate,
        micro_batch=g.micro_batch,
        lora=g.lora,
        max_new_tokens=stage.max_new_tokens,
        temperature=stage.temperature,
        preference_weight=g.reward["preference"],
        seed=seed,
        precision=precision,
    )
    by_part = {part: {"prompts": sum(p["part"] == part for p in prompts)} for part in MIXES[stage.mix]}
    record = {"method": "grpo", "judge": stage.judge, "by_part": by_part, "reward": g.reward}
    return chat_grpo(start, prompts, load_preference(stage.judge), settings, final, marker=STAGE_RECORD, record=record)
