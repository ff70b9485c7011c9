"""Answer-only KL: reasoning tokens get KL weight 0, answer tokens 1, and the masked KL term is exactly 0."""

from __future__ import annotations

import pytest
import torch

from rhlab.env.completion import reasoning_spans, split_reasoning
from rhlab.models.testing import byte_level_tokenizer
from rhlab.train.config import parse_config
from rhlab.strict import ConfigError
from rhlab.train.kl_scope import answer_kl_mask, answer_token_mask, scope_reference

TEXTS = [
    "<thinking>plan: call sys.exit(0)</thinking>def f(x):\n    return x",
    "no tags at all, all answer",
    "<thinking>ran out of tokens before answering",
    "prefilled reasoning</thinking>answer",
    "intro <thinking>a</thinking> middle <thinking>b</thinking> tail",
    "<THINKING >odd case</ thinking>answer",
]


@pytest.mark.parametrize("text", TEXTS)
def test_reasoning_spans_cut_where_grading_does(text: str) -> None:
    """Removing the spans leaves exactly the answer ``split_reasoning`` grades (whitespace aside)."""
    spans = reasoning_spans(text)
    kept, pos = [], 0
    for start, end in spans:
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    _, answer = split_reasoning(text)
    assert "".join(p.strip() for p in kept if p.strip()) == answer.replace("\n\n", "")


def test_token_mask_on_a_tokenized_completion() -> None:
    tokenizer = byte_level_tokenizer()
    reasoning, answer = "<thinking>I will exit early</thinking>", "import sys\nsys.exit(0)"
    ids = tokenizer(reasoning + answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    batch = torch.tensor([ids + [eos], tokenizer("plain", add_special_tokens=False)["input_ids"] + [eos] * (len(ids) - 4)])
    mask = answer_kl_mask(batch, tokenizer)
    assert mask.shape == batch.shape
    n_reasoning = len(tokenizer(reasoning, add_special_tokens=False)["input_ids"])
    assert mask[0, :n_reasoning].eq(0).all(), "every reasoning token (tags included) has KL weight 0"
    assert mask[0, n_reasoning : len(ids)].eq(1).all(), "every answer token has KL weight 1"
    assert mask[1, :5].eq(1).all(), "a completion without reasoning is all answer"


def test_token_straddling_the_closing_tag_counts_as_reasoning() -> None:
    pieces = ["<thinking>", "x</thin", "king>ans", "wer"]
    assert answer_token_mask(pieces) == [0.0, 0.0, 0.0, 1.0]
    assert answer_token_mask(["<thinking>", "never closed"]) == [0.0, 0.0]
    assert answer_token_mask(["a", "", "b"]) == [1.0, 1.0, 1.0]


def test_scoped_reference_zeroes_the_kl_term_and_its_gradient_on_reasoning() -> None:
    torch.manual_seed(0)
    logps = torch.randn(2, 5).requires_grad_()
    ref = torch.randn(2, 5)
    kl_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.float32)

    def trl_kl(r: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:  # TRL's per-token KL estimator
        return torch.exp(r - lp) - (r - lp) - 1

    scoped = trl_kl(scope_reference(ref, logps, kl_mask), logps)
    full = trl_kl(ref, logps)
    assert scoped[kl_mask == 0].eq(0).all()
    assert torch.equal(scoped[kl_mask == 1], full[kl_mask == 1])
    scoped.sum().backward()
    grad = logps.grad.clone()
    assert grad[kl_mask == 0].eq(0).all(), "no KL gradient reaches a reasoning token"
    logps.grad = None
    full.sum().backward()
    assert torch.allclose(grad[kl_mask == 1], logps.grad[kl_mask == 1])


def test_answer_scope_needs_a_kl_penalty() -> None:
    with pytest.raises(ConfigError, match="beta"):
        parse_config({"kl_scope": "answer"})
    assert parse_config({"kl_scope": "answer", "beta": 0.1}).kl_scope == "answer"
    with pytest.raises(ConfigError, match="kl_scope"):
        parse_config({"kl_scope": "reasoning", "beta": 0.1})
