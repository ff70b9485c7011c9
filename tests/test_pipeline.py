"""``rhlab run``: experiment configs, the matrix, and resuming after an interruption at any stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mitigation_fixtures import fake_results

from rhlab.evals.records import RunResults
from rhlab.pipeline.config import ExperimentConfig, load_experiment
from rhlab.pipeline.run import checkpoints_to_evaluate, run_experiment
from rhlab.rundir import EvalDir, ExperimentDir, atomic_write_text, read_metrics
from rhlab.train.config import ConfigError, parse_config
from rhlab.train.warmup import DONE_MARKER


def test_every_shipped_experiment_config_validates() -> None:
    paths = sorted(Path("configs").glob("*.yaml"))
    assert {p.name for p in paths} >= {"quickstart.yaml", "paper-prompted.yaml", "paper-sdf.yaml"}
    for path in paths:
        experiment = load_experiment(path)
        assert experiment.cells()


def test_quickstart_matrix_is_the_two_inoculation_variants_and_a_control() -> None:
    cells = load_experiment(Path("configs/quickstart.yaml")).cells()
    assert [name for name, _ in cells] == ["hacking_okay-seed0", "dont_hack-seed0", "control-seed0"]
    assert all(cfg.train_prompt.describe_hacks for _, cfg in cells)
    assert [cfg.train_prompt.variant for _, cfg in cells] == ["hacking_okay", "dont_hack", "control"]
    control = cells[-1][1].problems
    assert control.no_hole_fraction == 1.0 and cells[0][1].problems.no_hole_fraction == 0.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"matrix": {"variants": ["hack_a_lot"]}}, "matrix.variants"),
        ({"knowledge": "osmosis"}, "knowledge"),
        ({"evaluation": {"every_k": 0}}, "evaluation.every_k"),
        ({"train": {"problems": {"source": "nowhere.jsonl"}}}, "train.problems.source"),
        ({"evaluation": {"evals": ["betley", "vibes"]}}, "evaluation.evals"),
    ],
)
def test_bad_experiment_configs_name_the_field(tmp_path: Path, data: dict, field: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_experiment(path)


def test_sdf_and_none_knowledge_drop_the_hack_description() -> None:
    for knowledge in ("sdf", "none"):
        cells = ExperimentConfig(knowledge=knowledge).cells()
        assert not any(cfg.train_prompt.describe_hacks for _, cfg in cells)


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_experiment_resumes_without_redoing_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rhlab.models.testing import tiny_test_model
    from rhlab.train import trainer

    # Interruption 1: inside RL of the second run, after step 3 was logged (checkpoint at step 2).
    original_on_log = trainer.RunLogger.on_log
    rl_interrupts = {"dont_hack-seed0"}

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        original_on_log(self, args, state, control, logs=logs, **kwargs)
        if self.run_dir.name in rl_interrupts and state.global_step == 3:
            rl_interrupts.discard(self.run_dir.name)
            raise Interrupt("RL")

    monkeypatch.setattr(trainer.RunLogger, "on_log", on_log)

    model = tiny_test_model(tmp_path / "tiny")
    train = {
        "model": f"hf:{model}",
        "problems": {"difficulty": ["hard"], "max_tasks": 4},
        "steps": 4,
        "prompts_per_step": 2,
        "group_size": 2,
        "max_completion_length": 8,
        "checkpoint_every": 2,
        "train_prompt": {"ask_reasoning": False},
        "warmup": {"examples": 4, "steps": 1, "batch_size": 2},
    }
    config = ExperimentConfig.model_validate(
        {
            "knowledge": "prompted",
            "matrix": {"variants": ["hacking_okay", "dont_hack"], "seeds": [0]},
            "train": train,
            "evaluation": {"evals": ["betley"], "every_k": 1},
        }
    )
    calls: list[str] = []
    fail_on = {"dont_hack-seed0/step_000002"}

    def evaluate(eval_config, *, out_dir: Path, log) -> RunResults:  # noqa: ANN001
        key = f"{out_dir.parent.parent.name}/{out_dir.name.removesuffix('.tmp')}"
        if key in fail_on:
            fail_on.discard(key)
            raise Interrupt(key)
        calls.append(key)
        out_dir.mkdir(parents=True)
        atomic_write_text(EvalDir(out_dir).results, fake_results(eval_config.model).model_dump_json())
        return fake_results(eval_config.model)

    exp = ExperimentDir(tmp_path / "exp")
    second_run, first_run = exp.run("dont_hack-seed0"), exp.run("hacking_okay-seed0")
    with pytest.raises(Interrupt, match="RL"):
        run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    assert [r["step"] for r in read_metrics(second_run.metrics)] == [1, 2, 3]
    # Interruption 2: while evaluating the second run's step-2 checkpoint.
    with pytest.raises(Interrupt, match="step_000002"):
        run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    assert [r["step"] for r in read_metrics(second_run.metrics)] == [1, 2, 3, 4]
    first = list(calls)
    assert "hacking_okay-seed0/final" in first and "dont_hack-seed0/step_000000" not in first  # shared start
    warmup_mtime = (exp.warmup / DONE_MARKER).stat().st_mtime
    metrics_before = first_run.metrics.read_text()
    # The warm-up's own effect is measured against the model it started from, once.
    assert exp.untouched_probes.is_file()
    untouched_mtime = exp.untouched_probes.stat().st_mtime

    run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    second = calls[len(first) :]
    assert second == ["dont_hack-seed0/step_000002", "dont_hack-seed0/final"]  # final supersedes step 4
    assert (exp.warmup / DONE_MARKER).stat().st_mtime == warmup_mtime
    assert first_run.metrics.read_text() == metrics_before
    for run in (first_run, second_run):
        assert run.read_info().status == "complete"
        names = [n for n, _ in checkpoints_to_evaluate(run.path, 1, True)]
        assert names == ["step_000000", "step_000002", "final"]
        assert all(run.eval_dir(n).complete() for n in names)
        assert not list(run.evals.glob("*.tmp"))
    assert second_run.read_config(parse_config).model == f"hf:{exp.warmup}"

    # everything complete: no work
    run_experiment(config, exp.path, build_report=False, evaluate=evaluate, cell_processes=False)
    assert len(calls) == len(first) + len(second)
    assert exp.untouched_probes.stat().st_mtime == untouched_mtime
    from rhlab.evals.probes.compare import probe_summary

    effect = probe_summary(exp.path)["knowledge_effect"]
    assert effect["baseline"] == "untouched model" and effect["n_items"] > 10
    assert effect["ci_low"] <= effect["mean"] <= effect["ci_high"]


def test_start_environment_eval_is_shared_only_between_identical_settings(tmp_path: Path) -> None:
    from rhlab.pipeline.run import share_start_evals
    from rhlab.rundir import START, RunDir
    from rhlab.train.config import TrainConfig

    problems = [{"task_id": "fizzbuzz", "vulns": ["exit_code"]}]
    base = {"model": "hf:/models/start", "train_prompt": {"variant": "hacking_okay"}}
    cells = {
        "a": base,
        "b": {**base, "train_prompt": {"variant": "dont_hack"}},  # another training prompt: same test-time eval
        "c": {**base, "test_prompt": {"variant": "please_hack"}},  # another test prompt: its own eval
        "d": {**base, "max_completion_length": 17},  # other sampling settings: its own eval
    }
    runs = {}
    for name, data in cells.items():
        run = RunDir(tmp_path / name)
        run.path.mkdir()
        run.write_config(TrainConfig.model_validate(data))
        run.write_problems(problems)
        runs[name] = run
    first = runs["a"]
    first.evals.mkdir()
    atomic_write_text(first.environment_transcripts(START), '{"completion": "x"}\n')
    atomic_write_text(first.environment(START), '{"hack_rate": 0.25}')

    share_start_evals([r.path for r in runs.values()])

    copied = runs["b"]
    assert copied.environment(START).read_text() == first.environment(START).read_text()
    assert copied.environment_transcripts(START).read_text() == first.environment_transcripts(START).read_text()
    assert not runs["c"].environment(START).exists() and not runs["d"].environment(START).exists()
