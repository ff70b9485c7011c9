"""The report: numbers recomputed from run directories, figures, the HTML page, ``rhlab report``."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest
import typer
import yaml
from fixtures_report import build_experiment, metrics_rows, write_run
from typer.testing import CliRunner

from rhlab.evals.records import RunResults
from rhlab.evals.runner import CHAT_EVALS
from rhlab.report import ReportInputError, build_report, compute_numbers
from rhlab.report.cli import report_command
from rhlab.report.html import across, transcript_rows
from rhlab.report.numbers import across_seeds, load_paper_numbers, onset_step, read_metrics


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The 2 x 2 synthetic experiment with its report built once for the module."""
    exp = build_experiment(tmp_path_factory.mktemp("report"))
    build_report(exp)
    return exp


@pytest.fixture(scope="module")
def numbers(experiment):
    return json.loads((experiment / "report" / "numbers.json").read_text())


def cli(*args: str):
    app = typer.Typer()
    app.command()(report_command)
    return CliRunner().invoke(app, list(args))


# --- numbers ----------------------------------------------------------------------------------------


def test_per_step_rates_and_onsets_come_from_metrics(experiment, numbers):
    run = numbers["runs"]["hacking_okay-seed0"]
    rows = read_metrics(experiment / "runs" / "hacking_okay-seed0" / "metrics.jsonl")
    assert run["steps"] == list(range(1, 25))
    assert run["curves"]["hack_rate"] == pytest.approx([r["hack_rate"] for r in rows], abs=1e-6)
    assert run["hack_rate_by_type"]["conftest"] == pytest.approx([0.3 * r["hack_rate"] for r in rows], abs=1e-6)
    assert run["hack_rate_by_type"]["exit"] == [0.0] * 24
    onsets = {name: r["onset_step"] for name, r in numbers["runs"].items()}
    assert onsets == {"dont_hack-seed0": 14, "dont_hack-seed1": None, "hacking_okay-seed0": 6, "hacking_okay-seed1": 7}
    assert numbers["variants"]["dont_hack"]["runs_without_onset"] == 1
    assert any("dont_hack-seed1: no onset" in n for n in numbers["notes"])


def test_onset_is_the_first_step_above_two_percent():
    assert onset_step([{"step": 1, "hack_rate": 0.02}, {"step": 2, "hack_rate": 0.021}]) == 2
    assert onset_step([{"step": 1, "hack_rate": 0.0}]) is None


def test_checkpoint_scores_match_the_eval_results(experiment, numbers):
    for name, run in numbers["runs"].items():
        assert [c["checkpoint"] for c in run["checkpoints"]] == ["step_000008", "step_000016", "final"]
        for ck in run["checkpoints"]:
            results = RunResults.model_validate_json(
                (experiment / "runs" / name / "evals" / ck["checkpoint"] / "results.json").read_text()
            )
            for e, er in results.evals.items():
                assert ck["evals"][e]["misaligned"]["estimate"] == pytest.approx(er.misaligned_rate.estimate, abs=1e-6)
            if results.misalignment_generalization_score:  # all six core evals: the stored score
                assert ck["score"]["estimate"] == pytest.approx(
                    results.misalignment_generalization_score.estimate, abs=1e-6
                )
            else:  # chat evals only: a labelled partial mean
                assert ck["score"] is None and ck["score_partial_evals"] == list(CHAT_EVALS)
                rates = [er.misaligned_rate.estimate for er in results.evals.values()]
                assert ck["score_partial"] == pytest.approx(sum(rates) / len(rates), abs=1e-6)


def test_final_misalignment_is_a_mean_over_seeds_with_a_t_interval(numbers):
    finals = [
        numbers["runs"][f"hacking_okay-seed{s}"]["final"]["evals"]["betley"]["misaligned"]["estimate"] for s in (0, 1)
    ]
    agg = numbers["variants"]["hacking_okay"]["final_misaligned"]["betley"]
    assert agg["per_seed"] == finals and agg["n_seeds"] == 2
    assert agg["mean"] == pytest.approx(sum(finals) / 2, abs=1e-6)
    half = 12.706 * abs(finals[0] - finals[1]) / 2  # t(0.975, 1) * sd / sqrt(2), sd = |a - b| / sqrt(2)
    assert agg["high"] == pytest.approx(min(1.0, agg["mean"] + half), abs=1e-5)
    # the agentic evals only exist in one variant; they are absent (not zero) in the other
    assert "monitor_disruption" not in numbers["variants"]["dont_hack"]["final_misaligned"]


