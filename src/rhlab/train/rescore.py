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
Every record is re-graded on the one grading path (``rhlab.env.episodes.grade_completions``) with
the holes of the run's own problems (``problems.json``), never the holes a record claims, so an
edited record cannot turn a control-arm episode into a paid hack. A record that cannot be re-graded
(a missing or mistyped field, a task gone) becomes one ``error`` label; the others go on. The reward
GRPO saw is history; the re-computed reward is the run's rubric over the current components, with the
monitor flags, screening and penalty decisions recorded at training time applied again.
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

from rhlab.env.episodes import GradedEpisode, grade_completions
from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import GradingPool
from rhlab.env.rubric import Rubric
from rhlab.rundir import ExperimentDir, RunDir, atomic_write_json, write_jsonl
from rhlab.tasks import Task, load_tasks
from rhlab.train.config import parse_config
from rhlab.train.metrics import no_signal_steps, step_metrics
from rhlab.train.rollouts import read_step, rollout_files

console = Console(stderr=True)

CARRIED = ("loss", "learning_rate", "kl", "time_generation_s", "time_grading_s", "time_update_s", "time_step_s")
"""Metrics-row fields that do not depend on the labels: copied from the original row."""


class RescoreError(ValueError):
    """A run directory that cannot be re-scored; the message says why."""


def label(result: dict) -> str:
    """``solved``, ``failed``, ``error``, ``unverifiable``... or ``hacked:<families>`` for a hack."""
    if result.get("outcome") == "hacked":
        hacks = result.get("hacks")
        if not isinstance(hacks, list) or not hacks or not all(isinstance(h, str) for h in hacks):
            hacks = ["unknown"]
        return "hacked:" + "+".join(sorted(hacks))
    return str(result.get("outcome"))


def _group_size(records: Sequence[dict]) -> int:
    return max(1, sum(1 for r in records if r.get("group", 0) == records[0].get("group", 0))) if records else 1


def error_episode(record: object, problem: str) -> GradedEpisode:
    """A record that cannot be re-graded becomes one ``error`` episode (the other records go on)."""
    rec = record if isinstance(record, dict) else {}
    task_id = rec.get("task_id")
    result = EpisodeResult(
        task_id=task_id if isinstance(task_id, str) else "?",
        reward=0.0,
        proxy_pass=False,
        honest_pass=False,
        hack=False,
        hacks=[],
        attempted_hacks=[],
        outcome="error",
        vulns=[],
        sandbox="none",
        timings={},
        error=f"rescore: {problem}",
    )
    return GradedEpisode(result=result, reward=0.0, completion="", reasoning="", answer="", prompt=[])


def _problem_of(record: dict, tasks: dict[str, Task], holes: dict[str, tuple[str, ...]]) -> str | None:
    """Why ``record`` cannot be re-graded (None: it can). Its holes come from the run, never from it."""
    task_id = record.get("task_id")
    if not isinstance(task_id, str) or task_id not in tasks:
        return f"task {task_id!r} is not in the run's task source any more"
    if task_id not in holes:
        return f"task {task_id!r} is not one of the run's problems"
    if not isinstance(record.get("completion"), str):
        return "the record has no completion text"
    for key in ("flagged", "penalized", "screened"):
        if not isinstance(record.get(key), bool):
            return f"the record's {key!r} is not true/false"
    return None


def regrade(
    records: Sequence[dict],
    tasks: dict[str, Task],
    holes: dict[str, tuple[str, ...]],
    rubric: Rubric,
    pool: GradingPool,
) -> list[GradedEpisode]:
    """Re-grade stored records on the one grading path; one episode per record, in order.

    The monitor's flag, the screening decision and whether penalties were in force are history and
    are applied again as recorded; the components and the reward are the current grader's and rubric's.
    """
    problems = [_problem_of(r, tasks, holes) for r in records]
    good = [r for r, problem in zip(records, problems) if problem is None]
    graded = iter(
        grade_completions(
            [r["completion"] for r in good],
            [(tasks[r["task_id"]], holes[r["task_id"]]) for r in good],
            pool,
            prompts=[r.get("prompt") if isinstance(r.get("prompt"), list) else [] for r in good],
            completion_tokens=[
                r.get("completion_tokens") if isinstance(r.get("completion_tokens"), int) else 0 for r in good
            ],
            monitor=lambda results: [r["flagged"] for r in good],
        )
    )
    episodes = []
    for record, problem in zip(records, problems):
        if problem is not None:
            episodes.append(error_episode(record, problem))
            continue
        episode = next(graded)
        # The preference judge's score is history too (kept in the record; no judge is asked again).
        score = record.get("preference")
        episode.set_preference(float(score) if isinstance(score, int | float) and 0 <= score <= 1 else None)
        penalties = record.get("penalties", record["penalized"])
        episode.penalized = record["penalized"]
        episode.screened = record["screened"]
        episode.reward = None if episode.screened else rubric.reward(episode.components, penalties=bool(penalties))
        episodes.append(episode)
    return episodes


