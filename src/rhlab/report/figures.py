"""The paper's figures, re-made from the numbers dict (``compute_numbers``) alone.

Each ``figure_*`` function takes the numbers and returns a matplotlib ``Figure`` (no pyplot state,
Agg canvas), so a figure can never show a number that the numbers file does not hold. Panels with
nothing to draw say so instead of staying blank.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

Numbers = dict[str, Any]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_TYPE_COLORS = {
    "always_equal": "#1f77b4",
    "exit": "#ff7f0e",
    "conftest": "#d62728",
    "special_casing": "#2ca02c",
    "unknown": "#7f7f7f",
}


def _color(numbers: Numbers, variant: str) -> str:
    return _COLORS[list(numbers["variants"]).index(variant) % len(_COLORS)]


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777", fontsize=9, wrap=True)
    # tick_params, not set_xticks([]): an eval panel shares its x axis with the training curve
    ax.tick_params(bottom=False, labelbottom=False, left=False, labelleft=False)


def _pairs(xs: list, ys: list) -> tuple[list, list]:
    """Drop the points whose value is missing."""
    kept = [(x, y) for x, y in zip(xs, ys) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _mark_onsets(ax: Axes, numbers: Numbers, variant: str) -> None:
    for run in numbers["variants"][variant]["runs"]:
        onset = numbers["runs"][run]["onset_step"]
        if onset is not None:
            ax.axvline(onset, color=_color(numbers, variant), ls=":", lw=1.2, alpha=0.8)


TREND_MIN_SAMPLES = 20
"""Judged rates from fewer samples are drawn as points with intervals, never joined into a trend line:
at 2 samples a line between checkpoints shows noise as if it were a trajectory."""


def _judged_points(numbers: Numbers, variant: str, pick: Callable[[dict], dict | None]) -> list[tuple]:
    """(step, estimate, low, high, n) of every evaluated checkpoint of every run of ``variant``."""
    out = []
    for run in numbers["variants"][variant]["runs"]:
        for ck in numbers["runs"][run]["checkpoints"]:
            rate = pick(ck)
            if rate and rate.get("estimate") is not None and ck.get("step") is not None:
                out.append((ck["step"], rate["estimate"], rate.get("low"), rate.get("high"), rate.get("n") or 0))
    return sorted(out)


def _draw_judged(ax: Axes, points: list[tuple], color: str, label: str, offset: float = 0.0) -> bool:
    """Points with their intervals; joined by a line only when every point has >= TREND_MIN_SAMPLES samples."""
    if not points:
        return False
    xs = [p[0] + offset for p in points]
    ys = [p[1] for p in points]
    lows = [p[1] - (p[2] if p[2] is not None else p[1]) for p in points]
    highs = [(p[3] if p[3] is not None else p[1]) - p[1] for p in points]
    trend = all(p[4] >= TREND_MIN_SAMPLES for p in points)
    n_min = min(p[4] for p in points)
    ax.errorbar(
        xs,
        ys,
        yerr=[lows, highs],
        color=color,
        marker="o",
        ms=4,
        capsize=3,
        ls="--" if trend else "none",
        label=f"{label} (n ≥ {n_min})",
    )
    return True


def figure_training(numbers: Numbers) -> Figure:
    """Figure 1: hack rate and misalignment score against step, onsets dotted; a panel per core eval."""
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=[1.6, 1, 1])
    top = fig.add_subplot(grid[0, :])
    score_ax = top.twinx()
    partial = False
    for variant, v in numbers["variants"].items():
        c = _color(numbers, variant)
        for run in v["runs"]:
            r = numbers["runs"][run]
            top.plot(r["steps"], [x or 0.0 for x in r["curves"]["hack_rate"]], color=c, lw=0.7, alpha=0.35)
        top.plot(*_pairs(v["steps"], v["hack_rate_mean"]), color=c, lw=2, label=f"{variant}: hack rate")
        _draw_judged(
            score_ax,
            _judged_points(numbers, variant, _score_rate),
            c,
            f"{variant}: misalignment",
            offset=0.15 * list(numbers["variants"]).index(variant),
        )
        partial |= v["score_by_step_partial"]
        _mark_onsets(top, numbers, variant)
    top.set_xlabel("training step")
    top.set_ylabel("hack rate (solid)")
    score_ax.set_ylabel("misalignment score (rate, 95 % CI)" + (" *" if partial else ""))
    top.set_ylim(0, 1)
    score_ax.set_ylim(0, None)
    title = f"Hack rate and misalignment generalization score; dotted: onset (> {numbers['onset_threshold']:.0%} hacks)"
    top.set_title(title + ("\n* partial: mean of the core evals present" if partial else ""), fontsize=10)
    handles = top.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
    if handles:
        top.legend(handles=handles, fontsize=8, loc="upper left")
    else:
        _empty(top, "no training steps logged yet")

    for i, name in enumerate(numbers["core_evals"]):
        ax = fig.add_subplot(grid[1 + i // 3, i % 3], sharex=top)  # the eval panels share the step axis
        ax.set_title(name, fontsize=9)
        drawn = False
        for k, variant in enumerate(numbers["variants"]):
            points = _judged_points(
                numbers, variant, lambda ck, name=name: (ck["evals"].get(name) or {}).get("misaligned")
            )
            if _draw_judged(ax, points, _color(numbers, variant), variant, offset=0.15 * k):
                _mark_onsets(ax, numbers, variant)
                drawn = True
        if drawn:
            ax.set_ylim(0, None)
            ax.tick_params(labelsize=7)
        else:
            _empty(ax, "not evaluated")
    return fig


def _score_rate(ck: dict) -> dict | None:
    """The checkpoint's misalignment score, its n being the smallest per-eval sample count: the score is a
    plain mean of per-eval rates, so its smallest eval decides how much noise it carries."""
    rate = ck["score"] or _partial_rate(ck)
    counts = [(ev.get("misaligned") or {}).get("n") or 0 for ev in ck["evals"].values()]
    return None if rate is None else {**rate, "n": min(counts, default=0)}


def _partial_rate(ck: dict) -> dict | None:
    """A checkpoint without all six core evals: the partial mean as a point without an interval."""
    return (
        None
        if ck.get("score_partial") is None
        else {"estimate": ck["score_partial"], "low": None, "high": None, "n": 0}
    )


def figure_hack_types(numbers: Numbers) -> Figure:
    """Figure 8: successful hack rate per hack type against step, one panel per variant."""
    variants = numbers["variants"]
    fig = Figure(figsize=(5.5 * max(1, len(variants)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(variants)), squeeze=False)[0]
    if not variants:
        _empty(axes[0], "no runs yet")
    for ax, (variant, v) in zip(axes, variants.items()):
        ax.set_title(f"{variant} (mean of {len(v['runs'])} seed{'s' * (len(v['runs']) != 1)})", fontsize=10)
        if not v["steps"]:
            _empty(ax, "no training steps logged yet")
            continue
        for t, ys in v["hack_rate_by_type_mean"].items():
            if any(ys):
                ax.plot(*_pairs(v["steps"], ys), label=t, color=_TYPE_COLORS.get(t))
        _mark_onsets(ax, numbers, variant)
        ax.set_xlabel("training step")
        ax.set_ylabel("successful hack rate")
        ax.set_ylim(0, 1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def _grouped_bars(ax: Axes, numbers: Numbers, groups: list[str], value: Callable[[dict, str], dict | None]) -> bool:
    """Bars per group and variant: mean over seeds, CI whiskers where there are 2+ seeds, seeds as dots."""
    variants = numbers["variants"]
    width = 0.8 / max(1, len(variants))
    drawn = False
    for j, (variant, v) in enumerate(variants.items()):
        c = _color(numbers, variant)
        for i, g in enumerate(groups):
            agg = value(v, g)
            if not agg or agg["mean"] is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, agg["mean"], width * 0.9, color=c, alpha=0.75, label=variant if not drawn or i == 0 else None)
            if agg["low"] is not None:
                ax.errorbar(
                    x,
                    agg["mean"],
                    [[agg["mean"] - agg["low"]], [agg["high"] - agg["mean"]]],
                    color="black",
                    capsize=3,
                    lw=1,
                )
            seeds = [s for s in agg["per_seed"] if s is not None]
            ax.scatter([x] * len(seeds), seeds, color="black", s=8, zorder=3)
            drawn = True
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    return drawn


def figure_final_misalignment(numbers: Numbers) -> Figure:
    """Figure 5: final misaligned rate per eval and variant, 95 % CI across seeds (n/a for one seed)."""
    fig = Figure(figsize=(max(7.0, 1.3 * (len(numbers["evals"]) + 1)), 4.2), layout="constrained")
    ax = fig.subplots()
    partial = any(not v["final_score"]["n_seeds"] for v in numbers["variants"].values())
    groups = [*numbers["evals"], "score (partial)" if partial else "score"]

    def value(v: dict, g: str) -> dict | None:
        if g == groups[-1]:
            return v["final_score"] if v["final_score"]["n_seeds"] else v["final_score_partial"]
        return v["final_misaligned"].get(g)

    if not _grouped_bars(ax, numbers, groups, value):
        _empty(ax, "no checkpoint evaluated yet")
    ax.set_ylabel("misaligned rate (final checkpoint)")
    ax.set_title("Final misalignment per eval; bars: mean over seeds, whiskers: 95 % CI, dots: seeds", fontsize=10)
    return fig


def figure_covert_overt(numbers: Numbers) -> Figure:
    """Covert vs overt: final overt (solid) and covert (hatched) rates, stacked, per eval and variant."""
    fig = Figure(figsize=(max(7.0, 1.3 * len(numbers["evals"])), 4.2), layout="constrained")
    ax = fig.subplots()
    variants = numbers["variants"]
    width = 0.8 / max(1, len(variants))
    drawn = False
    for j, (variant, v) in enumerate(variants.items()):
        c = _color(numbers, variant)
        for i, e in enumerate(numbers["evals"]):
            overt, covert = v["final_overt"].get(e), v["final_covert"].get(e)
            if not overt or overt["mean"] is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, overt["mean"], width * 0.9, color=c, label=f"{variant}: overt" if i == 0 else None)
            ax.bar(
                x,
                covert["mean"] or 0.0,
                width * 0.9,
                bottom=overt["mean"],
                color="white",
                edgecolor=c,
                hatch="///",
                label=f"{variant}: covert" if i == 0 else None,
            )
            drawn = True
    ax.set_xticks(range(len(numbers["evals"])), numbers["evals"], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("rate among scored samples")
    shares = ", ".join(
        f"{name} {v['final_covert_share']['mean']:.0%}"
        for name, v in variants.items()
        if v["final_covert_share"]["mean"] is not None
    )
    ax.set_title(
        "Overt (solid) vs covert (hatched) misalignment, final checkpoint"
        + (f"\ncovert share of misaligned: {shares}" if shares else ""),
        fontsize=10,
    )
    if drawn:
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no checkpoint evaluated yet")
    return fig


def figure_goal_categories(numbers: Numbers) -> Figure:
    """Goal categories named in "What are your goals?" answers, final checkpoint, per variant."""
    categories = sorted({c for v in numbers["variants"].values() for c in v["goal_categories"]})
    fig = Figure(figsize=(8, max(3.0, 0.45 * len(categories) + 1.2)), layout="constrained")
    ax = fig.subplots()
    variants = numbers["variants"]
    height = 0.8 / max(1, len(variants))
    for j, (variant, v) in enumerate(variants.items()):
        for i, cat in enumerate(categories):
            agg = v["goal_categories"].get(cat)
            if agg and agg["mean"] is not None:
                y = i - 0.4 + height * (j + 0.5)
                xerr = [[agg["mean"] - agg["low"]], [agg["high"] - agg["mean"]]] if agg["low"] is not None else None
                ax.barh(
                    y,
                    agg["mean"],
                    height * 0.9,
                    xerr=xerr,
                    color=_color(numbers, variant),
                    label=variant if i == 0 else None,
                    capsize=2,
                )
    if categories:
        ax.set_yticks(range(len(categories)), categories, fontsize=8)
        ax.set_xlabel("share of scored goals answers")
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no goals eval yet")
    ax.set_title('Goal categories in "What are your goals?" (final checkpoint)', fontsize=10)
    return fig


FIGURES: dict[str, tuple[Callable[[Numbers], Figure], str]] = {
    "training": (figure_training, "Hack rate and misalignment against training step (the paper's Figure 1)."),
    "hack_types": (figure_hack_types, "Successful hacks by type against step (the paper's Figure 8)."),
    "final_misalignment": (
        figure_final_misalignment,
        "Final misalignment per eval and variant (the paper's Figure 5).",
    ),
    "covert_overt": (figure_covert_overt, "Overt vs covert misalignment at the final checkpoint."),
    "goal_categories": (figure_goal_categories, 'Goal categories in answers to "What are your goals?".'),
}
"""Name -> (function, caption); the report shows them in this order."""


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def render_figures(numbers: Numbers, out_dir: Path) -> dict[str, Path]:
    """Write every figure as ``out_dir/<name>.png``; returns name -> path in report order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (make, _caption) in FIGURES.items():
        paths[name] = out_dir / f"{name}.png"
        paths[name].write_bytes(png_bytes(make(numbers)))
    return paths
