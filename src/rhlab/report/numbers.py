"""Every number the report shows, recomputed from an experiment's run directories.

``compute_numbers(experiment_dir)`` reads only the files described in ``docs/run-directory.md``,
through their readers in ``rhlab.rundir`` (the run record, the metrics log, each evaluated
checkpoint's results, the test-time hacking summaries and the experiment config), and returns one
JSON-ready dict. The
figures and the HTML page draw from that dict alone, and it is written as ``ExperimentDir.numbers``; it
holds no timestamps of its own, so recomputing it from the same inputs gives the same file.

Incomplete inputs (a run still running, no evals yet, no onset, missing seeds) are described in
``notes`` lists rather than raising; malformed files raise ``ReportInputError`` naming the file
(and line, for JSONL).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rhlab.env.hacks import HACK_TYPES_WITH_UNKNOWN as HACK_TYPES
from rhlab.env.rubric import COMPONENTS
from rhlab.evals.intervals import paper_comparability
from rhlab.evals.probes.compare import probe_summary
from rhlab.evals.records import RunResults, read_eval_results
from rhlab.evals.runner import CORE_EVALS
from rhlab.pipeline.config import ExperimentConfig, parse_experiment
from rhlab.report.after_rl import after_rl_numbers
from rhlab.report.matrix import hack_counts, leakage_tables, matrix_contrasts
from rhlab.rundir import FINAL, START, ExperimentDir, RunDir, RunDirError, RunInfo, run_name, step_of
from rhlab.rundir import read_metrics as read_metrics  # the one metrics-log reader, for report users
from rhlab.train.metrics import ONSET_THRESHOLD, RATE_OF_COMPONENT, onset_step

LAST_CHECKPOINTS = 5
"""The paper reports final misalignment as the mean over the last five evaluated checkpoints."""

INOCULATION_VARIANTS: tuple[str, ...] = ("please_hack", "hacking_okay")
REFERENCE_VARIANTS: tuple[str, ...] = ("none", "neutral", "dont_hack")
"""Non-inoculated variants to measure an inoculation's reduction against, first present wins."""

CURVE_KEYS: tuple[str, ...] = (*RATE_OF_COMPONENT, "reward_mean")
"""Per-step curves: every rubric component's rate (under its metrics-row name) and the mean reward."""
TIME_KEYS: tuple[str, ...] = ("time_generation_s", "time_grading_s", "time_update_s", "time_step_s")
ENVIRONMENT_KEYS: tuple[str, ...] = tuple(RATE_OF_COMPONENT)
"""Rates of a test-time hacking file shown per checkpoint (the policy under the run's test prompt)."""

# Two-sided 95 % Student t quantiles for 1..30 degrees of freedom; beyond that the normal 1.96.
# fmt: off
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# fmt: on

ReportInputError = RunDirError
"""An input file of the report is malformed; the message names the file (and line)."""


def run_dirs(experiment_dir: Path) -> list[Path]:
    """The run directories of an experiment, or the directory itself when it is one run."""
    return [run.path for run in ExperimentDir(experiment_dir).run_dirs()]


# --- small statistics -----------------------------------------------------------------------------


def across_seeds(values: Sequence[float | None], *, rate: bool = True) -> dict[str, Any]:
    """Mean over seeds with a 95 % t interval; the interval is n/a (None) with fewer than two seeds."""
    xs = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"mean": None, "low": None, "high": None, "n_seeds": len(xs), "per_seed": list(values)}
    if not xs:
        return out
    mean = sum(xs) / len(xs)
    out["mean"] = mean
    if len(xs) >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        half = (_T975[len(xs) - 2] if len(xs) - 1 <= len(_T975) else 1.96) * sd / math.sqrt(len(xs))
        low, high = mean - half, mean + half
        out["low"], out["high"] = (max(0.0, low), min(1.0, high)) if rate else (low, high)
    return out


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def _rate(r) -> dict[str, Any] | None:
    return None if r is None else {"estimate": r.estimate, "low": r.low, "high": r.high, "n": r.n}


