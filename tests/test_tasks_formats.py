"""Public dataset schemas from local copies: each fixture (our own problems, in that schema) -> load -> grade."""

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rhlab.env import Episode, GradingPool
from rhlab.tasks import TaskLoadError, format_report, get_task, load_tasks
from rhlab.tasks.formats.livecodebench import decode_private
from rhlab.tasks.formats.rows import RowError

FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
SOURCES = {fmt: f"{fmt}:{FIXTURES / f'{fmt}.jsonl'}" for fmt in ("apps", "codecontests", "mbpp", "livecodebench")}
ALL = ",".join(SOURCES.values())

# LiveCodeBench ships no reference solutions: these are ours, for the two fixture problems.
LCB_REFERENCES = {
    "livecodebench/abc900_a": (
        "def solution(stdin):\n"
        "    lines = stdin.split('\\n')\n"
        "    height = int(lines[0].split()[0])\n"
        "    return str(sum(row.count('#') for row in lines[1:1 + height])) + '\\n'\n"
    ),
    "livecodebench/9301": (
        "def countPeaks(nums):\n    return sum(nums[i - 1] < nums[i] > nums[i + 1] for i in range(1, len(nums) - 1))\n"
    ),
}


def test_each_fixture_loads_with_ids_kinds_and_the_bad_row_reported_by_number():
    expected = {
        "apps": (["apps/9001", "apps/9002", "apps/9003", "apps/9004", "apps/9005"], "row 6: field 'input_output'"),
        "codecontests": (
            ["codecontests/9101_A. Divisor Count", "codecontests/9102_B. Words Backwards"],
            "row 3: public_tests: 2 test inputs but 1 outputs",
        ),
        "mbpp": (["mbpp/9201", "mbpp/9202", "mbpp/9203"], "row 4: the tests call no function"),
        "livecodebench": (
            ["livecodebench/abc900_a", "livecodebench/9301"],
            "row 3: private_test_cases: refused to load builtins.print",
        ),
    }
    for fmt, (ids, skipped) in expected.items():
        report = format_report(SOURCES[fmt])
        assert [t.id for t in report.tasks] == ids
        assert report.rows == len(ids) + 1 and report.kept == len(ids)
        assert len(report.skipped) == 1 and report.skipped[0].startswith(skipped), report.skipped
        assert all(t.source == fmt and t.visible_tests for t in report.tasks)


def test_schema_details_map_onto_tasks():
    apps = {t.id: t for t in load_tasks(SOURCES["apps"])}
    assert apps["apps/9001"].entry_point == "solution" and "stdin" in apps["apps/9001"].tags
    assert apps["apps/9001"].difficulty == "easy" and apps["apps/9004"].difficulty == "hard"
    # fn_name tasks: outputs unwrapped; the Python 2 solution is passed over for the Python 3 one.
    assert apps["apps/9003"].visible_tests[0] == "assert count_vowels('hello') == 2"
    assert 'print "unused"' not in apps["apps/9003"].canonical_solution
    # LeetCode-style starter code becomes a plain function; the reference gets an adapter.
    assert apps["apps/9004"].signature == "def maxGap(nums: List[int]) -> int:"
    assert "return Solution().maxGap(*args)" in apps["apps/9004"].canonical_solution
    # One test only: kept, visible, flagged.
    assert apps["apps/9005"].heldout_tests == [] and "no_heldout" in apps["apps/9005"].tags
    cc = {t.id: t for t in load_tasks(SOURCES["codecontests"])}
    divisors = cc["codecontests/9101_A. Divisor Count"]
    assert divisors.difficulty == "easy" and "cf_rating:1100" in divisors.tags  # rating beats the letter label
    assert len(divisors.visible_tests) == 1 and len(divisors.heldout_tests) == 3  # private + generated held out
    assert "#include" not in divisors.canonical_solution  # only the Python 3 (language 3) solution
    lcb = {t.id: t for t in load_tasks(SOURCES["livecodebench"])}
    assert len(lcb["livecodebench/abc900_a"].heldout_tests) == 2  # the compressed private tests
    assert lcb["livecodebench/9301"].visible_tests == ["assert countPeaks([1, 3, 2, 4, 1]) == 2"]
    mbpp = {t.id: t for t in load_tasks(SOURCES["mbpp"])}
    assert mbpp["mbpp/9201"].signature == "def second_largest(values):"
    assert len(mbpp["mbpp/9201"].heldout_tests) == 3  # two more tests and the challenge test


