"""CodeContests (AlphaCode): ``name``, ``description``, ``public_tests``/``private_tests``/``generated_tests``,
``solutions``, ``difficulty``, ``cf_rating``.

Every problem reads stdin. Each test field is ``{"input": [...], "output": [...]}``; ``solutions``
is ``{"language": [...], "solution": [...]}`` where language 3 is Python 3 (1 is Python 2, 2 C++,
4 Java). Public tests (the statement's examples) are the visible ones; private then generated
tests are held out. ``difficulty`` is a class label (1 EASY, 2 MEDIUM, 3-5 HARD..HARDEST, others
are source-specific); a positive Codeforces ``cf_rating`` takes precedence when present.
"""

from __future__ import annotations

from rhlab.tasks.formats.common import original_id, stdin_pairs, stdin_task, text_field
from rhlab.tasks.formats.rows import RowError
from rhlab.tasks.schema import Difficulty, Task
from rhlab.tasks.stdin import ConversionLimits, python3_program

NAME = "codecontests"
PYTHON3 = 3
LABELS = {1: "easy", 2: "medium", 3: "hard", 4: "hard", 5: "hard"}
NAMED_LABELS = {"EASY": 1, "MEDIUM": 2, "HARD": 3, "HARDER": 4, "HARDEST": 5}


def _tests(row: dict, name: str, limits: ConversionLimits) -> list[str]:
    value = row.get(name) or {}
    if not isinstance(value, dict):
        raise RowError(f"field {name!r} should be {{'input': [...], 'output': [...]}}")
    inputs, outputs = value.get("input") or [], value.get("output") or []
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise RowError(f"field {name!r}: 'input' and 'output' should be lists")
    try:
        return stdin_pairs(inputs, outputs, limits, keep=limits.max_visible + limits.max_heldout)
    except RowError as exc:
        raise RowError(f"{name}: {exc}") from None


def _python3_solution(row: dict) -> str | None:
    sols = row.get("solutions") or {}
    if not isinstance(sols, dict):
        return None
    for lang, code in zip(sols.get("language") or [], sols.get("solution") or []):
        if (lang == PYTHON3 or str(lang).upper() == "PYTHON3") and isinstance(code, str) and python3_program(code):
            return code
    return None


def difficulty_of(row: dict) -> tuple[Difficulty | None, list[str]]:
    rating = row.get("cf_rating")
    label = row.get("difficulty")
    if isinstance(label, str):
        label = NAMED_LABELS.get(label.upper(), label)
    tags = [f"difficulty:{label}"] if label not in (None, 0, "") else []
    if isinstance(rating, int | float) and rating > 0:
        tags.append(f"cf_rating:{int(rating)}")
        return ("easy" if rating <= 1300 else "medium" if rating <= 1900 else "hard"), tags
    return LABELS.get(label) if isinstance(label, int) else None, tags


def convert(row: dict, limits: ConversionLimits) -> Task:
    task_id = original_id(row, "name")
    statement = text_field(row, "description")
    public = _tests(row, "public_tests", limits)
    private = _tests(row, "private_tests", limits) + _tests(row, "generated_tests", limits)
    difficulty, tags = difficulty_of(row)
    return stdin_task(
        task_id=task_id,
        statement=statement,
        public=public,
        private=private,
        limits=limits,
        fmt=NAME,
        program=_python3_solution(row),
        difficulty=difficulty,
        tags=tags,
    )
