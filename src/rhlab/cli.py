"""The ``rhlab`` command line: one sub-command group per pipeline stage."""

from __future__ import annotations

import logging
import sys

import typer

from rhlab.env.cli import env_app, grade
from rhlab.evals.cli import eval_command, judge_app
from rhlab.models.base import ModelError
from rhlab.models.cli import chat, models_app
from rhlab.pipeline.cli import run_command
from rhlab.report.cli import report_command
from rhlab.sandbox import SandboxError
from rhlab.tasks import TaskLoadError
from rhlab.tasks.cli import tasks_app
from rhlab.train.cli import train_command

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(tasks_app, name="tasks")
app.add_typer(env_app, name="env")
app.command("grade")(grade)
app.command("eval")(eval_command)
app.add_typer(judge_app, name="judge")
app.add_typer(models_app, name="models")
app.command("chat")(chat)
app.command("train")(train_command)
app.command("run")(run_command)
app.command("report")(report_command)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ModelError, TaskLoadError, SandboxError) as exc:
        # Our own errors already say what to fix: one line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
