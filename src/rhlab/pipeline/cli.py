"""``rhlab run CONFIG``: the whole experiment, from knowledge to report, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from rhlab.train.config import ConfigError


def run_command(
    config: Path = typer.Argument(..., help="Experiment YAML (see configs/quickstart.yaml)."),
    out: Path = typer.Option(None, "--out", help="Experiment directory (default: runs/<config name>)."),
    check: bool = typer.Option(False, "--check", help="Only validate the config and list the runs."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate the config and print the plan with memory and time estimates; run nothing."
    ),
    sets: list[str] = typer.Option(
        None, "--set", help="Override a config field: --set train.steps=2 (value parsed as YAML; repeatable)."
    ),
) -> None:
    """Run knowledge -> RL -> checkpoint evals -> report; re-running resumes where it stopped."""
    from rhlab.pipeline.config import load_experiment
    from rhlab.pipeline.run import run_experiment
    from rhlab.train.trainer import RunError

    try:
        experiment = load_experiment(config, sets)
        if dry_run:
            from rhlab.pipeline.plan import detect_hardware, plan_refusals, plan_text

            hardware = detect_hardware()
            typer.echo(plan_text(experiment, hardware))
            refusals = plan_refusals(experiment, hardware)
            for problem in refusals:
                typer.echo(f"error: {problem}", err=True)
            if refusals:
                raise typer.Exit(2)
            return
        if check:
            for name, cell in experiment.cells():
                typer.echo(f"{name}: {cell.steps} steps x {cell.episodes_per_step} episodes, model {cell.model}")
            return
        report = run_experiment(experiment, out or Path("runs") / config.stem)
    except (ConfigError, RunError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from rhlab.train.distributed import is_main

    if is_main():  # once under accelerate launch
        typer.echo(f"report: {report}")
