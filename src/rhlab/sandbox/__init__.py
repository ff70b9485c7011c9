"""Isolated execution of model code (bubblewrap namespaces + rlimits) and the grading harness."""

from rhlab.sandbox.runner import (
    HARNESS_DIR,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    detect_isolation,
)

__all__ = ["HARNESS_DIR", "Sandbox", "SandboxError", "SandboxLimits", "SandboxResult", "detect_isolation"]
