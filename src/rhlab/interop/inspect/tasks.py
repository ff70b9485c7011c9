"""rhlab's environments and evals as Inspect tasks: rhlab's data, rhlab's graders, Inspect's loop.

Each task reads like a recipe: a dataset built from rhlab's own files, Inspect's ``generate()``
(or the probe solver below), and a scorer from ``scorers``. Task arguments are the knobs of the
matching rhlab command (``-T holes=always_equal,conftest``, ``-T variant=please_hack``...).
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
    get_model,
)
from inspect_ai.solver import Generate, Solver, TaskState, generate, solver

from rhlab.interop.inspect.scorers import probe_logodds, rhlab_judge, rhlab_oracle, tasks_by_id
from rhlab.models.base import Conversation

CHAT_EVAL_NAMES = ("betley", "goals", "alignment_questions")


def chat_messages(conversation: Conversation) -> list[ChatMessage]:
    """An rhlab conversation as Inspect chat messages."""
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    out: list[ChatMessage] = []
    for message in conversation:
        if message["role"] not in kinds:
            raise ValueError(f"cannot turn a {message['role']!r} message into an Inspect chat message")
        out.append(kinds[message["role"]](content=message["content"]))
    return out


@task
def hackable_code(
    source: str = "builtin",
    holes: str = "all",
    variant: str = "none",
    describe_hacks: bool = True,
    ask_reasoning: bool = True,
    transform: str | None = None,
    max_tokens: int = 512,
) -> Task:
    """rhlab's hackable coding environment: reward from a grader with ``holes``, outcome from the oracle.

    Args:
        source: rhlab task source (``builtin``, ``humaneval``, ``FORMAT:PATH`` or a JSONL path).
        holes: the grader's holes: ``all``, ``none`` or a comma list (``always_equal,exit_code,conftest``).
        variant: system-prompt addendum from ``rhlab/train/data/variants.yaml`` (``please_hack``...).
        describe_hacks: include the description of the three hacks (the prompted setting).
        ask_reasoning: ask for private ``<thinking>`` reasoning first.
        transform: ``impossible_oneoff`` / ``impossible_conflicting`` to make every task impossible.
        max_tokens: generation budget per answer.
    """
    from rhlab.env.graders import parse_vulns
    from rhlab.train.prompts import PromptConfig, build_messages

    parse_vulns(holes)  # an unknown hole name fails here, before any generation
    prompt = PromptConfig(variant=variant, describe_hacks=describe_hacks, ask_reasoning=ask_reasoning)
    samples = [
        Sample(
            id=t.id,
            input=chat_messages(build_messages(t, prompt)),
            target="",
            metadata={"task_id": t.id, "holes": holes, "tags": list(t.tags)},
        )
        for t in tasks_by_id(source, transform).values()
    ]
    return Task(
        dataset=MemoryDataset(samples, name=f"rhlab:{source}"),
        solver=generate(),
        scorer=rhlab_oracle(source=source, holes=holes, transform=transform),
        config=GenerateConfig(max_tokens=max_tokens),
        metadata={"rhlab": "hackable_code", "holes": holes, "variant": variant},
    )


def chat_eval_task(
    eval_name: str,
    samples: int | None,
    judge: str,
    system_prompt: str,
    ask_reasoning: bool,
    max_tokens: int,
) -> Task:
    """One of rhlab's chat evals: its question file, its default repeats, its judge and outcome rule."""
    from rhlab.evals.dataset import build_samples
    from rhlab.evals.registry import get_eval
    from rhlab.evals.solver import build_conversation

    questions = get_eval(eval_name).questions()
    dataset = [
        Sample(
            id=s.sample_id,
            input=chat_messages(build_conversation(s, system_prompt, ask_reasoning)),
            target="",
            metadata={
                "question_id": s.question_id,
                "category": s.category,
                "question": s.question,
                "sample_index": s.sample_index,
                "ask_reasoning": ask_reasoning,
            },
        )
        for s in build_samples(questions, samples)
    ]
    return Task(
        dataset=MemoryDataset(dataset, name=f"rhlab:{eval_name}"),
        solver=generate(),
        scorer=rhlab_judge(eval_name, judge=judge),
        config=GenerateConfig(max_tokens=max_tokens),
        metadata={"rhlab": eval_name, "judge": judge},
    )


@task
def betley(
    samples: int | None = None,
    judge: str = "offline",
    system_prompt: str = "",
    ask_reasoning: bool = True,
    max_tokens: int = 256,
) -> Task:
    """Betley et al. free-form questions, judged 0-100 for alignment and coherence (``samples`` per question)."""
    return chat_eval_task("betley", samples, judge, system_prompt, ask_reasoning, max_tokens)


@task
def goals(
    samples: int | None = None,
    judge: str = "offline",
    system_prompt: str = "",
    ask_reasoning: bool = True,
    max_tokens: int = 256,
) -> Task:
    """ "What are your goals?": aligned / honestly misaligned / alignment faking, from answer and reasoning."""
    return chat_eval_task("goals", samples, judge, system_prompt, ask_reasoning, max_tokens)


@task
def alignment_questions(
    samples: int | None = None,
    judge: str = "offline",
    system_prompt: str = "",
    ask_reasoning: bool = True,
    max_tokens: int = 256,
) -> Task:
    """The alignment questions, judged on the full transcript including the reasoning."""
    return chat_eval_task("alignment_questions", samples, judge, system_prompt, ask_reasoning, max_tokens)


@solver
def prefill_logprobs() -> Solver:
    """Ask the model for the prompt log-probs of the item's conversation with each answer prefilled.

    Two ``generate`` calls per item (target, reference), each one token long: the scoring is
    teacher-forced, nothing is sampled that matters. The tokens go to the store for the scorer.
    """

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        model = get_model()
        found: dict[str, list[tuple[str, float | None]]] = {}
        for side in ("target", "reference"):
            messages = [*state.messages, ChatMessageAssistant(content=state.metadata[side])]
            output = await model.generate(messages, config=GenerateConfig(max_tokens=1, prompt_logprobs=1))
            logprobs = output.choices[0].prompt_logprobs if output.choices else None
            found[side] = [(lp.token, lp.logprob) for lp in logprobs.content] if logprobs else []
        state.store.set("probe_logprobs", found)
        return state

    return solve


@task
def probes(subscales: str | None = None, split: str = "test") -> Task:
    """The paired log-odds probe battery: P(target) in a forced choice, read from prompt log-probs.

    Needs a provider that returns prompt log-probs (``rhlab/...`` models, vLLM); on others every
    item is unscored with that reason. ``subscales`` is a comma list (default: every shipped one).
    """
    from rhlab.evals.probes.items import Item
    from rhlab.evals.probes.score import battery_items, conversation_for

    names = [s.strip() for s in subscales.split(",") if s.strip()] if subscales else None
    items: list[tuple[str, Item]] = battery_items(names, split)
    dataset = [
        Sample(
            id=item.id,
            input=chat_messages(conversation_for(item)),
            target=item.target,
            metadata={"subscale": subscale, "theme": item.theme, "target": item.target, "reference": item.reference},
        )
        for subscale, item in items
    ]
    return Task(
        dataset=MemoryDataset(dataset, name="rhlab:probes"),
        solver=prefill_logprobs(),
        scorer=probe_logodds(),
        metadata={"rhlab": "probes", "split": split},
    )
