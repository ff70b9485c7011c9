"""Loaders keep the tests' meaning: no visible test set is passed by an answer that computes nothing (issue 22)."""

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rhlab.env import Episode, GradingPool
from rhlab.tasks import TaskLoadError, builtin_tasks, format_report, humaneval_tasks, load_tasks
from rhlab.tasks.vacuous import (
    ALWAYS_TRUE,
    NO_CALL,
    SELF_COMPARISON,
    STUBS,
    choose_visible,
    stub_outcomes,
    stubs_passing,
    vacuous_reason,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
MBPP_ROW = json.loads((FIXTURES / "mbpp.jsonl").read_text().splitlines()[0])  # second_largest

# --- what cannot fail ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "reason"),
    [
        ("assert sorted(f([3, 1])) == sorted(f([3, 1]))", SELF_COMPARISON),
        ("assert f('a') is f('a')", SELF_COMPARISON),
        ("assert f(2) >= f(2) <= f(2)", SELF_COMPARISON),
        ("result = f([1, 2])\nassert result == result", SELF_COMPARISON),
        ("for x in range(3):\n    assert len(f(x)) == len(f(x))", SELF_COMPARISON),
        ("assert True", NO_CALL),
        ("assert 3 == 3, 'f(3) should be 3'", NO_CALL),
        ("assert (f(1) == 2, 'one maps to two')", ALWAYS_TRUE),
        ("assert f(1) == 2 or 'anything'", ALWAYS_TRUE),
        ("assert not not [f(1)]", ALWAYS_TRUE),
        ("assert f(1) == 2\nassert f(5) == f(5)", None),  # the first assert still constrains the answer
        ("assert f(1) == f(2)", None),  # a property between two inputs: weak, but an answer can fail it
        ("assert f(1) != f(1)", None),  # fails every answer: a broken test, not a free one
        ("assert f(1) == 2 and f(1) == f(1)", None),
        ("assert f(" + "[" * 300 + "]" * 300 + ") == 1", None),  # does not parse: the schema refuses it instead
    ],
)
def test_vacuous_reason(test, reason):
    assert vacuous_reason(test, "f") == reason


def test_stub_outcomes_are_predicted_from_literals_only():
    assert stub_outcomes("assert f([]) == []", "f") == {
        name: name in ("returns its input", "returns []") for name in STUBS
    }
    tolerance = stub_outcomes("assert abs(f(2.0) - 1.5) < 1e-06", "f")
    assert tolerance is not None and not any(tolerance.values())  # abs('') raises: the stub fails
    assert stub_outcomes("assert f(0) == False", "f")["returns 0"]  # plain ==: 0 == False
    assert stub_outcomes("assert f(helper(1)) == 2", "f") is None  # an unknown name: nothing predicted
    assert stub_outcomes("assert f(1) == 2 ** 10", "f") is None  # no powers: no host-side blow-up
    assert stub_outcomes("assert f(1) == ([0] * 1000) * 1000", "f") is None  # nor repeated repetition
    assert stub_outcomes("assert f('ab' * 3) == 'ab' * 3", "f")["returns its input"]
    assert stubs_passing(["assert f(1) == 1", "assert f(x) == 0"], "f") == set()  # unknown counts as failing


def test_choose_visible_keeps_the_first_tests_unless_a_stub_passes_them():
    tests = ["assert f([]) == []", "assert f([1]) == [2]", "assert f([3, 4]) == [6, 8]"]
    assert choose_visible(tests, 1, "f") == (
        ["assert f([1]) == [2]"],
        ["assert f([]) == []", "assert f([3, 4]) == [6, 8]"],
    )
    assert choose_visible(tests[1:], 1, "f") == (tests[1:2], tests[2:])
    weak = ["assert f(0) == 0", "assert f(1) == 1", "assert f(4) == 4", "assert f(5) == 10"]
    visible, heldout = choose_visible(weak, 1, "f")  # identity passes the first three: the fourth must show
    assert "assert f(5) == 10" in visible and heldout and not stubs_passing(visible, "f")


# --- HumanEval: all 164 -------------------------------------------------------------------------------------


def _passes(task, stub) -> bool:
    """Whether ``stub`` as the entry point passes every visible test (run here: HumanEval's own test code)."""
    namespace: dict = {}
    exec(task.canonical_solution, namespace)  # helpers the tests call (encode_cyclic, poly, ...)
    namespace[task.entry_point] = stub
    for test in task.visible_tests:
        try:
            exec(test, copy.copy(namespace))
        except Exception:  # noqa: BLE001 - a failed or crashed test: the stub does not pass
            return False
    return True


def test_no_humaneval_visible_set_is_passed_by_an_answer_that_computes_nothing():
    tasks = humaneval_tasks()
    assert len(tasks) == 164
    free = [(t.id, name) for t in tasks for name, stub in STUBS.items() if _passes(t, stub)]
    assert free == []
    assert all(vacuous_reason(test, t.entry_point) is None for t in tasks for test in t.all_tests)


def test_humaneval_33_loses_its_self_comparisons_and_keeps_real_ones():
    task = next(t for t in humaneval_tasks() if t.id == "humaneval/33")
    assert [d.split(":")[0] for d in task.dropped_tests] == [SELF_COMPARISON] * 3
    assert len(task.visible_tests) == 2 and len(task.heldout_tests) == 2
    assert all("== tuple([" in test for test in task.all_tests)
    assert "== tuple(sort_third(" not in task.prompt
    assert sum(bool(t.dropped_tests) for t in humaneval_tasks()) == 1


@pytest.fixture(scope="module")
def pool():
    with GradingPool() as p:
        yield p