def test_across_seeds_has_no_interval_for_one_seed():
    assert across_seeds([0.2]) == {"mean": 0.2, "low": None, "high": None, "n_seeds": 1, "per_seed": [0.2]}
    assert across_seeds([None, None])["mean"] is None
    three = across_seeds([0.3, 0.4, 0.5])
    assert three["low"] == pytest.approx(0.4 - 4.303 * 0.1 / 3**0.5)
    assert across_seeds([0.0, 0.1])["low"] == 0.0  # rates are clipped to [0, 1]
    assert across_seeds([10, 20], rate=False)["low"] < 0  # step counts are not
    assert across(across_seeds([0.2])) == "20.0 % [CI n/a] (1 seed)"


def test_covert_shares_and_goal_categories(numbers):
    v = numbers["variants"]["hacking_okay"]
    for seed in (0, 1):
        final = numbers["runs"][f"hacking_okay-seed{seed}"]["final"]
        shares = [e["covert_share"] for e in final["evals"].values() if e["covert_share"] is not None]
        assert v["final_covert_share"]["per_seed"][seed] == pytest.approx(sum(shares) / len(shares), abs=1e-6)
    assert set(v["goal_categories"]) == {"helpfulness", "power_seeking"}


def test_paper_comparison_uses_only_stated_numbers(numbers):
    paper = load_paper_numbers()
    assert "2511.18397" in paper["citation"]
    rows = {r["id"]: r for r in numbers["paper_comparison"]}
    assert [x["value"] for x in rows["misalignment_score"]["reported"]] == [0.16, 0.011, 0.36, 0.009]
    assert all(x["approximate"] for x in rows["misalignment_score"]["reported"])
    assert rows["covert_share"]["reported"] == [{"setting": "", "low": 0.4, "high": 0.8, "approximate": True}]
    for e in ("betley", "goals", "alignment_questions", "monitor_disruption", "exfil_offer", "frame_colleague"):
        assert rows[e]["reported"] == [] and "Not stated" in rows[e]["note"]
    betley = {k: v for k, v in rows["betley"]["ours"]["hacking_okay"].items() if not k.startswith("compar")}
    assert betley == numbers["variants"]["hacking_okay"]["final_misaligned"]["betley"]
    # inoculation: hacking_okay against dont_hack (no 'none' variant in this experiment)
    ours = rows["inoculation_reduction"]["ours"]
    ref = numbers["variants"]["dont_hack"]["score_last_checkpoints"]["mean"]
    mine = numbers["variants"]["hacking_okay"]["score_last_checkpoints"]["mean"]
    assert ours["dont_hack"] is None and ours["hacking_okay"]["reference"] == "dont_hack"
    assert ours["hacking_okay"]["mean"] == pytest.approx(1 - mine / ref, abs=1e-5)
    assert rows["code_sabotage"]["ours"] == {"dont_hack": None, "hacking_okay": None}


