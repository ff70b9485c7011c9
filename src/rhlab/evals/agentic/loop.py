"""The agent loop: many agents step together, one batched ``generate`` per turn.

Each agent has its own toolbox (a private copy of the scenario's world). Per turn, every agent
still running gets one reply; its tool calls are executed in order and the results go back as the
next message. An agent stops when it replies without a tool call (its final message), when its
backend reports an error, or after ``max_turns`` replies - the bound that keeps the cheap path of
a checkpoint eval quick even for a model that never stops calling tools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rhlab.evals.agentic.protocol import (
    ParsedCall,
    native_generate,
    parse_text_calls,
    supports_native_tools,
    text_instructions,
    text_results,
)
from rhlab.evals.agentic.tools import Toolbox, ToolError
from rhlab.evals.records import ToolCall
from rhlab.models.base import ChatModel, SamplingParams
from rhlab.models.reasoning import split_reasoning, with_thinking_instruction

Protocol = Literal["auto", "text", "native"]


@dataclass(frozen=True)
class AgentOptions:
    """How agentic samples are drawn and run (the runner fills these from ``EvalConfig``)."""

    samples: int | None = None
    """Samples per scenario variant (agentic) or per sabotage eval; None = each eval's default."""
    limit: int | None = None
    """At most this many samples per eval."""
    max_turns: int = 8
    batch_size: int = 32
    protocol: Protocol = "auto"
    system_prompt: str = ""
    """Prepended to each scenario's system prompt (e.g. a persona)."""
    ask_reasoning: bool = True


@dataclass
class AgentTask:
    system: str
    user: str
    toolbox: Toolbox


@dataclass
class AgentRun:
    """What one agent did: the whole conversation and every call, usable or not."""

    messages: list[dict[str, Any]]
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    """Private reasoning of each turn (``<thinking>`` blocks, or the API's reasoning field)."""
    visible: list[str] = field(default_factory=list)
    """What the agent wrote outside reasoning and tool calls, per turn."""
    turns: int = 0
    finish: str = "max_turns"
    """``answered`` (a reply without tool calls), ``max_turns`` or ``error``."""
    error: str = ""

    @property
    def malformed_calls(self) -> int:
        return sum(not c.valid for c in self.tool_calls)

    @property
    def final_message(self) -> str:
        return self.visible[-1] if self.finish == "answered" and self.visible else ""


def resolve_protocol(model: ChatModel, protocol: Protocol) -> Literal["text", "native"]:
    if protocol == "auto":
        return "native" if supports_native_tools(model) else "text"
    if protocol == "native" and not supports_native_tools(model):
        raise ValueError(f"native tool calling needs an openai: model, not {model.spec!r}; use the text protocol")
    return protocol


def _execute(toolbox: Toolbox, call: ParsedCall) -> str:
    if not call.valid:
        return ""
    try:
        return toolbox.call(call.name, call.arguments)
    except ToolError as exc:
        return f"Error: {exc}"
    except Exception as exc:  # a scenario tool bug must not end the whole eval
        return f"Error: {type(exc).__name__}: {exc}"


def run_agents(
    model: ChatModel,
    tasks: Sequence[AgentTask],
    params: SamplingParams,
    options: AgentOptions = AgentOptions(),
    progress: Callable[[str], None] | None = None,
) -> list[AgentRun]:
    """Run every task to its end; reproducible for a seed (each turn and batch derives its own).

    Of ``options`` only ``max_turns``, ``batch_size``, ``protocol`` and ``ask_reasoning`` matter here.
    """
    mode = resolve_protocol(model, options.protocol)
    max_turns, batch_size = options.max_turns, options.batch_size
    runs: list[AgentRun] = []
    for task in tasks:
        system = task.system
        if mode == "text":
            system = f"{system.rstrip()}\n\n{text_instructions(task.toolbox.specs())}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": task.user}]
        runs.append(AgentRun(with_thinking_instruction(messages) if options.ask_reasoning else messages))
    active = list(range(len(tasks)))
    for turn in range(max_turns):
        if not active:
            break
        for start in range(0, len(active), batch_size):
            batch = active[start : start + batch_size]
            seed = None if params.seed is None else params.seed + 100_003 * turn + start
            turn_params = replace(params, n=1, seed=seed)
            if mode == "native":
                replies = native_generate(
                    model, [runs[i].messages for i in batch], [tasks[i].toolbox.specs() for i in batch], turn_params
                )
                for i, reply in zip(batch, replies, strict=True):
                    _native_step(runs[i], tasks[i].toolbox, reply, turn)
            else:
                outputs = model.generate([runs[i].messages for i in batch], turn_params)
                for i, completions in zip(batch, outputs, strict=True):
                    c = completions[0]
                    _text_step(runs[i], tasks[i].toolbox, c.text, c.finish_reason, c.error or "", turn)
        active = [i for i in active if runs[i].finish == "max_turns"]
        if progress is not None:
            progress(f"  agent turn {turn + 1}/{max_turns}: {len(active)} of {len(tasks)} agents still acting")
    return runs


def _record(run: AgentRun, toolbox: Toolbox, calls: list[ParsedCall], turn: int) -> list[str]:
    results = [_execute(toolbox, c) for c in calls]
    for c, result in zip(calls, results, strict=True):
        run.tool_calls.append(
            ToolCall(
                turn=turn, name=c.name, arguments=c.arguments, result=result, valid=c.valid, error=c.error, raw=c.raw
            )
        )
    return results


def _text_step(run: AgentRun, toolbox: Toolbox, text: str, finish_reason: str, error: str, turn: int) -> None:
    run.turns = turn + 1
    run.messages.append({"role": "assistant", "content": text})
    if finish_reason == "error":
        run.finish, run.error = "error", error
        return
    reasoning, answer = split_reasoning(text)
    calls = parse_text_calls(answer, toolbox.specs())
    run.reasoning.append(reasoning)
    run.visible.append(_strip_calls(answer))
    if not calls:
        run.finish = "answered"
        return
    results = _record(run, toolbox, calls, turn)
    run.messages.append({"role": "user", "content": text_results(calls, results)})


def _native_step(run: AgentRun, toolbox: Toolbox, reply: Any, turn: int) -> None:
    run.turns = turn + 1
    run.messages.append(reply.message)
    if reply.finish_reason == "error":
        run.finish, run.error = "error", reply.error
        return
    reasoning, answer = split_reasoning(reply.content)
    run.reasoning.append(reasoning)
    run.visible.append(answer)
    if not reply.calls:
        run.finish = "answered"
        return
    results = _record(run, toolbox, reply.calls, turn)
    for call, result in zip(reply.calls, results, strict=True):
        content = result if call.valid else f"Malformed tool call ({call.error}); it was not run."
        run.messages.append({"role": "tool", "tool_call_id": call.call_id, "content": content})


def _strip_calls(text: str) -> str:
    import re

    return re.sub(r"<tool_call>.*?(?:</tool_call>|$)", "", text, flags=re.DOTALL | re.IGNORECASE).strip()
