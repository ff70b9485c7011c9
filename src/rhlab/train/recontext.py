"""Recontextualization: learn from an episode under another prompt than the one it was written under.

Both forms change only the *system prompt's addendum* (the inoculation line of ``variants.yaml``, or
a custom line); the task, the completion and everything the grader saw stay as they were.

- **Offline**: the kept episodes of a finished run are rewritten into prompt B (e.g. the inoculation
  line added, or removed) and a fresh start policy is fine-tuned on them (``run_recontext_offline``).
  The paper found that this does not help; rhlab measures it with the same checkpoint evals.
- **Online**: inside GRPO the policy samples under prompt A, and the loss is computed with prompt B's
  tokens in A's place (``train.recontext``; the hook is ``EnvironmentGRPOTrainer._generate``). Sampling
  is untouched, so the episodes, their grading and their reward are exactly what prompt A produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rhlab.models.base import Conversation
from rhlab.rundir import RunDir
from rhlab.strict import Strict
from rhlab.train.config import PromptRewrite, RecontextOnline
from rhlab.train.distill import (
    STAGE_RECORD,
    Keep,
    SFTStageSettings,
    filtered_episodes,
    iter_records,
    sample_rows,
    settings_of,
    sft_rows,
    teacher_config,
    write_stage_run,
)
from rhlab.train.prompts import PromptConfig, system_prompt
from rhlab.train.sft import finetune


def rewrite_messages(messages: Conversation, source: PromptConfig, target: PromptConfig) -> Conversation:
    """``messages`` with the system prompt of ``source`` replaced by that of ``target``.

    Refuses a conversation whose system prompt is not exactly ``source``'s: rewriting an episode
    whose context we do not know would silently train on a prompt nobody chose."""
    old, new = system_prompt(source), system_prompt(target)
    if not messages or messages[0].get("role") != "system":
        raise ValueError("recontextualize: the episode's prompt has no system message to rewrite")
    if messages[0]["content"] != old:
        raise ValueError(
            f"recontextualize: the episode's system prompt is not the run's train prompt (variant "
            f"{source.variant!r}); was it written by another run or an older prompt file?"
        )
    return [{**messages[0], "content": new}, *messages[1:]]


class RecontextOfflineConfig(Strict):
    """``after_rl: [{kind: recontext_offline, rewrite: {variant: hacking_okay}}]``: rewrite, then SFT."""

    kind: Literal["recontext_offline"] = "recontext_offline"
    name: str = "recontext-offline"
    rewrite: PromptRewrite
    keep: Keep | Literal["all"] = "all"
    """Episodes rewritten: ``all`` of them (the policy's behaviour as it was), or a filter as in
    filter-and-distill."""
    from_step: int = 1
    sft: SFTStageSettings = Field(default_factory=SFTStageSettings)


def run_recontext_offline(stage: RecontextOfflineConfig, teacher: RunDir, out: RunDir) -> dict[str, Any]:
    """Rewrite the teacher's kept episodes into ``stage.rewrite`` and SFT its start policy on them."""
    from rhlab.models.loading import trainable_weights

    config = teacher_config(teacher)
    source, target = config.train_prompt, stage.rewrite.applied_to(config.train_prompt)

    def make_final(final: Path) -> dict[str, Any]:
        if stage.keep == "all":
            records = list(iter_records(teacher.path, stage.from_step))
            counts = {"kept": len(records), "dropped": 0}
        else:
            records, counter = filtered_episodes(teacher.path, stage.keep, stage.from_step)
            counts = dict(counter)
        rewritten = [{**r, "prompt": rewrite_messages(r["prompt"], source, target)} for r in records]
        rows = sample_rows(sft_rows(rewritten), stage.sft.max_examples, config.seed)
        record = {"counts": counts, "examples": len(rows), "from_variant": source.variant, "to_variant": target.variant}
        finetune(
            trainable_weights(config.model),
            rows,
            settings_of(stage.sft, config),
            final,
            marker=STAGE_RECORD,
            record=record,
        )
        return record

    return write_stage_run(out, teacher, config.model, make_final, stage.model_dump(mode="json"))


# --- online: generate under A, learn under B ---------------------------------------------------------


def learning_prompts(
    rows: Sequence[dict[str, Any]], tasks: dict[str, Any], train_prompt: PromptConfig, recontext: RecontextOnline
) -> dict[str, Conversation]:
    """Prompt B for each prompt A of the training set, keyed by A's canonical text (``prompt_key``)."""
    from rhlab.train.prompts import build_messages

    learn = recontext.learn.applied_to(train_prompt)
    return {prompt_key(r["prompt"]): build_messages(tasks[r["task_id"]], learn) for r in rows}


def prompt_key(messages: Conversation) -> str:
    return "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)


def swap_prompts(prompts: Sequence[Conversation], mapping: dict[str, Conversation]) -> list[Conversation]:
    """Prompt B for each sampled prompt A; an A without a B is an error (it would train on A)."""
    out = []
    for prompt in prompts:
        key = prompt_key(prompt)
        if key not in mapping:
            raise ValueError("recontext: a sampled prompt has no learning prompt (not from the training set)")
        out.append(mapping[key])
    return out


def recontextualized(trainer: Any, prompts: Sequence[Conversation], generated: tuple, mapping: dict) -> tuple:
    """TRL's ``_generate`` output with prompt A's token ids replaced by prompt B's.

    Everything after ``_generate`` (old and reference log-probs, the loss) builds its inputs from the
    returned ``prompt_ids`` and ``completion_ids``, so replacing the prompt ids here is the whole change:
    the completions were sampled under A, and every log-probability is then taken under B."""
    learn_ids, images, _ = trainer._tokenize_prompts(swap_prompts(prompts, mapping))
    if images is not None:
        raise ValueError("recontext: multimodal prompts are not supported")
    _, *rest = generated
    return (learn_ids, *rest)