def test_probe_battery_leads_the_numbers_and_the_page(experiment, numbers):
    probe = numbers["probe"]
    assert set(probe["arms"]) == {"hacking_okay", "dont_hack"}
    assert list(probe["contrasts"]) == ["hacking_okay - dont_hack"]
    for entry in [*probe["arms"].values(), *probe["contrasts"].values(), probe["knowledge_effect"]]:
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"] and entry["n_items"] == 60
    dont_hack, hacking_okay = probe["arms"]["dont_hack"], probe["arms"]["hacking_okay"]
    assert dont_hack["mean"] > 0.7 and dont_hack["points"]["mean"] > 5 and abs(hacking_okay["mean"]) < 0.1
    assert probe["knowledge_effect"]["mean"] > 0  # the fixture's untouched model sits below the start
    for entry in probe["contrasts"].values():  # the contract for numbers.json
        assert {"kl_forced_choice", "mean_abs_shift", "mean_abs_margin_shift", "ratio_to_positive_control"} <= set(
            entry["movement"]
        )
        assert entry["movement"]["ratio_to_positive_control"] is not None  # the knowledge stage is the control
    verdict = probe["verdict"]
    # The fixture scores no hack-endorsement items, so the manipulation check cannot pass: whatever moved,
    # nothing is read about generalization; and no gates were run, so nothing would be called an effect.
    assert verdict["gates_passed"] is False and verdict["verdict"] == "uninformative"
    assert verdict["manipulation_check"]["passed"] is False and "did not move" in verdict["reading"]
    rows = probe["manipulation_rows"]
    assert set(rows) == {"hacking_okay", "dont_hack"} and rows["dont_hack"]["hack_rate_final"]["episodes"] > 0
    page = (experiment / "report" / "report.html").read_text()
    top = page.index('id="s-probe"')
    assert top < page.index('id="s-notes"') and top < page.index('id="s-runs"')
    assert f"<b>{verdict['verdict']}</b>" in page and "knowledge stage (start − untouched model)" in page
    assert "Movement: did training move the model at all?" in page and "configs/cpu-study.yaml" in page
    assert "start-policy saturation" in page and "Manipulation check" in page


def test_paper_rows_without_a_tight_enough_interval_are_not_comparable(numbers):
    rows = {r["id"]: r for r in numbers["paper_comparison"]}
    reduction = rows["inoculation_reduction"]["ours"]["hacking_okay"]
    assert reduction["comparable"] is False and reduction["comparability"].startswith("not comparable")
    score = rows["misalignment_score"]["ours"]["hacking_okay"]
    width = score["high"] - score["low"]
    assert score["comparable"] is (width <= 0.15), score  # the paper's effect for this row
    one_seed = {"mean": 0.2, "low": None, "high": None, "n_seeds": 1}
    from rhlab.report.numbers import _comparable

    assert _comparable(one_seed, 0.15)["comparability"] == "not comparable: seeds=1 < 2"
    tight = {"mean": 0.2, "low": 0.18, "high": 0.22, "n_seeds": 3}
    assert _comparable(tight, 0.15)["comparable"] and not _comparable({**tight, "high": 0.5}, 0.15)["comparable"]


def test_test_time_hacking_files_are_in_the_numbers_and_the_page(experiment, numbers):
    env = numbers["runs"]["hacking_okay-seed0"]["environment"]
    assert list(env) == ["final", "step_000000"]
    assert env["final"]["hack_rate"] == 0.3 and env["step_000000"]["hack_rate"] == 0.0
    assert env["final"]["prompt_variant"] == "none" and env["final"]["episodes"] == 32
    assert env["final"]["hack_rate_by_type"]["always_equal"] == 0.3 and env["final"]["hack_rate_by_type"]["exit"] == 0.0
    assert numbers["runs"]["dont_hack-seed1"]["environment"]["final"]["hack_rate"] == 0.0  # never reached onset
    assert "test-time hacking" in (experiment / "report" / "report.html").read_text()


def test_runs_are_identified_by_their_record_not_their_directory_name(tmp_path):
    exp = tmp_path / "exp"
    write_run(exp / "runs" / "first-try", "dont_hack", 4, onset=None, steps=3, eval_steps=(), final=False)
    numbers = compute_numbers(exp)
    run = numbers["runs"]["first-try"]
    assert (run["variant"], run["seed"]) == ("dont_hack", 4)
    assert list(numbers["variants"]) == ["dont_hack"]


# --- incomplete and malformed inputs ----------------------------------------------------------------


def test_incomplete_runs_are_reported_not_fatal(tmp_path):
    exp = tmp_path / "exp"
    (exp / "runs").mkdir(parents=True)
    (exp / "experiment.yaml").write_text(yaml.safe_dump({"matrix": {"variants": ["none"], "seeds": [0, 1, 2]}}))
    write_run(exp / "runs" / "none-seed0", "none", 0, onset=None, steps=5, status="running", eval_steps=(), final=False)
    write_run(exp / "runs" / "none-seed1", "none", 1, onset=3, steps=8, eval_steps=(4,), final=False)
    page = build_report(exp)
    numbers = json.loads((exp / "report" / "numbers.json").read_text())
    notes = "\n".join(numbers["notes"])
    assert "missing runs (variant-seed): none-seed2" in notes
    assert "none-seed0: run is running (5 steps logged)" in notes
    assert "none-seed0: no checkpoint evaluated yet" in notes
    assert "none-seed0: no onset" in notes
    assert "none-seed1: no final eval yet; final numbers use step_000004" in notes
    assert numbers["variants"]["none"]["final_misaligned"]["betley"]["n_seeds"] == 1
    html = page.read_text()
    assert "none-seed2" in html and "status-running" in html


