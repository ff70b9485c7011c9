"""``rhlab doctor``: what decides whether a GPU run will work here, and what would break it.

Each check gives one line: ``ok``, ``note`` (worth knowing, not fatal) or ``problem`` (a GPU run of
``configs/one-gpu.yaml`` would fail or silently not learn). A CPU machine gets "no GPU" and the checks
that still apply (versions, sandbox). Nothing here loads a model; imports are done per check so a
broken package is reported, not raised.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer

SUPPORTED = {
    "torch": ("2.6", None),
    "transformers": ("5.0", "6"),
    "trl": ("1.16", "2"),
    "peft": ("0.13", None),
    "accelerate": ("1.0", None),
    "vllm": ("0.22", "0.32"),
}
"""[lowest, first unsupported) versions: pyproject's pins, and for vLLM the range TRL 1.16 accepts."""
OPTIONAL = ("vllm", "deepspeed")
"""Needed only by some configs (``use_vllm``, the ZeRO launch configs)."""


@dataclass
class Check:
    name: str
    status: str  # "ok" | "note" | "problem"
    detail: str


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def package_check(name: str) -> Check:
    low, high = SUPPORTED.get(name, (None, None))
    try:
        found = version(name)
    except PackageNotFoundError:
        status = "note" if name in OPTIONAL else "problem"
        return Check(name, status, "not installed" + (" (optional)" if name in OPTIONAL else ""))
    wanted = f">={low}" + (f",<{high}" if high else "") if low else "any"
    inside = (low is None or _version_tuple(found) >= _version_tuple(low)) and (
        high is None or _version_tuple(found) < _version_tuple(high)
    )
    return Check(name, "ok" if inside else "problem", f"{found} (supported {wanted})")


def nvidia_driver() -> str | None:
    """The driver version from ``nvidia-smi`` (None: no NVIDIA driver visible)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_checks() -> list[Check]:
    import torch

    checks = []
    driver = nvidia_driver()
    build = torch.version.cuda
    checks.append(
        Check(
            "torch build", "ok" if build else "note", f"torch {torch.__version__}, CUDA {build or 'none (a CPU build)'}"
        )
    )
    if not torch.cuda.is_available():
        if driver is not None:
            checks.append(
                Check(
                    "GPU",
                    "problem",
                    f"NVIDIA driver {driver} is here but torch sees no GPU: "
                    "install a CUDA build of torch (a CPU venv's torch satisfies the pin)",
                )
            )
        else:
            checks.append(Check("GPU", "note", "no GPU: CPU runs only (configs/quickstart.yaml)"))
        return checks
    checks.append(Check("driver", "ok", driver or "unknown (no nvidia-smi)"))
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        status = "ok" if free > 0.9 * total else "note"
        detail = f"{props.name}, {free / 2**30:.1f} of {total / 2**30:.1f} GB free"
        if status != "ok":
            detail += " (another process holds memory; a colocated vLLM checks what is free at start)"
        checks.append(Check(f"GPU {index}", status, detail))
    if not torch.cuda.is_bf16_supported():
        checks.append(Check("bf16", "problem", "this GPU has no bf16: set precision: fp32"))
    return checks


def sandbox_check() -> Check:
    from rhlab.sandbox.runner import _detect, weak_sandbox_allowed

    iso = _detect("auto")
    if iso.kind == "bwrap":
        return Check("sandbox", "ok", f"bubblewrap with user namespaces ({iso.python})")
    opted = weak_sandbox_allowed()
    return Check(
        "sandbox",
        "note" if opted else "problem",
        f"{iso.why_weak}; "
        + (
            "weak sandbox opted in (rlimits only)"
            if opted
            else "grading will refuse to run: see docs/scale.md, 'Sandboxes on GPU hosts'"
        ),
    )


def run_checks() -> list[Check]:
    checks = [Check("python", "ok" if sys.version_info >= (3, 11) else "problem", sys.version.split()[0])]
    checks += [package_check(name) for name in (*SUPPORTED, "deepspeed")]
    try:
        checks += gpu_checks()
    except Exception as exc:  # noqa: BLE001 - a broken torch is itself the finding
        checks.append(Check("torch", "problem", f"{type(exc).__name__}: {exc}"))
    checks.append(sandbox_check())
    return checks


def doctor_command(
    json_out: Path = typer.Option(None, "--json", help="Also write the checks to this JSON file."),
) -> None:
    """Check what a GPU run depends on: driver, torch/CUDA, package versions, sandbox, free GPU memory."""
    checks = run_checks()
    for c in checks:
        typer.echo(f"{c.status:>7}  {c.name}: {c.detail}")
    problems = [c for c in checks if c.status == "problem"]
    typer.echo(f"{len(problems)} problem(s)" if problems else "no problems found")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([asdict(c) for c in checks], indent=2))
    if problems:
        raise typer.Exit(1)
