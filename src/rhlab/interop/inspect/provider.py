"""``--model rhlab/SPEC``: any Inspect task on an rhlab model (``rhlab/embedded``, ``rhlab/hf:PATH``, ...).

Everything after ``rhlab/`` is an rhlab model spec (``rhlab.models.load_model``); ``-M key=value``
model args go to the backend as its options. Inspect sends one conversation per ``generate``
call, many at once; local rhlab backends are fastest on batches, so concurrent calls with the same
sampling settings are gathered into one batched ``ChatModel.generate`` (up to ``batch_size``).

What it gives: text completions, ``stop_reason`` (``stop`` / ``max_tokens``), token usage where the
backend reports ids, and, for local backends, ``prompt_logprobs`` (teacher-forced log-probs of the
prompt tokens, the probe battery's measurement). What it does not: native tool calling (a task
with tools is refused with that reason) and per-token output log-probs.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import anyio
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from rhlab.models.base import ChatModel, Completion, Conversation, SamplingParams

DEFAULT_MAX_TOKENS = 512
"""Inspect leaves ``max_tokens`` to the provider when a task does not set it."""


@functools.cache
def _load(spec: str, options: tuple[tuple[str, Any], ...]) -> ChatModel:
    from rhlab.models import load_model

    return load_model(spec, **dict(options))


def conversation(messages: list[ChatMessage]) -> Conversation:
    """Inspect chat messages as an rhlab conversation (text only)."""
    out: Conversation = []
    for message in messages:
        if message.role not in ("system", "user", "assistant"):
            raise ValueError(
                f"rhlab models take system, user and assistant messages only, not {message.role!r} "
                "(the rhlab provider has no native tool calling)"
            )
        out.append({"role": message.role, "content": message.text})
    return out


def sampling_params(config: GenerateConfig) -> SamplingParams:
    """Inspect's generate config as rhlab sampling settings (unset fields keep rhlab's defaults)."""
    defaults = SamplingParams()
    return SamplingParams(
        temperature=defaults.temperature if config.temperature is None else config.temperature,
        top_p=defaults.top_p if config.top_p is None else config.top_p,
        max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
        stop=tuple(config.stop_seqs or ()),
        seed=config.seed,
    )


def prompt_token_logprobs(model: Any, conv: Conversation) -> list[Logprob]:
    """Teacher-forced log-prob of every prompt token after the first (a local backend's forward pass).

    A final assistant message is the answer being scored: the prompt ends with its text and then the
    template's end-of-turn marker, so the last tokens are the answer *and stopping*, as in
    ``rhlab.evals.probes.score.score_items`` (an answer that is a prefix of a likelier longer one
    does not score as that one).
    """
    import torch

    from rhlab.evals.probes.score import end_of_turn

    tokenizer = model.tokenizer
    text = model.render(conv)
    if conv and conv[-1]["role"] == "assistant":
        text += end_of_turn(model)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model.model(ids.to(model.device)).logits[0, :-1].float()
    picked = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:].to(logits.device)[:, None])[:, 0]
    tokens = ids[0, 1:].tolist()
    return [Logprob(token=tokenizer.decode([t]), logprob=float(lp)) for t, lp in zip(tokens, picked.tolist())]


@dataclass(eq=False)
class _Request:
    conv: Conversation
    params: SamplingParams
    done: asyncio.Future = field(repr=False)


class RhlabModelAPI(ModelAPI):
    """An Inspect model API over one rhlab ``ChatModel`` (loaded once per spec and options)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),
        batch_size: int = 16,
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, [], config)
        self.model = _load(model_name, tuple(sorted(model_args.items())))
        self.batch_size = int(batch_size)
        self._pending: list[_Request] = []
        self._runner: asyncio.Task | None = None
        self._lock = threading.Lock()  # a local model runs one batch at a time

    def max_connections(self) -> int:
        # Enough concurrent calls to fill a batch.
        return self.batch_size

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise ValueError(
                f"rhlab/{self.model_name}: the rhlab provider has no native tool calling; "
                "run agentic tasks with `rhlab eval` (text tool protocol) or an openai-compatible server"
            )
        conv = conversation(input)
        prompt_logprobs = None
        if config.prompt_logprobs:
            prompt_logprobs = await anyio.to_thread.run_sync(self._prompt_logprobs, conv)
            if conv and conv[-1]["role"] == "assistant":
                # A scoring call: the prefilled answer is what was asked about, nothing to sample.
                return self._output(Completion(text="", finish_reason="length"), prompt_logprobs)
        completion = await self._generate(conv, sampling_params(config))
        return self._output(completion, prompt_logprobs)

    def _prompt_logprobs(self, conv: Conversation) -> Logprobs:
        if not (hasattr(self.model, "model") and hasattr(self.model, "render")):
            raise ValueError(f"rhlab/{self.model_name}: prompt log-probs need a local backend (embedded, hf:PATH)")
        with self._lock:
            return Logprobs(content=prompt_token_logprobs(self.model, conv))

    async def _generate(self, conv: Conversation, params: SamplingParams) -> Completion:
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(conv, params, done))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        """Run pending requests in batches of equal sampling settings until none is left."""
        while self._pending:
            await asyncio.sleep(0.01)  # let the calls Inspect started together all arrive
            params = self._pending[0].params
            batch = [r for r in self._pending if r.params == params][: self.batch_size]
            taken = {id(r) for r in batch}
            self._pending = [r for r in self._pending if id(r) not in taken]
            try:
                outputs = await anyio.to_thread.run_sync(self._generate_batch, [r.conv for r in batch], params)
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for r in batch:
                    if not r.done.done():
                        r.done.set_exception(exc)
                continue
            for r, completions in zip(batch, outputs, strict=True):
                if not r.done.done():
                    r.done.set_result(completions[0])

    def _generate_batch(self, convs: list[Conversation], params: SamplingParams) -> list[list[Completion]]:
        with self._lock:
            return self.model.generate(convs, params)

    def _output(self, completion: Completion, prompt_logprobs: Logprobs | None) -> ModelOutput:
        if completion.finish_reason == "error":
            raise RuntimeError(f"rhlab/{self.model_name}: {completion.error or 'generation failed'}")
        n_out = len(completion.token_ids) if completion.token_ids is not None else 0
        n_in = len(prompt_logprobs.content) + 1 if prompt_logprobs is not None else 0
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content=completion.text, model=self.model_name, source="generate"),
                    stop_reason="max_tokens" if completion.finish_reason == "length" else "stop",
                    prompt_logprobs=prompt_logprobs,
                )
            ],
            usage=ModelUsage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        )