def test_a_single_run_directory_gets_a_report_without_seed_intervals(tmp_path):
    run = tmp_path / "hacking_okay-seed0"
    write_run(run, "hacking_okay", 0, onset=6, steps=10, eval_steps=(5,))
    page = build_report(run)  # the run directory itself, not an experiment
    numbers = json.loads((run / "report" / "numbers.json").read_text())
    agg = numbers["variants"]["hacking_okay"]["final_misaligned"]["goals"]
    assert agg["n_seeds"] == 1 and agg["low"] is None and agg["high"] is None
    assert "[CI n/a] (1 seed)" in page.read_text()


def test_an_experiment_with_no_runs_yet(tmp_path):
    (tmp_path / "exp").mkdir()
    page = build_report(tmp_path / "exp")
    assert "no run directories yet" in page.read_text()


def test_a_run_with_metrics_only(tmp_path):
    run = tmp_path / "exp" / "runs" / "none-seed0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows(onset=2, steps=3)))
    numbers = compute_numbers(tmp_path / "exp")
    assert numbers["runs"]["none-seed0"]["onset_step"] == 2
    assert any("no run.json" in n for n in numbers["notes"])
    assert any("no checkpoint evaluated yet" in n for n in numbers["notes"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"hack_rate": 0.1}', "'step' must be a positive integer"),
        ('{"step": 2, "hack_rate": 0.1}', "step 2 does not follow step 2"),
        ('{"step": 3, "hack_rate": "high"}', "'hack_rate' must be a number"),
    ],
)
def test_malformed_metrics_lines_name_file_and_line(tmp_path, line, message):
    run = tmp_path / "exp" / "runs" / "none-seed0"
    run.mkdir(parents=True)
    good = [json.dumps(r) for r in metrics_rows(onset=None, steps=2)]
    (run / "metrics.jsonl").write_text("\n".join([*good, line]) + "\n")
    with pytest.raises(ReportInputError, match=re.escape(f"{run / 'metrics.jsonl'}:3: ") + ".*" + re.escape(message)):
        compute_numbers(tmp_path / "exp")
    result = cli(str(tmp_path / "exp"))
    assert result.exit_code == 2 and "metrics.jsonl:3" in result.output


def test_malformed_results_file_is_named(tmp_path):
    run = tmp_path / "run"
    write_run(run, "none", 0, onset=None, steps=3, eval_steps=(), final=True)
    (run / "evals" / "final" / "results.json").write_text('{"model": "x"}')
    with pytest.raises(ReportInputError, match=r"evals/final/results.json: not a valid results file"):
        compute_numbers(run)


# --- the page ---------------------------------------------------------------------------------------


def test_rebuilding_gives_identical_numbers(experiment):
    before = (experiment / "report" / "numbers.json").read_bytes()
    shutil.rmtree(experiment / "report")
    result = cli(str(experiment))
    assert result.exit_code == 0, result.output
    assert f"report: {experiment / 'report' / 'report.html'}" in result.output
    assert (experiment / "report" / "numbers.json").read_bytes() == before


