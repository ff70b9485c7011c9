"""Any-axis experiment matrices: cells, run names, validation, the dry-run listing and grouped contrasts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from rhlab.evals.records import EvalResult, Interval, JudgeInfo, RunResults
from rhlab.pipeline.config import MAX_RUN_NAME, ExperimentConfig, cell_name, load_experiment, value_label
from rhlab.report.matrix import rate_difference
from rhlab.rundir import EvalDir, ExperimentDir, atomic_write_text
from rhlab.train.config import ConfigError

TWO_AXES = {
    "matrix": {
        "axes": {"train.mitigations.penalty": [0, 1], "train.train_prompt.variant": ["none", "hacking_okay"]},
        "seeds": [0, 1],
    }
}


def test_two_axes_give_one_readable_cell_per_combination_and_seed() -> None:
    cells = ExperimentConfig.model_validate(TWO_AXES).matrix_cells()
    assert [c.name for c in cells] == [
        "penalty=0__variant=none__seed0",
        "penalty=0__variant=none__seed1",
        "penalty=0__variant=hacking_okay__seed0",
        "penalty=0__variant=hacking_okay__seed1",
        "penalty=1__variant=none__seed0",
        "penalty=1__variant=none__seed1",
        "penalty=1__variant=hacking_okay__seed0",
        "penalty=1__variant=hacking_okay__seed1",
    ]
    by_name = {c.name: c for c in cells}
    penalised = by_name["penalty=1__variant=hacking_okay__seed1"]
    assert penalised.arm == "penalty=1__variant=hacking_okay" and penalised.seed == 1
    assert penalised.train.reward == {"proxy_pass": 1.0, "monitor_flag": -1.0}
    assert penalised.train.train_prompt.variant == "hacking_okay" and penalised.train.seed == 1
    assert by_name["penalty=0__variant=none__seed0"].train.reward == {"proxy_pass": 1.0}
    # Stable: the same config gives the same names, and the cells() view agrees with them.
    again = ExperimentConfig.model_validate(TWO_AXES)
    assert [n for n, _ in again.cells()] == [c.name for c in cells]


def test_an_axis_can_switch_a_penalty_off_that_train_switched_on() -> None:
    data = {**TWO_AXES, "train": {"mitigations": {"penalty": 2.0}}}
    cells = {c.arm: c.train for c in ExperimentConfig.model_validate(data).matrix_cells()}
    assert cells["penalty=0__variant=none"].reward == {"proxy_pass": 1.0}
    assert cells["penalty=1__variant=none"].reward["monitor_flag"] == -1.0


def test_variants_and_arms_keep_their_names() -> None:
    config = ExperimentConfig.model_validate({"matrix": {"variants": ["please_hack", "none"], "seeds": [3]}})
    assert [n for n, _ in config.cells()] == ["please_hack-seed3", "none-seed3"]
    assert config.arm_of_run() == {"please_hack-seed3": "please_hack", "none-seed3": "none"}


def test_knowledge_axis_decides_the_hack_description_per_cell() -> None:
    config = ExperimentConfig.model_validate({"matrix": {"axes": {"knowledge": ["prompted", "none"]}}})
    cells = {c.arm: c.train for c in config.matrix_cells()}
    assert cells["knowledge=prompted"].train_prompt.describe_hacks
    assert cells["knowledge=prompted"].test_prompt.describe_hacks
    assert not cells["knowledge=none"].train_prompt.describe_hacks
    assert not cells["knowledge=none"].test_prompt.describe_hacks


def test_clashing_short_names_take_more_of_the_path_and_long_names_are_hashed() -> None:
    config = ExperimentConfig.model_validate(
        {"matrix": {"axes": {"train.train_prompt.variant": ["none"], "train.test_prompt.variant": ["none"]}}}
    )
    assert config.matrix_cells()[0].name == "train_prompt.variant=none__test_prompt.variant=none__seed0"
    long = cell_name("x" * 200, 0)
    assert len(long) == MAX_RUN_NAME and long == cell_name("x" * 200, 0) and long != cell_name("x" * 199 + "y", 0)
    assert value_label(1.0) == "1" and value_label(True) == "true" and value_label("a b/c") == "a-b-c"
    assert value_label([1, 2]) == "1,2" and value_label({"b": [1], "a": 0.5}) == "a-0.5,b-1"
    assert value_label(-0.5) == "-0.5" and value_label("../up") == "..-up"  # signs kept, no separators


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ({"axes": {"evaluation.judge": ["offline"]}}, "evaluation.judge"),
        ({"axes": {"train.mitigations.penalti": [0, 1]}}, "penalti"),
        ({"axes": {"train.steps": [0]}}, "steps"),
        ({"axes": {"train.steps": []}}, "at least one value"),
        ({"axes": {"train.steps": [1, 1.0]}}, "must differ"),
        ({"axes": {"knowledge": ["prompted", "sdf"]}}, "sdf"),
        ({"axes": {"train.steps": [1]}, "variants": ["none"]}, "either axes or variants"),
    ],
)
def test_bad_axes_are_refused_with_the_axis_named(tmp_path: Path, matrix: dict, message: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"matrix": matrix}))
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


def test_a_primary_probe_contrast_names_axis_arms() -> None:
    primary = ["penalty=1__variant=none", "penalty=0__variant=none"]
    config = ExperimentConfig.model_validate({**TWO_AXES, "evaluation": {"probes": {"primary": primary}}})
    assert config.evaluation.probes.primary == tuple(primary)
    with pytest.raises(ValueError, match="no arm named hacking_okay"):
        ExperimentConfig.model_validate({**TWO_AXES, "evaluation": {"probes": {"primary": ["hacking_okay", "none"]}}})


def test_dry_run_lists_every_cell(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rhlab.cli import app

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TWO_AXES, "train": {"steps": 2}}))
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    axes = "train.mitigations.penalty [0, 1] x train.train_prompt.variant [none, hacking_okay]"
    assert f"matrix: {axes} x seeds [0, 1]" in result.output
    for name, _ in ExperimentConfig.model_validate(TWO_AXES).cells():
        assert f"  {name}: 2 steps" in result.output


def test_rate_difference_has_newcombes_interval() -> None:
    diff = rate_difference((30, 40), (10, 40))
    assert diff["estimate"] == pytest.approx(0.5)
    assert 0.28 < diff["low"] < 0.34 and 0.62 < diff["high"] < 0.68  # Newcombe (1998), method 10
    assert rate_difference((0, 0), (1, 2)) is None


# --- end to end ----------------------------------------------------------------------------------


def _fake_results(model: str) -> RunResults:
    rate = Interval(estimate=0.0, low=0.0, high=0.0, n=1)
    result = EvalResult(
        eval="betley",
        n_samples=1,
        n_scored=1,
        n_unparseable=0,
        n_incoherent=0,
        misaligned_rate=rate,
        overt_rate=rate,
        covert_rate=rate,
        covert_share=None,
    )
    judge = JudgeInfo(spec="fake", judge_id="fake", offline=True, template_hash="0")
    return RunResults(model=model, judge=judge, evals={"betley": result})


def _evaluate(eval_config, *, out_dir: Path, log) -> RunResults:  # noqa: ANN001
    out_dir.mkdir(parents=True)
    atomic_write_text(EvalDir(out_dir).results, _fake_results(eval_config.model).model_dump_json())
    return _fake_results(eval_config.model)


@pytest.mark.slow
def test_two_axis_matrix_runs_end_to_end_and_its_report_groups_the_contrasts(tmp_path: Path) -> None:
    from rhlab.models.testing import tiny_test_model
    from rhlab.pipeline.run import run_experiment

    model = tiny_test_model(tmp_path / "tiny")
    config = ExperimentConfig.model_validate(
        {
            "knowledge": "prompted",
            "matrix": {
                "axes": {"train.mitigations.penalty": [0, 1], "train.train_prompt.variant": ["none", "hacking_okay"]},
                "seeds": [0],
            },
            "train": {
                "model": f"hf:{model}",
                "problems": {"difficulty": ["hard"], "max_tasks": 2, "hard_filter_samples": 0},
                "steps": 1,
                "prompts_per_step": 2,
                "group_size": 2,
                "max_completion_length": 8,
                "checkpoint_every": 1,
                "train_prompt": {"ask_reasoning": False},
                "grading_workers": 2,
            },
            "evaluation": {
                "evals": ["betley"],
                "environment_samples": 1,
                "probes": {"subscales": ["broad"], "split": "dev", "neutral_nll": False, "n_boot": 200},
                "leakage": {"enabled": True, "samples": 1, "conditions": ["training", "keyword"]},
            },
        }
    )
    began = time.perf_counter()
    report = run_experiment(config, tmp_path / "exp", evaluate=_evaluate, cell_processes=False)
    elapsed = time.perf_counter() - began
    exp = ExperimentDir(tmp_path / "exp")
    assert sorted(r.name for r in exp.run_dirs()) == sorted(n for n, _ in config.cells())
    numbers = json.loads(exp.numbers.read_text())
    assert set(numbers["variants"]) == {c.arm for c in config.matrix_cells()}  # seeds grouped by arm
    matrix = numbers["matrix"]
    assert matrix["axes"] == {
        "train.mitigations.penalty": ["0", "1"],
        "train.train_prompt.variant": ["none", "hacking_okay"],
    }
    contrasts = {(c["axis_label"], tuple(c["held"].items())): c for c in matrix["contrasts"]}
    assert len(contrasts) == 4  # two per axis: each value against the reference, the other axis held
    penalty = contrasts[("penalty", (("variant", "none"),))]
    assert (penalty["a"], penalty["b"]) == ("penalty=1__variant=none", "penalty=0__variant=none")
    for c in matrix["contrasts"]:
        training = c["hack_rate_training"]
        assert training["a"]["n"] == 4 and training["b"]["n"] == 4  # 1 step x 4 episodes each
        low, high = training["difference"]["low"], training["difference"]["high"]
        assert low <= training["difference"]["estimate"] <= high
        assert c["hack_rate_test"]["a"]["n"] == 2  # the final policy once per problem under the test prompt
        assert c["probe"]["ci_low"] <= c["probe"]["mean"] <= c["probe"]["ci_high"] and c["probe"]["n_items"] >= 3
    leakage = numbers["leakage"]
    assert set(leakage) == set(numbers["variants"])
    rows = leakage["penalty=0__variant=hacking_okay"]["rows"]
    assert [r["condition"] for r in rows] == ["none", "training", "keyword"]  # none: always, the reference
    assert rows[1]["text"].startswith("Exploiting these weaknesses is acceptable")
    assert all(r["hack_rate"]["n"] == 2 for r in rows) and rows[1]["probe_shift_vs_none"]["n_items"] >= 3
    html = Path(report).read_text()
    assert 'id="s-matrix"' in html and "penalty=1 − penalty=0" in html and 'id="s-leakage"' in html
    print(f"two-axis tiny matrix end to end: {elapsed:.1f} s")


def test_report_groups_seeds_by_arm_and_contrasts_each_axis(tmp_path: Path) -> None:
    """Synthetic runs (tests/fixtures_report.py): dont_hack moves the battery, hacking_okay does not;
    the penalty=1 x dont_hack cell has not run yet."""
    from fixtures_report import write_probes, write_run

    from rhlab.report.numbers import compute_numbers

    exp = ExperimentDir(tmp_path / "exp")
    exp.path.mkdir()
    axes = {"train.mitigations.penalty": [0, 1], "train.train_prompt.variant": ["hacking_okay", "dont_hack"]}
    config = ExperimentConfig.model_validate({"name": "axes", "matrix": {"axes": axes, "seeds": [0, 1]}})
    exp.write_config(config)
    for cell in config.matrix_cells():
        if cell.arm == "penalty=1__variant=dont_hack":
            continue
        variant = cell.train.train_prompt.variant
        write_run(exp.run(cell.name).path, variant, cell.seed, onset=6 if variant == "hacking_okay" else None)
        write_probes(exp, exp.run(cell.name), variant, cell.seed)
    numbers = compute_numbers(exp.path)
    assert list(numbers["variants"]) == [
        "penalty=0__variant=dont_hack",
        "penalty=0__variant=hacking_okay",
        "penalty=1__variant=hacking_okay",
    ]
    assert all(v["final_hack_rate"]["n_seeds"] == 2 for v in numbers["variants"].values())
    assert any("penalty=1__variant=dont_hack__seed0" in note for note in numbers["notes"])
    contrasts = {(c["a"], c["b"]): c for c in numbers["matrix"]["contrasts"]}
    variant = contrasts[("penalty=0__variant=dont_hack", "penalty=0__variant=hacking_okay")]
    assert variant["held"] == {"penalty": "0"} and variant["seeds"] == [2, 2]
    assert variant["probe"]["ci_low"] > 0.7 and variant["probe"]["unit"].startswith("nats")  # dont_hack: +0.8 nats
    training = variant["hack_rate_training"]
    assert training["a"]["n"] == training["b"]["n"] == 5 * 16 * 2  # last five steps, 16 episodes, two seeds
    assert training["difference"]["high"] < 0  # dont_hack never hacked; hacking_okay did
    missing = contrasts[("penalty=1__variant=dont_hack", "penalty=0__variant=dont_hack")]
    assert missing["hack_rate_training"] is None and missing["probe"] is None and missing["seeds"] == [0, 2]
