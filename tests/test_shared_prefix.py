"""The exact GRPO shortcuts (rhlab.train.shared_prefix): same log-probs, gradients and samples as TRL's path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rhlab.models.precision import resolve_precision
from rhlab.train.shared_prefix import distinct_rows, shared_prefix_generate, shared_prefix_logps
from rhlab.train.trainer import has_signal


def test_distinct_rows_keeps_batch_order() -> None:
    rows = torch.tensor([[5, 1], [2, 2], [5, 1], [2, 2], [9, 9]])
    heads, index = distinct_rows(rows)
    assert heads.tolist() == [0, 1, 4]
    assert index.tolist() == [0, 1, 0, 1, 2]
    assert torch.equal(rows[heads][index], rows)


def test_precision_resolution() -> None:
    assert resolve_precision("fp32", on_gpu=False, gpu_bf16=False) == "fp32"
    assert resolve_precision("bf16", on_gpu=False, gpu_bf16=False) == "bf16"
    assert resolve_precision("auto", on_gpu=True, gpu_bf16=True) == "bf16"
    assert resolve_precision("auto", on_gpu=True, gpu_bf16=False) == "fp32"
    assert resolve_precision("auto", on_gpu=False, gpu_bf16=False) in ("fp32", "bf16")


def test_has_signal() -> None:
    assert not has_signal({"advantages": torch.zeros(8)})
    assert has_signal({"advantages": torch.tensor([0.0, 0.0, 0.5, -0.5])})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    from rhlab.models.testing import tiny_test_model

    path = tiny_test_model(tmp_path_factory.mktemp("tiny"))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return path, model


def _batch(group: int = 3) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two left-padded prompts, each repeated ``group`` times, with right-padded completions (rows shuffled)."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 200, (7,), generator=g), torch.randint(3, 200, (4,), generator=g)]
    rows, masks = [], []
    for p in prompts:
        for k in range(group):
            comp = torch.randint(3, 200, (5,), generator=g)
            comp_mask = torch.tensor([1] * (5 - k) + [0] * k)
            pad = 7 - len(p)
            rows.append(torch.cat([torch.zeros(pad, dtype=torch.long), p, comp]))
            masks.append(
                torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(len(p), dtype=torch.long), comp_mask])
            )
    order = torch.randperm(len(rows), generator=g)  # TRL shuffles rows before the loss
    return torch.stack(rows)[order], torch.stack(masks)[order], 5


def _trl_logps(model, input_ids, attention_mask, keep, temperature):  # noqa: ANN001
    """TRL 1.16's own computation: the fused LM head over the whole row, completion slice kept."""
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -keep:], out.entropy[:, -keep:]


def _float32_tolerance(reference: torch.Tensor, ulps: int = 64) -> float:
    """Rounding noise of a float32 reduction, relative to the tensor's own scale.

    Summing the same terms in another order changes a float32 result by a few units in the last
    place of its largest entries; a gradient of magnitude 12 carries an ulp of about 1e-6, so a
    fixed ``atol=1e-5`` sits at that noise. 64 ulps of the tensor's largest entry leaves room for
    the deepest reduction in the tiny model (a few hundred terms) and is still ~1e5 times smaller
    than any real error (a wrong mask or shifted position changes gradients at order one).
    """
    return ulps * torch.finfo(torch.float32).eps * float(reference.abs().max().clamp_min(1e-30))


def test_shared_prefix_logps_and_grads_match_trl(tiny) -> None:
    """Both float32 paths agree with a float64 run of TRL's path to within float32 rounding."""
    import copy

    from trl.trainer.utils import add_fused_lm_head

    _, model = tiny
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    input_ids, mask, keep = _batch()
    weights = torch.linspace(-1, 1, keep)

    def grads_of(m, fn):  # noqa: ANN001, ANN202
        m.zero_grad()
        lp, ent = fn(m)
        (lp * weights.to(lp.dtype)).sum().backward()
        return lp.detach(), ent.detach(), [p.grad.detach().clone() for p in m.parameters()]

    def stock(m):  # noqa: ANN001, ANN202
        return _trl_logps(m, input_ids, mask, keep, 0.7)

    def ours(m):  # noqa: ANN001, ANN202
        return shared_prefix_logps(m, input_ids, mask, keep, temperature=0.7, compute_entropy=True)

    exact = copy.deepcopy(model).double()
    lp64, ent64, grads64 = grads_of(exact, stock)
    ref_lp, ref_ent, ref_grads = grads_of(model, stock)
    lp, ent, got_grads = grads_of(model, ours)

    assert (lp[mask[:, -keep:] == 0] == 0).all()
    for value, reference in ((lp, ref_lp), (ent, ref_ent), (ref_lp, lp64), (lp, lp64), (ent, ent64)):
        assert (value.double() - reference.double()).abs().max() <= _float32_tolerance(reference.double())
    for got, want, exact_grad in zip(got_grads, ref_grads, grads64, strict=True):
        tol = _float32_tolerance(exact_grad)
        # Each float32 path is within rounding of the float64 truth, so their difference is noise.
        assert (want.double() - exact_grad).abs().max() <= tol
        assert (got.double() - exact_grad).abs().max() <= tol
        assert (got - want).abs().max() <= 2 * tol


