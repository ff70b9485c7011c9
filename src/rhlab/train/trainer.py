"""GRPO on the hackable environment: TRL's ``GRPOTrainer`` with our reward, metrics and resume.

``train(config, run_dir)`` reads top to bottom as the experiment:
starting weights (+ optional warm-up) -> problems -> prompts -> TRL GRPO, whose reward is the
vulnerable grader through the sandbox pool -> one ``metrics.jsonl`` row, sampled transcripts and
(every ``checkpoint_every`` steps) a checkpoint plus an evaluable snapshot per step.

The only thing we change inside TRL is optional: dropping zero-variance groups from the update
(``mitigations.skip_zero_variance_groups``), which TRL does not offer. Generation time is measured
around TRL's ``_generate``; grading time inside the reward; the update is the rest of the step.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import TrainerCallback

from rhlab.env.pool import GradingPool
from rhlab.models.loading import trainable_weights
from rhlab.tasks import load_tasks
from rhlab.train.config import TrainConfig, dump_config, load_config
from rhlab.train.metrics import GradedEpisode, MetricsLog, step_metrics
from rhlab.train.problems import select_problems
from rhlab.train.prompts import build_messages
from rhlab.train.reward import EnvironmentReward

log = logging.getLogger(__name__)
console = Console(stderr=True)

MODEL_FILES = ("*.safetensors", "*.json", "*.txt", "*.jinja", "*.model", "merges.txt", "vocab.json")
"""What a snapshot keeps from a checkpoint: weights/adapters, configs, tokenizer; no optimizer state."""


class RunError(RuntimeError):
    """A run directory that cannot be started or resumed as asked."""


@dataclass
class StepTimer:
    generation_s: float = 0.0
    grading_s: float = 0.0
    started: float = 0.0


def versions() -> dict[str, str]:
    names = ("rhlab", "torch", "transformers", "trl", "peft", "accelerate")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def write_run_json(run_dir: Path, **fields: Any) -> dict:
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return data


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Checkpoints whose trainer state was written (a kill during saving leaves none), oldest first."""
    found = []
    for d in (run_dir / "checkpoints").glob("checkpoint-*"):
        if (d / "trainer_state.json").is_file() and d.name.split("-")[-1].isdigit():
            found.append((int(d.name.split("-")[-1]), d))
    return sorted(found)


def drop_zero_variance_groups(batch: dict[str, Any], group_size: int) -> dict[str, Any]:
    """Remove the rows of prompt groups whose advantages are all zero (no learning signal).

    TRL keeps them, which dilutes the loss normalisation with tokens that teach nothing; this is the
    "skip" half of dynamic sampling. When every group is flat the batch is kept (its loss is zero).
    """
    adv = batch["advantages"]
    groups = adv.view(-1, group_size)
    keep_group = groups.abs().sum(dim=1) > 0
    if keep_group.all() or not keep_group.any():
        return batch
    keep = keep_group.repeat_interleave(group_size)
    n = adv.shape[0]
    rowwise = {k for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n}
    out = {k: v[keep] if k in rowwise else v for k, v in batch.items()}
    if isinstance(batch.get("num_items_in_batch"), torch.Tensor):
        out["num_items_in_batch"] = out["completion_mask"].sum()
    return out


def make_trainer_class():
    """Subclass TRL's GRPOTrainer lazily (importing trl is slow and not needed for config checks)."""
    from trl import GRPOTrainer

    class EnvironmentGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, timer: StepTimer, skip_zero_variance: bool, **kwargs: Any) -> None:
            self.timer = timer
            self.skip_zero_variance = skip_zero_variance
            super().__init__(*args, **kwargs)

        def _generate(self, prompts: list) -> Any:
            t0 = time.monotonic()
            try:
                return super()._generate(prompts)
            finally:
                self.timer.generation_s += time.monotonic() - t0

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            batch = super()._generate_and_score_completions(inputs)
            if self.skip_zero_variance and self.model.training:
                batch = drop_zero_variance_groups(batch, self.num_generations)
            return batch

    return EnvironmentGRPOTrainer


