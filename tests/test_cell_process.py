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


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may never reap an orphan)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_fresh_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A killed ``rhlab run`` must not leave its RL child training into the run directory."""
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"from rhlab.train import distributed as d; d.fresh_process(exec, {code!r})"]
    )
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        child = int(pid_file.read_text())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10 * dist.PARENT_POLL_S
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the child outlived its killed parent"


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


def test_run_json_versions_name_the_cpu_and_the_libraries() -> None:
    """Floating point follows the libraries and the CPU's vector units: run.json records both."""
    from rhlab.train.trainer import versions

    v = versions()
    assert {"torch", "transformers", "trl", "datasets", "cpu"} <= set(v) and all(v.values())
    assert v["cpu"].endswith(")"), "model name, then its widest vector extensions in parentheses"
