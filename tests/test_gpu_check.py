"""scripts/gpu_check.sh --cpu: the device smoke's stages, at toy size, pass on a CPU (what CI runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["preflight", "grpo_lora", "memory_probe", "run_two_cells", "full_ft_bf16", "vllm"]


@pytest.mark.slow  # ~1.5-2.5 min on 2 cores
def test_gpu_check_cpu_mode_passes_every_stage(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "gc")}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "gc" / "gpu_check.json").read_text())
    assert report["mode"] == "cpu" and list(report["stages"]) == STAGES
    assert all(stage["status"] == "ok" for stage in report["stages"].values())
    assert report["sandbox"] == "bubblewrap" or report["sandbox"].startswith("weak (rlimits only), opted in")
    stages = report["stages"]
    assert stages["grpo_lora"]["steps"] == 2 and stages["grpo_lora"]["gradient_checkpointing"]
    assert [row["micro_batch"] for row in stages["memory_probe"]["micro_batches"]] == [2, 4, 8]
    assert set(stages["run_two_cells"]["cells"].values()) == {"complete"}
    bf16 = stages["full_ft_bf16"]
    assert bf16["weights_changed"] > bf16["weights_total"] // 2 and bf16["weights_dtype"] == "torch.float32"
    assert "skipped" in stages["vllm"]


def test_print_wheels_lists_pinned_pure_python_dependencies() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--print-wheels"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    wheels = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    names = {line.split("==")[0] for line in wheels}
    assert "trl" in names and "typer" in names and "pydantic" in names
    assert not names & {"torch", "transformers", "peft", "accelerate"}, "the machine brings these"
    assert not any(name.startswith("nvidia-") for name in names)
