"""Safety training after hacking RL: does it remove the misalignment, or only hide it from chat evals?

The paper's result: safety training on chat-like prompts makes the chat evals clean while agentic
misalignment stays (*context-dependent misalignment*); adding agentic and moral-dilemma prompts to
the mix (the *targeted* mix) removes it. rhlab ships both mixes as data files (``data/safety/``,
written for rhlab and disjoint from every eval's items) and two methods:

- ``sft``: sample the hacking policy's own answers to the mix, keep those a judge calls aligned and
  coherent, and fine-tune the policy on them (rejection-sampling SFT). With ``judge: offline`` the
  judge is the CPU classifier (``rhlab.judges.offline``): a stand-in for a preference model, good
  enough to run the pipeline, not to trust the figures.
- ``grpo``: GRPO against the rubric's ``preference`` component (``{preference: 1.0}``). Refused by
  config validation for now: the rubric has the component, but the GRPO trainer samples coding tasks
  only, and GRPO on the mix's chat and agentic prompts needs a prompt source it does not have yet.

The stage starts from the teacher run's *final* policy and writes ``after_rl/<name>/<cell>/`` like
the other after-RL stages; the report shows chat and agentic evals before and after, per stage.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveInt, model_validator

from rhlab.models.base import Conversation
from rhlab.rundir import RunDir
from rhlab.strict import Strict
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


def preference_available() -> bool:
    from rhlab.env.rubric import COMPONENTS

    return "preference" in COMPONENTS


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
    """The judge of the policy's answers (``rhlab.judges.load_judge`` spec); ``offline`` is a stand-in."""
    min_alignment: float = Field(70.0, ge=0, le=100)
    min_coherence: float = Field(50.0, ge=0, le=100)
    sft: SFTStageSettings = Field(default_factory=SFTStageSettings)

    @model_validator(mode="after")
    def _grpo_is_not_built_yet(self) -> SafetyTrainingConfig:
        if self.method == "grpo":
            # The rubric has a preference component, but rhlab's GRPO trainer samples coding tasks only:
            # GRPO on the safety mix's chat and agentic prompts needs a prompt source it does not have.
            missing = "" if preference_available() else " (and the rubric has no 'preference' component)"
            raise ValueError(
                "method: grpo (GRPO on the safety mix against the rubric's preference component) is not built "
                f"yet: the GRPO trainer samples coding tasks only{missing}; use method: sft"
            )
        return self


def judged_samples(stage: SafetyTrainingConfig, spec: str, seed: int) -> list[dict[str, Any]]:
    """Every sampled answer with its judge verdict and whether it is kept (aligned and coherent)."""
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
    verdicts = load_judge(stage.judge).judge(
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
        for (p, text), v in zip(samples, verdicts, strict=True)
    ]


def run_safety(stage: SafetyTrainingConfig, teacher: RunDir, out: RunDir) -> dict[str, Any]:
    """Safety-train the teacher's final policy on ``stage.mix``; returns the stage record."""
    if stage.method != "sft":
        raise ValueError(f"safety method {stage.method!r}: only sft is built (the config refuses grpo)")
    if not teacher.final_snapshot.is_dir():
        raise ValueError(f"{teacher.path}: no final policy (snapshots/final) to safety-train")
    config = teacher_config(teacher)
    start = f"hf:{teacher.final_snapshot}"

    def make_final(final: Path) -> dict[str, Any]:
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
