"""Dataset rows built to crash the host: pickle bombs, deep nesting. Each is one reported row (issue 22)."""

import base64
import json
import pickle
import time
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rhlab.tasks import TaskLoadError, format_report, load_tasks
from rhlab.tasks.formats import livecodebench
from rhlab.tasks.formats.livecodebench import decode_private, expanded_size, restricted_unpickle
from rhlab.tasks.formats.rows import RowError, split_json_array

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
MBPP_ROWS = [json.loads(line) for line in (FIXTURES / "mbpp.jsonl").read_text().splitlines()]
LCB_ROWS = [json.loads(line) for line in (FIXTURES / "livecodebench.jsonl").read_text().splitlines()]
GOOD_MBPP = ["mbpp/9201", "mbpp/9202", "mbpp/9203"]
DEPTH = 5_000


def _compressed(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw)).decode("ascii")


def _shared_dag(depth: int) -> bytes:
    """A small pickle whose list, read as a tree, has 2**depth copies of one string: memo reuse."""
    node: object = "x" * 300
    for level in range(depth):
        node = [node, node, f"level {level}"] if level % 10 == 0 else [node, node]
    cases = [{"input": node, "output": "1", "testtype": "functional"}]
    return pickle.dumps(cases, protocol=4)


def _write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- pickles --------------------------------------------------------------------------------------------------


def test_a_small_pickle_reusing_memo_entries_is_refused_in_milliseconds():
    raw = _shared_dag(30)
    assert 400 < len(raw) < 1_000  # the audit's row was 531 bytes
    start = time.perf_counter()
    with pytest.raises(RowError, match="expands to more than .* shared references"):
        decode_private(_compressed(raw))
    assert time.perf_counter() - start < 0.05


def test_one_pickle_bomb_row_is_reported_and_the_other_rows_load(tmp_path):
    bomb = dict(LCB_ROWS[1], question_id="bomb", private_test_cases=_compressed(_shared_dag(40)))
    path = _write_rows(tmp_path / "lcb.jsonl", [LCB_ROWS[0], bomb, LCB_ROWS[1]])
    start = time.perf_counter()
    report = format_report(f"livecodebench:{path}")
    assert time.perf_counter() - start < 5
    assert [t.id for t in report.tasks] == ["livecodebench/abc900_a", "livecodebench/9301"]
    assert len(report.skipped) == 1 and report.skipped[0].startswith("row 2: private_test_cases: the unpickled")


def test_cycles_odd_values_and_too_many_opcodes_are_refused(monkeypatch):
    loop: list = []
    loop.append(loop)
    with pytest.raises(RowError, match="contains itself"):
        restricted_unpickle(pickle.dumps(loop))
    mutual: dict = {"a": []}
    mutual["a"].append(mutual)
    with pytest.raises(RowError, match="contains itself"):
        restricted_unpickle(pickle.dumps([mutual]))
    monkeypatch.setattr(livecodebench, "MAX_PICKLE_OPS", 1_000)
    with pytest.raises(RowError, match="more than 1000 opcodes"):
        restricted_unpickle(pickle.dumps(list(range(2_000))))


def test_honest_sharing_within_the_budget_still_loads():
    cases = [{"input": "1", "output": "2", "testtype": "stdin"} for _ in range(50)]  # keys are shared strings
    raw = pickle.dumps(cases)
    assert b"h" in raw and raw.count(b"input") == 1  # the pickler memoised the key once and reused it
    assert decode_private(_compressed(raw)) == cases
    shared = ["abc"] * 3
    assert expanded_size([shared, shared]) == 1 + 2 * (1 + 3 * 4)


def test_a_list_nested_far_past_the_recursion_limit_is_measured_without_recursion():
    raw = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."  # EMPTY_LIST x N, APPEND x N-1
    value = restricted_unpickle(raw)
    assert isinstance(value, list)
    assert expanded_size(value) == 100_000


# --- deep nesting -----------------------------------------------------------------------------------------------


def _deep_test_row() -> dict:
    nested = "[" * DEPTH + "]" * DEPTH
    return dict(MBPP_ROWS[0], task_id=9299, test_list=[f"assert second_largest({'-' * DEPTH}1) == 1", nested])


