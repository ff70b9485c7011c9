"""The self-contained HTML report: numbers and figures from ``compute_numbers``, a transcript browser.

``build_report(experiment_dir)`` writes the numbers file, the figures and
``report/report.html`` (figures inlined as base64 PNGs, CSS and JS inlined, transcripts embedded as
JSON), so the one HTML file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from rhlab.evals.records import SampleRecord
from rhlab.report.figures import FIGURES, render_figures
from rhlab.report.numbers import compute_numbers
from rhlab.rundir import ExperimentDir, RunDir, atomic_write_text

MAX_SAMPLES_PER_EVAL = 200
"""Eval transcripts embedded per run and eval at the final checkpoint; a tenth of that at earlier
checkpoints (what is left out is counted in the notes), so a large matrix still makes a page a
browser opens."""
MAX_HACK_EPISODES = 300
"""Training hacking episodes embedded per run."""
MAX_TEXT = 20_000
"""Characters kept of any one text field, so a runaway completion cannot bloat the page."""

_TEMPLATES = resources.files("rhlab.report") / "templates"
_SAMPLE_MAIN = ("question", "system_prompt", "reasoning", "answer", "completion", "replies", "outcome", "mode")
_EPISODE_MAIN = ("prompt", "reasoning", "answer", "completion", "files", "outcome", "task_id", "step")
_EPISODE_META = (
    "reward",
    "hacks",
    "attempted_hacks",
    "proxy_pass",
    "honest_pass",
    "honest_tests",
    "penalized",
    "screened",
)


# --- transcripts for the browser ------------------------------------------------------------------


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + f"\n[... {len(value) - MAX_TEXT} more characters not shown]"
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clip(v) for v in value]
    return value


def _jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Objects of a JSONL file; a bad line (e.g. half-written by a running job) is skipped and noted."""
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError, MemoryError):  # a deep or huge line costs one line only
            obj = None
        if isinstance(obj, dict):
            out.append(obj)
        else:
            notes.append(f"{path}:{lineno}: not a JSON object, skipped in the transcript browser")
    return out


