"""MBPP: ``task_id``, ``text`` (``prompt`` in the sanitized split), ``code``, ``test_list``, ``test_setup_code``,
``challenge_test_list``.

Tests are already ``assert`` lines calling the function. The first test is visible (a few, when
there are many), the rest and the challenge tests are held out; tests no answer can fail are
dropped, and a later test is shown instead when a stub answer would pass the first
(``rhlab.tasks.vacuous``). The entry point is the function
of ``code`` the tests call. Setup code (rare; ``test_imports`` in the sanitized split) is
prepended to each test, which then runs as a statement.
"""

from __future__ import annotations

import ast

from rhlab.tasks.formats.common import make_task, original_id, text_field
from rhlab.tasks.formats.rows import RowError, too_deep
from rhlab.tasks.schema import Task
from rhlab.tasks.stdin import ConversionLimits
from rhlab.tasks.vacuous import choose_visible, meaningful_tests

NAME = "mbpp"


def _str_list(row: dict, name: str) -> list[str]:
    value = row.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(f"field {name!r} should be a list of test strings")
    return [v.strip() for v in value if v.strip()]


def _defined(code: str) -> list[ast.FunctionDef]:
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise RowError(f"code does not parse: {exc.msg} (line {exc.lineno})") from None
    except (RecursionError, MemoryError) as exc:
        raise RowError(too_deep(exc, "code")) from None
    return [n for n in tree.body if isinstance(n, ast.FunctionDef)]


def _called(tests: list[str]) -> list[str]:
    names = []
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError as exc:
            raise RowError(f"test {test[:60]!r} does not parse: {exc.msg}") from None
        except (RecursionError, MemoryError) as exc:
            raise RowError(f"test {test[:60]!r}: {too_deep(exc, 'the test')}") from None
        names += [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return names


def convert(row: dict, limits: ConversionLimits) -> Task:
    task_id = original_id(row, "task_id")
    text = text_field(row, "text", required=False) or text_field(row, "prompt")
    code = text_field(row, "code")
    tests = _str_list(row, "test_list")
    challenge = _str_list(row, "challenge_test_list")
    if not tests:
        raise RowError("test_list is empty")
    setup = row.get("test_setup_code") or row.get("test_imports") or ""
    if isinstance(setup, list):
        setup = "\n".join(setup)
    defs = {fn.name: fn for fn in _defined(code)}
    called = [name for name in _called(tests) if name in defs]
    if not called:
        raise RowError("the tests call no function that `code` defines")
    entry = defs[called[0]]
    args = ast.unparse(entry.args)
    if setup.strip():
        tests, challenge = [f"{setup.strip()}\n{t}" for t in tests], [f"{setup.strip()}\n{t}" for t in challenge]
    tests, dropped = meaningful_tests(tests, entry.name)
    challenge, dropped_challenge = meaningful_tests(challenge, entry.name)
    if not tests:
        raise RowError(f"no test in test_list can fail ({'; '.join(dropped)[:200]})")
    public, private = choose_visible(tests, 1 if len(tests) < 6 else 2, entry.name)
    task = make_task(
        task_id=task_id,
        entry_point=entry.name,
        description=text.strip(),
        signature=f"def {entry.name}({args}):",
        public=public,
        private=private + challenge,
        limits=limits,
        fmt=NAME,
        kind="function",
        canonical=code,
        difficulty=None,
        tags=["statement_tests"] if setup.strip() else [],
        generated=False,
    )
    task.dropped_tests = dropped + dropped_challenge
    return task