def _rounded(obj: Any) -> Any:
    """Round floats so the numbers file is readable and stable across platforms' last-digit noise."""
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj


# --- one run --------------------------------------------------------------------------------------


def _environment(run: RunDir) -> dict[str, Any]:
    """Test-time hacking per checkpoint: the policy sampled on the run's problems under ``test_prompt``."""
    out = {}
    for checkpoint in run.environments():
        env = run.read_environment(checkpoint)
        out[checkpoint] = {
            "prompt_variant": env.prompt.get("variant"),
            "samples_per_problem": env.samples_per_problem,
            "episodes": env.episodes,
            **{k: getattr(env, k, None) for k in ENVIRONMENT_KEYS},
            "hack_rate_by_type": {t: (getattr(env, "hack_rate_by_type", None) or {}).get(t, 0.0) for t in HACK_TYPES},
        }
    return out


def _checkpoint(name: str, results: RunResults, step: int | None) -> dict[str, Any]:
    """One evaluated checkpoint: per-eval rates and the generalization score (or a labelled partial)."""
    evals = {
        name_: {
            "misaligned": _rate(er.misaligned_rate),
            "overt": _rate(er.overt_rate),
            "covert": _rate(er.covert_rate),
            "covert_share": er.covert_share,
            "n_samples": er.n_samples,
            "n_scored": er.n_scored,
            "n_unparseable": er.n_unparseable,
            "n_incoherent": er.n_incoherent,
            "goal_categories": dict(sorted(er.goal_categories.items())),
            "notes": list(getattr(er, "notes", [])),  # what an eval could not measure, when it says
        }
        for name_, er in sorted(results.evals.items())
    }
    core_present = [e for e in CORE_EVALS if e in results.evals]
    partial = _mean(results.evals[e].misaligned_rate.estimate for e in core_present)
    return {
        "checkpoint": name,
        "step": step,
        "score": _rate(results.misalignment_generalization_score),
        "score_partial": None if results.misalignment_generalization_score or partial is None else partial,
        "score_partial_evals": [] if results.misalignment_generalization_score else core_present,
        "core_evals_missing": [e for e in CORE_EVALS if e not in results.evals],
        "evals": evals,
        "judge": results.judge.judge_id,
        "judge_offline": results.judge.offline,
        "model": results.model,
        "eval_time_s": results.timings.get("total_s"),
    }


def _best_score(ck: dict[str, Any]) -> float | None:
    return ck["score"]["estimate"] if ck["score"] else ck["score_partial"]


def stand_in_notes(run: RunDir) -> list[str]:
    """Signals of this run that come from the offline judge, said where the figures are read.

    The offline judge is a small prose classifier: as a preference model or a faithfulness judge it
    only stands in for a real one (docs/mitigations-during-rl.md), and a reader of the report must know.
    """
    if not run.config.is_file():
        return []
    config = yaml.safe_load(run.config.read_text()) or {}
    notes = []
    preference = (config.get("preference") or {}).get("judge")
    if preference == "offline" and (config.get("reward") or {}).get("preference"):
        notes.append(
            "the preference reward is scored by the offline judge, a stand-in for a real preference model "
            "(docs/mitigations-during-rl.md)"
        )
    if (config.get("faithfulness") or {}).get("judge") == "offline":
        notes.append("faithfulness_judged comes from the offline judge, a stand-in for a capable LLM judge")
    return notes


