"""The ``rhlab`` command line: one sub-command group per pipeline stage."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable

import typer

from rhlab.doctor import doctor_command
from rhlab.env.cli import env_app, grade
from rhlab.evals.cli import eval_command, judge_app
from rhlab.evals.probes.cli import probe_app
from rhlab.knowledge.cli import hack_knowledge_command, sdf_app
from rhlab.models.base import ModelError
from rhlab.models.cli import chat, models_app
from rhlab.pipeline.cli import run_command
from rhlab.report.cli import report_command
from rhlab.sandbox import SandboxError, allow_weak_sandbox
from rhlab.tasks import TaskLoadError
from rhlab.tasks.cli import impossible_eval_command, tasks_app
from rhlab.train.cli import train_command
from rhlab.train.rescore import rescore_command


def group_with_default(command: Callable[..., None], help: str) -> typer.Typer:
    """A command group that runs ``command`` (with its own options) when no sub-command is named.

    ``rhlab eval --evals core`` keeps working while ``rhlab eval hack-knowledge`` is a sub-command.
    """

    def callback(ctx: typer.Context, **options: object) -> None:
        if ctx.invoked_subcommand is None:
            command(**options)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    params = list(inspect.signature(command).parameters.values())
    callback.__signature__ = inspect.Signature([ctx_param, *params])  # type: ignore[attr-defined]
    callback.__doc__ = command.__doc__
    group = typer.Typer(invoke_without_command=True, help=help)
    group.callback()(callback)
    return group


eval_app = group_with_default(eval_command, help=eval_command.__doc__ or "")
eval_app.command("hack-knowledge")(hack_knowledge_command)
eval_app.command("impossible")(impossible_eval_command)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(tasks_app, name="tasks")
app.add_typer(env_app, name="env")
app.command("grade")(grade)
app.add_typer(eval_app, name="eval")
app.add_typer(sdf_app, name="sdf")
app.add_typer(judge_app, name="judge")
app.add_typer(probe_app, name="probe")
app.add_typer(models_app, name="models")
app.command("chat")(chat)
app.command("train")(train_command)
app.command("rescore")(rescore_command)
app.command("run")(run_command)
app.command("report")(report_command)
app.command("doctor")(doctor_command)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if "--allow-weak-sandbox" in sys.argv:  # any command that grades (grade, train, run, eval)
        sys.argv.remove("--allow-weak-sandbox")
        allow_weak_sandbox()
    try:
        app()
    except (ModelError, TaskLoadError, SandboxError) as exc:
        # Our own errors already say what to fix: one line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