IDENTITY = "```python\ndef {name}(*args, **kwargs):\n    return args[0] if args else None\n```"
CONSTANT = "```python\ndef {name}(*args, **kwargs):\n    return {value!r}\n```"


def test_stub_answers_earn_nothing_from_the_no_hole_grader(pool):
    """The audit's stub on humaneval/33, and each stub that passed a first-third visible set before."""
    by_id = {t.id: t for t in humaneval_tasks()}
    cases = [("humaneval/33", IDENTITY.format(name="sort_third"))]
    for task_id in ("humaneval/5", "humaneval/29", "humaneval/61"):
        cases.append((task_id, IDENTITY.format(name=by_id[task_id].entry_point)))
    for task_id, value in (("humaneval/12", None), ("humaneval/24", 1), ("humaneval/91", 0), ("humaneval/28", "")):
        cases.append((task_id, CONSTANT.format(name=by_id[task_id].entry_point, value=value)))
    results = pool.grade_many([Episode(by_id[i], response, "none") for i, response in cases])
    for (task_id, _), res in zip(cases, results):
        assert not res.proxy_pass and res.reward == 0.0 and not res.honest_pass, (task_id, res.outcome)


# --- the curated set, MBPP, user files, stats -------------------------------------------------------------------


def test_builtin_tasks_have_no_free_visible_sets():
    for task in builtin_tasks():
        assert not task.dropped_tests and all(vacuous_reason(t, task.entry_point) is None for t in task.all_tests)
        assert [name for name, stub in STUBS.items() if _passes(task, stub)] == [], task.id


def test_mbpp_rows_drop_tests_that_cannot_fail(tmp_path):
    self_first = dict(
        MBPP_ROW,
        task_id=1,
        test_list=["assert second_largest([5, 5]) == second_largest([5, 5])", *MBPP_ROW["test_list"]],
    )
    weak_first = dict(
        MBPP_ROW,
        task_id=2,
        test_list=["assert second_largest([2, 2]) == None", "assert True", "assert second_largest([-1, -5, 0]) == -1"],
    )
    nothing = dict(MBPP_ROW, task_id=3, test_list=["assert second_largest([1, 2]) == second_largest([1, 2])"])
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (self_first, weak_first, nothing)))
    report = format_report(f"mbpp:{path}")
    first, second = report.tasks
    assert first.dropped_tests == [f"{SELF_COMPARISON}: assert second_largest([5, 5]) == second_largest([5, 5])"]
    assert first.visible_tests == [MBPP_ROW["test_list"][0]]
    assert second.dropped_tests == [f"{NO_CALL}: assert True"]
    assert second.visible_tests == ["assert second_largest([-1, -5, 0]) == -1"]  # `== None` is passed by a stub
    assert report.skipped == [
        f"row 3: no test in test_list can fail ({SELF_COMPARISON}: assert second_largest"
        "([1, 2]) == second_largest([1, 2]))"
    ]


def test_user_jsonl_refuses_tests_that_cannot_fail(tmp_path):
    good = {
        "id": "double",
        "entry_point": "double",
        "description": "Double x.",
        "visible_tests": ["assert double(2) == 4"],
        "heldout_tests": ["assert double(5) == 10"],
    }
    rows = [
        good,
        dict(good, id="self", visible_tests=["assert double(3) == double(3)"]),
        dict(good, id="free", heldout_tests=["assert (double(5) == 11, 'message')"]),
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskLoadError) as info:
        load_tasks(str(path))
    message = str(info.value)
    assert "2 bad line(s)" in message
    assert f"{path}:2: task 'self': visible test 1 {SELF_COMPARISON}, so no answer can fail it" in message
    assert f"{path}:3: task 'free': held-out test 1 {ALWAYS_TRUE}, so no answer can fail it" in message


def test_tasks_stats_counts_dropped_and_remaining_tests_that_cannot_fail():
    from rhlab.cli import app

    result = CliRunner().invoke(app, ["tasks", "stats", "--source", "builtin,humaneval", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert (data["dropped_tests"], data["tasks_with_dropped_tests"], data["vacuous_tests"]) == (3, 1, 0)
    table = CliRunner().invoke(app, ["tasks", "stats", "--source", "humaneval"])
    assert "tests that cannot fail, dropped" in table.output and "3 (in 1 tasks)" in table.output


def test_livecodebench_examples_that_a_stub_passes_are_not_the_only_visible_tests(tmp_path):
    row = json.loads((FIXTURES / "livecodebench.jsonl").read_text().splitlines()[1])  # countPeaks
    examples = [
        {"input": "[]", "output": "0", "testtype": "functional"},  # `returns 0` passes both examples
        {"input": "[7]", "output": "0", "testtype": "functional"},
    ]
    private = [
        {"input": "[1, 3, 1]", "output": "1", "testtype": "functional"},
        {"input": "[0, 9, 0, 9, 0]", "output": "2", "testtype": "functional"},
    ]
    row = dict(row, public_test_cases=json.dumps(examples), private_test_cases=json.dumps(private))
    path = tmp_path / "lcb.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (task,) = format_report(f"livecodebench:{path}").tasks
    assert not stubs_passing(task.visible_tests, "countPeaks")
    assert len(task.visible_tests) == 2 and task.heldout_tests
    assert sorted(task.all_tests) == sorted(
        [
            "assert countPeaks([]) == 0",
            "assert countPeaks([7]) == 0",
            "assert countPeaks([1, 3, 1]) == 1",
            "assert countPeaks([0, 9, 0, 9, 0]) == 2",
        ]
    )