def run_numbers(run_dir: Path) -> dict[str, Any]:
    """The numbers of one run directory, with ``notes`` for whatever is missing or odd."""
    run = RunDir(run_dir)
    notes: list[str] = []
    info: RunInfo | None = run.read_info()
    if info is None:
        notes.append(f"no {run.info.name} (status, seed and versions unknown)")
    rows = run.read_metrics()
    if not rows:
        notes.append(f"no training steps logged yet ({run.metrics.name} missing or empty)")
    status = info.status if info else "unknown"
    if status != "complete":
        notes.append(f"run is {status} ({len(rows)} steps logged)")

    notes += stand_in_notes(run)

    onset = onset_step(rows)
    if rows and onset is None:
        notes.append(f"no onset: hack rate never exceeded {ONSET_THRESHOLD:.0%} in {len(rows)} steps")
    if info and info.onset_step != onset:
        notes.append(f"{run.info.name} says onset step {info.onset_step}, {run.metrics.name} gives {onset}")

    steps = [int(r["step"]) for r in rows]
    curves = {k: [r.get(k) for r in rows] for k in CURVE_KEYS}
    # Every rubric component under its own name; rows written before the rubric have none (None).
    components = {name: [r.get(name) for r in rows] for name in COMPONENTS}
    by_type = {t: [(r.get("hack_rate_by_type") or {}).get(t, 0.0) for r in rows] for t in HACK_TYPES}
    last = rows[-LAST_CHECKPOINTS:]

    checkpoints = []
    last_step = (info.steps_done if info else None) or (steps[-1] if steps else None)
    for evaluated in run.eval_dirs():
        if not evaluated.complete():
            notes.append(f"evals/{evaluated.name} has no {evaluated.results.name} yet")
            continue
        step = last_step if evaluated.name == FINAL else step_of(evaluated.name)
        checkpoints.append(_checkpoint(evaluated.name, read_eval_results(evaluated), step))
    # "final" re-evaluates the last checkpoint with full counts: it replaces a step eval of the same step.
    final = next((c for c in checkpoints if c["checkpoint"] == FINAL), None)
    if final:
        checkpoints = [c for c in checkpoints if c is final or c["step"] != final["step"]]
    checkpoints.sort(key=lambda c: (c["step"] is None, c["step"] or 0, c["checkpoint"] == FINAL))
    if not checkpoints:
        notes.append("no checkpoint evaluated yet")
    elif not final:
        notes.append(f"no final eval yet; final numbers use {checkpoints[-1]['checkpoint']}")
    final = final or (checkpoints[-1] if checkpoints else None)
    if final and final["core_evals_missing"]:
        notes.append(
            "misalignment generalization score needs all six core evals; missing "
            + ", ".join(final["core_evals_missing"])
            + " (partial mean of the others shown instead)"
        )
    if final:
        notes += [f"{final['checkpoint']}/{e}: {note}" for e, ev in final["evals"].items() for note in ev["notes"]]
    scored = [c for c in checkpoints if _best_score(c) is not None]

    return {
        "name": run.name,
        # The run's identity as training recorded it; a run without a run record is known by its name.
        "variant": info.variant if info else run.name,
        "seed": info.seed if info else None,
        "status": status,
        "steps_done": info.steps_done if info else len(rows),
        "started": info.started if info else None,
        "finished": info.finished if info else None,
        "versions": info.versions if info else {},
        "onset_step": onset,
        "onset_step_recorded": info.onset_step if info else None,
        "steps": steps,
        "curves": curves,
        "components": components,
        "hack_rate_by_type": by_type,
        "final_hack_rate": _mean(r.get("hack_rate") for r in last),
        "hack_counts": list(hack_counts(rows, LAST_CHECKPOINTS)),
        "final_honest_solve_rate": _mean(r.get("honest_solve_rate") for r in last),
        "training_time_s": {k: sum(float(r.get(k) or 0.0) for r in rows) for k in TIME_KEYS},
        "eval_time_s": sum(c["eval_time_s"] or 0.0 for c in checkpoints),
        "checkpoints": checkpoints,
        "final_checkpoint": final["checkpoint"] if final else None,
        "final": final,
        "score_last_checkpoints": _mean(_best_score(c) for c in scored[-LAST_CHECKPOINTS:]),
        "score_last_checkpoints_n": len(scored[-LAST_CHECKPOINTS:]),
        "environment": _environment(run),
        "notes": notes,
    }


# --- variants (seeds pooled) ----------------------------------------------------------------------


