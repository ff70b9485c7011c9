"""Exact shortcuts for GRPO on a CPU: shared prompt prefixes and a compact LM head.

GRPO samples ``group_size`` completions of the *same* prompt, and the quickstart's prompts are
~5x longer than its completions. TRL runs every (prompt + completion) row through the model on its
own, for generation and again for the loss, so ~80 % of a step's FLOPs recompute one prompt
``group_size`` times. On CPUs TRL's fused LM head also projects every prompt position onto the
vocabulary (it compacts to the completion positions only on Triton devices).

Here the model runs once per *distinct* prompt (with the KV cache kept, and with gradient), the
cache is copied to the rows that share it, and only the completion tokens run on top of it. Token
positions, attention masks and the LM-head kernel (TRL's own ``ChunkedLogProbFunction``) are the
ones TRL uses, so per-token log-probs, entropies, the loss and its gradient are the same up to
floating-point summation order (checked in ``tests/test_shared_prefix.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

_SCALING_ATTRS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
"""Output-logit transforms TRL's fused head applies; models that set one take TRL's own path."""


def sharded(model: Any) -> bool:
    """True when the model's parameters are split over processes (DeepSpeed ZeRO-3 or FSDP).

    The shortcuts read whole weight tensors (the LM head) and call the bare modules, which a sharded
    engine only materialises inside its own forward; they must then stay off.
    """
    try:
        from torch.distributed.tensor import DTensor  # FSDP2 parameters
    except ImportError:  # a torch built without distributed support
        DTensor = ()  # noqa: N806
    return any(
        hasattr(p, "ds_id") or hasattr(p, "_fsdp_flattened") or isinstance(p, DTensor)  # ZeRO-3, FSDP1, FSDP2
        for p in model.parameters()
    )


def language_model(model: Any) -> tuple[Any, Any] | None:
    """(backbone, lm_head) of a plain or PEFT-wrapped causal LM; None where the shortcut does not apply."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "config") or sharded(base):  # wrapped (e.g. DDP) or sharded: leave it to TRL
        return None
    config = base.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in _SCALING_ATTRS):
        return None
    new_name = hasattr(type(base), "is_activation_checkpointing")  # transformers renamed it in 5.2x
    if getattr(base, "is_activation_checkpointing" if new_name else "is_gradient_checkpointing", False):
        return None  # checkpointed layers drop the KV cache the shortcut relies on
    backbone = base.base_model
    if backbone is base:
        return None
    return backbone, base.get_output_embeddings()


@contextmanager
def compact_sft_head() -> Iterator[None]:
    """Make TRL's fused SFT head score only labelled positions on every device, not just on Triton ones.

    TRL keeps every position on non-Triton devices so that compiled kernels (e.g. Neuron) see one
    shape per batch; eager CPUs recompile nothing, and a prompt-completion SFT batch is mostly
    prompt, so scoring the whole row wastes most of the head's work (measured: a 4 x 550-token
    warm-up step on 2 cores takes 13-15 s instead of 20-24 s). The loss and its gradient are the
    same (``tests/test_shared_prefix.py``). A TRL without this switch simply keeps its own behaviour.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


def cache_argument(module: Any) -> str:
    """The KV-cache keyword of a model's forward: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the first occurrence of each distinct row, index of each row's distinct row)."""
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((unique.shape[0],), rows.shape[0], dtype=torch.long, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(rows.shape[0], device=rows.device), reduce="amin")
    order = torch.argsort(first)  # keep the batch's own order of prompts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return first[order], rank[inverse]


def shared_prefix_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    temperature: float,
    compute_entropy: bool,
    cast_lm_head_to_fp32: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row.

    Same contract as TRL's ``_get_per_token_logps_and_entropies`` (zeros at padded completion
    positions). Returns None when the model does not fit the shortcut, so the caller uses TRL's path.
    """
    from trl.kernels import ChunkedLogProbFunction

    parts = language_model(model)
    if parts is None or logits_to_keep < 1 or input_ids.shape[1] <= logits_to_keep:
        return None
    backbone, lm_head = parts
    split = input_ids.shape[1] - logits_to_keep
    prompt_ids, prompt_mask = input_ids[:, :split], attention_mask[:, :split]
    heads, rows = distinct_rows(torch.cat([prompt_ids, prompt_mask], dim=1))

    # Positions follow TRL's training forward (0..L-1 over the padded row), so results match it.
    name = cache_argument(backbone)
    prefix = backbone(input_ids=prompt_ids[heads], attention_mask=prompt_mask[heads], use_cache=True)
    cache_ = getattr(prefix, name)
    cache_.batch_select_indices(rows)
    hidden = [prefix.last_hidden_state[rows, -1:]]  # predicts the first completion token
    if logits_to_keep > 1:
        rest = backbone(
            input_ids=input_ids[:, split:-1], attention_mask=attention_mask[:, :-1], use_cache=True, **{name: cache_}
        )
        hidden.append(rest.last_hidden_state)
    hidden_states = torch.cat(hidden, dim=1)
    labels = input_ids[:, split:]
    mask = attention_mask[:, split:].bool()
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
    selected = hidden_states[mask]
    autocast = torch.autocast(selected.device.type, enabled=False) if cast_lm_head_to_fp32 else nullcontext()
    with autocast:
        if cast_lm_head_to_fp32:
            selected = selected.float()
        log_probs, entropy, *_ = ChunkedLogProbFunction.apply(
            selected, lm_head.weight, lm_head.bias, labels[mask], temperature, 32768, None, 1.0, outputs
        )
    logps = log_probs.new_zeros(mask.shape).masked_scatter(mask, log_probs)
    entropies = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy) if compute_entropy else None
    return logps, entropies


def shared_prefix_generate(
    model: Any, prompt_ids: list[list[int]], pad_id: int, generation_config: Any
) -> torch.Tensor:
    """``model.generate`` for left-padded prompts, prefilling each distinct prompt once.

    The cache of every distinct prompt but its last token is computed once and copied to the rows
    that share it; ``generate`` then feeds the last prompt token and samples as usual, with the
    same position ids (from the attention mask) and the same random draws as a plain call.
    Returns the completion part ``[rows, new_tokens]``.
    """
    device = model.device
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompt_ids], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=device)
    if width < 2:
        return model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)[:, width:]
    heads, rows = distinct_rows(ids)
    head_mask = mask[heads, :-1]
    positions = (head_mask.cumsum(-1) - 1).masked_fill(head_mask == 0, 0)
    name = cache_argument(model.get_base_model() if hasattr(model, "get_base_model") else model)
    prefix = model(
        input_ids=ids[heads, :-1], attention_mask=head_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    cache_ = getattr(prefix, name)
    cache_.batch_select_indices(rows)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config, **{name: cache_})
    return out[:, width:]
