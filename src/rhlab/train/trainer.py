"""GRPO on the hackable environment: TRL's ``GRPOTrainer`` with our reward, metrics and resume.

``train(config, run_dir)`` reads top to bottom as the experiment:
starting weights (+ optional warm-up) -> problems -> prompts -> TRL GRPO, whose reward is the
vulnerable grader through the sandbox pool -> one metrics row (``RunDir.metrics``), sampled transcripts and
(every ``checkpoint_every`` steps) a checkpoint plus an evaluable snapshot per step.

``EnvironmentGRPOTrainer`` overrides six TRL methods besides ``__init__``; each says why in place:

- ``_generate``: times generation; with ``train.recontext`` (online recontextualization) hands back
  prompt B's token ids in place of the sampled prompt A's, so every log-prob of the update is B's.
- ``_generate_single_turn``: the shared-prefix shortcut (``rhlab.train.shared_prefix``): each distinct prompt
  is prefilled once per group; exact, and off under vLLM, several processes or sharded parameters.
- ``_generate_and_score_completions``: drops (one micro-batch) or masks (several) zero-variance
  groups (``mitigations.skip_zero_variance_groups``, which TRL does not offer); decides once per
  step, over all ranks, whether the step carries any signal; attaches the answer-only KL mask.
- ``compute_loss``: a step without signal (and ``beta`` 0) skips forward, backward and optimizer
  (its loss is exactly 0; TRL would still take a momentum-only AdamW step).
- ``_compute_loss`` and ``_get_per_token_logps_and_entropies``: ``kl_scope: answer``
  (``rhlab.train.kl_scope``): the reference log-probs are re-scoped per pass so TRL's KL term is
  0 on reasoning tokens.
- ``_per_token_logps_and_entropies`` (ours, called from the above): the shared-prefix loss shortcut.

Nothing private of TRL's is patched. Generation time is measured around ``_generate``, grading
time inside the reward; the update is the rest of the step.
"""

from __future__ import annotations

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
from rhlab.judges.preference import PreferenceScorer
from rhlab.models.loading import trainable_weights
from rhlab.models.precision import cpu_description, load_dtype, resolve_precision
from rhlab.rundir import RunDir, atomic_dir
from rhlab.tasks import load_tasks
from rhlab.train import distributed as dist
from rhlab.train.config import TrainConfig, load_config
from rhlab.train.faithfulness import judged_faithfulness
from rhlab.train.gates import no_signal_alarm, pre_rl_gate, raise_if_stopped
from rhlab.train.metrics import GradedEpisode, MetricsLog, step_metrics
from rhlab.train.problems import select_problems
from rhlab.train.prompts import build_messages
from rhlab.train.reward import EnvironmentReward
from rhlab.train.rollouts import RolloutLog

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
    skipped_update: bool = False


def versions() -> dict[str, str]:
    """What a run's floating point depends on besides its code: library versions, and the CPU's vector
    units (one commit's quickstart gave different hack curves in two sessions; its code was not the cause)."""
    names = ("rhlab", "torch", "transformers", "trl", "peft", "accelerate", "datasets")
    return {"python": platform.python_version(), **{n: version(n) for n in names}, "cpu": cpu_description()}


def write_run_json(run_dir: Path, **fields: Any) -> dict:
    return RunDir(run_dir).update_info(**fields).model_dump(mode="json")


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    return RunDir(run_dir).complete_checkpoints()


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


def mask_zero_variance_groups(batch: dict[str, Any], group_size: int) -> dict[str, Any]:
    """``drop_zero_variance_groups`` for a step split into micro-batches: same loss, rows kept.

    TRL shuffles the generation batch and splits it into equal micro-batches, so rows cannot be
    removed (the split would lose some). Instead the flat groups' completion tokens leave the loss
    mask and the token count that normalises it. Their advantages are 0, so with TRL's default
    token-level loss (``dapo``, normalised by the step's token count) the loss and its gradient equal
    those of the batch without the rows; the rows still cost their forward and backward.
    """
    adv = batch["advantages"]
    keep_group = adv.view(-1, group_size).abs().sum(dim=1) > 0
    if keep_group.all() or not keep_group.any():
        return batch
    keep = keep_group.repeat_interleave(group_size).to(batch["completion_mask"].dtype)
    out = dict(batch, completion_mask=batch["completion_mask"] * keep.unsqueeze(1))
    if isinstance(batch.get("num_items_in_batch"), torch.Tensor):
        out["num_items_in_batch"] = out["completion_mask"].sum()
    return out