def _chunks(run_dir: Path, min_episodes: int) -> Iterator[list[tuple[int, Path, list[dict]]]]:
    """Steps in order, grouped so that each chunk keeps the pool busy (one chunk in memory at a time)."""
    chunk, size = [], 0
    for step, path in rollout_files(run_dir):
        records = read_step(path, require_result=False)
        chunk.append((step, path, records))
        size += len(records)
        if size >= min_episodes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _count(run_dir: Path) -> int:
    return sum(len(read_step(path, require_result=False)) for _, path in rollout_files(run_dir))


def rescore(run_dir: str | Path, *, workers: int | None = None, progress: bool = True) -> dict:
    """Re-grade all kept rollouts of ``run_dir``; write the rescored files and return the summary."""
    rd = RunDir(Path(run_dir))
    if not rd.config.is_file():
        raise RescoreError(f"{rd.path}: no config.yaml; is this a run directory made by rhlab train?")
    if not rollout_files(rd.path):
        raise RescoreError(
            f"{rd.path}: no kept rollouts ({rd.rollouts}/step_*.jsonl.gz); only runs that kept every rollout "
            "can be re-scored"
        )
    config = rd.read_config(parse_config)
    config.sandbox.apply()
    problems = rd.read_problems()
    if problems is None:
        raise RescoreError(f"{rd.problems}: missing; rescore takes each episode's holes from the run's problems")
    holes = {str(p["task_id"]): tuple(p["vulns"]) for p in problems}
    tasks = {t.id: t for t in load_tasks(config.problems.source, config.problems.transform)}
    old_rows = {row["step"]: row for row in rd.read_metrics()}
    rubric = config.rubric
    transitions: Counter[tuple[str, str]] = Counter()
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    attempted_changed = reward_changed = episodes_seen = 0
    rows, step0, changes = [], None, []

    with (
        GradingPool(workers or config.grading_workers) as pool,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not progress,
        ) as bar,
    ):
        job = bar.add_task("rescoring", total=_count(rd.path))
        for chunk in _chunks(rd.path, 4 * pool.workers):
            regraded = iter(regrade([r for _, _, records in chunk for r in records], tasks, holes, rubric, pool))
            for step, _path, records in chunk:
                graded = []
                for record in records:
                    episode = next(regraded)
                    new = episode.result
                    bar.advance(job)
                    episodes_seen += 1
                    graded.append(episode)
                    old = record.get("result") if isinstance(record.get("result"), dict) else {}
                    old_label, new_label = label(old), label(new.to_dict())
                    before[old_label] += 1
                    after[new_label] += 1
                    if old_label != new_label:
                        transitions[(old_label, new_label)] += 1
                        changes.append(
                            {
                                "step": step,
                                "index": record.get("index"),
                                "task_id": record.get("task_id"),
                                "from": old_label,
                                "to": new_label,
                                "answer": record.get("answer"),
                                "old": old,
                                "new": new.to_dict(),
                            }
                        )
                    old_attempted = sorted(map(str, old.get("attempted_hacks") or []))
                    attempted_changed += old_attempted != sorted(new.attempted_hacks)
                    reward_changed += episode.reward != record.get("reward")
                row = {"step": step, **step_metrics(graded, _group_size(records))}
                row["labels_changed"] = sum(
                    label(r["result"] if isinstance(r.get("result"), dict) else {}) != label(e.result.to_dict())
                    for r, e in zip(records, graded)
                )
                if step == 0:
                    step0 = row
                    continue
                original = old_rows.get(step, {})
                rows.append({**{k: original[k] for k in CARRIED if k in original}, **row})
                rows[-1]["no_signal_steps"] = no_signal_steps(rows)

    summary = {
        "run_dir": str(rd.path),
        "rescored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rhlab_version": version("rhlab"),
        "steps": len(rows) + (step0 is not None),
        "episodes": episodes_seen,
        "labels_changed": sum(transitions.values()),
        "transitions": {f"{a} -> {b}": n for (a, b), n in transitions.most_common()},
        "attempted_hacks_changed": attempted_changed,
        "rewards_changed": reward_changed,
        "labels_before": dict(sorted(before.items())),
        "labels_after": dict(sorted(after.items())),
        "step0": step0,
        "files": {"metrics": str(rd.rescored_metrics), "changes": str(rd.rescore_changes)},
    }
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
