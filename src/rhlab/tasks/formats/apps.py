"""APPS (Hendrycks et al.): ``problem_id``, ``question``, ``input_output``, ``solutions``, ``starter_code``,
``difficulty``.

``input_output`` is a JSON string ``{"inputs": [...], "outputs": [...], "fn_name"?: str}``. Without
``fn_name`` the problem reads stdin (inputs and outputs are texts, outputs sometimes lists of
lines). With ``fn_name`` each input is the list of call arguments and each output the expected
return value, usually wrapped in a one-element list (unwrapped here, as APPS's own checker
also accepts). LeetCode-style starter code (``class Solution``) becomes a
plain function task (``method_as_function``); its reference solution gets a small adapter
function. ``solutions`` is a JSON list of Python programs; the first that parses as Python 3
becomes the canonical solution.
"""

from __future__ import annotations

from rhlab.tasks.formats.common import json_field, make_task, original_id, stdin_pairs, stdin_task, text_field
from rhlab.tasks.formats.rows import RowError
from rhlab.tasks.schema import Task
from rhlab.tasks.stdin import ConversionLimits, call_test, method_adapter, method_as_function, python3_program

NAME = "apps"
DIFFICULTY = {"introductory": "easy", "interview": "medium", "competition": "hard"}


def _first_python3(solutions: object) -> str | None:
    if not isinstance(solutions, list):
        return None
    return next((s for s in solutions if isinstance(s, str) and s.strip() and python3_program(s)), None)


def _n_visible(n_tests: int) -> int:
    return 1 if n_tests < 4 else 2


def convert(row: dict, limits: ConversionLimits) -> Task:
    task_id = original_id(row, "problem_id")
    question = text_field(row, "question")
    io = json_field(row, "input_output")
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
        raise RowError("input_output must be a JSON object with 'inputs' and 'outputs' lists")
    solutions = json_field(row, "solutions", default=[])
    canonical = _first_python3(solutions)
    raw_difficulty = str(row.get("difficulty") or "")
    difficulty = DIFFICULTY.get(raw_difficulty)
    tags = [f"difficulty:{raw_difficulty}"] if raw_difficulty else []
    fn_name = io.get("fn_name")
    if not fn_name:
        tests = stdin_pairs(io["inputs"], io["outputs"], limits, keep=limits.max_visible + limits.max_heldout)
        k = _n_visible(len(tests))
        return stdin_task(
            task_id=task_id,
            statement=question,
            public=tests[:k],
            private=tests[k:],
            limits=limits,
            fmt=NAME,
            program=canonical,
            difficulty=difficulty,
            tags=tags,
        )
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise RowError(f"fn_name {fn_name!r} is not a Python identifier")
    starter = text_field(row, "starter_code", required=False)
    signature = starter.strip() or f"def {fn_name}(...):"
    if "class Solution" in starter:
        signature = method_as_function(starter, fn_name) or f"def {fn_name}(...):"
        canonical = canonical + method_adapter(fn_name) if canonical else None
    if len(io["inputs"]) != len(io["outputs"]):
        raise RowError(f"{len(io['inputs'])} test inputs but {len(io['outputs'])} outputs")
    tests = []
    for args, out in zip(io["inputs"], io["outputs"]):
        if len(tests) >= limits.max_visible + limits.max_heldout:
            break
        args = args if isinstance(args, list) else [args]
        expected = out[0] if isinstance(out, list) and len(out) == 1 else out
        test = call_test(fn_name, args, expected)
        if test is not None and len(test) <= limits.max_test_chars:
            tests.append(test)
    k = _n_visible(len(tests))
    return make_task(
        task_id=task_id,
        entry_point=fn_name,
        description=question.strip(),
        signature=signature,
        public=tests[:k],
        private=tests[k:],
        limits=limits,
        fmt=NAME,
        kind="function",
        canonical=canonical,
        difficulty=difficulty,
        tags=tags,
    )