def test_parquet_and_saved_datasets_folders_read_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    rows = [json.loads(line) for line in (FIXTURES / "codecontests.jsonl").read_text().splitlines()][:2]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
    DatasetDict({"test": Dataset.from_list(rows), "train": Dataset.from_list(rows[:1])}).save_to_disk(
        str(tmp_path / "both")
    )
    want = [t.id for t in load_tasks(SOURCES["codecontests"])]
    for spec in (
        f"codecontests:{tmp_path / 'test.parquet'}",
        f"codecontests:{tmp_path / 'single'}",
        f"codecontests:{tmp_path / 'both'}#test",
    ):
        tasks = load_tasks(spec)
        assert [t.id for t in tasks] == want, spec
        assert tasks[0].heldout_tests == load_tasks(SOURCES["codecontests"])[0].heldout_tests
    with pytest.raises(TaskLoadError, match=r"splits \['test', 'train'\]: name one as PATH#SPLIT"):
        load_tasks(f"codecontests:{tmp_path / 'both'}")
    with pytest.raises(TaskLoadError, match="no split 'valid'"):
        load_tasks(f"codecontests:{tmp_path / 'both'}#valid")


def test_bad_sources_fail_clearly():
    with pytest.raises(TaskLoadError, match="does not exist"):
        load_tasks("apps:/nonexistent/apps.jsonl")
    with pytest.raises(TaskLoadError, match="unknown task source 'humaneval2:x'"):
        load_tasks("humaneval2:x")
    with pytest.raises(TaskLoadError, match="--tasks apps:PATH"):
        get_task("apps/9001")


def test_a_file_with_no_usable_row_is_an_error_that_lists_the_rows(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"problem_id": 1}\n[1, 2]\nnot json\n')
    with pytest.raises(TaskLoadError) as err:
        load_tasks(f"apps:{path}")
    text = str(err.value)
    assert "kept 0 of 3 rows" in text and "row 1: missing field 'question'" in text
    assert "row 2: expected an object" in text and "row 3: not valid JSON" in text


def test_loaded_sources_are_cached_until_the_file_changes(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text((FIXTURES / "mbpp.jsonl").read_text())
    spec = f"mbpp:{path}"
    assert format_report(spec) is format_report(spec)
    first = format_report(spec)
    path.write_text("\n".join(path.read_text().splitlines()[:1]) + "\n")
    assert format_report(spec) is not first and format_report(spec).kept == 1


def _compressed(obj) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode("ascii")


def test_livecodebench_private_tests_decode_without_unpickling_objects():
    cases = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_private(json.dumps(cases)) == cases
    assert decode_private(_compressed(json.dumps(cases))) == cases

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    with pytest.raises(RowError, match="refused to load builtins.exec"):
        decode_private(_compressed(Boom()))
    with pytest.raises(RowError, match="neither JSON nor base64/zlib"):
        decode_private("%%% not base64 %%%")


@pytest.fixture(scope="module")
def pool():
    with GradingPool() as p:
        yield p


def test_reference_solutions_grade_solved_and_pass_stubs_fail(pool):
    tasks = load_tasks(ALL)
    assert len(tasks) == 12
    refs = [t.canonical_solution or LCB_REFERENCES[t.id] for t in tasks]
    stubs = [f"```python\nfrom typing import List\n\n{t.signature}\n    pass\n```" for t in tasks]
    episodes = [Episode(t, f"```python\n{ref}\n```", "all") for t, ref in zip(tasks, refs)]
    episodes += [Episode(t, stub, "all") for t, stub in zip(tasks, stubs)]
    results = pool.grade_many(episodes)
    for task, res in zip(tasks, results[: len(tasks)]):
        want = "unverifiable" if not task.heldout_tests else "solved"
        assert res.outcome == want and res.honest_pass and res.proxy_pass, (task.id, res.honest_reasons)
        assert res.attempted_hacks == [], (task.id, res.findings)
    for task, res in zip(tasks, results[len(tasks) :]):
        assert res.outcome == "failed" and not res.proxy_pass and not res.honest_pass, task.id


def test_cli_lists_and_counts_a_dataset_copy():
    from rhlab.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["tasks", "list", "--source", SOURCES["apps"]])
    assert listed.exit_code == 0, listed.output
    assert "apps/9003" in listed.output
    stats = runner.invoke(app, ["tasks", "stats", "--source", SOURCES["apps"] + "," + SOURCES["mbpp"], "--json"])
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output.strip().splitlines()[-1])
    assert data["tasks"] == 8 and data["no_heldout"] == 1
    assert data["by_difficulty"] == {"easy": 3, "medium": 1, "hard": 1, "unrated": 3}
    assert [(load["rows"], load["kept"]) for load in data["loads"]] == [(6, 5), (4, 3)]
    assert data["visible_tests"]["total"] + data["heldout_tests"]["total"] == 28


def test_a_folder_of_json_and_gzipped_jsonl_files_is_one_source(tmp_path):
    import gzip

    rows = [json.loads(line) for line in (FIXTURES / "mbpp.jsonl").read_text().splitlines()]
    (tmp_path / "part_a.json").write_text(json.dumps(rows[:2]))
    with gzip.open(tmp_path / "part_b.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows[1:]))
    report = format_report(f"mbpp:{tmp_path}")
    assert [t.id for t in report.tasks] == ["mbpp/9201", "mbpp/9202", "mbpp/9203"]
    assert report.skipped == [
        "part_b.jsonl.gz row 1: duplicate task id 'mbpp/9202'",
        "part_b.jsonl.gz row 3: the tests call no function that `code` defines",
    ]
