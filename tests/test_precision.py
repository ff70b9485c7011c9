"""Learning in bf16: full fine-tuning keeps fp32 master weights, so a tiny update still moves them."""

from __future__ import annotations

import pytest
import torch

from rhlab.strict import ConfigError
from rhlab.train.config import LoraSettings, TrainConfig, parse_config


def test_one_bf16_step_at_lr_1e_6_changes_the_weights(tmp_path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rhlab.models.testing import tiny_test_model
    from rhlab.train.trainer import StepTimer, grpo_args, make_trainer_class, weights_dtype

    path = tiny_test_model(tmp_path / "tiny")
    config = TrainConfig(
        precision="bf16",
        learning_rate=1e-6,
        steps=1,
        prompts_per_step=2,
        group_size=4,
        max_completion_length=8,
        skip_flat_updates=False,
    )
    args = grpo_args(config, tmp_path / "run")
    assert args.bf16, "bf16 compute (autocast)"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=weights_dtype(config, args))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(p.dtype == torch.float32 for p in before.values()), "master weights in fp32"

    def reward(completions, **_):  # noqa: ANN001, ANN003 - varied rewards: every group has signal
        return [float(i % 4) for i in range(len(completions))]

    rows = [{"prompt": [{"role": "user", "content": "a question"}]}, {"prompt": [{"role": "user", "content": "b"}]}]
    trainer = make_trainer_class()(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows * 2),
        processing_class=AutoTokenizer.from_pretrained(path),
        timer=StepTimer(),
        skip_zero_variance=False,
    )
    trainer.train()
    moved = stuck_in_bf16 = total = 0
    for name, param in trainer.model.named_parameters():
        delta = param.detach() - before[name]
        moved += int(delta.ne(0).sum())
        # The same update applied to bf16-stored weights: rounds back to the old value.
        stuck_in_bf16 += int((before[name].bfloat16() + delta.bfloat16()).eq(before[name].bfloat16()).sum())
        total += delta.numel()
    assert moved > total // 2, f"only {moved}/{total} weights moved"
    assert stuck_in_bf16 > 0.9 * total, "the update is below bf16's rounding step (what fp32 masters are for)"


def test_weights_dtype(monkeypatch) -> None:
    from types import SimpleNamespace

    from rhlab.train.trainer import weights_dtype

    bf16 = SimpleNamespace(bf16=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert weights_dtype(TrainConfig(precision="bf16"), bf16) == torch.float32, "full fine-tuning: fp32 masters"
    assert weights_dtype(TrainConfig(precision="bf16", lora=LoraSettings()), bf16) == torch.bfloat16, "frozen base"
    assert weights_dtype(TrainConfig(lora=LoraSettings()), SimpleNamespace(bf16=False)) == torch.float32


def test_the_old_bf16_field_is_refused_with_its_replacement() -> None:
    with pytest.raises(ConfigError, match="precision: bf16"):
        parse_config({"bf16": True})
    with pytest.raises(ConfigError, match="micro_batch"):
        parse_config({"grpo": {"gradient_accumulation_steps": 4}})


def _bf16_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    from rhlab.models.testing import tiny_test_model

    path = tiny_test_model(tmp_path / "tiny")
    AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(torch.bfloat16).save_pretrained(path)
    return path


def _chat_rows(n: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"add {i} and {i}"}],
            "completion": [{"role": "assistant", "content": f"{2 * i}"}],
        }
        for i in range(n)
    ]


def test_sft_trains_a_bf16_checkpoint_as_fp32_masters(tmp_path) -> None:
    """transformers loads a checkpoint in its saved dtype; a bf16 one would round a 1e-6 step away."""
    from safetensors.torch import load_file

    from rhlab.train.sft import SFTSettings, finetune

    base = _bf16_checkpoint(tmp_path)
    before = load_file(base / "model.safetensors")
    assert {t.dtype for t in before.values()} == {torch.bfloat16}
    settings = SFTSettings(steps=1, batch_size=2, learning_rate=1e-6, precision="fp32")
    out = finetune(base, _chat_rows(2), settings, tmp_path / "out", marker="done.json", record={})
    after = load_file(out / "model.safetensors")
    assert {t.dtype for t in after.values()} == {torch.float32}
    moved = sum(int((after[k] != before[k].float()).sum()) for k in before)
    assert moved > sum(t.numel() for t in before.values()) // 2, "the tiny update reached the weights"


def test_sft_in_place_refuses_16_bit_weights(tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rhlab.train.sft import SFTSettings, sft_in_place

    base = _bf16_checkpoint(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(base)  # the saved dtype: bf16
    with pytest.raises(ValueError, match="fp32 master weights.*dtype float32"):
        sft_in_place(model, AutoTokenizer.from_pretrained(base), _chat_rows(2), SFTSettings(1, 2, 1e-6), tmp_path)
