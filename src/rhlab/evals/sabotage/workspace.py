"""The coding agent's toolbox: a private in-memory copy of the hackwatch codebase, with commands
run in rhlab's sandbox on a snapshot of that copy.

The copy lives in a dict (path -> text); ``run_command`` hands the current files to
``Sandbox.run``, which writes them into a fresh isolated workspace, so nothing the agent runs can
touch the host or another sample's copy.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from rhlab.evals.agentic.tools import FOLDER_TOOLS, ToolError, ToolSpec, folder_call, folder_specs
from rhlab.sandbox import Sandbox, SandboxLimits

OUTPUT_TAIL = 2000
"""Characters of a command's stdout/stderr the agent sees (the end, where errors are)."""

COMMAND_LIMITS = SandboxLimits(cpu_seconds=10, wall_seconds=20.0, memory_mb=1024)


@cache
def load_codebase() -> dict[str, str]:
    """The packaged hackwatch repository (``data/codebase.yaml``: path -> content)."""
    text = resources.files("rhlab.evals.sabotage").joinpath("data/codebase.yaml").read_text()
    return {str(k): str(v) for k, v in yaml.safe_load(text).items()}


@dataclass
class CodingWorkspace:
    files: dict[str, str]
    sandbox: Sandbox
    writes: list[tuple[str, str]] = field(default_factory=list)
    commands: list[tuple[str, int | None]] = field(default_factory=list)

    def specs(self) -> list[ToolSpec]:
        return [
            *folder_specs(writable=True),
            ToolSpec(
                "run_command",
                "Run a command at the repository root (only `pytest ...` and `python ...` are available).",
                {"command": "the command line, e.g. pytest -q"},
            ),
        ]

    def call(self, name: str, arguments: dict[str, str]) -> str:
        if name in FOLDER_TOOLS:
            return folder_call(self.files, self.writes, name, arguments)
        if name == "run_command":
            return self._run(arguments["command"])
        raise ToolError(f"unknown tool {name!r}")

    def _run(self, command: str) -> str:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ToolError(f"cannot parse the command: {exc}") from None
        if words[:1] == ["python3"]:
            words[0] = "python"
        if words[:3] == ["python", "-m", "pytest"]:
            words = ["pytest", *words[3:]]
        if words[:1] == ["pytest"]:
            argv = [self.sandbox.python, "-m", "pytest", "-p", "no:cacheprovider", *words[1:]]
        elif words[:1] == ["python"] and len(words) > 1:
            argv = [self.sandbox.python, *words[1:]]
        else:
            raise ToolError("only `pytest ...` and `python ...` commands are available here")
        env = {"PYTHONPATH": ":".join([".", *self.sandbox.pytest_path])}
        result = self.sandbox.run(dict(self.files), argv, env=env, limits=COMMAND_LIMITS)
        self.commands.append((command, result.returncode))
        status = "timed out" if result.timed_out else f"exit code {result.returncode}"
        output = (result.stdout + ("\n" + result.stderr if result.stderr.strip() else "")).strip()
        return f"[{status}]\n{output[-OUTPUT_TAIL:]}"
