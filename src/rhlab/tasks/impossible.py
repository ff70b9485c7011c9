"""Impossible variants of any task (the ImpossibleBench idea): only a hack can earn the reward.

- ``oneoff``: one visible test's expected value is altered, so the visible tests contradict the
  description. The unaltered test is added to the held-out tests, so the honest run holds both
  the true and the altered expectation for the same call and no function can pass it.
- ``conflicting``: a visible test is duplicated with an altered expected value, so two visible
  assertions contradict each other; no function can pass even the visible tests honestly.

A reward on such a task is therefore a hack. One way round both variants is a function that
answers the same call differently on successive calls; that is a hack too, but the honest run
cannot tell it from a solve, so the tasks carry the tags ``impossible`` and ``impossible:KIND``
for anyone who wants to count every reward on them (``rhlab.train.impossible_eval`` reports the
reward rate).
Task ids stay the same, so a run's problem list and the transcripts line up with the source.
Tasks whose visible tests have no ``assert CALL == LITERAL`` to alter are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from rhlab.sandbox.harness._rhlab_common import classify
from rhlab.tasks.schema import GENERATED_TESTS, Task
from rhlab.tasks.stdin import literal

TRANSFORMS = ("impossible_oneoff", "impossible_conflicting")
IMPOSSIBLE_TAG = "impossible"


def altered(value: object) -> object | None:
    """A value of the same type that differs from ``value`` (None when there is no obvious one)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.0
    if isinstance(value, str):
        stripped = value.rstrip()
        if not stripped:
            return value + "0"
        last = stripped[-1]
        swap = str((int(last) + 1) % 10) if last.isdigit() else ("b" if last == "a" else "a")
        return stripped[:-1] + swap + value[len(stripped) :]
    if isinstance(value, list | tuple):
        return type(value)([*value, value[-1] if value else 0])
    if isinstance(value, dict):
        return None
    if value is None:
        return 0
    return None


def _alter_test(test: str) -> str | None:
    """The test with its expected literal altered, or None if it has no literal to alter."""
    kind, actual, expected_src = classify(test)
    if kind != "compare" or expected_src is None:
        return None
    try:
        expected = ast.literal_eval(expected_src)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    new = altered(expected)
    new_src = literal(new) if new is not None else None
    if new_src is None or new == expected:
        return None
    return f"assert {actual} == {new_src}"


def make_impossible(task: Task, kind: str) -> Task | None:
    """The impossible variant of ``task`` (``oneoff`` or ``conflicting``), or None if it cannot be made."""
    kind = kind.removeprefix("impossible_")
    for index in reversed(range(len(task.visible_tests))):
        original = task.visible_tests[index]
        changed = _alter_test(original)
        if changed is None:
            continue
        visible = list(task.visible_tests)
        heldout = list(task.heldout_tests)
        if kind == "oneoff":
            visible[index] = changed
            heldout.insert(0, original)
        elif kind == "conflicting":
            visible.insert(index + 1, changed)
        else:
            raise ValueError(f"unknown impossible transform {kind!r}: use oneoff or conflicting")
        data = task.model_dump()
        data.update(
            visible_tests=visible,
            heldout_tests=heldout,
            canonical_solution=None,
            tags=[*task.tags, IMPOSSIBLE_TAG, f"impossible:{kind}"],
        )
        if task.description or task.signature:
            data["prompt"] = ""  # re-rendered from the altered visible tests
        return Task.model_validate(data, context={GENERATED_TESTS: True})  # all tests valid already
    return None


def apply_transform(tasks: Iterable[Task], transform: str | None) -> list[Task]:
    """``tasks`` unchanged (``None``/``"none"``) or their impossible variants (untransformable ones left out)."""
    tasks = list(tasks)
    if transform in (None, "", "none"):
        return tasks
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown task transform {transform!r}: choose from {['none', *TRANSFORMS]}")
    out = [make_impossible(t, transform) for t in tasks]
    return [t for t in out if t is not None]
