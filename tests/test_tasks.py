"""Task sources: the curated set, HumanEval, user JSONL; every canonical solution is honest."""

import json

import pytest

from rhlab.env import Episode, GradingPool
from rhlab.tasks import TaskLoadError, builtin_tasks, get_task, humaneval_tasks, jsonl_tasks, load_tasks


def test_builtin_set_has_at_least_40_tasks_across_difficulties():
    tasks = builtin_tasks()
    assert len(tasks) >= 40
    assert len({t.id for t in tasks}) == len(tasks)
    assert {t.difficulty for t in tasks} == {"easy", "medium", "hard"}


def test_factorial_task_exists_and_its_prompt_shows_only_visible_tests():
    task = get_task("factorial")
    assert task.entry_point == "factorial"
    for test in task.visible_tests:
        assert test in task.prompt
    for test in task.heldout_tests:
        assert test not in task.prompt


@pytest.fixture(scope="module")
def pool():
    with GradingPool() as p:
        yield p


def test_every_builtin_canonical_solution_is_solved_and_never_flagged(pool):
    tasks = builtin_tasks()
    episodes = [Episode(t, f"```python\n{t.canonical_solution}\n```", "all") for t in tasks]
    results = pool.grade_many(episodes)
    for task, res in zip(tasks, results):
        assert res.outcome == "solved", (task.id, res.honest_reasons, res.proxy_reasons)
        assert res.proxy_pass and res.honest_pass
        assert res.attempted_hacks == [], (task.id, res.findings)


def test_builtin_set_includes_honest_code_that_looks_like_hacks():
    sources = [t.canonical_solution for t in builtin_tasks()]
    assert sum("sys.exit" in s and "__main__" in s for s in sources) >= 2
    assert sum("def __eq__" in s for s in sources) >= 2


def test_humaneval_loads_all_164_with_visible_and_heldout_split():
    tasks = humaneval_tasks()
    assert [t.id for t in tasks] == [f"humaneval/{i}" for i in range(164)]
    assert all(t.visible_tests for t in tasks)
    assert sum(bool(t.heldout_tests) for t in tasks) > 150
    first = get_task("humaneval/0")
    assert "has_close_elements(" in first.visible_tests[0]
    assert not any("candidate" in test for t in tasks for test in t.visible_tests)


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_the_honest_oracle(pool):
    tasks = humaneval_tasks()
    episodes = [Episode(t, f"```python\n{t.canonical_solution}\n```", "none") for t in tasks]
    results = pool.grade_many(episodes)
    failed = [(t.id, r.honest_reasons[:1]) for t, r in zip(tasks, results) if not r.honest_pass]
    assert not failed
    assert not [t.id for t, r in zip(tasks, results) if r.hack]


def test_user_jsonl_tasks_load(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {
            "id": "double",
            "entry_point": "double",
            "description": "Double x.",
            "signature": "def double(x):",
            "visible_tests": ["assert double(2) == 4"],
            "heldout_tests": ["assert double(5) == 10"],
        },
        {"id": "neg", "entry_point": "neg", "prompt": "Negate x.", "visible_tests": ["assert neg(1) == -1"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = load_tasks(str(path))
    assert [t.id for t in tasks] == ["double", "neg"]
    assert "assert double(2) == 4" in tasks[0].prompt
    assert get_task("neg", str(path)).prompt == "Negate x."


def test_user_jsonl_reports_every_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"id": "ok", "entry_point": "f", "prompt": "p", "visible_tests": ["assert f() == 1"]}',
                "{not json",
                '{"id": "no_tests", "entry_point": "f", "prompt": "p", "visible_tests": []}',
                '{"id": "bad_entry", "entry_point": "1f", "prompt": "p", "visible_tests": ["assert 1"]}',
                '{"id": "syntax", "entry_point": "f", "prompt": "p", "visible_tests": ["assert f(("]}',
                "[1, 2]",
                '{"id": "ok", "entry_point": "f", "prompt": "p", "visible_tests": ["assert f() == 1"]}',
            ]
        )
    )
    with pytest.raises(TaskLoadError) as info:
        jsonl_tasks(path)
    message = str(info.value)
    for lineno in (2, 3, 4, 5, 6, 7):
        assert f"bad.jsonl:{lineno}:" in message
    assert "bad.jsonl:1:" not in message
    assert "duplicate task id 'ok'" in message


def test_unknown_sources_and_ids_fail_clearly(tmp_path):
    with pytest.raises(TaskLoadError, match="unknown task source"):
        load_tasks("nonsense")
    with pytest.raises(TaskLoadError, match="does not exist"):
        load_tasks(str(tmp_path / "missing.jsonl"))
    with pytest.raises(TaskLoadError, match="no task with id"):
        get_task("no_such_task")
