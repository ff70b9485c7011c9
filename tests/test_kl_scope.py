"""Answer-only KL: reasoning tokens get KL weight 0, answer tokens 1, and the masked KL term is exactly 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rhlab.env.completion import reasoning_spans, split_reasoning
from rhlab.models.testing import byte_level_tokenizer
from rhlab.strict import ConfigError
from rhlab.train.config import parse_config
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
    batch = torch.tensor(
        [ids + [eos], tokenizer("plain", add_special_tokens=False)["input_ids"] + [eos] * (len(ids) - 4)]
    )
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


@pytest.mark.slow
def test_trainer_masks_trls_kl_term_per_token(tmp_path: Path) -> None:
    """Through TRL's own ``_compute_loss``: with zero advantages the loss is the KL term alone, and the
    mask splits it exactly (a mask and its complement add up to the unmasked loss; all-zero gives 0)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rhlab.models.testing import tiny_test_model
    from rhlab.train.trainer import StepTimer, make_trainer_class

    path = tiny_test_model(tmp_path / "tiny")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": "a question"}]}, {"prompt": [{"role": "user", "content": "b"}]}]
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=12,
        beta=0.1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        seed=0,
        logging_steps=1,
    )
    trainer = make_trainer_class()(
        model=model,
        reward_funcs=[lambda completions, **_: [float(i % 2) for i in range(len(completions))]],
        args=args,
        train_dataset=Dataset.from_list(rows * 2),
        processing_class=AutoTokenizer.from_pretrained(path),
        timer=StepTimer(),
        skip_zero_variance=False,
        shared_prefix=False,
        skip_flat=False,
        kl_scope="answer",
    )
    with torch.no_grad():  # move the policy away from the reference so the KL is not zero
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which this test skips
    batch = trainer._generate_and_score_completions([rows[0], rows[0], rows[1], rows[1]])
    assert batch["kl_mask"].shape == batch["completion_ids"].shape
    batch["advantages"] = torch.zeros_like(batch["advantages"])

    def loss(mask: torch.Tensor | None) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "kl_mask"}
        if mask is not None:
            inputs["kl_mask"] = mask
        return trainer._compute_loss(trainer.model, inputs)

    stock = loss(None).item()
    assert stock > 0
    ones = torch.ones_like(batch["kl_mask"])
    half = torch.zeros_like(ones)
    half[:, : half.shape[1] // 2] = 1.0
    assert loss(ones).item() == pytest.approx(stock, rel=1e-6)
    assert loss(half).item() + loss(1 - half).item() == pytest.approx(stock, rel=1e-5)
    assert 0 < loss(half).item() < stock
    trainer.model.zero_grad()
    none = loss(torch.zeros_like(ones))
    assert none.item() == 0.0
    none.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in trainer.model.parameters())
