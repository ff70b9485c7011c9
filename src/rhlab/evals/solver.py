"""How the model acts: batched generation of every eval sample, split into reasoning and answer.

All samples of all requested evals go through ``ChatModel.generate`` in batches of many
conversations, which is what makes local backends fast (one padded forward pass per batch) and lets
API backends fan requests out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from rhlab.evals.records import EvalSample, SampleRecord
from rhlab.models.base import ChatModel, Conversation, SamplingParams


def build_conversation(sample: EvalSample, system_prompt: str, ask_reasoning: bool) -> Conversation:
    """System prompt (if any), the question, and the standard request for private reasoning."""
    from rhlab.models.reasoning import with_thinking_instruction

    conv: Conversation = [{"role": "system", "content": system_prompt}] if system_prompt else []
    conv.append({"role": "user", "content": sample.question})
    return with_thinking_instruction(conv) if ask_reasoning else conv


def generate_records(
    model: ChatModel,
    samples: Sequence[EvalSample],
    params: SamplingParams,
    *,
    system_prompt: str = "",
    ask_reasoning: bool = True,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> list[SampleRecord]:
    """One record per sample, in input order; each batch gets its own seed so repeats differ."""
    from rhlab.models.reasoning import split_reasoning

    convs = [build_conversation(s, system_prompt, ask_reasoning) for s in samples]
    records: list[SampleRecord] = []
    for start in range(0, len(convs), batch_size):
        batch_params = replace(params, n=1, seed=None if params.seed is None else params.seed + start)
        outputs = model.generate(convs[start : start + batch_size], batch_params)
        for sample, completions in zip(samples[start : start + batch_size], outputs, strict=True):
            completion = completions[0]
            reasoning, answer = split_reasoning(completion.text) if ask_reasoning else ("", completion.text.strip())
            records.append(
                SampleRecord(
                    sample_id=sample.sample_id,
                    eval=sample.eval,
                    question_id=sample.question_id,
                    category=sample.category,
                    question=sample.question,
                    sample_index=sample.sample_index,
                    system_prompt=system_prompt,
                    completion=completion.text,
                    reasoning=reasoning,
                    answer=answer,
                    finish_reason=completion.finish_reason,
                )
            )
        if progress is not None:
            progress(len(records), len(convs))
    return records
