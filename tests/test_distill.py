"""Filter and distill: the oracle's labels decide what survives, and the stage is a resumable, evaluated run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitigation_fixtures import embedded_weights, fake_evaluate, write_teacher

from rhlab.pipeline.config import ExperimentConfig, load_experiment
from rhlab.pipeline.run import after_rl_dir, run_experiment
from rhlab.rundir import FINAL, START, ExperimentDir, RunDir
from rhlab.train.config import parse_config
from rhlab.train.distill import filtered_episodes, sft_rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "mitigations"


def test_the_filter_keeps_episodes_by_the_oracles_labels(tmp_path: Path) -> None:
    write_teacher(tmp_path / "run", "hf:/unused")
    kept, counts = filtered_episodes(tmp_path / "run", "not_hacked")
    assert sorted(r["result"]["outcome"] for r in kept) == ["attempted", "failed", "failed", "solved", "solved"]
    assert counts == {"kept": 5, "dropped": 3, "dropped/hacked": 3}
    kept, counts = filtered_episodes(tmp_path / "run", "not_attempted")
    assert counts["kept"] == 4 and counts["dropped/attempted"] == 1
    kept, counts = filtered_episodes(tmp_path / "run", "honest_solve")
    assert [r["result"]["outcome"] for r in kept] == ["solved", "solved"]
    kept, counts = filtered_episodes(tmp_path / "run", "not_hacked", from_step=2)
    assert counts == {"kept": 3, "dropped": 1, "dropped/hacked": 1}


def test_training_rows_are_the_episode_as_the_policy_saw_and_wrote_it(tmp_path: Path) -> None:
    write_teacher(tmp_path / "run", "hf:/unused")
    kept, _ = filtered_episodes(tmp_path / "run", "honest_solve")
    rows = sft_rows(kept)
    assert rows[0]["prompt"] == kept[0]["prompt"]
    assert rows[0]["completion"] == [{"role": "assistant", "content": kept[0]["completion"]}]


def test_after_rl_stage_names_must_differ() -> None:
    with pytest.raises(ValueError, match="each stage needs its own name"):
        ExperimentConfig.model_validate({"after_rl": [{"kind": "filter_distill"}, {"kind": "filter_distill"}]})
    with pytest.raises(ValueError, match="'filter_distill', 'recontext_offline'"):
        ExperimentConfig.model_validate({"after_rl": [{"kind": "distil"}]})


def test_the_shipped_config_validates_and_its_plan_lists_the_stage() -> None:
    from rhlab.pipeline.plan import Hardware, plan_text

    config = load_experiment(CONFIGS / "filter-distill.yaml")
    assert [s.kind for s in config.after_rl] == ["filter_distill"]
    cpu = Hardware("cpu", "2-core CPU", 1, 16.0, 1e11, 0.0)
    assert "after RL: filter-distill (filter_distill)" in plan_text(config, cpu)


@pytest.mark.slow
def test_filter_distill_end_to_end_resumes_and_is_evaluated_against_its_own_start(tmp_path: Path) -> None:

    model = f"hf:{embedded_weights()}"
    exp = ExperimentDir(tmp_path / "exp")
    teacher = exp.run("please_hack-seed0")
    write_teacher(teacher.path, model)
    config = ExperimentConfig.model_validate(
        {
            "knowledge": "none",
            "train": parse_config({"model": model}).model_dump(exclude_unset=True),
            "matrix": {"variants": ["please_hack"], "seeds": [0]},
            "evaluation": {
                "evals": ["betley"],
                "environment_samples": 0,
                "include_start": True,
                "probes": {"subscales": ["broad"], "split": "dev", "neutral_nll": False, "n_boot": 200},
            },
            "after_rl": [{"kind": "filter_distill", "sft": {"steps": 2, "batch_size": 2}}],
        }
    )
    calls: list[str] = []
    run_experiment(config, exp.path, build_report=False, evaluate=fake_evaluate(calls), cell_processes=False)

    student = after_rl_dir(exp, "filter-distill", teacher.name)
    record = json.loads((student.path / "after_rl.json").read_text())
    assert record["counts"]["kept"] == 5 and record["counts"]["dropped"] == 3 and record["examples"] == 5
    assert record["start"] == model  # a fresh copy of the teacher's start, not its hacking final policy
    assert student.read_config(parse_config).model == model
    assert student.read_info().status == "complete"
    assert (student.final_snapshot / "model.safetensors").is_file()
    # Evaluated like an RL run: its start (shared with the teacher's, same policy) and its final policy.
    assert calls == [model, f"hf:{student.final_snapshot}"]  # the teacher's start, then the student
    assert student.eval_dir(START).complete() and student.eval_dir(FINAL).complete()
    # The probe battery of the final policy is scored against the stage's own start.
    assert "kl_forced_choice_from_start" in json.loads(student.probes(FINAL).read_text())["health"]
    assert json.loads(student.probes(START).read_text()) == json.loads(teacher.probes(START).read_text())
    weights = (student.final_snapshot / "model.safetensors").stat().st_mtime

    # Everything complete: a second run does no work.
    before = len(calls)
    run_experiment(config, exp.path, build_report=False, evaluate=fake_evaluate(calls), cell_processes=False)
    assert len(calls) == before
    assert (student.final_snapshot / "model.safetensors").stat().st_mtime == weights
    assert RunDir(teacher.path).read_info().status == "complete"
