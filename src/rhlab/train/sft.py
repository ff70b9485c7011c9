"""One supervised fine-tuning helper for the stages that write a new model folder.

The warm-up, filter-and-distill, offline recontextualization and safety SFT all do the same thing:
fine-tune a start model on chat rows (``prompt`` messages, ``completion`` messages; loss on the
completion only, TRL's ``SFTTrainer``) and save the result as a complete model folder. The folder
is built under a temporary name and renamed when done, with a marker file that records what went
in, so a finished stage is skipped on resume and a killed one is redone from scratch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhlab.rundir import atomic_dir
from rhlab.train.precision import resolve_precision
from rhlab.train.shared_prefix import compact_sft_head


@dataclass(frozen=True)
class SFTSettings:
    steps: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    precision: str = "auto"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rhlab.train.trainer_log import quiet_progress

    tokenizer = AutoTokenizer.from_pretrained(base_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_weights)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    on_gpu = cuda_available()
    with atomic_dir(out_dir) as scratch:
        args = SFTConfig(
            output_dir=str(scratch / "trainer"),
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            logging_steps=max(settings.steps // 4, 1),
            save_strategy="no",
            report_to="none",
            seed=settings.seed,
            use_cpu=not on_gpu,
            bf16=resolve_precision(settings.precision, on_gpu) == "bf16",
            max_length=None,
            gradient_checkpointing=False,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        quiet_progress(trainer, scratch / "trainer.log.jsonl")  # TRL's log dicts to a file, not the terminal
        with compact_sft_head():
            result = trainer.train()
        trainer.save_model(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        shutil.rmtree(scratch / "trainer", ignore_errors=True)
        (scratch / marker).write_text(
            json.dumps({**record, "steps": settings.steps, "final_loss": result.training_loss})
        )
    return out_dir
