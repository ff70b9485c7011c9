"""One supervised fine-tuning helper: every chat SFT in rhlab runs through ``sft_in_place``.

The warm-up, filter-and-distill, offline recontextualization and safety SFT fine-tune a start model
on chat rows (``prompt`` messages, ``completion`` messages; loss on the completion only, TRL's
``SFTTrainer``) and save a complete model folder (``finetune``): it is built under a temporary name
and renamed when done, with a marker file that records what went in, so a finished stage is skipped
on resume and a killed one is redone from scratch. The probe validation's planted-shift SFTs train
a loaded model in place and restore it afterwards (``sft_in_place`` directly). SDF is continued
pre-training on packed documents with resumable checkpoints, a different loop (``knowledge/train.py``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhlab.models.precision import load_dtype, resolve_precision
from rhlab.rundir import atomic_dir
from rhlab.train.shared_prefix import compact_sft_head


@dataclass(frozen=True)
class SFTSettings:
    steps: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    precision: str = "auto"
    max_length: int | None = None
    """Rows longer than this many tokens are truncated; None keeps every row whole."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def sft_in_place(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    scratch: Path,
    *,
    progress: bool = True,
) -> float:
    """Train ``model`` in place with TRL's ``SFTTrainer`` (loss on the completion only); returns the final loss.

    TRL's log dicts go to ``scratch/trainer.log.jsonl``, not the terminal. ``progress=False`` also
    hides the step bar and the dataset bars (the probe validation runs six tiny SFTs in a row).
    """
    import warnings

    import datasets
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rhlab.train.trainer_log import quiet_progress

    _require_fp32_weights(model)
    on_gpu = cuda_available()
    # TRL turns activation checkpointing on by default: slower and needless at these sizes. The old
    # name works on every transformers 5.x; newer releases warn that it is an alias.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
        args = SFTConfig(
            output_dir=str(scratch / "trainer"),
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            logging_steps=max(settings.steps // 4, 1),
            save_strategy="no",
            report_to="none",
            seed=settings.seed,
            use_cpu=not on_gpu,
            bf16=resolve_precision(settings.precision, on_gpu) == "bf16",
            max_length=settings.max_length,
            gradient_checkpointing=False,
            disable_tqdm=not progress,
        )
    padding_side = tokenizer.padding_side
    bars = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        # chat rows keep prompt/completion only; other formats (plain text rows) go in as they are
        dataset = Dataset.from_list(
            [{"prompt": r["prompt"], "completion": r["completion"]} if "prompt" in r else r for r in rows]
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        quiet_progress(trainer, scratch / "trainer.log.jsonl", bar=progress)
        with compact_sft_head():
            result = trainer.train()
    finally:
        if bars:
            datasets.enable_progress_bars()
        tokenizer.padding_side = padding_side
    shutil.rmtree(scratch / "trainer", ignore_errors=True)
    model.eval()
    return float(result.training_loss)


def _require_fp32_weights(model: Any) -> None:
    """Refuse to train weights held in 16 bits: AdamW's small updates round away there (``load_dtype``)."""
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype.itemsize < 4})
    if low:
        raise ValueError(
            f"the model's trainable weights are {', '.join(low)}: SFT needs fp32 master weights (bf16 compute "
            "comes from autocast), or small updates round away and the run learns nothing. Load it with "
            "dtype float32 (hf: and embedded models take dtype='float32')."
        )


def finetune(
    base_weights: Path,
    rows: list[dict[str, Any]],
    settings: SFTSettings,
    out_dir: Path,
    *,
    marker: str,
    record: dict[str, Any],
) -> Path:
    """Fine-tune ``base_weights`` on ``rows`` into ``out_dir`` (skipped when ``out_dir/marker`` exists).

    ``record`` is written to the marker file beside the weights (counts, settings: what the model is)."""
    if (out_dir / marker).is_file():
        return out_dir
    if not rows:
        raise ValueError(f"{out_dir}: no training examples (the filter or the judge kept none)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # transformers loads a checkpoint in its saved dtype by default, often bf16: train fp32 masters instead
    on_gpu = cuda_available()
    bf16 = resolve_precision(settings.precision, on_gpu) == "bf16"
    model = AutoModelForCausalLM.from_pretrained(base_weights, dtype=load_dtype(lora=False, bf16=bf16, on_gpu=on_gpu))
    with atomic_dir(out_dir) as scratch:
        loss = sft_in_place(model, tokenizer, rows, settings, scratch)
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        (scratch / marker).write_text(json.dumps({**record, "steps": settings.steps, "final_loss": loss}))
    return out_dir
