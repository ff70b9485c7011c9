"""``rhlab rescore RUN_DIR``: re-grade every kept rollout with the current oracle and detectors.

Labels are only as true as the oracle and detectors that made them. When either changes (a new
detector, a fixed hole, a new outcome such as ``unverifiable``), this re-grades the exact answers
the policy wrote (``rollouts/``) in the sandbox, counts the label changes by ``from -> to``, and
writes the re-computed metrics *beside* the originals, which are never touched:

- ``RunDir.rescored_metrics``: the metrics log with every episode figure re-computed (timings,
  loss and learning rate are carried over);
- ``rescore.json``: the summary (transitions, counts before and after);
- ``rescore.changes.jsonl``: every episode whose label changed, old and new grading side by side.

A label is the outcome, and for a successful hack also its families (``hacked:always_equal``).
The reward GRPO saw is history; the re-computed reward is the current grader's, with the penalty
and screening decisions recorded at training time applied again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import Episode, GradingPool
from rhlab.rundir import ExperimentDir, RunDir, atomic_write_json, write_jsonl
from rhlab.train.metrics import GradedEpisode, no_signal_steps, step_metrics
from rhlab.train.rollouts import episode_from_record, read_step, rollout_files

console = Console(stderr=True)

CARRIED = ("loss", "learning_rate", "kl", "time_generation_s", "time_grading_s", "time_update_s", "time_step_s")
"""Metrics-row fields that do not depend on the labels: copied from the original row."""


class RescoreError(ValueError):
    """A run directory that cannot be re-scored; the message says why."""


def label(result: dict) -> str:
    """``solved``, ``failed``, ``error``, ``unverifiable``... or ``hacked:<families>`` for a hack."""
    if result.get("outcome") == "hacked":
        return "hacked:" + "+".join(sorted(result.get("hacks") or ["unknown"]))
    return str(result.get("outcome"))


def _group_size(records: Sequence[dict]) -> int:
    return max(1, sum(1 for r in records if r.get("group", 0) == records[0].get("group", 0))) if records else 1


def regraded_episode(record: dict, result: EpisodeResult, penalty: float, where: str) -> GradedEpisode:
    """The stored episode with a new grading result and the reward the current grader would give."""
    episode = episode_from_record(record, where)
    reward: float | None = result.reward - (penalty if record["penalized"] else 0.0)
    episode.result, episode.reward = result, None if record["screened"] else reward
    return episode


def _chunks(run_dir: Path, min_episodes: int) -> Iterator[list[tuple[int, Path, list[dict]]]]:
    """Steps in order, grouped so that each chunk keeps the pool busy (one chunk in memory at a time)."""
    chunk, size = [], 0
    for step, path in rollout_files(run_dir):
        records = read_step(path)
        chunk.append((step, path, records))
        size += len(records)
        if size >= min_episodes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _count(run_dir: Path) -> int:
    return sum(len(read_step(path)) for _, path in rollout_files(run_dir))


def rescore(run_dir: str | Path, *, workers: int | None = None, progress: bool = True) -> dict:
    """Re-grade all kept rollouts of ``run_dir``; write the rescored files and return the summary."""
    from rhlab.tasks import load_tasks

    rd = RunDir(Path(run_dir))
    if not rd.config.is_file():
        raise RescoreError(f"{rd.path}: no config.yaml; is this a run directory made by rhlab train?")
    if not rollout_files(rd.path):
        raise RescoreError(
            f"{rd.path}: no kept rollouts ({rd.rollouts}/step_*.jsonl.gz); only runs that kept every rollout "
            "can be re-scored"
        )
    config = rd.read_config()
    tasks = {t.id: t for t in load_tasks(config.problems.source, config.problems.transform)}
    old_rows = {row["step"]: row for row in rd.read_metrics()}
    penalty = config.mitigations.penalty
    transitions: Counter[tuple[str, str]] = Counter()
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    attempted_changed = reward_changed = episodes_seen = 0
    rows, step0, changes = [], None, []

    with GradingPool(workers or config.grading_workers) as pool, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not progress,
    ) as bar:  # fmt: skip
        job = bar.add_task("rescoring", total=_count(rd.path))
        for chunk in _chunks(rd.path, 4 * pool.workers):
            futures = []
            for _, path, records in chunk:
                for number, record in enumerate(records, 1):
                    task = tasks.get(record["task_id"])
                    if task is None:
                        raise RescoreError(
                            f"{path}:{number}: task {record['task_id']!r} is not in {config.problems.source!r} any more"
                        )
                    futures.append(pool.submit(Episode(task, record["answer"], tuple(record["vulns"]))))
            results = iter(futures)
            for step, path, records in chunk:
                graded = []
                for number, record in enumerate(records, 1):
                    new = next(results).result()
                    bar.advance(job)
                    episodes_seen += 1
                    old = record["result"]
                    episode = regraded_episode(record, new, penalty, f"{path}:{number}")
                    graded.append(episode)
                    old_label, new_label = label(old), label(new.to_dict())
                    before[old_label] += 1
                    after[new_label] += 1
                    if old_label != new_label:
                        transitions[(old_label, new_label)] += 1
                        changes.append({"step": step, "index": record["index"], "task_id": record["task_id"],
                                        "from": old_label, "to": new_label, "answer": record["answer"],
                                        "old": old, "new": new.to_dict()})  # fmt: skip
                    attempted_changed += sorted(old.get("attempted_hacks", [])) != sorted(new.attempted_hacks)
                    reward_changed += episode.reward != record["reward"]
                row = {"step": step, **step_metrics(graded, _group_size(records))}
                row["labels_changed"] = sum(
                    label(r["result"]) != label(e.result.to_dict()) for r, e in zip(records, graded)
                )
                if step == 0:
                    step0 = row
                    continue
                original = old_rows.get(step, {})
                rows.append({**{k: original[k] for k in CARRIED if k in original}, **row})
                rows[-1]["no_signal_steps"] = no_signal_steps(rows)

    summary = {
        "run_dir": str(rd.path), "rescored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rhlab_version": version("rhlab"), "steps": len(rows) + (step0 is not None), "episodes": episodes_seen,
        "labels_changed": sum(transitions.values()),
        "transitions": {f"{a} -> {b}": n for (a, b), n in transitions.most_common()},
        "attempted_hacks_changed": attempted_changed, "rewards_changed": reward_changed,
        "labels_before": dict(sorted(before.items())), "labels_after": dict(sorted(after.items())),
        "step0": step0,
        "files": {"metrics": str(rd.rescored_metrics), "changes": str(rd.rescore_changes)},
    }  # fmt: skip
    write_jsonl(rd.rescored_metrics, rows)
    write_jsonl(rd.rescore_changes, changes)
    atomic_write_json(rd.rescore_summary, summary)
    return summary


def headline(summary: dict) -> str:
    return (
        f"{summary['episodes']} episodes in {summary['steps']} step{'s' * (summary['steps'] != 1)} re-graded: "
        f"{summary['labels_changed']} labels changed, {summary['attempted_hacks_changed']} attempted-hack sets "
        f"changed, {summary['rewards_changed']} rewards changed"
    )


def transitions_table(summary: dict) -> Table:
    """How many labels changed, by ``from -> to``."""
    table = Table()
    table.add_column("from -> to")
    table.add_column("episodes", justify="right")
    for transition, n in summary["transitions"].items():
        table.add_row(transition, str(n))
    return table


def run_dirs_of(path: Path) -> list[RunDir]:
    """A run directory itself, or every run of an experiment directory (``rhlab run``'s ``runs/``)."""
    experiment = ExperimentDir(path)
    if experiment.config.is_file() or experiment.runs.is_dir():
        return experiment.run_dirs()
    return [RunDir(path)]


def rescore_command(
    run_dir: Path = typer.Argument(..., help="A run directory (rhlab train), or an experiment directory (rhlab run)."),
    workers: int = typer.Option(None, "--workers", help="Sandbox workers (default: the run's grading_workers)."),
) -> None:
    """Re-grade every kept rollout with the current oracle and detectors; write metrics.rescored.jsonl."""
    runs = run_dirs_of(run_dir)
    if not runs:
        typer.echo(f"error: {run_dir} holds no runs", err=True)
        raise typer.Exit(2)
    for run in runs:
        try:
            summary = rescore(run.path, workers=workers)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"{run.path}: {headline(summary)}")
        if summary["transitions"]:
            Console().print(transitions_table(summary), highlight=False)
        typer.echo(f"wrote {run.rescored_metrics}, {run.rescore_summary} and {run.rescore_changes}")
