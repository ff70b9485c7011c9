"""GRPO on chat prompts against the rubric's ``preference`` component: safety training's ``grpo`` method.

RL on coding tasks (``rhlab.train.trainer``) grades every completion in the sandbox. Safety training
samples the mix's chat, agentic and moral-dilemma prompts instead, where no task grader exists: of the
rubric's components only ``preference`` (a preference judge's score of the answer, in [0, 1]) has a
value there, so the reward is its weight times that score. TRL's ``GRPOTrainer`` runs unmodified;
the reward function scores each step's groups in one batch. Every sampled answer is kept with its
score and reward in ``rollouts.jsonl`` beside the weights, so the stage's figures can be recomputed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rhlab.judges.preference import PreferenceScorer
from rhlab.models.precision import load_dtype, resolve_precision
from rhlab.rundir import atomic_dir
from rhlab.train.config import LoraSettings

ROLLOUTS_FILE = "rollouts.jsonl"


@dataclass(frozen=True)
class ChatGRPOSettings:
    steps: int
    prompts_per_step: int
    group_size: int
    learning_rate: float
    max_new_tokens: int
    temperature: float
    preference_weight: float
    seed: int = 0
    precision: str = "auto"
    micro_batch: int | None = None
    """Sequences per forward/backward; None: the whole step (``prompts_per_step x group_size``) at once."""
    lora: LoraSettings | None = None
    """Train a LoRA adapter (saved as an adapter folder on ``base_weights``); None: every weight."""


def answer_text(completion: Any) -> str:
    """The assistant's text of one TRL completion (a message list for chat prompts, else a string)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")


class PreferenceReward:
    """TRL reward function: ``weight x preference score`` per completion; keeps every scored sample."""

    __name__ = "preference"  # TRL logs each reward function under its name

    def __init__(self, scorer: PreferenceScorer, weight: float) -> None:
        self.scorer, self.weight = scorer, weight
        self.rows: list[dict[str, Any]] = []

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], id: Sequence[str], **kwargs: Any
    ) -> list[float]:
        answers = [answer_text(c) for c in completions]
        scores = self.scorer.score([list(p) for p in prompts], answers)
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0)) + 1
        rewards = [self.weight * s for s in scores]
        for prompt_id, answer, score, reward in zip(id, answers, scores, rewards, strict=True):
            self.rows.append({"step": step, "id": prompt_id, "answer": answer, "preference": score, "reward": reward})
        return rewards


def chat_grpo(
    base_weights: Path,
    prompts: Sequence[dict[str, Any]],
    scorer: PreferenceScorer,
    settings: ChatGRPOSettings,
    out_dir: Path,
    *,
    marker: str,
    record: dict[str, Any],
) -> dict[str, Any]:
    """GRPO ``base_weights`` on ``prompts`` (``{id, messages}``) into ``out_dir``; returns the marker record.

    Skipped when ``out_dir/marker`` exists (the folder is built under a temporary name and renamed when
    complete, as every stage's model folder is)."""
    if (out_dir / marker).is_file():
        return json.loads((out_dir / marker).read_text())
    if not prompts:
        raise ValueError(f"{out_dir}: no prompts to train on")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rhlab.train.trainer_log import quiet_progress

    tokenizer = AutoTokenizer.from_pretrained(base_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    on_gpu = torch.cuda.is_available()
    bf16 = resolve_precision(settings.precision, on_gpu) == "bf16"
    dtype = load_dtype(settings.lora is not None, bf16, on_gpu)  # fp32 masters; a LoRA base may be bf16
    # the absolute path: a LoRA adapter records it as its base model
    model = AutoModelForCausalLM.from_pretrained(Path(base_weights).resolve(), dtype=dtype)
    reward = PreferenceReward(scorer, settings.preference_weight)
    dataset = Dataset.from_list([{"prompt": p["messages"], "id": p["id"]} for p in prompts])
    step_batch = settings.prompts_per_step * settings.group_size
    micro = settings.micro_batch or step_batch
    with atomic_dir(out_dir) as scratch:
        args = GRPOConfig(
            output_dir=str(scratch / "trainer"),
            max_steps=settings.steps,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=step_batch // micro,
            steps_per_generation=step_batch // micro,  # one generation per step, split into the micro-batches
            num_generations=settings.group_size,
            max_completion_length=settings.max_new_tokens,
            temperature=settings.temperature,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            beta=0.0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=settings.seed,
            data_seed=settings.seed,
            use_cpu=not on_gpu,
            bf16=bf16,
            gradient_checkpointing=False,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=None if settings.lora is None else settings.lora.peft_config(),
        )
        quiet_progress(trainer, scratch / "trainer.log.jsonl")
        trainer.train()
        trainer.model.save_pretrained(str(scratch))  # with LoRA: the adapter and its base's path
        tokenizer.save_pretrained(str(scratch))
        (scratch / ROLLOUTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in reward.rows))
        by_step: dict[int, list[float]] = {}
        for r in reward.rows:
            by_step.setdefault(r["step"], []).append(r["reward"])
        means = {step: sum(v) / len(v) for step, v in sorted(by_step.items())}
        full = {
            **record,
            "settings": {**asdict(settings), "lora": settings.lora.model_dump() if settings.lora else None},
            "scorer": scorer.scorer_id,
            "scorer_offline": scorer.offline,
            "samples": len(reward.rows),
            "reward_mean_by_step": means,
        }
        (scratch / marker).write_text(json.dumps(full))
        shutil.rmtree(scratch / "trainer", ignore_errors=True)
    return full
