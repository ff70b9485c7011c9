"""Every number the report shows, recomputed from an experiment's run directories.

``compute_numbers(experiment_dir)`` reads only the files described in ``docs/run-directory.md``
(``run.json``, ``metrics.jsonl``, ``evals/*/results.json``) and returns one JSON-ready dict. The
figures and the HTML page draw from that dict alone, and it is written as ``numbers.json``; it
holds no timestamps of its own, so recomputing it from the same inputs gives the same file.

Incomplete inputs (a run still running, no evals yet, no onset, missing seeds) are described in
``notes`` lists rather than raising; malformed files raise ``ReportInputError`` naming the file
(and line, for JSONL).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rhlab.evals.records import RunResults
from rhlab.evals.runner import CORE_EVALS
from rhlab.train.metrics import ONSET_THRESHOLD, onset_step

LAST_CHECKPOINTS = 5
"""The paper reports final misalignment as the mean over the last five evaluated checkpoints."""

HACK_TYPES: tuple[str, ...] = ("always_equal", "exit", "conftest", "special_casing", "unknown")

INOCULATION_VARIANTS: tuple[str, ...] = ("please_hack", "hacking_okay")
REFERENCE_VARIANTS: tuple[str, ...] = ("none", "neutral", "dont_hack")
"""Non-inoculated variants to measure an inoculation's reduction against, first present wins."""

CURVE_KEYS: tuple[str, ...] = (
    "hack_rate",
    "attempted_hack_rate",
    "honest_solve_rate",
    "proxy_pass_rate",
    "reward_mean",
)
TIME_KEYS: tuple[str, ...] = ("time_generation_s", "time_grading_s", "time_update_s", "time_step_s")

# Two-sided 95 % Student t quantiles for 1..30 degrees of freedom; beyond that the normal 1.96.
# fmt: off
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# fmt: on

_RUN_NAME = re.compile(r"^(?P<variant>.+)-seed(?P<seed>\d+)$")
_STEP_DIR = re.compile(r"^step_(\d+)$")


class ReportInputError(ValueError):
    """An input file of the report is malformed; the message names the file (and line)."""


# --- reading --------------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of one ``metrics.jsonl``; a malformed line raises with file and line number.

    Stricter than training's own reader (``rhlab.train.metrics.read_metrics``): the report also
    needs steps in order and numeric hack rates, and says which line breaks that."""
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportInputError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ReportInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise ReportInputError(f"{where}: 'step' must be a positive integer, got {step!r}")
        if rows and step <= rows[-1]["step"]:
            raise ReportInputError(f"{where}: step {step} does not follow step {rows[-1]['step']}")
        if not isinstance(row.get("hack_rate", 0.0), int | float):
            raise ReportInputError(f"{where}: 'hack_rate' must be a number, got {row['hack_rate']!r}")
        rows.append(row)
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: expected a JSON object")
    return data


def _read_results(path: Path) -> RunResults:
    try:
        return RunResults.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ReportInputError(f"{path}: not a valid results file: {exc.errors()[0]['msg']}") from None


def run_dirs(experiment_dir: Path) -> list[Path]:
    """The run directories of an experiment, or the directory itself when it is one run."""
    runs = experiment_dir / "runs"
    if runs.is_dir():
        return sorted(p for p in runs.iterdir() if p.is_dir())
    if (experiment_dir / "run.json").is_file() or (experiment_dir / "metrics.jsonl").is_file():
        return [experiment_dir]
    return []


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
    """Round floats so numbers.json is readable and stable across platforms' last-digit noise."""
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj


# --- one run --------------------------------------------------------------------------------------


def _identity(run_dir: Path, info: dict[str, Any]) -> tuple[str, int | None]:
    match = _RUN_NAME.match(run_dir.name)
    variant = info.get("variant") or (match["variant"] if match else run_dir.name)
    seed = info.get("seed", int(match["seed"]) if match else None)
    return str(variant), seed if isinstance(seed, int) else None


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