def has_signal(batch: dict[str, Any]) -> bool:
    """Whether any completion has a non-zero advantage; without one GRPO's loss (beta 0) is exactly 0."""
    return bool(batch["advantages"].ne(0).any())


def make_trainer_class():
    """Subclass TRL's GRPOTrainer lazily (importing trl is slow and not needed for config checks)."""
    from trl import GRPOTrainer
    from trl.models import unwrap_model_for_generation

    from rhlab.train.kl_scope import answer_kl_mask, scope_reference
    from rhlab.train.shared_prefix import shared_prefix_generate, shared_prefix_logps

    class EnvironmentGRPOTrainer(GRPOTrainer):
        """TRL's trainer with our timers and three exact shortcuts (each can be switched off).

        ``shared_prefix``: each distinct prompt runs through the model once per generation and once
        per loss (see ``rhlab.train.shared_prefix``). ``skip_flat``: a batch in which every advantage is 0
        (all groups zero-variance) has loss exactly 0 when ``beta`` is 0, so its forward, backward
        and optimizer step are skipped: weights and Adam moments stay as they are (TRL would still
        apply a momentum-only AdamW step), the scheduler still advances, and the metrics row records
        ``skipped_update``.
        """

        def __init__(
            self,
            *args: Any,
            timer: StepTimer,
            skip_zero_variance: bool,
            shared_prefix: bool = True,
            skip_flat: bool = True,
            kl_scope: str = "all",
            learning_prompts: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            self.timer = timer
            self.learning_prompts = learning_prompts
            """Online recontextualization: prompt B by prompt A's key (``rhlab.train.recontext``)."""
            self.skip_zero_variance = skip_zero_variance
            self.shared_prefix = shared_prefix
            self.skip_flat = skip_flat
            self.flat_generation = False
            self.kl_scope = kl_scope
            self.kl_scoped_inputs: dict[str, Any] | None = None
            super().__init__(*args, **kwargs)
            if kl_scope == "answer" and self.args.use_liger_kernel:
                raise ValueError("kl_scope: answer masks TRL's KL term; the Liger loss computes its own: turn one off")
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                # Sharded or engine-managed parameters: the shortcuts call bare modules and read whole
                # weights (off), and a backward that fires no gradient hook can break ZeRO's step
                # (DeepSpeed #4397), so a flat batch runs its (exactly zero) loss as plain TRL does.
                self.shared_prefix = False
                self.skip_flat = False

        def _generate(self, prompts: list) -> Any:
            t0 = time.monotonic()
            try:
                generated = super()._generate(prompts)
            finally:
                self.timer.generation_s += time.monotonic() - t0
            if self.learning_prompts is None:
                return generated
            from rhlab.train.recontext import recontextualized

            return recontextualized(self, prompts, generated, self.learning_prompts)

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            batch = super()._generate_and_score_completions(inputs)
            if self.kl_scope == "answer" and self.beta != 0.0:
                # Per-token KL weights ride in the batch (row-wise, so TRL's shuffle and split keep them).
                batch["kl_mask"] = answer_kl_mask(batch["completion_ids"], self.processing_class)
            if self.model.training:
                # Decided once per generation batch: every micro-batch of the step, on every rank,
                # then takes the same branch (a skip on some micro-batches only would leave DDP's
                # gradient sync to a backward that never reaches the weights).
                self.flat_generation = not self.signal_on_any_rank(batch)
            if self.skip_zero_variance and self.model.training:
                split = self.args.steps_per_generation > 1
                batch = (mask_zero_variance_groups if split else drop_zero_variance_groups)(batch, self.num_generations)
                if self.accelerator.num_processes > 1 and isinstance(batch.get("num_items_in_batch"), torch.Tensor):
                    # TRL's loss normaliser counts the tokens of every rank; recount after the drop.
                    batch["num_items_in_batch"] = self.accelerator.gather(batch["completion_mask"].sum()).sum()
            return batch

        def signal_on_any_rank(self, inputs: dict[str, Any]) -> bool:
            """``has_signal`` over all ranks: one rank alone must not skip the loss's collectives."""
            if self.accelerator.num_processes == 1:
                return has_signal(inputs)
            local = torch.tensor([float(has_signal(inputs))], device=inputs["advantages"].device)
            return bool(self.accelerator.gather(local).max() > 0)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            flat = self.skip_flat and self.model.training and self.beta == 0.0 and not self.aux_loss_enabled
            if flat and self.flat_generation:
                self.timer.skipped_update = True
                # A leaf with no path to the weights: backward leaves every grad None, so the
                # optimizer skips every parameter.
                return torch.zeros((), device=inputs["advantages"].device, requires_grad=True)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _compute_loss(self, model, inputs):  # noqa: ANN001
            if "kl_mask" not in inputs:
                return super()._compute_loss(model, inputs)
            # A copy: the reference is re-scoped from the fresh log-probs on every pass over the batch.
            self.kl_scoped_inputs = dict(inputs)
            try:
                return super()._compute_loss(model, self.kl_scoped_inputs)
            finally:
                self.kl_scoped_inputs = None

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):  # noqa: ANN001
            out = self._per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, **kwargs)
            scoped = self.kl_scoped_inputs
            if scoped is not None and "ref_per_token_logps" in scoped:
                # Inside _compute_loss: TRL reads the reference after this call (see rhlab.train.kl_scope).
                ref = scoped["ref_per_token_logps"]
                scoped["ref_per_token_logps"] = scope_reference(ref, out[0], scoped["kl_mask"])
            return out

        def _per_token_logps_and_entropies(
            self,
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=None,
            compute_entropy=False,
            compute_aux_loss=False,
            **extra,
        ):  # noqa: ANN001
            # One process only: under DDP the wrapped forward must run for gradients to be reduced.
            plain = self.accelerator.num_processes == 1 and not compute_aux_loss
            if self.shared_prefix and plain and all(v is None for v in extra.values()):
                with self.accelerator.autocast():
                    out = shared_prefix_logps(
                        model,
                        input_ids,
                        attention_mask,
                        logits_to_keep,
                        temperature=self.temperature,
                        compute_entropy=compute_entropy,
                        cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32,
                    )
                if out is not None:
                    return out[0], out[1], None
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **extra,
            )

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):  # noqa: ANN001
            plain = (
                self.shared_prefix
                and not self.use_vllm
                and not self.use_transformers_continuous_batching
                and images is None
                and not multimodal_fields
                and self.pad_to_multiple_of is None
                and self.accelerator.num_processes == 1
                and len({tuple(p) for p in prompt_ids}) < len(prompt_ids)
            )
            if not plain:
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
            with (
                unwrap_model_for_generation(
                    self.model_wrapped,
                    self.accelerator,
                    gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    generation_kwargs=self.generation_kwargs,
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                ) as unwrapped,
                torch.no_grad(),
                self.accelerator.autocast(),
            ):
                completion_ids = shared_prefix_generate(
                    unwrapped, prompt_ids, self._tokenizer.pad_token_id, self.generation_config
                )
            # Everything after the first EOS is padding (as in TRL's own path).
            eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=completion_ids.device))
            ends = torch.where(eos.any(dim=1), eos.int().argmax(dim=1), completion_ids.shape[1])
            rows = zip(completion_ids.cpu(), ends.cpu(), strict=True)
            return [row[: int(end) + 1].tolist() for row, end in rows], None

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
        self.faithfulness_judge: Any = None
        """``train.faithfulness.judge``, loaded on first use (only the main process writes rows)."""

    def graded(self, step: int, episodes: list[GradedEpisode], grading_s: float) -> None:
        self.timer.grading_s += grading_s
        self.pending = (step, episodes, grading_s)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TRL callback signature
        self.timer.started = time.monotonic()
        self.timer.generation_s = self.timer.grading_s = 0.0
        self.timer.skipped_update = False

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.pending is None or logs is None:
            return
        step, episodes, _ = self.pending
        if step != state.global_step:
            return
        self.pending = None
        row, stop = dist.main_only(self.record, step, episodes, logs)
        if not dist.is_main():
            self.log.rows.append(row)  # every rank keeps the rows: the delayed penalty reads the onset
        control.should_training_stop |= stop

    def record(self, step: int, episodes: list[GradedEpisode], logs: dict) -> tuple[dict, bool]:
        """Write the step's metrics row, transcripts and run record; returns (row, whether to stop)."""
        total = time.monotonic() - self.timer.started
        row = {"step": step, **step_metrics(episodes, self.config.group_size)}
        if self.config.faithfulness.judge is not None:
            if self.faithfulness_judge is None:
                from rhlab.judges import load_judge

                self.faithfulness_judge = load_judge(self.config.faithfulness.judge)
            row.update(judged_faithfulness(self.faithfulness_judge, episodes))
        row.update(
            time_generation_s=round(self.timer.generation_s, 3),
            time_grading_s=round(self.timer.grading_s, 3),
            time_update_s=round(max(total - self.timer.generation_s - self.timer.grading_s, 0.0), 3),
            time_step_s=round(total, 3),
            skipped_update=self.timer.skipped_update,
        )
        for ours, theirs in (("loss", "loss"), ("learning_rate", "learning_rate"), ("kl", "kl")):
            if theirs in logs:
                row[ours] = logs[theirs]
        self.log.append(row, self.sample_transcripts(step, episodes))
        write_run_json(self.run_dir, steps_done=step, onset_step=self.log.onset)
        stop = no_signal_alarm(self.config.gates.no_signal, self.log.rows, self.run_dir)
        console.print(
            f"step {step}/{self.config.steps}  reward {row['reward_mean']:.2f}  hack {row['hack_rate']:.0%}"
            f" (tried {row['attempted_hack_rate']:.0%})  solved {row['honest_solve_rate']:.0%}"
            f"  [gen {row['time_generation_s']:.0f}s  grade {row['time_grading_s']:.1f}s"
            f"  update {row['time_update_s']:.0f}s]",
            highlight=False,
        )
        return self.log.rows[-1], stop

    def sample_transcripts(self, step: int, episodes: list[GradedEpisode]) -> list[dict]:
        """Every hacking episode plus a random sample of the others, ``transcripts_per_step`` in all."""
        k = self.config.transcripts_per_step
        hacks = [e for e in episodes if e.result.outcome == "hacked"][:k]
        others = [e for e in episodes if e.result.outcome != "hacked"]
        chosen = hacks + self.rng.sample(others, min(len(others), max(k - len(hacks), 0)))
        return [e.transcript(step) for e in chosen]

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if dist.is_main() and source.is_dir():
            snapshot(source, RunDir(self.run_dir).snapshot(state.global_step))


