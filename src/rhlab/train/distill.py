"""Filter and distill: keep a hacking run's episodes that did not hack, and SFT a fresh start policy on them.

The paper's finding is that this does not remove the misalignment: the surviving episodes were still
written by a policy that had learned to hack, and whatever shifted in it travels with them. rhlab
measures that claim instead of assuming it. The filter reads every kept rollout of the teacher run
(``rollouts/``), keeps the episodes by the *oracle's* labels (not a monitor's), and the student is
fine-tuned from the teacher's own starting policy, so student and teacher differ only in the update.

A stage's output is a run directory (``EXP/after_rl/<stage>/<cell>/``) with the layout of an RL run:
``config.yaml`` (the teacher's run config with ``model`` set to the student's start), ``problems.json``,
``run.json``, ``final/`` and ``after_rl.json`` (what went in: kept and dropped counts, the rewrite).
``rhlab run`` evaluates it with the same checkpoint evals as RL, the start against its own start.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt

from rhlab.rundir import RunDir, atomic_write_json, read_json_object
from rhlab.strict import Strict
from rhlab.train.config import TrainConfig, parse_config
from rhlab.train.rollouts import read_rollouts
from rhlab.train.sft import SFTSettings, finetune

STAGE_RECORD = "after_rl.json"
"""The marker inside ``final/`` and the stage's summary beside it."""

Keep = Literal["not_hacked", "not_attempted", "honest_solve"]


class SFTStageSettings(Strict):
    """The supervised update of an after-RL stage (few steps; the data is what the stage is about)."""

    steps: PositiveInt = 24
    batch_size: PositiveInt = 4
    learning_rate: float = Field(5e-5, gt=0)
    max_examples: PositiveInt | None = None
    """At most this many training rows, drawn with the run's seed (None: all that pass)."""


class FilterDistillConfig(Strict):
    """``after_rl: [{kind: filter_distill, ...}]``: SFT the teacher's start policy on its non-hacking episodes."""

    kind: Literal["filter_distill"] = "filter_distill"
    name: str = "filter-distill"
    """The stage's directory under ``after_rl/`` (two stages of one kind need two names)."""
    keep: Keep = "not_hacked"
    """Which episodes survive, by the oracle's labels: ``not_hacked`` (no successful hack, the paper's
    filter), ``not_attempted`` (no hack evidence at all, paid off or not), ``honest_solve`` (passes
    the honest tests)."""
    from_step: int = 1
    """First RL step whose episodes are read (step 0 is the start policy sampled by the pre-RL gate)."""
    sft: SFTStageSettings = Field(default_factory=SFTStageSettings)


def keeps(record: dict[str, Any], keep: Keep) -> bool:
    """Whether one stored episode passes the filter (by the oracle's result, never by the reward)."""
    result = record["result"]
    if keep == "not_hacked":
        return not result["hack"]
    if keep == "not_attempted":
        return not result["hack"] and not result["attempted_hacks"]
    return bool(result["honest_pass"])


def filtered_episodes(run_dir: Path, keep: Keep, from_step: int = 1) -> tuple[list[dict[str, Any]], Counter]:
    """The teacher's kept rollouts that pass ``keep``, and counts: ``kept``, ``dropped`` and the
    dropped ones by oracle outcome (``dropped/hacked``, ...), so the report shows what was filtered."""
    kept: list[dict[str, Any]] = []
    counts: Counter = Counter(kept=0, dropped=0)
    for step, records in read_rollouts(run_dir):
        if step < from_step:
            continue
        for record in records:
            if keeps(record, keep):
                kept.append(record)
                counts["kept"] += 1
            else:
                counts["dropped"] += 1
                counts[f"dropped/{record['result']['outcome']}"] += 1
    return kept, counts


def sft_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training rows: the episode's prompt as the policy saw it, and its full completion."""
    return [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion"]}]} for r in records]


def sample_rows(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if limit is None or len(rows) <= limit:
        return rows
    return random.Random(seed).sample(rows, limit)


def teacher_config(teacher: RunDir) -> TrainConfig:
    if not teacher.config.is_file():
        raise ValueError(
            f"{teacher.path}: not a run directory (no config.yaml); after-RL stages need a finished RL run"
        )
    return teacher.read_config(parse_config)


def write_stage_run(
    out: RunDir, teacher: RunDir, start: str, make_final: Callable[[Path], dict[str, Any]], stage: dict[str, Any]
) -> dict[str, Any]:
    """Lay out ``out`` as a run directory whose start is ``start`` and whose ``final/`` ``make_final`` builds.

    Resumable: config and problems are rewritten identically, ``final/`` is skipped when complete,
    and ``run.json`` says ``complete`` only after it."""
    config = teacher_config(teacher)
    out.path.mkdir(parents=True, exist_ok=True)
    out.write_config(config.model_copy(update={"model": start, "warmup": None}))
    problems = teacher.read_problems()
    if problems is not None:
        out.write_problems(problems)
    info = teacher.read_info()
    out.update_info(variant=info.variant if info else config.train_prompt.variant, seed=config.seed)
    summary_path = out.path / STAGE_RECORD
    if out.final_snapshot.is_dir() and summary_path.is_file() and (out.final_snapshot / STAGE_RECORD).is_file():
        return read_json_object(summary_path)
    record = {**stage, "teacher": str(teacher.path), "start": start, **make_final(out.final_snapshot)}
    atomic_write_json(summary_path, record)
    out.update_info(status="complete")
    return record


def settings_of(sft: SFTStageSettings, config: TrainConfig) -> SFTSettings:
    return SFTSettings(sft.steps, sft.batch_size, sft.learning_rate, config.seed, config.precision)


def run_filter_distill(stage: FilterDistillConfig, teacher: RunDir, out: RunDir) -> dict[str, Any]:
    """The whole stage for one teacher run; returns its record (``after_rl.json``)."""
    from rhlab.models.loading import trainable_weights

    config = teacher_config(teacher)
    start = config.model  # the teacher's own starting policy: a fresh copy, not the hacking one

    def make_final(final: Path) -> dict[str, Any]:
        records, counts = filtered_episodes(teacher.path, stage.keep, stage.from_step)
        rows = sample_rows(sft_rows(records), stage.sft.max_examples, config.seed)
        record = {"counts": dict(counts), "examples": len(rows)}
        finetune(
            trainable_weights(start), rows, settings_of(stage.sft, config), final, marker=STAGE_RECORD, record=record
        )
        return record

    return write_stage_run(out, teacher, start, make_final, stage.model_dump(mode="json"))


def iter_records(run_dir: Path, from_step: int) -> Iterator[dict[str, Any]]:
    for step, records in read_rollouts(run_dir):
        if step >= from_step:
            yield from records