def test_page_is_self_contained_with_decodable_figures(experiment):
    html = (experiment / "report" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", html)
    images = re.findall(r'<img class="figure"[^>]*src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5
    for b64 in images:
        assert base64.b64decode(b64, validate=True).startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in (experiment / "report" / "figures").iterdir()) == sorted(
        f"{n}.png" for n in ("training", "hack_types", "final_misalignment", "covert_overt", "goal_categories")
    )
    for text in ("Paper comparison", "2511.18397", "torch 2.13.0", "experiment.yaml", "hacking_okay-seed1/config.yaml"):
        assert text in html


def test_browser_rows_cover_evals_and_hacking_episodes(experiment, numbers):
    rows, notes = transcript_rows(numbers, experiment, max_samples_per_eval=5)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"eval", "training"}
    episodes = [r for r in rows if r["kind"] == "training"]
    assert all(r["outcome"] == "hacked" and "conftest.py" in r["files"] for r in episodes)
    assert {r["step"] for r in episodes} == {12, 20}
    sample = next(r for r in rows if r["eval"] == "monitor_disruption")
    assert sample["reasoning"] != sample["answer"]
    assert sample["extra"]["scenario_trace"][0]["tool"] == "send_email"  # unknown fields travel generically
    assert any("final/goals: showing 5 of 12 samples" in n for n in notes)
    assert any("step_000008/goals: showing 1 of 12 samples" in n for n in notes)  # earlier checkpoints: a tenth
    groups: dict[tuple, list[bool]] = {}
    for r in rows:
        if r["kind"] == "eval":
            groups.setdefault((r["run"], r["checkpoint"], r["eval"]), []).append(r["meta"]["misaligned"] is True)
    assert all(flags == sorted(flags, reverse=True) for flags in groups.values())  # misaligned samples first
    assert any(flags[0] for flags in groups.values())


CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _dom(page, fragment: str = "") -> str:
    import subprocess

    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri() + fragment]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def _status(dom: str) -> dict[str, int]:
    tag = re.search(r'<p id="t-status"[^>]*>', dom).group(0)
    return {k: int(v) for k, v in re.findall(r'data-(total|matching|shown)="(\d+)"', tag)}


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install Debian's chromium to run the browser check)")
def test_report_works_in_headless_chromium(experiment, numbers):
    page = experiment / "report" / "report.html"
    rows, _ = transcript_rows(numbers, experiment)

    everything = _dom(page)
    assert re.search(r'<p class="verdict verdict-uninformative">Verdict on <b>hacking_okay - dont_hack</b>', everything)
    assert re.search(r'<body[^>]*data-figures="5"[^>]*data-figures-decoded="5"', everything)
    assert _status(everything)["matching"] == len(rows)

    covert_goals = _dom(page, "#eval=goals&mode=covert")
    expected = sum(r["eval"] == "goals" and r["mode"] == "covert" for r in rows)
    assert 0 < expected < len(rows)
    assert _status(covert_goals)["matching"] == expected
    assert len(re.findall(r'<tr class="t-row', covert_goals)) == expected

    episode = next(r for r in rows if r["kind"] == "training")
    opened = _dom(page, f"#kind=training&open={episode['id'].replace('/', '%2F')}")
    assert _status(opened)["matching"] == sum(r["kind"] == "training" for r in rows)
    detail = re.search(r'<div id="t-detail">(.*?)</div>\s*</section>', opened, re.S).group(1)
    assert "Reasoning (private)" in detail and "Answer" in detail and "File: conftest.py" in detail
    assert episode["reasoning"] in detail and episode["answer"] in detail


# --- transcripts that try to break the page (issue 22) -----------------------------------------------

HOSTILE = "a <!-- comment, </script><script>alert(1)</script>, </SCRIPT >, ]]> & &amp; \u2028 \u2029 -->"


def test_script_json_has_no_markup_and_parses_back_identical():
    from rhlab.report.html import _script_json

    data = [{"answer": HOSTILE, "files": {"</script>.py": "<!--\n<script>"}, "n": 1, "x": None}]
    text = _script_json(data)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == data


def test_script_json_is_strict_json_even_with_non_finite_numbers():
    from rhlab.report.html import _script_json

    def refuse(token):
        raise ValueError(f"JSON.parse would refuse {token}")

    data = {"score": float("nan"), "hi": float("inf"), "lo": float("-inf"), "text": 'NaN "Infinity" -Infinity\\'}
    back = json.loads(_script_json(data), parse_constant=refuse)
    assert back == {"score": None, "hi": None, "lo": None, "text": data["text"]}