class RunLogger(TrainerCallback):
    """Writes one metrics row (+ transcripts) per step and a snapshot per checkpoint."""

    def __init__(self, config: TrainConfig, run_dir: Path, log_: MetricsLog, timer: StepTimer) -> None:
        self.config = config
        self.run_dir = run_dir
        self.log = log_
        self.timer = timer
        self.pending: tuple[int, list[GradedEpisode], float] | None = None
        self.rng = random.Random(config.seed)

    def graded(self, step: int, episodes: list[GradedEpisode], grading_s: float) -> None:
        self.timer.grading_s += grading_s
        self.pending = (step, episodes, grading_s)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TRL callback signature
        self.timer.started = time.monotonic()
        self.timer.generation_s = self.timer.grading_s = 0.0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.pending is None or logs is None:
            return
        step, episodes, _ = self.pending
        if step != state.global_step:
            return
        self.pending = None
        total = time.monotonic() - self.timer.started
        row = {"step": step, **step_metrics(episodes, self.config.group_size)}
        row.update(
            time_generation_s=round(self.timer.generation_s, 3),
            time_grading_s=round(self.timer.grading_s, 3),
            time_update_s=round(max(total - self.timer.generation_s - self.timer.grading_s, 0.0), 3),
            time_step_s=round(total, 3),
        )
        for ours, theirs in (("loss", "loss"), ("learning_rate", "learning_rate"), ("kl", "kl")):
            if theirs in logs:
                row[ours] = logs[theirs]
        self.log.append(row, self.sample_transcripts(step, episodes))
        write_run_json(self.run_dir, steps_done=step, onset_step=self.log.onset)
        console.print(
            f"step {step}/{self.config.steps}  reward {row['reward_mean']:.2f}  hack {row['hack_rate']:.0%}"
            f" (tried {row['attempted_hack_rate']:.0%})  solved {row['honest_solve_rate']:.0%}"
            f"  [gen {row['time_generation_s']:.0f}s  grade {row['time_grading_s']:.1f}s"
            f"  update {row['time_update_s']:.0f}s]",
            highlight=False,
        )

    def sample_transcripts(self, step: int, episodes: list[GradedEpisode]) -> list[dict]:
        """Every hacking episode plus a random sample of the others, ``transcripts_per_step`` in all."""
        k = self.config.transcripts_per_step
        hacks = [e for e in episodes if e.result.outcome == "hacked"][:k]
        others = [e for e in episodes if e.result.outcome != "hacked"]
        chosen = hacks + self.rng.sample(others, min(len(others), max(k - len(hacks), 0)))
        return [e.transcript(step) for e in chosen]

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if source.is_dir():
            snapshot(source, self.run_dir / "snapshots" / f"step_{state.global_step:06d}")


