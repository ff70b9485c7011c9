"""Teacher-forced log-probabilities of fixed answers: the primitive behind the probe battery.

A request is one chat prompt and one or more candidate answers. Every backend returns, per answer,
the log-probability of each answer token given everything before it. Two details matter:

* **The token boundary.** The answer's tokens are the suffix of ``tokenize(prompt + answer)`` after
  its longest common prefix with ``tokenize(prompt)``. When BPE merges the prompt's last characters
  with the answer's first ones, the merged token belongs to the answer. All answers of one request
  are scored from the *same* position (the smallest such prefix), so their log-probabilities
  condition on identical context and their difference is a proper log-odds.
* **Only answer positions reach the LM head, and the prompt runs once.** The prompt is encoded
  once with ``logits_to_keep=1``; its KV cache is copied to each answer, whose tokens then run
  after it. Logits thus exist for answer positions only (Gemma's 262k vocabulary would otherwise
  cost gigabytes per batch), and batches shrink when the vocabulary is large (``LOGITS_BUDGET``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rhlab.models.base import AnswerLogprobs, AnswerRequest, Conversation, ModelError


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def split_answers(tokenizer: Any, prompt_text: str, answers: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """Shared context ids and each answer's continuation ids (see the module note on boundaries)."""
    if not answers:
        raise ModelError("An answer-scoring request has no answers.")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    fulls = [tokenizer(prompt_text + a, add_special_tokens=False)["input_ids"] for a in answers]
    start = min(common_prefix_length(prompt_ids, f) for f in fulls)
    start = min([start, *(len(f) - 1 for f in fulls)])
    if start < 1:
        raise ModelError("An answer-scoring prompt renders to no tokens before the answer: nothing to condition on.")
    context = fulls[0][:start]
    if any(f[:start] != context for f in fulls):  # pragma: no cover - implied by the common prefix
        raise ModelError("Answers of one request tokenise their shared prompt differently.")
    return context, [f[start:] for f in fulls]


def render_prompt(tokenizer: Any, conversation: Conversation) -> str:
    """The chat-template text of ``conversation`` ending where the assistant's answer begins."""
    return tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)


LOGITS_BUDGET = 2**27
"""Most logits (floats) one forward pass may materialise: 512 MB in float32, whatever the vocabulary."""


def _pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _picked(logits: Any, targets: Any) -> Any:
    """log softmax(logits)[target] without materialising the full log-softmax."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def grouped_logprobs(
    model: Any,
    groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    *,
    pad_id: int,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[list[list[float]]]:
    """log p(token | everything before it) for every continuation of every (context, continuations) group.

    Each context runs once (left-padded, explicit position ids, LM head on its last position only);
    its KV cache is then copied to each of its continuations, which run right-padded after it. So
    the shared prompt is not recomputed per answer, and logits exist only for answer positions.
    """
    import torch

    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    order = sorted(range(len(groups)), key=lambda i: len(groups[i][0]) + max(map(len, groups[i][1])))
    out: list[list[list[float]]] = [[] for _ in groups]
    start = 0
    while start < len(order):
        longest = max(max(map(len, groups[i][1])) * len(groups[i][1]) for i in order[start : start + batch_size])
        size = max(1, min(batch_size, LOGITS_BUDGET // max(1, vocab * longest)))
        chunk = order[start : start + size]
        start += size
        ctx_ids, ctx_mask = _pad_left([groups[i][0] for i in chunk], pad_id)
        owner = [b for b, i in enumerate(chunk) for _ in groups[i][1]]
        conts = [c for i in chunk for c in groups[i][1]]
        cont_ids, cont_mask = _pad_right(conts, pad_id)
        owner_t = torch.tensor(owner, dtype=torch.long)
        with torch.inference_mode():
            first = model(
                input_ids=ctx_ids.to(device),
                attention_mask=ctx_mask.to(device),
                position_ids=(ctx_mask.cumsum(-1) - 1).clamp(min=0).to(device),
                use_cache=True,
                logits_to_keep=1,
            )
            # transformers >= 5.2x names the KV cache ``cache``; earlier releases ``past_key_values``.
            cache_name = "cache" if getattr(first, "cache", None) is not None else "past_key_values"
            cache = getattr(first, cache_name)
            cache.batch_select_indices(owner_t.to(device))
            lengths = ctx_mask.sum(-1)[owner_t]
            rest = model(
                input_ids=cont_ids.to(device),
                attention_mask=torch.cat([ctx_mask[owner_t], cont_mask], dim=1).to(device),
                position_ids=(lengths[:, None] + torch.arange(cont_ids.shape[1])[None]).to(device),
                use_cache=True,
                **{cache_name: cache},
            )
            # Token 0 of a continuation is predicted by its context's last position, token j by position j-1.
            head = _picked(first.logits[owner_t.to(device), -1], cont_ids[:, 0].to(device))
            tail = _picked(rest.logits[:, :-1], cont_ids[:, 1:].to(device)) if cont_ids.shape[1] > 1 else None
        k = 0
        for i in chunk:
            rows = []
            for cont in groups[i][1]:
                values = [head[k].item()]
                if len(cont) > 1:
                    values += tail[k, : len(cont) - 1].tolist()
                rows.append(values)
                k += 1
            out[i] = rows
        if progress is not None:
            progress(len(conts))
    return out


def local_answer_logprobs(
    model: Any,
    tokenizer: Any,
    requests: Sequence[AnswerRequest],
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[AnswerLogprobs]:
    """Score ``requests`` on an in-process ``transformers`` model (the ``hf:``/``embedded`` path)."""
    groups = [split_answers(tokenizer, render_prompt(tokenizer, r.conversation), r.answers) for r in requests]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = grouped_logprobs(model, groups, pad_id=pad_id, batch_size=batch_size, progress=progress)
    return [AnswerLogprobs(rows, [list(c) for c in conts]) for rows, (_, conts) in zip(scores, groups)]