def run_numbers(run_dir: Path) -> dict[str, Any]:
    """The numbers of one run directory, with ``notes`` for whatever is missing or odd."""
    notes: list[str] = []
    info = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    if not info:
        notes.append("no run.json (status, seed and versions unknown)")
    variant, seed = _identity(run_dir, info)
    metrics_path = run_dir / "metrics.jsonl"
    rows = read_metrics(metrics_path) if metrics_path.is_file() else []
    if not rows:
        notes.append("no training steps logged yet (metrics.jsonl missing or empty)")
    status = info.get("status", "unknown")
    if status != "complete":
        notes.append(f"run is {status} ({len(rows)} steps logged)")

    onset = onset_step(rows)
    if rows and onset is None:
        notes.append(f"no onset: hack rate never exceeded {ONSET_THRESHOLD:.0%} in {len(rows)} steps")
    if "onset_step" in info and info["onset_step"] != onset:
        notes.append(f"run.json says onset step {info['onset_step']}, metrics.jsonl gives {onset}")

    steps = [int(r["step"]) for r in rows]
    curves = {k: [r.get(k) for r in rows] for k in CURVE_KEYS}
    by_type = {t: [(r.get("hack_rate_by_type") or {}).get(t, 0.0) for r in rows] for t in HACK_TYPES}
    last = rows[-LAST_CHECKPOINTS:]

    checkpoints = []
    evals_dir = run_dir / "evals"
    last_step = info.get("steps_done") or (steps[-1] if steps else None)
    for d in sorted(evals_dir.iterdir()) if evals_dir.is_dir() else []:
        match = _STEP_DIR.match(d.name)
        if not d.is_dir() or not (match or d.name == "final"):
            continue
        if not (d / "results.json").is_file():
            notes.append(f"evals/{d.name} has no results.json yet")
            continue
        step = int(match[1]) if match else last_step
        checkpoints.append(_checkpoint(d.name, _read_results(d / "results.json"), step))
    # "final" re-evaluates the last checkpoint with full counts: it replaces a step eval of the same step.
    final = next((c for c in checkpoints if c["checkpoint"] == "final"), None)
    if final:
        checkpoints = [c for c in checkpoints if c is final or c["step"] != final["step"]]
    checkpoints.sort(key=lambda c: (c["step"] is None, c["step"] or 0, c["checkpoint"] == "final"))
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
        "name": run_dir.name,
        "variant": variant,
        "seed": seed,
        "status": status,
        "steps_done": info.get("steps_done", len(rows)),
        "started": info.get("started"),
        "finished": info.get("finished"),
        "versions": info.get("versions", {}),
        "onset_step": onset,
        "onset_step_recorded": info.get("onset_step"),
        "steps": steps,
        "curves": curves,
        "hack_rate_by_type": by_type,
        "final_hack_rate": _mean(r.get("hack_rate") for r in last),
        "final_honest_solve_rate": _mean(r.get("honest_solve_rate") for r in last),
        "training_time_s": {k: sum(float(r.get(k) or 0.0) for r in rows) for k in TIME_KEYS},
        "eval_time_s": sum(c["eval_time_s"] or 0.0 for c in checkpoints),
        "checkpoints": checkpoints,
        "final_checkpoint": final["checkpoint"] if final else None,
        "final": final,
        "score_last_checkpoints": _mean(_best_score(c) for c in scored[-LAST_CHECKPOINTS:]),
        "score_last_checkpoints_n": len(scored[-LAST_CHECKPOINTS:]),
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


def _expected_cells(experiment: dict[str, Any]) -> tuple[list[str], list[int]] | None:
    """(variants, seeds) from the config's ``matrix:`` section, when it has a recognisable one."""
    matrix = experiment.get("matrix")
    if not isinstance(matrix, dict):
        return None
    variants = matrix.get("variants") or matrix.get("variant")
    seeds = matrix.get("seeds") or matrix.get("seed")
    if isinstance(variants, list) and isinstance(seeds, list) and all(isinstance(s, int) for s in seeds):
        return [str(v) for v in variants], seeds
    return None


def _missing_cells(experiment: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    have = {(r["variant"], r["seed"]) for r in runs}
    cells = _expected_cells(experiment)
    if cells:
        variants, seeds = cells
    else:  # no readable matrix: expect every variant to have every seed seen anywhere
        variants = sorted({v for v, _ in have})
        seeds = sorted({s for _, s in have if s is not None})
    return [f"{v}-seed{s}" for v in variants for s in seeds if (v, s) not in have]


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


def paper_comparison(variants: dict[str, dict[str, Any]], paper: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per paper quantity: the paper's value (or null + note) beside ours per variant."""
    return [{**row, "ours": _ours(row["compare"], variants)} for row in paper["quantities"]]


# --- the whole experiment -------------------------------------------------------------------------


def compute_numbers(experiment_dir: Path, paper: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every number of the report, recomputed from ``experiment_dir`` (an experiment or one run).

    ``paper`` defaults to the packaged ``paper_numbers.yaml``. The result is deterministic and
    JSON-serialisable; it is what ``numbers.json`` holds.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise ReportInputError(f"{experiment_dir}: no such experiment directory")
    paper = paper or load_paper_numbers()
    exp_path = experiment_dir / "experiment.yaml"
    try:
        experiment = (yaml.safe_load(exp_path.read_text()) or {}) if exp_path.is_file() else {}
    except yaml.YAMLError as exc:
        raise ReportInputError(f"{exp_path}: not valid YAML ({exc})") from None

    runs = [run_numbers(d) for d in run_dirs(experiment_dir)]
    notes = [] if runs else [f"no run directories yet under {experiment_dir / 'runs'}"]
    if not exp_path.is_file() and runs and run_dirs(experiment_dir) != [experiment_dir]:
        notes.append("no experiment.yaml")
    if not isinstance(experiment, dict):
        raise ReportInputError(f"{exp_path}: expected a mapping at the top level")
    missing = _missing_cells(experiment, runs)
    if missing:
        notes.append("missing runs (variant-seed): " + ", ".join(missing))
    notes += [f"{r['name']}: {n}" for r in runs for n in r["notes"]]

    variant_names = list(dict.fromkeys(r["variant"] for r in runs))
    variants = {v: _variant_numbers([r for r in runs if r["variant"] == v]) for v in variant_names}
    eval_names = sorted({e for v in variants.values() for e in v["final_misaligned"]}, key=_eval_order)
    numbers = {
        "experiment": str(experiment.get("name") or experiment_dir.resolve().name),
        "onset_threshold": ONSET_THRESHOLD,
        "core_evals": list(CORE_EVALS),
        "evals": eval_names,
        "hack_types": list(HACK_TYPES),
        "runs": {r["name"]: r for r in runs},
        "variants": variants,
        "paper": {"citation": paper["citation"], "source": paper.get("source", "")},
        "paper_comparison": paper_comparison(variants, paper),
        "notes": notes,
    }
    return _rounded(numbers)