def _deep_json_row() -> str:
    return '{"task_id": 9298, "test_list": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_deep_rows_in_jsonl_are_one_report_each_and_lose_no_other_row(tmp_path):
    rows = [MBPP_ROWS[0], _deep_test_row(), MBPP_ROWS[1], _deep_json_row(), MBPP_ROWS[2]]
    report = format_report(f"mbpp:{_write_rows(tmp_path / 'mbpp.jsonl', rows)}")
    assert [t.id for t in report.tasks] == GOOD_MBPP
    assert len(report.skipped) == 2, report.skipped
    assert report.skipped[0].startswith("row 2: test 'assert second_largest(----")
    assert report.skipped[0].endswith("the test is nested too deeply to convert (RecursionError)")
    assert report.skipped[1] == "row 4: JSON is nested too deeply to convert (RecursionError)"


def test_a_deep_row_in_a_json_array_file_loses_only_that_row(tmp_path):
    deep = '{"task_id": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = tmp_path / "rows.json"
    path.write_text("[" + ",\n".join([json.dumps(MBPP_ROWS[0]), deep, json.dumps(MBPP_ROWS[1])]) + "]")
    report = format_report(f"mbpp:{path}")
    assert [t.id for t in report.tasks] == GOOD_MBPP[:2]
    assert report.skipped == ["row 2: JSON is nested too deeply to convert (RecursionError)"]
    assert list(split_json_array('[{"a": "],[{"}, [1, [2]], "x\\"]"]')) == ['{"a": "],[{"}', " [1, [2]]", ' "x\\"]"']


def test_the_cli_lists_and_counts_around_deep_rows(tmp_path):
    from rhlab.cli import app

    rows = [MBPP_ROWS[0], _deep_test_row(), MBPP_ROWS[1], _deep_json_row(), MBPP_ROWS[2]]
    source = f"mbpp:{_write_rows(tmp_path / 'mbpp.jsonl', rows)}"
    listed = CliRunner().invoke(app, ["tasks", "list", "--source", source])
    assert listed.exit_code == 0, listed.output
    assert all(task_id in listed.output for task_id in GOOD_MBPP)
    stats = CliRunner().invoke(app, ["tasks", "stats", "--source", source, "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output.strip().splitlines()[-1])
    assert (data["loads"][0]["rows"], data["loads"][0]["kept"], len(data["loads"][0]["skipped"])) == (5, 3, 2)


def test_a_deep_livecodebench_test_list_is_reported(tmp_path):
    deep = dict(LCB_ROWS[1], question_id="deep", public_test_cases="[" * 100_000 + "]" * 100_000)
    report = format_report(f"livecodebench:{_write_rows(tmp_path / 'lcb.jsonl', [deep, LCB_ROWS[0]])}")
    assert [t.id for t in report.tasks] == ["livecodebench/abc900_a"]
    assert report.skipped == ["row 1: the row is nested too deeply to convert (RecursionError)"]


def test_a_deep_user_jsonl_line_is_named_in_the_error(tmp_path):
    good = {"id": "ok", "entry_point": "f", "description": "d", "visible_tests": ["assert f(1) == 2"]}
    deep_test = dict(good, id="deep", visible_tests=[f"assert f({'-' * DEPTH}1) == 1"])
    path = _write_rows(tmp_path / "tasks.jsonl", [good, deep_test, '{"id": ' + "[" * 100_000])
    with pytest.raises(TaskLoadError) as info:
        load_tasks(str(path))
    message = str(info.value)
    assert "2 bad line(s)" in message
    assert f"{path}:2: visible_tests: test 'assert f(---" in message and "nests too deeply" in message
    assert f"{path}:3: JSON is nested too deeply to convert (RecursionError)" in message


def test_a_row_that_exhausts_memory_is_one_report(tmp_path, monkeypatch):
    from rhlab.tasks import formats

    real = formats.FORMATS["mbpp"]

    def convert(row, limits):
        if row["task_id"] == 9202:
            raise MemoryError
        return real(row, limits)

    monkeypatch.setitem(formats.FORMATS, "mbpp", convert)
    report = format_report(f"mbpp:{_write_rows(tmp_path / 'mbpp.jsonl', MBPP_ROWS[:3])}")
    assert [t.id for t in report.tasks] == ["mbpp/9201", "mbpp/9203"]
    assert report.skipped == ["row 2: the row is too large to convert (MemoryError)"]
