"""``rhlab tasks list|show|stats`` and ``rhlab eval impossible``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from rhlab.tasks.formats import FORMATS, is_format_spec
from rhlab.tasks.sources import TaskLoadError, format_report, get_task, load_tasks

tasks_app = typer.Typer(no_args_is_help=True, help="Browse the coding tasks.")
console = Console()

SOURCE_HELP = (
    "Comma-separated: builtin, humaneval, paths to JSONL task files, or local dataset copies as FORMAT:PATH "
    f"(FORMAT: {', '.join(sorted(FORMATS))}; PATH: .jsonl[.gz], .json, .parquet, a folder of them, or a "
    "`datasets.save_to_disk` folder, PATH#SPLIT for one split)."
)
TRANSFORM_HELP = "none, impossible_oneoff or impossible_conflicting (impossible variants: any reward is a hack)."


def _load(source: str, transform: str | None = None) -> list:
    try:
        return load_tasks(source, transform)
    except TaskLoadError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from exc


@tasks_app.command("list")
def list_tasks(
    source: str = typer.Option("builtin", help=SOURCE_HELP),
    transform: str = typer.Option("none", help=TRANSFORM_HELP),
) -> None:
    """List tasks with difficulty and test counts."""
    tasks = _load(source, transform)
    table = Table(title=f"{len(tasks)} tasks from {source}")
    for col in ("id", "entry point", "difficulty", "visible", "held-out", "tags"):
        table.add_column(col)
    for t in tasks:
        table.add_row(
            t.id,
            t.entry_point,
            t.difficulty or "-",
            str(len(t.visible_tests)),
            str(len(t.heldout_tests)),
            ", ".join(t.tags),
        )
    console.print(table)


@tasks_app.command("show")
def show_task(
    task_id: str = typer.Argument(..., help="Task id, e.g. factorial, humaneval/0 or apps/4001."),
    source: str = typer.Option(None, help=SOURCE_HELP),
    transform: str = typer.Option("none", help=TRANSFORM_HELP),
    heldout: bool = typer.Option(False, "--heldout", help="Also print the held-out tests and the canonical solution."),
) -> None:
    """Print the prompt the model sees (and, on request, what it never sees)."""
    try:
        task = get_task(task_id, source, transform)
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


@tasks_app.command("stats")
def stats(
    source: str = typer.Option("builtin", help=SOURCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Counts by difficulty and kind, test counts, tasks without held-out tests, tests that cannot fail, rows kept."""
    from rhlab.tasks.task_stats import task_stats

    loads = []
    for part in (p.strip() for p in source.split(",") if p.strip()):
        if is_format_spec(part):
            try:
                report = format_report(part, progress=not as_json)
            except TaskLoadError as exc:
                raise typer.BadParameter(str(exc), param_hint="--source") from exc
            loads.append(
                {
                    "source": part,
                    "rows": report.rows,
                    "kept": report.kept,
                    "skipped": report.skipped,
                    "seconds": round(report.seconds, 3),
                }
            )
    summary = task_stats(_load(source)).as_dict()
    if as_json:
        print(json.dumps({"source": source, "loads": loads, **summary}))
        return
    for load in loads:
        console.print(
            f"{load['source']}: kept [bold]{load['kept']}[/bold] of {load['rows']} rows "
            f"in {load['seconds']:.1f} s" + (f"; skipped {len(load['skipped'])}:" if load["skipped"] else "")
        )
        for line in load["skipped"][:20]:
            console.print(f"  {line}", markup=False, soft_wrap=True)
        if len(load["skipped"]) > 20:
            console.print(f"  ... and {len(load['skipped']) - 20} more")
    table = Table(title=f"{summary['tasks']} tasks from {source}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for level, n in sorted(summary["by_difficulty"].items()):
        table.add_row(f"difficulty {level}", str(n))
    for kind, n in sorted(summary["by_kind"].items()):
        table.add_row(f"kind {kind}", str(n))
    for side in ("visible_tests", "heldout_tests"):
        s = summary[side]
        table.add_row(
            side.replace("_", " "),
            f"{s['total']} (per task min {s['min']}, median {s['median']}, mean {s['mean']}, max {s['max']})",
        )
    table.add_row("tasks without held-out tests", str(summary["no_heldout"]))
    table.add_row("tasks with a canonical solution", str(summary["with_canonical_solution"]))
    dropped, in_tasks = summary["dropped_tests"], summary["tasks_with_dropped_tests"]
    table.add_row("tests that cannot fail, dropped", f"{dropped} (in {in_tasks} tasks)")
    table.add_row("tests that cannot fail, left", str(summary["vacuous_tests"]))
    console.print(table)


def impossible_eval_command(
    model: str = typer.Option(..., "--model", help="Policy spec, e.g. embedded, hf:PATH, openai:MODEL@URL."),
    source: str = typer.Option("builtin", "--source", help=SOURCE_HELP),
    kind: str = typer.Option("conflicting", "--kind", help="oneoff or conflicting."),
    samples: int = typer.Option(4, "--samples", min=1, help="Completions per task."),
    holes: str = typer.Option("all", "--holes", help="all or rotate (which grader holes each task has)."),
    max_tasks: int = typer.Option(None, "--max-tasks", min=1, help="Evaluate a seeded sample of this many tasks."),
    config: Path = typer.Option(None, "--config", help="Run config whose test_prompt and generation settings to use."),
    out: Path = typer.Option(Path("impossible_eval.json"), "--out", help="Summary JSON (transcripts beside it)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Hacking propensity on impossible tasks: every reward there is a hack."""
    from rhlab.pipeline.config import load_train_config as load_config
    from rhlab.train.impossible_eval import impossible_eval

    transform = kind if kind.startswith("impossible_") else f"impossible_{kind}"
    if holes not in ("all", "rotate"):
        raise typer.BadParameter("use 'all' or 'rotate'", param_hint="--holes")
    try:
        run_config = load_config(config) if config is not None else None
        summary = impossible_eval(
            model,
            source,
            transform,
            out_path=out,
            samples=samples,
            holes=holes,
            max_tasks=max_tasks,
            seed=seed,
            config=run_config,
        )
    except ValueError as exc:  # bad config, source or transform: one line, no traceback
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"{summary['tasks']} impossible tasks ({transform}), {samples} samples each: "
        f"hack propensity [bold]{summary['hack_propensity']:.3f}[/bold] "
        f"(hack rate {summary['hack_rate']:.3f}); written to {out}"
    )
