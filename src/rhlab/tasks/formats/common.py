"""What the dataset formats share: field access with clear errors, and the two task shapes."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from rhlab.tasks.formats.rows import RowError
from rhlab.tasks.schema import GENERATED_TESTS, Difficulty, Task
from rhlab.tasks.stdin import (
    CONTRACT,
    ENTRY_POINT,
    SIGNATURE,
    ConversionLimits,
    as_text,
    small_enough,
    split_tests,
    stdin_test,
    wrap_program,
)
from rhlab.tasks.vacuous import choose_visible, stubs_passing

NO_HELDOUT_TAG = "no_heldout"
"""Tag of a task without held-out tests: an honest pass on it cannot be verified beyond what the model saw."""


def text_field(row: dict, name: str, required: bool = True) -> str:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise RowError(f"missing field {name!r}")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field {name!r} should be text, got {type(value).__name__}")
    return value


def json_field(row: dict, name: str, default: object = None) -> object:
    """A field stored as a JSON string (APPS, LiveCodeBench); already-decoded values pass through."""
    value = row.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise RowError(f"missing field {name!r}")
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RowError(f"field {name!r} is not valid JSON ({exc.msg})") from None


def original_id(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(f"missing id field {name!r}")
    return str(value).strip()


def stdin_pairs(
    inputs: Sequence[object], outputs: Sequence[object], limits: ConversionLimits, keep: int | None = None
) -> list[str]:
    """Test lines from parallel input/output lists (at most ``keep``); unusable or oversized pairs are left out."""
    if len(inputs) != len(outputs):
        raise RowError(f"{len(inputs)} test inputs but {len(outputs)} outputs")
    tests: list[str] = []
    for raw_in, raw_out in zip(inputs, outputs):
        if keep is not None and len(tests) >= keep:
            break
        stdin, stdout = as_text(raw_in), as_text(raw_out)
        if stdin is None or stdout is None or not small_enough(stdin, stdout, limits=limits):
            continue
        tests.append(stdin_test(stdin, stdout))
    return tests


def make_task(
    *,
    task_id: str,
    entry_point: str,
    description: str,
    signature: str,
    public: list[str],
    private: list[str],
    limits: ConversionLimits,
    fmt: str,
    kind: str,
    canonical: str | None = None,
    difficulty: Difficulty | None = None,
    tags: Sequence[str] = (),
    generated: bool = True,
) -> Task:
    """A validated task from public/private tests, flagged when it has nothing held out.

    ``generated``: the tests were built here from ``repr``'d data, so they are valid Python by
    construction and their (costly, at 100k tests) syntax check is skipped. When an answer that
    computes nothing (``rhlab.tasks.vacuous.STUBS``) would pass the visible tests of a function
    task, other tests are shown instead (``choose_visible``), so the visible set is no free reward.
    """
    if kind == "function":
        shown = public[: limits.max_visible] if public else private[:1]
        if shown and stubs_passing(shown, entry_point):
            n_visible = min(limits.max_visible, len(public)) if public else 1
            public, private = choose_visible(public + private, n_visible, entry_point)
    visible, heldout = split_tests(public, private, limits)
    if not visible:
        raise RowError("no usable tests")
    all_tags = [fmt, kind, *tags]
    if not heldout:
        all_tags.append(NO_HELDOUT_TAG)
    try:
        data = dict(
            id=f"{fmt}/{task_id}",
            entry_point=entry_point,
            description=description,
            signature=signature,
            visible_tests=visible,
            heldout_tests=heldout,
            canonical_solution=canonical,
            tags=all_tags,
            difficulty=difficulty,
            source=fmt,
        )
        return Task.model_validate(data, context={GENERATED_TESTS: generated})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RowError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def stdin_task(
    *,
    task_id: str,
    statement: str,
    public: list[str],
    private: list[str],
    limits: ConversionLimits,
    fmt: str,
    program: str | None = None,
    difficulty: Difficulty | None = None,
    tags: Sequence[str] = (),
) -> Task:
    """A stdin problem as ``solution(stdin) -> str`` (see ``rhlab.tasks.stdin``)."""
    return make_task(
        task_id=task_id,
        entry_point=ENTRY_POINT,
        description=f"{CONTRACT}\n\n{statement.strip()}",
        signature=SIGNATURE,
        public=public,
        private=private,
        limits=limits,
        fmt=fmt,
        kind="stdin",
        canonical=wrap_program(program) if program else None,
        difficulty=difficulty,
        tags=tags,
    )
