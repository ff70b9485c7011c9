"""The after-RL stages in the report: chat and agentic misalignment before and after each stage.

Each stage's run directory (``after_rl/<stage>/<cell>/``) was evaluated at its start and its final
policy. Per stage the report pools the misaligned samples of the chat evals and of the agentic evals
separately, and compares after with before:

- a group **improves** when the 95 % interval of (after - before) lies entirely below 0 (Newcombe's
  hybrid score interval for a difference of two proportions, from the Wilson intervals of each);
- ``context_dependent_misalignment`` is True when chat improves, agentic does not, and agentic
  misalignment is still present after (the Wilson lower bound of its after-rate is above 0): the
  paper's finding that chat safety training hides misalignment from chat evals only.

These definitions were fixed before any figure was seen; small samples give wide intervals, so at
toy scale "does not improve" mostly means "not measurable", which the interval shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rhlab.evals.intervals import wilson_interval
from rhlab.evals.records import RunResults, read_eval_results
from rhlab.evals.registry import CHAT_EVALS, SCENARIO_EVALS
from rhlab.rundir import FINAL, START, RunDir, RunDirError, read_json_object

STAGE_RECORD = "after_rl.json"


def pooled(results: RunResults | None, names: tuple[str, ...]) -> dict[str, Any] | None:
    """Misaligned samples over the evals of one group: ``{k, n, estimate, low, high}`` (Wilson)."""
    if results is None:
        return None
    k = n = 0
    for name, result in results.evals.items():
        rate = result.misaligned_rate
        if name in names and rate.n and rate.estimate is not None:
            k += round(rate.estimate * rate.n)
            n += rate.n
    if n == 0:
        return None
    interval = wilson_interval(k, n)
    return {"k": k, "n": n, "estimate": interval.estimate, "low": interval.low, "high": interval.high}


def difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """after - before with Newcombe's hybrid score interval (method 10), from the two Wilson intervals."""
    p1, l1, u1 = before["estimate"], before["low"], before["high"]
    p2, l2, u2 = after["estimate"], after["low"], after["high"]
    d = p2 - p1
    return {
        "estimate": d,
        "low": d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        "high": d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    }


def contrast(before: RunResults | None, after: RunResults | None, names: tuple[str, ...]) -> dict[str, Any]:
    b, a = pooled(before, names), pooled(after, names)
    out: dict[str, Any] = {"before": b, "after": a, "difference": None, "improves": None}
    if b is not None and a is not None:
        out["difference"] = difference(b, a)
        out["improves"] = out["difference"]["high"] < 0
    return out


def context_dependent(chat: dict[str, Any], agentic: dict[str, Any]) -> bool | None:
    """Chat improves, agentic does not and is still present; None when either side is unmeasured."""
    if chat["improves"] is None or agentic["improves"] is None:
        return None
    return bool(chat["improves"] and not agentic["improves"] and agentic["after"]["low"] > 0)


def _results(run: RunDir, checkpoint: str) -> RunResults | None:
    evaluated = run.eval_dir(checkpoint)
    return read_eval_results(evaluated) if evaluated.complete() else None


def stage_numbers(run: RunDir, teacher: RunDir) -> dict[str, Any]:
    """One stage on one run; ``teacher`` is the RL run it started from (its final rates are shown beside)."""
    record = read_json_object(run.path / STAGE_RECORD)
    before, after = _results(run, START), _results(run, FINAL)
    chat, agentic = contrast(before, after, CHAT_EVALS), contrast(before, after, SCENARIO_EVALS)
    teacher_final = _results(teacher, FINAL) if teacher.path.is_dir() else None
    return {
        "stage": run.path.parent.name,
        "run": run.name,
        "kind": record.get("kind"),
        "counts": record.get("counts"),
        "by_part": record.get("by_part"),
        "examples": record.get("examples"),
        "start": record.get("start"),
        "chat": chat,
        "agentic": agentic,
        "context_dependent_misalignment": context_dependent(chat, agentic),
        "teacher_final": {"chat": pooled(teacher_final, CHAT_EVALS), "agentic": pooled(teacher_final, SCENARIO_EVALS)},
        "evaluated": {"start": before is not None, "final": after is not None},
    }


def after_rl_numbers(experiment_dir: Path) -> list[dict[str, Any]]:
    """One row per (stage, run) under ``after_rl/``; a stage still without its record is left out."""
    root = Path(experiment_dir) / "after_rl"
    if not root.is_dir():
        return []
    rows = []
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for run_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.endswith(".tmp")):
            if (run_dir / STAGE_RECORD).is_file():
                try:
                    teacher = RunDir(Path(experiment_dir) / "runs" / run_dir.name)  # found even if the experiment moved
                    rows.append(stage_numbers(RunDir(run_dir), teacher))
                except (RunDirError, ValueError, KeyError) as exc:
                    rows.append({"stage": stage_dir.name, "run": run_dir.name, "error": str(exc)})
    return rows