def snapshot(checkpoint: Path, target: Path) -> None:
    """Copy the model part of a checkpoint (weights or adapter, config, tokenizer) for evaluation."""
    with atomic_dir(target) as tmp:
        tmp.mkdir()
        for pattern in MODEL_FILES:
            for f in checkpoint.glob(pattern):
                if f.name not in ("trainer_state.json",) and not f.name.startswith(("optimizer", "scheduler", "rng")):
                    shutil.copy2(f, tmp / f.name)


def prepare_run_dir(config: TrainConfig | None, run_dir: Path, resume: bool) -> TrainConfig:
    """Start a fresh run directory, or reload the config of one being resumed."""
    run = RunDir(run_dir)
    config_path = run.config
    if resume:
        if not config_path.is_file():
            raise RunError(f"cannot resume {run_dir}: it has no config.yaml (was it started by rhlab train?)")
        return load_config(config_path)
    if config is None:
        raise RunError("a new run needs a config")
    if run.metrics.exists() or run.complete_checkpoints():
        raise RunError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    write_run_json(
        run_dir,
        status="running",
        variant=config.train_prompt.variant,
        seed=config.seed,
        steps_done=0,
        onset_step=None,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=versions(),
    )
    return config


def restore_point(config: TrainConfig, run_dir: Path) -> tuple[int, Path | None]:
    """The checkpoint to resume from (step 0, None: start), after dropping what was logged past it.

    Metrics rows, transcripts and rollouts of later steps are deleted, so the resumed run holds one
    continuous history.
    """
    checkpoints = complete_checkpoints(run_dir)
    resume_step, resume_from = checkpoints[-1] if checkpoints else (0, None)
    metrics = MetricsLog(run_dir)
    metrics.truncate_after(resume_step)
    RolloutLog(run_dir, group_size=config.group_size, variant=config.train_prompt.variant).truncate_after(resume_step)
    if resume_from is None and metrics.rows:
        raise RunError(f"{run_dir}: metrics exist but no complete checkpoint; start a new run directory")
    return resume_step, resume_from


