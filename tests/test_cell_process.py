"""``rhlab run`` trains each RL cell in its own child process, so its GPU memory is freed when it ends.

End to end (two real cells, each in a child, then the evaluations and the report) this runs in the
``run_two_cells`` stage of ``scripts/gpu_check.sh --cpu`` (``tests/test_gpu_check.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rhlab.pipeline import run as pipeline_run
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
