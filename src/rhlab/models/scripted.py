"""A scripted model for tests and demos: answers come from a list or a function, not weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rhlab.models.base import Completion, Conversation, SamplingParams

Responder = Callable[[Conversation, int], str]


@dataclass
class ScriptedModel:
    """Replies by cycling through ``replies`` or by calling ``responder(conversation, sample_index)``.

    Lets every stage (envs, evals, judges) be tested end to end without loading a model.
    """

    replies: Sequence[str] = ()
    responder: Responder | None = None
    spec: str = "scripted"
    calls: list[Conversation] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    """Conversations per ``generate`` call, so tests can check that callers batch."""
    _cursor: int = 0

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        self.batch_sizes.append(len(conversations))
        for conv in conversations:
            self.calls.append(conv)
            samples = []
            for i in range(params.n):
                if self.responder is not None:
                    text = self.responder(conv, i)
                elif self.replies:
                    text = self.replies[self._cursor % len(self.replies)]
                    self._cursor += 1
                else:
                    text = ""
                for stop in params.stop:
                    if stop in text:
                        text = text[: text.index(stop)]
                samples.append(Completion(text=text))
            out.append(samples)
        return out
