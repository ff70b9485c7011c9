"""A completion as the environment sees it: private reasoning, then the answer that gets graded.

Only the answer becomes files in a workspace; the reasoning is kept for transcripts and judges. The
split lives here, below every caller (the reward, the evals, the judges), so the grading path and the
evals take a completion apart the same way.
"""

from __future__ import annotations

import re

THINKING_OPEN = "<thinking>"
THINKING_CLOSE = "</thinking>"

_OPEN = re.compile(r"<\s*thinking\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*thinking\s*>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a completion into ``(reasoning, answer)``, both stripped.

    - ``<thinking>r</thinking>a`` gives ``(r, a)``; text before the opening tag joins the answer.
    - An opened but never closed block is all reasoning and no answer: the model ran out of
      tokens (or never decided) before answering.
    - A closing tag without an opening one treats everything before it as reasoning (models
      that were prefilled with ``<thinking>`` emit only the closing tag).
    - No tags at all: no reasoning, the whole text is the answer.
    - Several blocks: all their reasoning is joined, the rest is the answer.
    """
    reasoning_parts: list[str] = []
    answer_parts: list[str] = []
    rest = text
    first_close = _CLOSE.search(rest)
    first_open = _OPEN.search(rest)
    if first_close and (first_open is None or first_close.start() < first_open.start()):
        reasoning_parts.append(rest[: first_close.start()])
        rest = rest[first_close.end() :]
    while True:
        opened = _OPEN.search(rest)
        if opened is None:
            answer_parts.append(rest)
            break
        answer_parts.append(rest[: opened.start()])
        rest = rest[opened.end() :]
        closed = _CLOSE.search(rest)
        if closed is None:
            reasoning_parts.append(rest)
            break
        reasoning_parts.append(rest[: closed.start()])
        rest = rest[closed.end() :]
    reasoning = "\n\n".join(p.strip() for p in reasoning_parts if p.strip())
    answer = "\n\n".join(p.strip() for p in answer_parts if p.strip())
    return reasoning, answer


def reasoning_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``text`` that are reasoning, tags included.

    The same rules as :func:`split_reasoning`, as positions instead of strings, so code that works on
    tokens (the answer-only KL mask, ``rhlab.train.kl_scope``) draws the line exactly where grading does.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    first_close = _CLOSE.search(text)
    first_open = _OPEN.search(text)
    if first_close and (first_open is None or first_close.start() < first_open.start()):
        spans.append((0, first_close.end()))
        pos = first_close.end()
    while True:
        opened = _OPEN.search(text, pos)
        if opened is None:
            return spans
        closed = _CLOSE.search(text, opened.end())
        if closed is None:
            spans.append((opened.start(), len(text)))
            return spans
        spans.append((opened.start(), closed.end()))
        pos = closed.end()
