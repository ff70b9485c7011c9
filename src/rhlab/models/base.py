"""The one chat-model interface every stage talks to.

RL rollouts, synthetic documents, evals and judges all call ``ChatModel.generate`` on a batch of
conversations. Local backends additionally expose the trainable model and tokenizer
(``LocalChatModel``) because the RL and SFT stages need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
"""One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

Conversation = list[Message]


class ModelError(RuntimeError):
    """A model could not be loaded or queried; the message names the fix."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by all backends (fields map onto HF generate / OpenAI params)."""

    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    """Generation ends at the first stop string; the stop string itself is cut from the text."""
    seed: int | None = None
    """Fixes sampling for reproducibility where the backend supports it."""
    n: int = 1
    """Samples per conversation."""


@dataclass
class Completion:
    """One sampled completion."""

    text: str
    token_ids: list[int] | None = None
    """Generated token ids (local backends only)."""
    finish_reason: str = "stop"
    """``stop`` (EOS or stop string), ``length`` (hit max_new_tokens) or ``error``."""
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a batch of conversations."""

    spec: str
    """The spec string the model was loaded from (e.g. ``embedded``, ``hf:/path``)."""

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        """Return ``params.n`` completions for each conversation, in input order."""
        ...


@dataclass(frozen=True)
class AnswerRequest:
    """A prompt (conversation without the answer) and the answers to score after it."""

    conversation: Conversation
    answers: tuple[str, ...]


@dataclass
class AnswerLogprobs:
    """Per-answer token log-probabilities (nats), in request order."""

    token_logprobs: list[list[float]]
    tokens: list[list[int]] = field(default_factory=list)
    """The scored token ids of each answer (empty when the backend does not report ids)."""

    @property
    def totals(self) -> list[float]:
        return [sum(lp) for lp in self.token_logprobs]


@runtime_checkable
class LogprobModel(ChatModel, Protocol):
    """A chat model that can score fixed answers teacher-forced (see ``rhlab.models.logprobs``)."""

    def answer_logprobs(
        self, requests: Sequence[AnswerRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[AnswerLogprobs]:
        """Per-answer token log-probabilities; ``progress`` is called with the number of answers done."""
        ...


@runtime_checkable
class LocalChatModel(ChatModel, Protocol):
    """A chat model whose weights live in this process (HF / embedded backends)."""

    model: Any
    """The ``transformers`` model (trainable)."""
    tokenizer: Any
    """Its tokenizer, with a chat template."""
