"""``rhlab doctor``: one line per thing that decides a GPU run; works, and says so, without a GPU."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rhlab import doctor
from rhlab.cli import app


def test_doctor_on_this_machine_names_every_check(tmp_path) -> None:
    out = tmp_path / "doctor.json"
    result = CliRunner().invoke(app, ["doctor", "--json", str(out)])
    checks = {c["name"]: c for c in json.loads(out.read_text())}
    assert {"python", "torch", "transformers", "trl", "peft", "accelerate", "vllm", "sandbox", "torch build"} <= set(
        checks
    )
    if not torch.cuda.is_available():
        assert "no GPU" in checks["GPU"]["detail"] or checks["GPU"]["status"] == "problem"
    problems = [c for c in checks.values() if c["status"] == "problem"]
    assert result.exit_code == (1 if problems else 0), result.output
    assert len(result.output.strip().splitlines()) == len(checks) + 1


def test_versions_outside_the_supported_range_are_problems(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "version", lambda name: {"vllm": "0.35.1", "trl": "1.16.0"}[name])
    assert doctor.package_check("vllm").status == "problem" and "<0.32" in doctor.package_check("vllm").detail
    assert doctor.package_check("trl").status == "ok"
    monkeypatch.setattr(doctor, "version", lambda name: "0.30.0+cu130")
    assert doctor.package_check("vllm").status == "ok"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-build case")
def test_a_driver_without_a_cuda_torch_is_a_problem(monkeypatch) -> None:
    monkeypatch.setattr(doctor, "nvidia_driver", lambda: "580.82")
    [build, gpu] = doctor.gpu_checks()
    assert gpu.status == "problem" and "CUDA build of torch" in gpu.detail
    monkeypatch.setattr(doctor, "nvidia_driver", lambda: None)
    assert doctor.gpu_checks()[1].status == "note"


def test_a_missing_sandbox_is_a_problem_unless_opted_out(monkeypatch) -> None:
    from rhlab.sandbox import runner

    monkeypatch.setattr(runner, "_detect", lambda prefer: runner._Isolation("rlimits", "py", False, "no bwrap"))
    monkeypatch.delenv(runner.WEAK_ENV, raising=False)
    assert doctor.sandbox_check().status == "problem"
    monkeypatch.setenv(runner.WEAK_ENV, "1")
    check = doctor.sandbox_check()
    assert check.status == "note" and "opted in" in check.detail
