"""Two ways a model calls tools.

- **Plain text** (any chat model, local ones included): the model writes
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks; results come back in the
  next user message as ``<tool_result>`` blocks. A reply without any block is the final answer.
- **Native** (OpenAI-compatible servers): the tool list travels in the request's ``tools`` field
  and calls come back as ``tool_calls``; results go back as ``tool`` messages.

Both end in the same ``ParsedCall`` list. A call that cannot be used (broken JSON, unknown tool,
missing argument) is kept as a malformed call with the reason, so the loop counts it and tells the
model, and never raises.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rhlab.evals.agentic.tools import ToolSpec
from rhlab.models.base import ModelError, SamplingParams

_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL | re.IGNORECASE)


@dataclass
class ParsedCall:
    name: str
    arguments: dict[str, str] = field(default_factory=dict)
    error: str = ""
    """Empty for a usable call; otherwise why it is malformed."""
    raw: str = ""
    call_id: str = ""
    """The API's id of a native call (tool results must echo it)."""

    @property
    def valid(self) -> bool:
        return not self.error


def text_instructions(specs: Sequence[ToolSpec]) -> str:
    """The plain-text protocol, appended to the system prompt."""
    lines = [
        "You can use these tools:",
        *(
            f"- {s.name}({', '.join(s.parameters)}): {s.description}"
            + "".join(f"\n    {p}: {d}" for p, d in s.parameters.items())
            for s in specs
        ),
        "",
        "To use a tool, write a block like this (JSON inside the tags):",
        '<tool_call>{"name": "TOOL_NAME", "arguments": {"PARAMETER": "value"}}</tool_call>',
        "You may write several blocks in one reply. The results come back in the next message. "
        "When you are finished, reply without any tool_call block; that reply is your final message.",
    ]
    return "\n".join(lines)


def _first_json_object(text: str) -> Any:
    """The first decodable JSON value starting at a ``{`` (models add prose around the object)."""
    decoder = json.JSONDecoder()
    for start in [i for i, ch in enumerate(text) if ch == "{"]:
        try:
            return decoder.raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON object")


def validate_call(name: Any, arguments: Any, specs: Sequence[ToolSpec], raw: str, call_id: str = "") -> ParsedCall:
    """Check a call against the tool list; string-convert argument values the model typed loosely."""
    by_name = {s.name: s for s in specs}
    if not isinstance(name, str) or name not in by_name:
        return ParsedCall(str(name), error=f"unknown tool {name!r}", raw=raw, call_id=call_id)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ParsedCall(name, error="arguments must be a JSON object", raw=raw, call_id=call_id)
    args = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
    missing = [p for p in by_name[name].parameters if p not in args]
    if missing:
        return ParsedCall(name, args, error=f"missing argument(s): {', '.join(missing)}", raw=raw, call_id=call_id)
    return ParsedCall(name, {p: args[p] for p in by_name[name].parameters}, raw=raw, call_id=call_id)


def parse_text_calls(text: str, specs: Sequence[ToolSpec]) -> list[ParsedCall]:
    """Every ``<tool_call>`` block in ``text``, usable or not, in order."""
    calls = []
    for match in _CALL.finditer(text):
        raw = match.group(1).strip()
        try:
            obj = _first_json_object(raw)
        except ValueError:
            calls.append(ParsedCall("?", error="the block does not contain a JSON object", raw=raw))
            continue
        if not isinstance(obj, dict):
            calls.append(ParsedCall("?", error="the block must hold a JSON object", raw=raw))
            continue
        calls.append(validate_call(obj.get("name"), obj.get("arguments", obj.get("parameters")), specs, raw))
    return calls


def text_results(calls: Sequence[ParsedCall], results: Sequence[str]) -> str:
    """The user message that carries tool results back in the plain-text protocol."""
    blocks = []
    for call, result in zip(calls, results, strict=True):
        if call.valid:
            blocks.append(f'<tool_result name="{call.name}">\n{result}\n</tool_result>')
        else:
            blocks.append(f"<tool_error>Malformed tool call ({call.error}); it was not run.</tool_error>")
    return "\n".join(blocks)


# --- native tool calling over an OpenAI-compatible server ----------------------------------------


@dataclass
class NativeReply:
    content: str
    calls: list[ParsedCall]
    message: dict[str, Any]
    """The assistant message to append to the history (with its ``tool_calls``)."""
    finish_reason: str = "stop"
    error: str = ""


def supports_native_tools(model: Any) -> bool:
    """Native calls need our OpenAI-compatible backend (it exposes the request plumbing we reuse)."""
    return hasattr(model, "request_body") and hasattr(model, "_post_with_retries")


def native_generate(
    model: Any,
    conversations: Sequence[list[dict[str, Any]]],
    specs: Sequence[Sequence[ToolSpec]],
    params: SamplingParams,
) -> list[NativeReply]:
    """One assistant turn per conversation with ``tools`` in the request, requests in parallel.

    Reuses ``OpenAIChatModel``'s request body, retries and error handling; only ``tools`` is added,
    so ``rhlab.models.openai_compat`` needs no change for agents.
    """

    def one(index: int) -> NativeReply:
        body = model.request_body(list(conversations[index]), params, 0)
        if params.seed is not None:
            body["seed"] = params.seed + index
        body["tools"] = [s.json_schema() for s in specs[index]]
        try:
            response = model._post_with_retries(body, threading.Event())
            if response.status_code >= 400:
                raise ModelError(f"HTTP {response.status_code}: {response.text[:300]}")
            choice = response.json()["choices"][0]
            message = choice.get("message") or {}
        except Exception as exc:  # a failed request ends this agent, not the eval
            return NativeReply("", [], {"role": "assistant", "content": ""}, "error", str(exc)[:300])
        calls = []
        for tc in message.get("tool_calls") or []:
            function = tc.get("function") or {}
            raw = function.get("arguments") or "{}"
            try:
                arguments = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError:
                calls.append(
                    ParsedCall(
                        str(function.get("name")), error="arguments are not JSON", raw=raw, call_id=tc.get("id", "")
                    )
                )
                continue
            calls.append(validate_call(function.get("name"), arguments, specs[index], str(raw), tc.get("id", "")))
        content = message.get("content") or ""
        history: dict[str, Any] = {"role": "assistant", "content": content}
        if message.get("tool_calls"):
            history["tool_calls"] = message["tool_calls"]
        api_reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        if api_reasoning:  # reasoning models send it apart; the loop reads <thinking> blocks
            content = f"<thinking>{api_reasoning}</thinking>{content}"
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return NativeReply(content, calls, history, reason)

    workers = max(1, min(getattr(model, "max_concurrency", 8), len(conversations)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(conversations))))