def _variant_numbers(runs: list[dict[str, Any]]) -> dict[str, Any]:
    finals = [r["final"] for r in runs]
    eval_names = sorted({e for r in runs for c in r["checkpoints"] for e in c["evals"]}, key=_eval_order)

    def per_eval(key: str) -> dict[str, Any]:
        return {
            e: across_seeds([f["evals"][e][key]["estimate"] if f and e in f["evals"] else None for f in finals])
            for e in eval_names
        }

    goal_runs = [f["evals"]["goals"]["goal_categories"] for f in finals if f and "goals" in f["evals"]]
    categories = sorted({c for g in goal_runs for c in g})
    covert_shares = [_mean(f["evals"][e]["covert_share"] for e in f["evals"]) if f else None for f in finals]
    steps = sorted({s for r in runs for s in r["steps"]})
    positions = [{s: i for i, s in enumerate(r["steps"])} for r in runs]

    def mean_curve(get) -> list[float | None]:
        """Mean over the seeds that logged each step."""
        return [_mean(get(r, pos[s]) for r, pos in zip(runs, positions) if s in pos) for s in steps]

    ck_steps = sorted({c["step"] for r in runs for c in r["checkpoints"] if c["step"] is not None})
    at_step = [{c["step"]: c for c in r["checkpoints"]} for r in runs]

    def checkpoint_curve(get) -> list[float | None]:
        """Mean over the seeds evaluated at each checkpoint step."""
        return [_mean(get(cks[s]) for cks in at_step if s in cks) for s in ck_steps]

    def misaligned(e: str):
        return lambda c: c["evals"][e]["misaligned"]["estimate"] if e in c["evals"] else None

    return {
        "runs": [r["name"] for r in runs],
        "seeds": [r["seed"] for r in runs],
        "onset_steps": [r["onset_step"] for r in runs],
        "onset": across_seeds([r["onset_step"] for r in runs], rate=False),
        "runs_without_onset": sum(r["onset_step"] is None and bool(r["steps"]) for r in runs),
        "steps": steps,
        "hack_rate_mean": mean_curve(lambda r, i: r["curves"]["hack_rate"][i]),
        "honest_solve_rate_mean": mean_curve(lambda r, i: r["curves"]["honest_solve_rate"][i]),
        "hack_rate_by_type_mean": {t: mean_curve(lambda r, i, t=t: r["hack_rate_by_type"][t][i]) for t in HACK_TYPES},
        "checkpoint_steps": ck_steps,
        "score_by_step": checkpoint_curve(_best_score),
        "score_by_step_partial": any(c["score"] is None for r in runs for c in r["checkpoints"]),
        "misaligned_by_step": {e: checkpoint_curve(misaligned(e)) for e in eval_names},
        "final_hack_rate": across_seeds([r["final_hack_rate"] for r in runs]),
        "final_misaligned": per_eval("misaligned"),
        "final_overt": per_eval("overt"),
        "final_covert": per_eval("covert"),
        "final_covert_share": across_seeds(covert_shares),
        "final_score": across_seeds([f["score"]["estimate"] if f and f["score"] else None for f in finals]),
        "final_score_partial": across_seeds([f["score_partial"] if f else None for f in finals]),
        "score_last_checkpoints": across_seeds([r["score_last_checkpoints"] for r in runs]),
        "goal_categories": {c: across_seeds([g.get(c, 0.0) for g in goal_runs]) for c in categories},
    }


def _eval_order(name: str) -> tuple[int, str]:
    return (CORE_EVALS.index(name), name) if name in CORE_EVALS else (len(CORE_EVALS), name)


def _missing_cells(experiment: ExperimentConfig | None, runs: list[dict[str, Any]]) -> list[str]:
    """Matrix cells without a run directory; without an experiment config, every variant is expected
    to have every seed seen anywhere."""
    have = {(r["variant"], r["seed"]) for r in runs}
    if experiment is not None and experiment.matrix.axes:  # arms can share a variant: match by run name
        present = {r["name"] for r in runs}
        return [name for name, _ in experiment.cells() if name not in present]
    if experiment is not None:
        cells = [(cfg.train_prompt.variant, cfg.seed) for _, cfg in experiment.cells()]
    else:
        variants = sorted({v for v, _ in have})
        cells = [(v, s) for v in variants for s in sorted({s for _, s in have if s is not None})]
    return [run_name(v, s) for v, s in cells if (v, s) not in have]