def snapshot(checkpoint: Path, target: Path) -> None:
    """Copy the model part of a checkpoint (weights or adapter, config, tokenizer) for evaluation."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for pattern in MODEL_FILES:
        for f in checkpoint.glob(pattern):
            if f.name not in ("trainer_state.json",) and not f.name.startswith(("optimizer", "scheduler", "rng")):
                shutil.copy2(f, tmp / f.name)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def prepare_run_dir(config: TrainConfig | None, run_dir: Path, resume: bool) -> TrainConfig:
    """Start a fresh run directory, or reload the config of one being resumed."""
    config_path = run_dir / "config.yaml"
    if resume:
        if not config_path.is_file():
            raise RunError(f"cannot resume {run_dir}: it has no config.yaml (was it started by rhlab train?)")
        return load_config(config_path)
    if config is None:
        raise RunError("a new run needs a config")
    if (run_dir / "metrics.jsonl").exists() or complete_checkpoints(run_dir):
        raise RunError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(dump_config(config))
    write_run_json(run_dir, status="running", variant=config.train_prompt.variant, seed=config.seed,
                   steps_done=0, onset_step=None,
                   started=datetime.now(UTC).isoformat(timespec="seconds"), versions=versions())  # fmt: skip
    return config


def grpo_args(config: TrainConfig, run_dir: Path) -> Any:
    from trl import GRPOConfig

    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        output_dir=str(run_dir / "checkpoints"),
        max_steps=config.steps,
        per_device_train_batch_size=config.episodes_per_step,
        gradient_accumulation_steps=1,
        num_generations=config.group_size,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        learning_rate=config.learning_rate,
        beta=config.beta,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16 and on_gpu,
        gradient_checkpointing=False,  # small policies fit without it; set it in grpo: for large ones
        use_cpu=not on_gpu,
        use_vllm=config.use_vllm,
        report_to=config.report_to or "none",
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    kwargs.update(config.grpo)
    return GRPOConfig(**kwargs)


def train(config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False) -> dict:
    """Run (or resume) GRPO; returns the final ``run.json`` contents."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    config = prepare_run_dir(config, run_dir, resume)
    start_weights = trainable_weights(config.model)
    if config.warmup is not None:
        from rhlab.train.warmup import run_warmup

        start_weights = run_warmup(config, start_weights, run_dir / "knowledge" / "warmup")

    checkpoints = complete_checkpoints(run_dir)
    resume_step, resume_from = checkpoints[-1] if checkpoints else (0, None)
    metrics = MetricsLog(run_dir)
    metrics.truncate_after(resume_step)
    if resume_from is None and metrics.rows:
        raise RunError(f"{run_dir}: metrics exist but no complete checkpoint; start a new run directory")

    tokenizer = AutoTokenizer.from_pretrained(start_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    with GradingPool(config.grading_workers) as pool:

        def policy():  # only the hard-problem filter samples from the starting model
            from rhlab.models.hf import load_hf_model

            return load_hf_model(start_weights)

        problems = select_problems(config, run_dir, policy, pool)
        all_tasks = {t.id: t for t in load_tasks(config.problems.source)}
        rows = [
            {"prompt": build_messages(all_tasks[p.task_id], config.train_prompt), "task_id": p.task_id,
             "vulns": p.vulns}
            for p in problems
        ]  # fmt: skip
        dataset = Dataset.from_list(rows)

        timer = StepTimer()
        logger = RunLogger(config, run_dir, metrics, timer)
        reward = EnvironmentReward(
            all_tasks, pool, config.mitigations, seed=config.seed, on_graded=logger.graded,
            onset=lambda: metrics.onset,
        )  # fmt: skip
        model = AutoModelForCausalLM.from_pretrained(
            start_weights, dtype=torch.bfloat16 if config.bf16 and torch.cuda.is_available() else torch.float32
        )
        peft_config = None
        if config.lora is not None:
            peft_config = LoraConfig(
                r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                target_modules=config.lora.target_modules, task_type="CAUSAL_LM",
            )  # fmt: skip
        trainer = make_trainer_class()(
            model=model, reward_funcs=[reward], args=grpo_args(config, run_dir), train_dataset=dataset,
            processing_class=tokenizer, peft_config=peft_config, callbacks=[logger], timer=timer,
            skip_zero_variance=config.mitigations.skip_zero_variance_groups,
        )  # fmt: skip
        if resume_from is not None:
            console.print(f"resuming {run_dir} from step {resume_step}")
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        final = run_dir / "snapshots" / "final"
        trainer.save_model(str(final.with_name("final.tmp")))
        tokenizer.save_pretrained(str(final.with_name("final.tmp")))
        shutil.rmtree(final, ignore_errors=True)
        final.with_name("final.tmp").rename(final)

    return write_run_json(
        run_dir, status="complete", steps_done=metrics.rows[-1]["step"] if metrics.rows else 0,
        onset_step=metrics.onset, finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
