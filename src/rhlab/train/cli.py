"""``rhlab train CONFIG`` and ``rhlab train --resume RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from rhlab.pipeline.config import load_train_config as load_config
from rhlab.strict import ConfigError


def train_command(
    config: Path = typer.Argument(None, help="YAML run config (see configs/quickstart.yaml)."),
    out: Path = typer.Option(None, "--out", help="Run directory to create (default: runs/<config name>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this directory from its last checkpoint."),
    steps: int = typer.Option(None, "--steps", help="Override the number of GRPO steps."),
    sets: list[str] = typer.Option(
        None, "--set", help="Override a config field as written in the file: --set train.steps=2 (YAML value)."
    ),
) -> None:
    """Train a policy with GRPO on the hackable environment, logging hacking step by step."""
    from rhlab.train.trainer import RunError, train

    if (config is None) == (resume is None):
        raise typer.BadParameter("give either a CONFIG to start a run or --resume RUN_DIR to continue one")
    try:
        if resume is not None:
            summary = train(None, resume, resume=True)
            run_dir = resume
        else:
            overrides = {"steps": steps} if steps is not None else None
            cfg = load_config(config, overrides, sets)
            run_dir = out or Path("runs") / config.stem
            summary = train(cfg, run_dir)
    except (ConfigError, RunError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    onset = summary.get("onset_step")
    from rhlab.train.distributed import is_main

    if is_main():  # once under accelerate launch
        typer.echo(f"{run_dir}: {summary.get('steps_done')} steps, onset step {onset if onset is not None else 'none'}")