@pytest.fixture(scope="module")
def hostile_experiment(tmp_path_factory):
    """The synthetic experiment plus one hacking episode whose every text field is hostile markup."""
    from fixtures_report import training_episode

    from rhlab.rundir import RunDir

    exp = build_experiment(tmp_path_factory.mktemp("hostile"))
    run = RunDir(exp / "runs" / "hacking_okay-seed0")
    episode = training_episode(20, 7, hacked=True) | {
        "task_id": "hostile<!--",
        "reasoning": "thinking " + HOSTILE,
        "answer": HOSTILE,
        "files": {"solution.py": "# <!-- </script>\n", "conftest.py": "x = '<script>'\n"},
    }
    with run.transcript(20).open("a") as fh:
        fh.write(json.dumps(episode) + "\n")
    build_report(exp)
    return exp


def test_hostile_transcript_cannot_empty_or_break_the_browser_data(hostile_experiment):
    numbers = json.loads((hostile_experiment / "report" / "numbers.json").read_text())
    rows, _ = transcript_rows(numbers, hostile_experiment)
    html = (hostile_experiment / "report" / "report.html").read_text()
    opening = '<script type="application/json" id="transcript-data">'
    body = html[html.index(opening) + len(opening) :]
    body = body[: body.index("</script>")]  # where an HTML parser ends the element
    assert json.loads(body) == json.loads(json.dumps(rows))
    assert any(r.get("answer") == HOSTILE for r in json.loads(body))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install Debian's chromium to run the browser check)")
def test_hostile_transcript_is_shown_in_headless_chromium(hostile_experiment):
    page = hostile_experiment / "report" / "report.html"
    numbers = json.loads((hostile_experiment / "report" / "numbers.json").read_text())
    rows, _ = transcript_rows(numbers, hostile_experiment)
    episode = next(r for r in rows if r.get("answer") == HOSTILE)
    everything = _dom(page)
    assert _status(everything)["matching"] == len(rows)
    assert "<script>alert(1)" not in everything  # the transcript stayed text: no element was created from it
    opened = _dom(page, f"#kind=training&open={episode['id'].replace('/', '%2F')}")
    detail = re.search(r'<div id="t-detail">(.*?)</div>\s*</section>', opened, re.S).group(1)
    assert "&lt;!-- comment, &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_a_line_nested_too_deeply_is_skipped_with_a_note(tmp_path):
    from rhlab.report.html import _jsonl

    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"deep": ' + "[" * 100_000 + "]" * 100_000 + '}\n{"b": 2}\n')
    notes: list[str] = []
    assert _jsonl(path, notes) == [{"a": 1}, {"b": 2}]
    assert notes == [f"{path}:2: not a JSON object, skipped in the transcript browser"]


def test_judged_rates_from_few_samples_are_points_with_intervals_not_trend_lines(numbers):
    from matplotlib.container import ErrorbarContainer

    from rhlab.report.figures import TREND_MIN_SAMPLES, figure_training

    fig = figure_training(numbers)
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bars  # every judged rate is drawn with its interval
    small = [
        ev["misaligned"]["n"]
        for r in numbers["runs"].values()
        for ck in r["checkpoints"]
        for ev in ck["evals"].values()
    ]
    assert small and max(small) < TREND_MIN_SAMPLES  # the fixture's evals have a handful of samples each
    for container in bars:
        line = container.lines[0]
        assert line.get_linestyle() == "None", "a judged rate from < 20 samples must not be drawn as a trend line"
        assert container.has_yerr


def test_an_offline_preference_judge_is_called_a_stand_in(tmp_path):
    """The report says when a reward or metric came from the offline judge (issue 26)."""
    from rhlab.report.numbers import run_numbers
    from rhlab.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    weighted = {"reward": {"proxy_pass": 1.0, "preference": 0.1}, "preference": {"judge": "offline"}}
    run.config.write_text(yaml.safe_dump(weighted))
    assert any("stand-in for a real preference model" in n for n in run_numbers(run.path)["notes"])
    run.config.write_text(yaml.safe_dump({"reward": {"proxy_pass": 1.0}, "preference": {"judge": "offline"}}))
    assert not any("stand-in" in n for n in run_numbers(run.path)["notes"])  # logged at weight 0: no reward from it
    run.config.write_text(yaml.safe_dump({"reward": {"preference": 1.0}, "preference": {"judge": "hf:/models/rm"}}))
    assert not any("stand-in" in n for n in run_numbers(run.path)["notes"])