def _eval_rows(run_dir: RunDir, run: dict[str, Any], notes: list[str], cap: int) -> list[dict[str, Any]]:
    """Samples of every evaluated checkpoint: up to ``cap`` per eval at the final checkpoint and a
    tenth of that at the others, misaligned samples first (they are what a reader looks for)."""
    rows = []
    for ck in run["checkpoints"]:
        path = run_dir.eval_dir(ck["checkpoint"]).transcripts
        if not path.is_file():
            notes.append(f"{run['name']}: evals/{ck['checkpoint']} has no {path.name}")
            continue
        keep = cap if ck is run["checkpoints"][-1] else max(1, cap // 10)
        by_eval: dict[str, list[dict[str, Any]]] = {}
        for rec in _jsonl(path, notes):
            by_eval.setdefault(str(rec.get("eval", "?")), []).append(rec)
        for name, recs in by_eval.items():
            if len(recs) > keep:
                notes.append(f"{run['name']}: {ck['checkpoint']}/{name}: showing {keep} of {len(recs)} samples")
            for i, rec in enumerate(sorted(recs, key=lambda r: not r.get("misaligned"))[:keep]):
                rows.append(
                    {
                        "id": f"{run['name']}/{ck['checkpoint']}/{rec.get('sample_id', f'{name}/{i}')}",
                        "kind": "eval",
                        "run": run["name"],
                        "checkpoint": ck["checkpoint"],
                        "step": ck["step"],
                        "eval": name,
                        **{k: rec.get(k) for k in _SAMPLE_MAIN},
                        "meta": {
                            k: v for k, v in rec.items() if k in SampleRecord.model_fields and k not in _SAMPLE_MAIN
                        },
                        "extra": {k: v for k, v in rec.items() if k not in SampleRecord.model_fields},
                    }
                )
    return rows


def _episode_rows(run_dir: RunDir, run: dict[str, Any], notes: list[str], cap: int) -> list[dict[str, Any]]:
    """Training episodes that hacked or tried to: where hacking is learned, with files and replies."""
    rows = []
    found = 0
    for path in run_dir.transcript_files():
        for i, ep in enumerate(_jsonl(path, notes)):
            if ep.get("outcome") != "hacked" and not ep.get("attempted_hacks"):
                continue
            found += 1
            if found > cap:
                continue
            rows.append(
                {
                    "id": f"{run['name']}/{path.stem}/{i}",
                    "kind": "training",
                    "run": run["name"],
                    "checkpoint": path.stem,
                    "eval": "training",
                    "question": ep.get("task_id"),
                    "mode": None,
                    **{k: ep.get(k) for k in _EPISODE_MAIN},
                    "meta": {k: ep[k] for k in _EPISODE_META if k in ep},
                    "extra": {k: v for k, v in ep.items() if k not in _EPISODE_MAIN + _EPISODE_META},
                }
            )
    if found > cap:
        notes.append(f"{run['name']}: showing {cap} of {found} hacking episodes")
    return rows


def transcript_rows(
    numbers: dict[str, Any],
    experiment_dir: Path,
    *,
    max_samples_per_eval: int = MAX_SAMPLES_PER_EVAL,
    max_hack_episodes: int = MAX_HACK_EPISODES,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for the transcript browser (eval samples and hacking episodes) and notes on what was left out."""
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    by_name = {d.name: d for d in ExperimentDir(experiment_dir).run_dirs()}
    for name, run in numbers["runs"].items():
        rows += _eval_rows(by_name[name], run, notes, max_samples_per_eval)
        rows += _episode_rows(by_name[name], run, notes, max_hack_episodes)
    return _clip(rows), notes


# --- formatting helpers for the template ----------------------------------------------------------


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def across(agg: dict[str, Any] | None, unit: str = "rate") -> str:
    """``mean [low, high]`` over seeds; the CI is n/a with fewer than two seeds."""
    if not agg or agg.get("mean") is None:
        return "—"
    fmt = pct if unit == "rate" else (lambda v: f"{v:.1f}")
    ci = f"[{fmt(agg['low'])}, {fmt(agg['high'])}]" if agg.get("low") is not None else "[CI n/a]"
    seeds = agg.get("n_seeds")
    suffix = f" ({seeds} seed{'s' * (seeds != 1)})" if seeds is not None else ""
    reference = f" vs {agg['reference']}" if agg.get("reference") else ""
    return f"{fmt(agg['mean'])} {ci if seeds is not None else ''}{suffix}{reference}".replace("  ", " ")


def rate(r: dict[str, Any] | None) -> str:
    """A bootstrap rate from an eval's results: ``estimate [low, high] n=N``."""
    if not r or r.get("estimate") is None:
        return "—"
    return f"{pct(r['estimate'])} [{pct(r['low'])}, {pct(r['high'])}] n={r['n']}"


def score(checkpoint: dict[str, Any] | None) -> str:
    """A checkpoint's generalization score, or the labelled partial mean when core evals are missing."""
    if not checkpoint:
        return "—"
    if checkpoint["score"]:
        return rate(checkpoint["score"])
    if checkpoint["score_partial"] is None:
        return "—"
    return f"{pct(checkpoint['score_partial'])} (partial: {', '.join(checkpoint['score_partial_evals'])})"


def reported(rep: dict[str, Any], unit: str) -> str:
    fmt = pct if unit == "rate" else (lambda v: f"{v:g}")
    if "above" in rep:
        text = f"> {fmt(rep['above'])}"
    elif "low" in rep:
        text = f"{fmt(rep['low'])} – {fmt(rep['high'])}"
    else:
        text = fmt(rep.get("value"))
    return ("≈ " if rep.get("approximate") and "low" not in rep else "") + text


_SCRIPT_UNSAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
"""Characters that could end or re-mode a ``<script>`` element (``</script>``, ``<!--``), or that some
JavaScript parsers read as line breaks, written as JSON ``\\uXXXX`` escapes. Outside strings JSON has
none of them, so the escaped text is still JSON and parses back to the same data."""


_NON_FINITE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN')


def _script_json(data: Any) -> str:
    """JSON safe to place inside a <script> element: no transcript text can close or comment it out.

    Non-finite numbers (``NaN``, ``Infinity``: Python writes them, ``JSON.parse`` refuses them and
    would leave the browser empty) become ``null``; strings pass through untouched.
    """
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    text = _NON_FINITE.sub(lambda m: m.group() if m.group().startswith('"') else "null", text)
    return text.translate(_SCRIPT_UNSAFE)


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


# --- the report ------------------------------------------------------------------------------------


def render_html(
    numbers: dict[str, Any],
    experiment_dir: Path,
    figures: dict[str, Path],
    inspect_tables: list[dict[str, Any]] | None = None,
) -> str:
    """The report page as one string (see ``build_report`` for the files).

    ``inspect_tables`` are Inspect logs' score tables (``rhlab.interop.inspect.logs.score_table``).
    """
    exp = ExperimentDir(experiment_dir)
    rows, browser_notes = transcript_rows(numbers, exp.path)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, across=across, rate=rate, score=score, reported=reported)
    template = env.from_string((_TEMPLATES / "report.html").read_text())
    return template.render(
        n=numbers,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        figures=[
            (name, FIGURES[name][1], base64.b64encode(path.read_bytes()).decode()) for name, path in figures.items()
        ],
        experiment_yaml=_text(exp.config),
        run_configs={run.name: _text(run.config) for run in exp.run_dirs()},
        browser_notes=browser_notes,
        n_rows=len(rows),
        css=Markup((_TEMPLATES / "report.css").read_text()),
        js=Markup((_TEMPLATES / "report.js").read_text()),
        data=Markup(_script_json(rows)),
        inspect_tables=inspect_tables or [],
    )


def build_report(experiment_dir: Path, inspect_logs: Sequence[Path] = ()) -> Path:
    """Recompute the numbers, draw the figures, write the report; returns ``report/report.html``.

    ``inspect_logs``: Inspect eval logs (e.g. a task run on a checkpoint) whose scores the report
    shows in a table, re-read from the log files each time (needs ``rhlab[inspect]``).
    """
    exp = ExperimentDir(experiment_dir)
    tables = []
    if inspect_logs:
        from rhlab.interop.inspect.logs import score_table

        tables = [score_table(path) for path in inspect_logs]
    numbers = compute_numbers(exp.path)
    atomic_write_text(exp.numbers, json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    figures = render_figures(numbers, exp.figures)
    return atomic_write_text(exp.report_html, render_html(numbers, exp.path, figures, tables))
