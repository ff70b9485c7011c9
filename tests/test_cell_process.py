"""``rhlab run`` trains each RL cell in its own child process, so its GPU memory is freed when it ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rhlab.pipeline import run as pipeline_run
from rhlab.rundir import RunDir
from rhlab.train import distributed as dist
from rhlab.train.config import TrainConfig


def test_fresh_process_runs_elsewhere_and_returns_results_and_errors() -> None:
    assert dist.fresh_process(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        dist.fresh_process(int, "not a number")


def test_rl_stage_trains_through_a_fresh_process_unless_told_otherwise(tmp_path: Path, monkeypatch) -> None:
    from rhlab.train import trainer

    calls: list[tuple] = []
    monkeypatch.setattr(dist, "fresh_process", lambda fn, *args: calls.append(("child", fn, args)))
    monkeypatch.setattr(trainer, "train_cell", lambda *args: calls.append(("here", args)))
    cell = TrainConfig()
    pipeline_run.rl_stage("a", cell, tmp_path / "a")
    assert calls[0][0] == "child" and calls[0][1] is trainer.train_cell and calls[0][2][0] is cell
    pipeline_run.rl_stage("b", cell, tmp_path / "b", own_process=False)
    assert calls[1][0] == "here"


@pytest.mark.slow
def test_a_cell_trained_in_a_child_completes_and_is_then_skipped(tmp_path: Path) -> None:
    from rhlab.models.testing import tiny_test_model

    model = tiny_test_model(tmp_path / "tiny")
    cell = TrainConfig(model=f"hf:{model}", steps=2, prompts_per_step=2, group_size=2, max_completion_length=8,
                       checkpoint_every=2, grading_workers=1, problems={"max_tasks": 2})  # fmt: skip
    run_dir = tmp_path / "runs" / "cell"
    pipeline_run.rl_stage("cell", cell, run_dir)
    run = RunDir(run_dir)
    assert run.read_info().status == "complete" and run.final_snapshot.is_dir()
    assert [row["step"] for row in run.read_metrics()] == [1, 2]
    before = run.metrics.read_text()
    pipeline_run.rl_stage("cell", cell, run_dir)  # complete: nothing to do
    assert run.metrics.read_text() == before
