"""``rhlab tasks list|show``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from rhlab.tasks.sources import TaskLoadError, get_task, load_tasks

tasks_app = typer.Typer(no_args_is_help=True, help="Browse the coding tasks.")
console = Console()

SOURCE_HELP = "Comma-separated: builtin, humaneval, or paths to JSONL task files."


@tasks_app.command("list")
def list_tasks(source: str = typer.Option("builtin", help=SOURCE_HELP)) -> None:
    """List tasks with difficulty and test counts."""
    try:
        tasks = load_tasks(source)
    except TaskLoadError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from exc
    table = Table(title=f"{len(tasks)} tasks from {source}")
    for col in ("id", "entry point", "difficulty", "visible", "held-out", "tags"):
        table.add_column(col)
    for t in tasks:
        table.add_row(t.id, t.entry_point, t.difficulty or "-", str(len(t.visible_tests)),
                      str(len(t.heldout_tests)), ", ".join(t.tags))
    console.print(table)


@tasks_app.command("show")
def show_task(
    task_id: str = typer.Argument(..., help="Task id, e.g. factorial or humaneval/0."),
    source: str = typer.Option(None, help=SOURCE_HELP),
    heldout: bool = typer.Option(False, "--heldout", help="Also print the held-out tests and the canonical solution."),
) -> None:
    """Print the prompt the model sees (and, on request, what it never sees)."""
    try:
        task = get_task(task_id, source)
    except TaskLoadError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.rule(f"{task.id}  ({task.source}, {task.difficulty or 'unrated'})")
    console.print(Markdown(task.prompt))
    if heldout:
        console.rule("held-out tests")
        console.print("\n".join(task.heldout_tests) or "(none)", markup=False)
        console.rule("canonical solution")
        console.print(task.canonical_solution or "(none)", markup=False)
