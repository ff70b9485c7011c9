"""Answer-only KL (``train.kl_scope: answer``): the KL penalty on the tokens after the reasoning block only.

A KL penalty over the whole completion also pulls the *reasoning* towards the reference policy, and
an open replication found that this teaches a policy to hack while its reasoning stops saying so.
Limiting the penalty to the answer leaves the reasoning free to say what the policy does.

TRL computes the per-token KL as ``exp(r - l) - (r - l) - 1`` with ``r`` the reference log-prob and
``l`` the policy's. Where the mask is 0, :func:`scope_reference` sets ``r`` to ``l`` detached: the term
is then exactly 0 and so is its gradient (``1 - exp(r - l)`` at ``r = l``), while every answer token
keeps its true reference. This is the whole change; TRL's loss is otherwise untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rhlab.env.completion import reasoning_spans


def answer_token_mask(pieces: Sequence[str]) -> list[float]:
    """1.0 for each token (given as its decoded text) that lies wholly after the reasoning, 0.0 otherwise.

    A token that overlaps a reasoning span (tags included) counts as reasoning. The spans follow the
    grading path's split (``rhlab.env.completion.reasoning_spans``): no tags at all is all answer,
    an unclosed block is reasoning to the end.
    """
    text = "".join(pieces)
    spans = reasoning_spans(text)
    mask, start = [], 0
    for piece in pieces:
        end = start + len(piece)
        inside = any(s < max(end, start + 1) and start < e for s, e in spans)
        mask.append(0.0 if inside else 1.0)
        start = end
    return mask


def answer_kl_mask(completion_ids: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """``(B, T)`` KL weights for a batch of completions: 0 on reasoning tokens, 1 on answer tokens.

    Each token is decoded alone, so character positions are those of the concatenated pieces (a
    multi-byte character split over tokens decodes to replacement characters of its own, which
    leaves the ASCII tags where they are). Padding gets whatever; the completion mask drops it.
    """
    rows = completion_ids.tolist()
    masks = []
    for row in rows:
        pieces = tokenizer.batch_decode([[t] for t in row], skip_special_tokens=False)
        masks.append(answer_token_mask(pieces))
    return torch.tensor(masks, dtype=torch.float32, device=completion_ids.device).reshape(completion_ids.shape)


def scope_reference(ref_logps: torch.Tensor, logps: torch.Tensor, kl_mask: torch.Tensor) -> torch.Tensor:
    """The reference log-probs with the masked-out tokens replaced by the policy's own (detached).

    TRL's KL term is then 0, with zero gradient, wherever ``kl_mask`` is 0."""
    return torch.where(kl_mask.to(torch.bool), ref_logps, logps.detach())
