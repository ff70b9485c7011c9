"""``train.micro_batch``: a step split into micro-batches has the loss and gradient of the whole step.

The trainer's generation is replaced by one fixed, already-scored batch (4 prompt groups of 3, two
groups with zero reward variance), so each run sees the same episodes; TRL's own shuffle, split,
loss normalisation and accumulation then do the rest, as in a real step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rhlab.train.config import TrainConfig

GROUP = 3
GROUPS = 4
PROMPT, COMPLETION = 7, 5


def _float32_tolerance(reference: torch.Tensor, ulps: int = 64) -> float:
    """Rounding noise of a float32 reduction relative to the tensor's scale (as in test_shared_prefix.py)."""
    return ulps * torch.finfo(torch.float32).eps * float(reference.abs().max().clamp_min(1e-30))


def _generation_batch(flat_groups: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """What TRL's ``_generate_and_score_completions`` returns: groups contiguous, prompts left-padded."""
    g = torch.Generator().manual_seed(0)
    prompt_ids, prompt_mask, completion_ids, completion_mask, advantages = [], [], [], [], []
    for group in range(GROUPS):
        length = PROMPT - group
        prompt = torch.randint(3, 200, (length,), generator=g)
        for k in range(GROUP):
            prompt_ids.append(torch.cat([torch.zeros(PROMPT - length, dtype=torch.long), prompt]))
            prompt_mask.append(torch.tensor([0] * (PROMPT - length) + [1] * length))
            completion_ids.append(torch.randint(3, 200, (COMPLETION,), generator=g))
            completion_mask.append(torch.tensor([1] * (COMPLETION - k) + [0] * k))
            advantages.append(0.0 if group in flat_groups else float(k - 1))
    mask = torch.stack(completion_mask)
    return {
        "prompt_ids": torch.stack(prompt_ids),
        "prompt_mask": torch.stack(prompt_mask),
        "completion_ids": torch.stack(completion_ids),
        "completion_mask": mask,
        "advantages": torch.tensor(advantages),
        "num_items_in_batch": mask.sum(),
    }


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rhlab.models.testing import tiny_test_model

    return tiny_test_model(tmp_path_factory.mktemp("tiny"))


def _step(path: Path, tmp: Path, micro: int, batch: dict, *, shared_prefix: bool, drop: bool, dtype=torch.float32):  # noqa: ANN001, ANN202
    """One step's summed loss and accumulated gradients, split into ``micro``-row micro-batches."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rhlab.train.trainer import StepTimer, make_trainer_class

    accumulation = GROUP * GROUPS // micro
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(dtype)
    args = GRPOConfig(
        output_dir=str(tmp / f"out{micro}"),
        max_steps=1,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_generations=GROUP,
        max_completion_length=COMPLETION,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
    )
    rows = [{"prompt": [{"role": "user", "content": "q"}]}] * GROUPS
    timer = StepTimer()
    trainer = make_trainer_class()(
        model=model,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(path),
        timer=timer,
        skip_zero_variance=drop,
        shared_prefix=shared_prefix,
        skip_flat=True,
    )
    original = GRPOTrainer._generate_and_score_completions
    GRPOTrainer._generate_and_score_completions = lambda self, inputs: {k: v.clone() for k, v in batch.items()}
    try:
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = accumulation
        total = torch.zeros((), dtype=torch.float64)
        torch.manual_seed(0)
        for _ in range(accumulation):
            inputs = trainer._prepare_inputs([{}] * micro)
            loss = trainer.compute_loss(trainer.model, inputs)
            loss.backward()
            total += loss.detach().double()
            trainer._step += 1
    finally:
        GRPOTrainer._generate_and_score_completions = original
    grads = [None if p.grad is None else p.grad.detach().double() for p in trainer.model.parameters()]
    return total, grads, timer.skipped_update


@pytest.mark.slow  # ~25 s: 16 trainers on the tiny model
@pytest.mark.parametrize("shared_prefix", [False, True], ids=["trl-path", "shared-prefix"])
@pytest.mark.parametrize("drop", [False, True], ids=["keep-flat-groups", "drop-flat-groups"])
def test_micro_batches_give_the_loss_and_gradient_of_one_batch(tiny_path, tmp_path, shared_prefix, drop) -> None:
    batch = _generation_batch(flat_groups=(1, 3))
    exact, exact_grads, _ = _step(tiny_path, tmp_path, 12, batch, shared_prefix=False, drop=drop, dtype=torch.float64)
    assert exact.abs() > 0 and any(g is not None and g.abs().max() > 0 for g in exact_grads)
    for micro in (12, 2) if shared_prefix else (4,):  # 12: one pass, as the float64 reference
        loss, grads, skipped = _step(tiny_path, tmp_path, micro, batch, shared_prefix=shared_prefix, drop=drop)
        assert not skipped
        assert (loss - exact).abs() <= _float32_tolerance(exact), (micro, float(loss), float(exact))
        for got, want in zip(grads, exact_grads, strict=True):
            assert (got - want).abs().max() <= _float32_tolerance(want), micro


def test_dropping_flat_groups_changes_the_step(tiny_path, tmp_path) -> None:
    """The drop is not a no-op (so the test above can tell a lost drop from a kept one)."""
    batch = _generation_batch(flat_groups=(1, 3))
    kept, _, _ = _step(tiny_path, tmp_path, 4, batch, shared_prefix=True, drop=False)
    dropped, _, _ = _step(tiny_path, tmp_path, 4, batch, shared_prefix=True, drop=True)
    assert (kept - dropped).abs() > 100 * _float32_tolerance(dropped)


def test_a_flat_step_is_skipped_in_every_micro_batch(tiny_path, tmp_path) -> None:
    batch = _generation_batch(flat_groups=tuple(range(GROUPS)))
    for micro in (12, 4):
        loss, grads, skipped = _step(tiny_path, tmp_path, micro, batch, shared_prefix=True, drop=True)
        assert skipped and loss == 0 and all(g is None for g in grads)


def test_micro_batch_must_divide_each_process_share() -> None:
    from rhlab.train import distributed as dist

    config = TrainConfig(prompts_per_step=4, group_size=4, micro_batch=4)
    assert dist.micro_batches(config) == (4, 4)
    assert dist.micro_batches(TrainConfig(prompts_per_step=4, group_size=4)) == (16, 1)
    with pytest.raises(ValueError, match=r"micro_batch 5 must divide the 16 .* \[1, 2, 4, 8, 16\]"):
        dist.micro_batches(TrainConfig(prompts_per_step=4, group_size=4, micro_batch=5))


def test_grpo_args_follow_the_micro_batch(tmp_path) -> None:
    from rhlab.train.trainer import grpo_args

    args = grpo_args(TrainConfig(prompts_per_step=4, group_size=4, micro_batch=2), tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 8)
    assert args.steps_per_generation == 8 and args.generation_batch_size == 16, "one generation per step"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU case")
def test_vllm_without_a_gpu_is_refused_when_the_run_starts(tmp_path) -> None:
    from rhlab.train.trainer import RunError, grpo_args

    with pytest.raises(RunError, match="use_vllm needs a CUDA GPU"):
        grpo_args(TrainConfig(use_vllm=True), tmp_path)