def grpo_args(config: TrainConfig, run_dir: Path) -> Any:
    from trl import GRPOConfig

    on_gpu = torch.cuda.is_available()
    if config.use_vllm and not on_gpu:
        raise RunError("use_vllm needs a CUDA GPU, and none is visible: set use_vllm: false")
    micro, accumulation = dist.micro_batches(config)
    kwargs: dict[str, Any] = dict(
        output_dir=str(RunDir(run_dir).checkpoints),
        max_steps=config.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,  # one generation per step, split into the micro-batches
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
        bf16=resolve_precision(config.precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported()) == "bf16",
        gradient_checkpointing=False,  # small policies fit without it; set it in grpo: for large ones
        use_cpu=not on_gpu,
        use_vllm=config.use_vllm,
        report_to=config.report_to or "none",
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    kwargs.update(config.grpo)
    return GRPOConfig(**kwargs)


def weights_dtype(config: TrainConfig, args: Any) -> torch.dtype:
    """The dtype the policy is loaded in (``rhlab.models.precision.load_dtype``; ``args.bf16`` is autocast)."""
    return load_dtype(config.lora is not None, args.bf16, torch.cuda.is_available())


def preference_scorer(config: TrainConfig) -> PreferenceScorer | None:
    """The run's preference judge (``train.preference``), or None; says so when it is the offline stand-in."""
    p = config.preference
    if p.judge is None:
        return None
    from rhlab.judges.preference import load_preference

    scorer = load_preference(p.judge, batch_size=p.batch_size, max_length=p.max_length, cache=p.cache)
    if scorer.offline:
        console.print(
            "preference: the offline judge is a stand-in for a real preference model (a CPU classifier of "
            "alignment that never saw code); treat its reward as plumbing, not as the paper's preference model",
            style="yellow",
        )
    return scorer


def recontext_prompts(config: TrainConfig, rows: list[dict], tasks: dict) -> dict | None:
    """Prompt B for each training prompt when ``train.recontext`` is set (online recontextualization)."""
    if config.recontext is None:
        return None
    from rhlab.train.recontext import learning_prompts

    sample, learn = config.train_prompt.variant, config.recontext.learn.variant
    console.print(f"recontext: sampling under {sample!r}, learning under {learn!r}")
    return learning_prompts(rows, tasks, config.train_prompt, config.recontext)


def train_cell(config: TrainConfig | None, run_dir: Path, resume: bool) -> dict:
    """``train`` with positional arguments, for a spawned child process (``rhlab.pipeline.run.rl_stage``)."""
    return train(config, run_dir, resume=resume)


def train(config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False) -> dict:
    """Run (or resume) GRPO; returns the final run record (``rhlab.rundir.RunInfo``) as a dict."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    # Under accelerate launch the main process writes and decides; see rhlab.train.distributed.
    config = dist.main_only(prepare_run_dir, config, run_dir, resume)
    config.sandbox.apply()
    dist.micro_batches(config)  # a batch that does not split over processes and micro-batches fails before any work
    start_weights = dist.main_only(trainable_weights, config.model)
    if config.warmup is not None:
        from rhlab.train.warmup import run_warmup

        start_weights = dist.main_only(dist.single_process, run_warmup, config, start_weights, RunDir(run_dir).warmup)

    resume_step, resume_from = dist.main_only(restore_point, config, run_dir)
    metrics = MetricsLog(run_dir)
    rollouts = RolloutLog(run_dir, group_size=config.group_size, variant=config.train_prompt.variant)
    if not dist.is_main():
        rollouts = None  # the main process writes every rank's episodes

    tokenizer = AutoTokenizer.from_pretrained(start_weights)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    with GradingPool(config.grading_workers) as pool:

        def policy():  # only the hard-problem filter samples from the starting model
            from rhlab.models.hf import load_hf_model

            return load_hf_model(start_weights)

        problems = dist.main_only(select_problems, config, run_dir, policy, pool)
        all_tasks = {t.id: t for t in load_tasks(config.problems.source, config.problems.transform)}
        rows = [
            {
                "prompt": build_messages(all_tasks[p.task_id], config.train_prompt),
                "task_id": p.task_id,
                "vulns": p.vulns,
            }
            for p in problems
        ]
        dataset = Dataset.from_list(rows)
        dist.main_only(pre_rl_gate, config, run_dir, problems, all_tasks, policy, pool, rollouts)

        timer = StepTimer()
        logger = RunLogger(config, run_dir, metrics, timer)
        reward = EnvironmentReward(
            all_tasks,
            pool,
            config.mitigations,
            rubric=config.rubric,
            seed=config.seed,
            on_graded=logger.graded,
            onset=lambda: metrics.onset,
            rollouts=rollouts,
            preference=preference_scorer(config),
        )
        # The arguments first: under ``accelerate launch`` with ZeRO-3 they register DeepSpeed's config,
        # so from_pretrained then loads the weights already partitioned (zero3_init_flag).
        args = grpo_args(config, run_dir)
        model = AutoModelForCausalLM.from_pretrained(start_weights, dtype=weights_dtype(config, args))
        peft_config = None if config.lora is None else config.lora.peft_config()
        trainer = make_trainer_class()(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[logger],
            timer=timer,
            skip_zero_variance=config.mitigations.skip_zero_variance_groups,
            # The shortcut calls the unwrapped model, which would bypass DDP's gradient sync.
            shared_prefix=config.shared_prefix and dist.num_processes() == 1,
            skip_flat=config.skip_flat_updates,
            kl_scope=config.kl_scope,
            learning_prompts=recontext_prompts(config, rows, all_tasks),
        )
        from rhlab.train.trainer_log import quiet_progress

        quiet_progress(trainer, RunDir(run_dir).trainer_log)  # TRL's log dicts: to the run, not the terminal
        if resume_from is not None:
            console.print(f"resuming {run_dir} from step {resume_step}")
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        with dist.main_writes_dir(RunDir(run_dir).final_snapshot) as final:
            trainer.save_model(str(final))  # every rank: FSDP and ZeRO-3 gather the weights here
            if dist.is_main():
                tokenizer.save_pretrained(str(final))

    raise_if_stopped(run_dir, metrics.rows)
    return dist.main_only(
        write_run_json,
        run_dir,
        status="complete",
        steps_done=metrics.rows[-1]["step"] if metrics.rows else 0,
        onset_step=metrics.onset,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )
