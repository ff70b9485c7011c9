"""Isolated execution of model code (bubblewrap namespaces + rlimits) and the grading harness."""

from rhlab.sandbox.memory import memory_bound_kind
from rhlab.sandbox.runner import (
    HARNESS_DIR,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    allow_weak_sandbox,
    detect_isolation,
    weak_sandbox_allowed,
)

__all__ = [
    "HARNESS_DIR",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "allow_weak_sandbox",
    "detect_isolation",
    "memory_bound_kind",
    "weak_sandbox_allowed",
]
