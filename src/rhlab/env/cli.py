"""``rhlab grade`` and ``rhlab env check``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rhlab.env.check import SETTINGS, run_check
from rhlab.env.graders import parse_vulns
from rhlab.env.oracle import grade_episode
from rhlab.env.pool import Episode, GradingPool
from rhlab.sandbox import Sandbox
from rhlab.tasks import TaskLoadError, get_task

env_app = typer.Typer(no_args_is_help=True, help="The hackable environment.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def grade(
    task: str = typer.Option(None, "--task", help="Task id (single-episode mode)."),
    response: Path = typer.Option(None, "--response", help="File holding the model's response."),
    vulns: str = typer.Option("all", "--vulns", help="always_equal,exit_code,conftest | all | none"),
    batch: Path = typer.Option(None, "--batch", help='JSONL of {"task_id", "response", "vulns"?} lines.'),
    out: Path = typer.Option(None, "--out", help="Where batch results go (default: stdout)."),
    tasks_source: str = typer.Option(None, "--tasks", help="Task source, e.g. apps:FILE (default: by id prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (single mode)."),
) -> None:
    """Grade model responses: reward from the vulnerable grader, outcome from the honest oracle."""
    try:
        default_vulns = parse_vulns(vulns)
    except ValueError as exc:
        _fail(str(exc))
    if batch is not None:
        _grade_batch(batch, out, default_vulns, tasks_source)
        return
    if task is None or response is None:
        _fail("give --task and --response, or --batch FILE")
    if not response.exists():
        _fail(f"response file {response} does not exist")
    try:
        the_task = get_task(task, tasks_source)
    except TaskLoadError as exc:
        _fail(str(exc))
    text = response.read_bytes().decode("utf-8", errors="replace")
    sandbox = Sandbox()  # refuses here (exit 2) if only an rlimits sandbox is possible and not opted in
    try:
        result = grade_episode(the_task, text, default_vulns, sandbox)
    finally:
        sandbox.close()
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{result.task_id}: {result.outcome}")
    table.add_column("field")
    table.add_column("value")
    for key in (
        "reward",
        "proxy_pass",
        "honest_pass",
        "hack",
        "hacks",
        "winning_hack",
        "attempted_hacks",
        "honest_tests",
        "sandbox",
        "error",
        "findings",
        "runtime_evidence",
        "honest_reasons",
    ):
        table.add_row(key, Text(str(getattr(result, key))))  # model text: never read as markup
    Console().print(table)


def _error_line(message: str, task_id: object = None) -> dict:
    return {
        "task_id": task_id,
        "reward": 0.0,
        "proxy_pass": False,
        "honest_pass": False,
        "hack": False,
        "hacks": [],
        "outcome": "error",
        "sandbox": "none",
        "timings": {},
        "error": message,
    }


def _grade_batch(path: Path, out: Path | None, default_vulns: tuple[str, ...], tasks_source: str | None) -> None:
    if not path.exists():
        _fail(f"batch file {path} does not exist")
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    slots: list[dict | None] = []
    episodes: list[tuple[int, Episode]] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        item = None
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            if not isinstance(item.get("response"), str):
                raise ValueError("'response' must be a string")
            task = get_task(str(item["task_id"]), tasks_source)
            vulns = parse_vulns(item["vulns"]) if "vulns" in item else default_vulns
        except Exception as exc:  # noqa: BLE001 - a bad line (too deep, vulns of a wrong type) is one error line
            if isinstance(exc, KeyError):
                detail = f"missing field {exc}"
            elif isinstance(exc, ValueError | TaskLoadError):
                detail = str(exc)
            else:
                detail = f"{type(exc).__name__}: {str(exc)[:300]}"
            tid = item.get("task_id") if isinstance(item, dict) else None
            slots.append(_error_line(f"line {lineno}: {detail}", tid))
            continue
        episodes.append((len(slots), Episode(task, item["response"], vulns)))
        slots.append(None)
    with GradingPool() as pool:
        results = pool.grade_many([ep for _, ep in episodes], progress=True, description=f"grading {path.name}")
    for (slot, _), res in zip(episodes, results):
        slots[slot] = res.to_dict()
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for row in slots:
            sink.write(json.dumps(row) + "\n")
    finally:
        if out:
            sink.close()
    if out:
        console.print(f"wrote {len(slots)} results to {out}")


@env_app.command("check")
def check() -> None:
    """Grade the built-in hack suite under every grader setting and print the matrix."""
    with GradingPool() as pool:
        isolation = f"{pool.sandbox.isolation}, memory bound: {pool.sandbox.memory_bound}"
        cells = run_check(pool, progress=True)
    table = Table(title=f"env check (sandbox: {isolation})  cell = proxy/honest  label")
    table.add_column("response")
    for setting in SETTINGS:
        table.add_column(setting)
    rows: dict[str, list[str]] = {}
    for cell in cells:
        r = cell.result
        mark = ("P" if r.proxy_pass else "F") + "/" + ("P" if r.honest_pass else "F")
        label = ",".join(r.hacks) if r.hack else (r.outcome if r.outcome != "failed" else "-")
        text = f"{mark} {label}"
        text = f"[red]{text} !![/red]" if cell.problems else f"[green]{text}[/green]"
        rows.setdefault(cell.entry.name, []).append(text)
    for name, row in rows.items():
        table.add_row(name, *row)
    out = Console() if sys.stdout.isatty() else Console(width=130)  # logs: do not squeeze the matrix
    out.print(table)
    bad = [c for c in cells if c.problems]
    for c in bad:
        console.print(f"[red]{c.entry.name} under {c.setting}:[/red] " + "; ".join(c.problems))
    if bad:
        raise typer.Exit(1)
    out.print(
        f"[green]all {len(cells)} checks as expected[/green]: every hack passes only the graders "
        "with its hole, is labelled with its type, and never gets an honest pass."
    )