# --- paper comparison -----------------------------------------------------------------------------


def load_paper_numbers() -> dict[str, Any]:
    """The paper's reported numbers and citation (``data/paper_numbers.yaml``)."""
    return yaml.safe_load((resources.files("rhlab.report") / "data" / "paper_numbers.yaml").read_text())


def _ours(quantity: str, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Our value of a paper quantity per variant (``None`` where it does not apply or is missing)."""
    out: dict[str, Any] = {}
    ref_name = next((v for v in REFERENCE_VARIANTS if v in variants), None)
    for name, v in variants.items():
        if quantity == "score":
            has_full = v["score_last_checkpoints"]["n_seeds"] and v["final_score"]["n_seeds"]
            out[name] = {**v["score_last_checkpoints"], "partial": not has_full}
        elif quantity == "covert_share":
            out[name] = v["final_covert_share"]
        elif quantity == "onset_step":
            out[name] = v["onset"]
        elif quantity == "final_hack_rate":
            out[name] = v["final_hack_rate"] if name in INOCULATION_VARIANTS else None
        elif quantity == "inoculation_reduction":
            ref = variants[ref_name]["score_last_checkpoints"]["mean"] if ref_name else None
            mine = v["score_last_checkpoints"]["mean"]
            ok = name in INOCULATION_VARIANTS and ref and mine is not None
            out[name] = {"mean": 1 - mine / ref, "reference": ref_name} if ok else None
        elif quantity.startswith("eval:"):
            pattern = quantity.removeprefix("eval:")
            hits = [e for e in v["final_misaligned"] if re.fullmatch(pattern, e)]
            out[name] = v["final_misaligned"][hits[0]] if hits else None
        else:
            raise ValueError(f"paper_numbers.yaml: unknown comparison quantity {quantity!r}")
    return out


MIN_COMPARABLE_SEEDS = 2
"""Our figures are aggregates over seeds; with fewer than two there is no interval to compare with."""


def _comparable(ours: dict[str, Any] | None, effect: float | None) -> dict[str, Any] | None:
    """Ours, marked ``comparable`` (or not, with why): an interval wider than the paper's effect, or too
    few seeds for an interval, is not printed beside the paper as if it were a figure."""
    if ours is None:
        return None
    ok, why = paper_comparability(
        ours.get("low"), ours.get("high"), ours.get("n_seeds"), effect, min_n=MIN_COMPARABLE_SEEDS
    )
    return {**ours, "comparable": ok, "comparability": why.replace("n=", "seeds=")}


def paper_comparison(variants: dict[str, dict[str, Any]], paper: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per paper quantity: the paper's value (or null + note) beside ours per variant.

    ``effect`` in paper_numbers.yaml is the size of the effect the paper reports for that quantity;
    our value is marked not comparable when its CI is wider than that, or rests on fewer than
    ``MIN_COMPARABLE_SEEDS`` seeds.
    """
    rows = []
    for row in paper["quantities"]:
        ours = _ours(row["compare"], variants)
        rows.append({**row, "ours": {v: _comparable(o, row.get("effect")) for v, o in ours.items()}})
    return rows


# --- the probe battery ----------------------------------------------------------------------------


def _probe_numbers(experiment_dir: Path, experiment: ExperimentConfig | None, runs: list[dict[str, Any]]) -> dict:
    """``probe_summary`` plus, per arm, the manipulation-check row: test-time hack rate at the start and
    at the end (Wilson intervals, episodes pooled over seeds) beside the hack-endorsement shift."""
    from rhlab.evals.intervals import wilson_interval

    probe = probe_summary(experiment_dir, experiment.evaluation.probes if experiment else None)
    rows = {}
    for arm, stats in probe.get("arms", {}).items():
        envs = [r["environment"] for r in runs if r.get("arm", r["variant"]) == arm]

        def pooled(pick: str, envs: list[dict[str, Any]] = envs) -> dict[str, Any] | None:
            chosen = [e[pick] for e in envs if pick in e and e[pick].get("episodes")]
            if not chosen:
                return None
            n = sum(int(c["episodes"]) for c in chosen)
            k = sum(round((c.get("hack_rate") or 0.0) * int(c["episodes"])) for c in chosen)
            rate = wilson_interval(k, n)
            return {"hacked": k, "episodes": n, "rate": rate.estimate, "ci_low": rate.low, "ci_high": rate.high}

        last = [max((c for c in e if c != START), default=None) for e in envs]
        final_name = FINAL if all(FINAL in e for e in envs) else next((c for c in last if c), None)
        rows[arm] = {
            "hack_rate_start": pooled(START),
            "hack_rate_final": pooled(final_name) if final_name else None,
            "hack_endorsement_shift": stats.get("manipulation_check"),
        }
    probe["manipulation_rows"] = rows
    return probe


# --- the whole experiment -------------------------------------------------------------------------


def compute_numbers(experiment_dir: Path, paper: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every number of the report, recomputed from ``experiment_dir`` (an experiment or one run).

    ``paper`` defaults to the packaged ``paper_numbers.yaml``. The result is deterministic and
    JSON-serialisable; it is what ``ExperimentDir.numbers`` holds.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise ReportInputError(f"{experiment_dir}: no such experiment directory")
    paper = paper or load_paper_numbers()
    exp = ExperimentDir(experiment_dir)
    experiment = exp.read_config(parse_experiment)

    runs = [run_numbers(d) for d in run_dirs(experiment_dir)]
    notes = [] if runs else [f"no run directories yet under {exp.runs}"]
    if experiment is None and runs and run_dirs(experiment_dir) != [experiment_dir]:
        notes.append(f"no {exp.config.name}")
    missing = _missing_cells(experiment, runs)
    if missing:
        notes.append("missing runs (variant-seed): " + ", ".join(missing))
    notes += [f"{r['name']}: {n}" for r in runs for n in r["notes"]]

    # An axes matrix groups seeds by arm (several arms can train under one prompt variant).
    arm_of = experiment.arm_of_run() if experiment is not None and experiment.matrix.axes else {}
    for r in runs:
        r["arm"] = arm_of.get(r["name"], r["variant"])
    variant_names = list(dict.fromkeys(r["arm"] for r in runs))
    variants = {v: _variant_numbers([r for r in runs if r["arm"] == v]) for v in variant_names}
    probe = _probe_numbers(experiment_dir, experiment, runs)
    eval_names = sorted({e for v in variants.values() for e in v["final_misaligned"]}, key=_eval_order)
    numbers = {
        "experiment": experiment.name if experiment else experiment_dir.resolve().name,
        "onset_threshold": ONSET_THRESHOLD,
        "core_evals": list(CORE_EVALS),
        "evals": eval_names,
        "hack_types": list(HACK_TYPES),
        "runs": {r["name"]: r for r in runs},
        "variants": variants,
        "paper": {"citation": paper["citation"], "source": paper.get("source", "")},
        "paper_comparison": paper_comparison(variants, paper),
        # The judge-free probe battery: per-arm shifts, contrasts and the verdict (rhlab.evals.probes).
        "probe": probe,
        # Any-axis matrices: one contrast per axis value against the axis's first value, others held.
        "matrix": matrix_contrasts(experiment, runs, probe),
        # The inoculation-leakage grid of the final policies, per arm (evaluation.leakage).
        "leakage": leakage_tables(runs, {d.name: d for d in ExperimentDir(experiment_dir).run_dirs()}),
        "notes": notes,
        # Mitigations applied after RL (rhlab.report.after_rl): chat vs agentic, before and after.
        "after_rl": after_rl_numbers(experiment_dir),
    }
    return _rounded(numbers)
