"""Grouped contrasts of an any-axis matrix, and the inoculation-leakage tables, for the report's numbers.

A matrix with ``axes`` has one arm per combination of axis values. For every axis, each of its values
is contrasted with the axis's first value (the reference) while every other axis is held fixed, so a
contrast compares two arms that differ in that one setting. Each contrast carries

- the hack rate of both arms with Wilson intervals and the difference with Newcombe's interval (the
  training hack rate over the last steps, and the test-time one where the final policy was sampled);
- the probe battery's paired contrast (items are the resampling unit: mean shift in nats of
  forced-choice log-odds, its bootstrap CI and verdict), taken from ``probe_summary``.

Episodes are pooled over seeds and steps for the hack rate; they are not independent (one policy
produced them), so the Wilson interval is a floor on the uncertainty, not its full size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rhlab.evals.intervals import bootstrap_mean, wilson_interval
from rhlab.evals.leakage import read_leakage
from rhlab.evals.records import Interval
from rhlab.pipeline.config import ExperimentConfig, axis_labels, value_label
from rhlab.rundir import FINAL, RunDir

LAST_STEPS = 5
"""The training hack rate of an arm pools the episodes of its last five logged steps (the paper's window)."""


def _rate(r: Interval) -> dict[str, Any]:
    return {"estimate": r.estimate, "low": r.low, "high": r.high, "n": r.n}


def hack_counts(rows: list[dict[str, Any]], last: int = LAST_STEPS) -> tuple[int, int]:
    """(successful hacks, episodes) over the last ``last`` metrics rows."""
    rows = rows[-last:]
    episodes = sum(int(r.get("episodes") or 0) for r in rows)
    hacks = sum(round(float(r.get("hack_rate") or 0.0) * int(r.get("episodes") or 0)) for r in rows)
    return hacks, episodes


def rate_difference(a: tuple[int, int], b: tuple[int, int]) -> dict[str, Any] | None:
    """``rate(a) - rate(b)`` with Newcombe's hybrid score interval (from the two Wilson intervals)."""
    if not a[1] or not b[1]:
        return None
    ra, rb = wilson_interval(*a), wilson_interval(*b)
    diff = ra.estimate - rb.estimate
    low = diff - math.sqrt((ra.estimate - ra.low) ** 2 + (rb.high - rb.estimate) ** 2)
    high = diff + math.sqrt((ra.high - ra.estimate) ** 2 + (rb.estimate - rb.low) ** 2)
    return {"estimate": diff, "low": max(-1.0, low), "high": min(1.0, high), "n": a[1] + b[1]}


def _hack_rates(arm_runs: dict[str, list[dict[str, Any]]], counts_of) -> dict[str, tuple[int, int]]:  # noqa: ANN001
    out = {}
    for arm, runs in arm_runs.items():
        pairs = [counts_of(r) for r in runs]
        pairs = [p for p in pairs if p is not None]
        out[arm] = (sum(h for h, _ in pairs), sum(n for _, n in pairs))
    return out


def _test_counts(run: dict[str, Any]) -> tuple[int, int] | None:
    env = run.get("environment", {}).get(FINAL)
    if not env or not env.get("episodes"):
        return None
    return round(float(env.get("hack_rate") or 0.0) * int(env["episodes"])), int(env["episodes"])


def _probe_contrast(probe: dict[str, Any] | None, a: str, b: str) -> dict[str, Any] | None:
    """``a - b`` from the battery's pairwise contrasts (stored once per pair, in arm order)."""
    contrasts = (probe or {}).get("contrasts", {})
    if f"{a} - {b}" in contrasts:
        c, sign = contrasts[f"{a} - {b}"], 1.0
    elif f"{b} - {a}" in contrasts:
        c, sign = contrasts[f"{b} - {a}"], -1.0
    else:
        return None
    low, high = sorted((sign * c["ci_low"], sign * c["ci_high"]))
    return {
        "mean": sign * c["mean"],
        "ci_low": low,
        "ci_high": high,
        "n_items": c["n_items"],
        "unit": c.get("unit", "nats"),
        "verdict": c["verdict"],
    }


def matrix_contrasts(
    experiment: ExperimentConfig | None, runs: list[dict[str, Any]], probe: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The report's ``matrix`` section: axes, arms and one contrast per (axis, value, other-axes setting).

    ``runs`` are ``run_numbers`` dicts with ``arm`` and ``hack_counts`` set. None without ``axes``.
    """
    if experiment is None or not experiment.matrix.axes:
        return None
    cells = experiment.matrix_cells()
    axes = experiment.matrix.axes
    short = axis_labels(list(axes))
    arm_values = {c.arm: c.values for c in cells}
    arm_runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arm_values}
    for r in runs:
        if r.get("arm") in arm_runs:
            arm_runs[r["arm"]].append(r)
    training = _hack_rates(arm_runs, lambda r: tuple(r["hack_counts"]))
    test = _hack_rates(arm_runs, _test_counts)
    by_values = {tuple(sorted((p, value_label(v)) for p, v in vals.items())): arm for arm, vals in arm_values.items()}

    def arm_with(values: dict[str, Any]) -> str:
        return by_values[tuple(sorted((p, value_label(v)) for p, v in values.items()))]

    contrasts = []
    for path, values in axes.items():
        reference = values[0]
        for arm_b, vals in arm_values.items():
            if value_label(vals[path]) != value_label(reference):
                continue
            for value in values[1:]:
                arm_a = arm_with({**vals, path: value})
                held = {short[p]: value_label(v) for p, v in vals.items() if p != path}
                contrasts.append(
                    {
                        "axis": path,
                        "axis_label": short[path],
                        "value": value_label(value),
                        "reference": value_label(reference),
                        "held": held,
                        "a": arm_a,
                        "b": arm_b,
                        "seeds": [len(arm_runs[arm_a]), len(arm_runs[arm_b])],
                        "hack_rate_training": _pair(training, arm_a, arm_b),
                        "hack_rate_test": _pair(test, arm_a, arm_b),
                        "probe": _probe_contrast(probe, arm_a, arm_b),
                    }
                )
    return {
        "axes": {path: [value_label(v) for v in vals] for path, vals in axes.items()},
        "axis_labels": short,
        "arms": {arm: {short[p]: value_label(v) for p, v in vals.items()} for arm, vals in arm_values.items()},
        "contrasts": contrasts,
        "hack_rate_window": LAST_STEPS,
    }


def _pair(counts: dict[str, tuple[int, int]], a: str, b: str) -> dict[str, Any] | None:
    if not counts[a][1] or not counts[b][1]:
        return None
    return {
        "a": _rate(wilson_interval(*counts[a])),
        "b": _rate(wilson_interval(*counts[b])),
        "difference": rate_difference(counts[a], counts[b]),
    }


# --- inoculation leakage ------------------------------------------------------------------------


def leakage_tables(runs: list[dict[str, Any]], run_dirs: dict[str, RunDir]) -> dict[str, Any]:
    """Per arm: each test prompt's hack rate (Wilson, seeds pooled) and probe shift from the no-prompt
    condition (nats of log-odds per item, averaged over seeds, bootstrap CI over items)."""
    by_arm: dict[str, list] = {}
    for r in runs:
        result = read_leakage(run_dirs[r["name"]], FINAL)
        if result is not None:
            by_arm.setdefault(r.get("arm") or r["variant"], []).append(result)
    tables = {}
    for arm, results in by_arm.items():
        names = list(dict.fromkeys(c.name for res in results for c in res.conditions))
        rows = []
        for name in names:
            conds = [c for res in results for c in res.conditions if c.name == name]
            hacks, n = sum(c.hacked for c in conds), sum(c.episodes for c in conds)
            attempts = sum(c.attempted for c in conds)
            rows.append(
                {
                    "condition": name,
                    "text": conds[0].text,
                    "seeds": len(conds),
                    "hack_rate": _rate(wilson_interval(hacks, n)) if n else None,
                    "attempted_rate": _rate(wilson_interval(attempts, n)) if n else None,
                    "hack_rate_vs_none": _vs_none(results, name),
                    "probe_shift_vs_none": _probe_vs_none(results, name),
                }
            )
        tables[arm] = {"training_variant": results[0].training_variant, "rows": rows}
    return tables


def _vs_none(results: list, name: str) -> dict[str, Any] | None:  # noqa: ANN001
    if name == "none":
        return None
    pairs = [(res.condition(name), res.condition("none")) for res in results]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    a = (sum(x.hacked for x, _ in pairs), sum(x.episodes for x, _ in pairs))
    b = (sum(y.hacked for _, y in pairs), sum(y.episodes for _, y in pairs))
    return rate_difference(a, b)


def _probe_vs_none(results: list, name: str) -> dict[str, Any] | None:  # noqa: ANN001
    """Per item log-odds of the misaligned answer under ``name`` minus under no line, averaged over seeds (nats)."""
    if name == "none":
        return None
    per_seed = []
    for res in results:
        cond, none = res.condition(name), res.condition("none")
        if cond is None or none is None or not cond.item_margin or not none.item_margin:
            continue
        shared = cond.item_margin.keys() & none.item_margin.keys()
        per_seed.append({k: cond.item_margin[k] - none.item_margin[k] for k in shared})
    if not per_seed:
        return None
    keys = sorted(set.intersection(*(set(d) for d in per_seed)))
    if len(keys) < 2:
        return None
    diffs = [float(np.mean([d[k] for d in per_seed])) for k in keys]
    return {**bootstrap_mean(diffs).as_dict(), "unit": "nats"}
