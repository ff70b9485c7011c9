"""``rhlab report EXPERIMENT``: re-make the report of an experiment (or of one run) from its files."""

from __future__ import annotations

from pathlib import Path

import typer

from rhlab.report.numbers import ReportInputError
from rhlab.rundir import ExperimentDir


def report_command(
    experiment_dir: Path = typer.Argument(
        ..., help="Experiment directory (with runs/ and its config), or a single run directory."
    ),
    inspect_log: list[Path] = typer.Option(
        [], "--inspect-log", help="An Inspect eval log whose scores the report shows (repeatable; rhlab[inspect])."
    ),
) -> None:
    """Recompute every number, redraw the figures and write EXPERIMENT/report/report.html."""
    from rhlab.report.html import build_report

    for path in inspect_log:
        if not path.is_file():
            typer.echo(f"error: no Inspect log at {path}", err=True)
            raise typer.Exit(2)
    try:
        page = build_report(experiment_dir, inspect_log)
    except ReportInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"numbers: {ExperimentDir(experiment_dir).numbers}")
    typer.echo(f"report: {page}")
