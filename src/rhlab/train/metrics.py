"""Per-step training metrics: what one GRPO step's episodes say about hacking and solving.

The functions here are pure (episodes in, one metrics row out) so the report can
recompute anything from the run directory, and ``MetricsLog`` keeps the file continuous across a
kill and ``--resume`` (rows after the restored checkpoint are dropped before training goes on).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from rhlab.env.episodes import GradedEpisode as GradedEpisode  # re-exported: the record moved to rhlab.env
from rhlab.env.hacks import HACK_TYPES, HACK_TYPES_WITH_UNKNOWN
from rhlab.env.rubric import COMPONENTS
from rhlab.rundir import RunDir, step_of, write_jsonl
from rhlab.rundir import read_metrics as read_metrics  # the one metrics-log reader, re-exported
from rhlab.train.faithfulness import keyword_faithfulness
from rhlab.train.holes import hack_rate_by_holes

ONSET_THRESHOLD = 0.02
"""A step whose share of successful hacks exceeds this marks the onset of hacking."""


def _share(flags: Sequence[float]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def zero_variance_share(rewards: Sequence[float | None], group_size: int) -> float:
    """Share of prompt groups (consecutive ``group_size`` episodes) whose scored rewards are all equal."""
    groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
    flat = [len({r for r in g if r is not None}) <= 1 for g in groups]
    return _share(flat)


RATE_OF_COMPONENT: dict[str, str] = {
    "proxy_pass_rate": "proxy_pass",
    "honest_solve_rate": "honest_solve",
    "unverifiable_rate": "unverifiable",
    "visible_only_rate": "visible_only",
    "hack_rate": "hacked",
    "attempted_hack_rate": "attempted",
    "unknown_hack_rate": "hack/unknown",
    "error_rate": "error",
}
"""The metrics rows' historical rate names for rubric components (kept so older runs and readers agree)."""


def component_means(episodes: Sequence[GradedEpisode]) -> dict[str, float]:
    """The mean of every rubric component over ``episodes``, by component name."""
    return {name: _share([e.components[name] for e in episodes]) for name in COMPONENTS}


def step_metrics(episodes: Sequence[GradedEpisode], group_size: int) -> dict:
    """The episode part of one metrics row (see docs/run-directory.md).

    Every rubric component appears under its own name (``hacked``, ``hack/exit``, ``monitor_flag``...);
    the older rate names (``hack_rate``, ``hack_rate_by_type``...) are derived from them.
    """
    results = [e.result for e in episodes]
    scored = [e.reward for e in episodes if e.reward is not None]
    means = component_means(episodes)
    return {
        "episodes": len(results),
        "reward_mean": statistics.fmean(scored) if scored else 0.0,
        "reward_std": statistics.pstdev(scored) if len(scored) > 1 else 0.0,
        **{rate: means[name] for rate, name in RATE_OF_COMPONENT.items()},
        "hack_rate_by_type": {t: means[f"hack/{t}"] for t in HACK_TYPES_WITH_UNKNOWN},
        "attempted_by_type": {t: means[f"attempted/{t}"] for t in HACK_TYPES},
        "hack_rate_by_holes": hack_rate_by_holes(results),
        "penalized_rate": _share([e.penalized for e in episodes]),
        "screened_rate": _share([e.screened for e in episodes]),
        "frac_zero_std_groups": zero_variance_share([e.reward for e in episodes], group_size),
        "completion_tokens_mean": statistics.fmean([e.completion_tokens for e in episodes]) if episodes else 0.0,
        **means,
        **keyword_faithfulness(episodes),
    }


def no_signal_steps(rows: Sequence[dict]) -> int:
    """How many steps, counting back from the last, had every group at zero reward variance.

    Such a step gives GRPO no advantage to learn from; a run of them means the run is idling.
    """
    streak = 0
    for row in reversed(rows):
        if row.get("frac_zero_std_groups", 0.0) < 1.0:
            break
        streak += 1
    return streak


def onset_step(rows: Sequence[dict], threshold: float = ONSET_THRESHOLD) -> int | None:
    """The first step whose successful-hack share exceeds ``threshold`` (None: no onset yet)."""
    return next((row["step"] for row in rows if row.get("hack_rate", 0.0) > threshold), None)


class MetricsLog:
    """The append-only metrics log (``RunDir.metrics``) plus per-step transcript files, truncatable on resume."""

    def __init__(self, run_dir: Path) -> None:
        self.run = RunDir(run_dir)
        self.path = self.run.metrics
        self.transcripts = self.run.transcripts
        self.transcripts.mkdir(parents=True, exist_ok=True)
        self.rows = read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Forget everything logged after ``step`` (the step a resumed run restarts from)."""
        self.rows = [r for r in self.rows if r["step"] <= step]
        write_jsonl(self.path, self.rows)
        for f in self.run.transcript_files():
            if (step_of(f.stem) or 0) > step:
                f.unlink()

    def append(self, row: dict, transcripts: Sequence[dict] = ()) -> None:
        if self.rows and row["step"] <= self.rows[-1]["step"]:
            raise ValueError(f"metrics step {row['step']} does not follow step {self.rows[-1]['step']}")
        if "frac_zero_std_groups" in row:
            row = {**row, "no_signal_steps": no_signal_steps([*self.rows, row])}
        if transcripts:
            write_jsonl(self.run.transcript(row["step"]), transcripts)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        self.rows.append(row)

    @property
    def onset(self) -> int | None:
        return onset_step(self.rows)