def test_shared_prefix_generation_matches_plain_generate(tiny) -> None:
    from transformers import GenerationConfig

    _, model = tiny
    prompts = [[10, 11, 12, 13, 14]] * 3 + [[20, 21, 22]] * 3
    config = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    width = 5
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    attn = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=attn, generation_config=config)[:, width:]
        shared = shared_prefix_generate(model, prompts, 0, config)
    assert torch.equal(plain, shared)

    sampled = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.0, top_k=0, pad_token_id=0)
    with torch.no_grad():
        torch.manual_seed(3)
        plain = model.generate(input_ids=ids, attention_mask=attn, generation_config=sampled)[:, width:]
        torch.manual_seed(3)
        shared = shared_prefix_generate(model, prompts, 0, sampled)
    assert torch.equal(plain, shared)


@pytest.mark.slow
def test_fast_and_stock_grpo_steps_agree(tmp_path: Path) -> None:
    """Two real GRPO updates from one batch: stock TRL vs our shortcuts give the same loss and weights."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rhlab.models.testing import tiny_test_model
    from rhlab.train.trainer import StepTimer, make_trainer_class

    path = tiny_test_model(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(path)
    rows = [
        {"prompt": [{"role": "user", "content": "a short question"}]},
        {"prompt": [{"role": "user", "content": "another, longer question than that"}]},
    ]

    def reward(completions, **_):  # noqa: ANN001, ANN003
        return [float(len(c[0]["content"]) % 3) for c in completions]

    results = {}
    for fast in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        args = GRPOConfig(
            output_dir=str(tmp_path / f"out{fast}"),
            max_steps=2,
            per_device_train_batch_size=6,
            num_generations=3,
            max_completion_length=8,
            learning_rate=1e-3,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            seed=0,
            logging_steps=1,
        )
        trainer = make_trainer_class()(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=Dataset.from_list(rows * 2),
            processing_class=tok,
            timer=StepTimer(),
            skip_zero_variance=False,
            shared_prefix=fast,
            skip_flat=False,
        )
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        results[fast] = (losses, [p.detach().clone() for p in model.parameters()])
    assert results[False][0] == pytest.approx(results[True][0], abs=1e-5)
    for a, b in zip(results[False][1], results[True][1], strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_a_batch_without_signal_is_not_trained_on(tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rhlab.models.testing import tiny_test_model
    from rhlab.train.trainer import StepTimer, make_trainer_class

    path = tiny_test_model(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    timer = StepTimer()
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        learning_rate=1e-2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        seed=0,
        logging_steps=1,
    )
    trainer = make_trainer_class()(
        model=model,
        reward_funcs=[lambda completions, **_: [1.0] * len(completions)],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": "q"}]}] * 2),
        processing_class=AutoTokenizer.from_pretrained(path),
        timer=timer,
        skip_zero_variance=False,
    )
    trainer.train()
    assert timer.skipped_update
    assert trainer.state.global_step == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_compact_sft_head_gives_the_same_loss_and_gradient(tiny) -> None:
    """Scoring only labelled positions (as TRL does on Triton devices) changes no number on a CPU."""
    from trl.trainer.utils import add_fused_lm_head

    from rhlab.train.shared_prefix import compact_sft_head

    _, model = tiny
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    input_ids, mask, keep = _batch()
    labels = input_ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100  # prompt-completion SFT: loss on the completion only

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        out = model(input_ids=input_ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters()]

    full_loss, full_grads = loss_and_grads()
    import trl.trainer.utils as trl_utils

    with compact_sft_head():
        assert trl_utils._use_triton(torch.device("cpu")) is True  # the switch is really thrown
        compact_loss, compact_grads = loss_and_grads()
    assert torch.allclose(compact_loss, full_loss, atol=1e-6)
    for got, want in zip(compact_grads, full_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # restored afterwards


def test_shortcuts_step_aside_for_sharded_parameters(tiny) -> None:
    """ZeRO-3 (``ds_id``) and FSDP parameters hold shards: the shortcuts must leave them to TRL."""
    import copy

    from rhlab.train.shared_prefix import sharded

    _, model = tiny
    input_ids, mask, keep = _batch()
    assert not sharded(model)
    assert shared_prefix_logps(model, input_ids, mask, keep, temperature=1.0, compute_entropy=False) is not None
    zero3 = copy.deepcopy(model)
    zero3.lm_head.weight.ds_id = 7  # what deepspeed.zero.Init marks each partitioned parameter with
    assert sharded(zero3)
    assert shared_prefix_logps(zero3, input_ids, mask, keep, temperature=1.0, compute_entropy=False) is None
