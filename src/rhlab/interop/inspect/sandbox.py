"""``sandbox="rhlab"``: Inspect's ``exec``/``read_file``/``write_file`` in rhlab's bubblewrap sandbox.

Every ``exec`` runs in a *fresh* rhlab sandbox (``rhlab.sandbox.Sandbox.run``) with its limits: no
network, its own pid/IPC/UTS/user namespaces, an allow-list file system holding only the Python
interpreter and its standard library, a size-capped tmpfs workspace, and bounded CPU, memory,
processes, wall time and output. A sample's files live on the host between commands: ``_exec_job``
restores them into the new workspace, runs the command and sends the workspace back, so files
persist across ``exec`` calls exactly as in a container, while processes do not (no daemons, no
background servers between calls). ``read_file``/``write_file`` work on those files directly and
start no sandbox. Paths are relative to the workspace; absolute paths must lie inside it.

Not isolated or not offered (see docs/inspect.md): only the Python interpreter exists inside (no
shell, no ``apt``, no site-packages), so tools that run ``bash`` do not work; there is one user
(``user=`` other than the default is refused); without bubblewrap the sandbox refuses to start
unless weak rlimits-only mode is opted into, and in that mode nothing but the limits holds.
"""

from __future__ import annotations

import base64
import json
import posixpath
from pathlib import Path
from typing import Any, Literal, overload

import anyio
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    sandboxenv,
)
from pydantic import BaseModel, ConfigDict

from rhlab.sandbox import Sandbox, SandboxLimits
from rhlab.sandbox.runner import SANDBOX_WORKSPACE

JOB_SCRIPT = Path(__file__).with_name("_exec_job.py")
JOB_NAME = ".rhlab-inspect-exec.py"
PYTHON_NAMES = ("python", "python3")


class RhlabSandboxConfig(BaseModel):
    """Limits of each ``exec`` (``sandbox=("rhlab", {"memory_mb": 2048})`` or a YAML/JSON file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: int = 60
    memory_mb: int = 1024
    max_processes: int = 32
    workspace_mb: int = 64
    """Size of the tmpfs workspace, and the most the sample's files may hold together."""
    default_timeout: int = 120
    """Wall seconds of a command when ``exec`` gives no ``timeout``."""


def _config(config: SandboxEnvironmentConfigType | None) -> RhlabSandboxConfig:
    if config is None:
        return RhlabSandboxConfig()
    if isinstance(config, RhlabSandboxConfig):
        return config
    if isinstance(config, str):
        return RhlabSandboxConfig.model_validate(json.loads(Path(config).read_text()))
    raise TypeError(f"sandbox 'rhlab' takes an RhlabSandboxConfig, a dict or a JSON file, not {type(config).__name__}")


@sandboxenv(name="rhlab")
class RhlabSandboxEnvironment(SandboxEnvironment):
    """One sample's workspace; see the module docstring for what persists and what is isolated."""

    def __init__(self, config: RhlabSandboxConfig, sandbox: Sandbox) -> None:
        super().__init__()
        self.config = config
        self.sandbox = sandbox
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return RhlabSandboxConfig.model_validate(config)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        # Sandbox() checks for bubblewrap and refuses weak isolation unless opted in.
        return {"default": cls(_config(config), Sandbox())}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            env.as_type(RhlabSandboxEnvironment).sandbox.close()

    def _relative(self, path: str) -> str:
        """A workspace-relative path; anything outside the workspace is refused."""
        norm = posixpath.normpath(path)
        if posixpath.isabs(norm):
            root = SANDBOX_WORKSPACE
            if norm != root and not norm.startswith(root + "/"):
                raise PermissionError(f"{path}: the rhlab sandbox only keeps files under its workspace {root}")
            norm = posixpath.relpath(norm, root)
        if norm == ".." or norm.startswith("../"):
            raise PermissionError(f"{path}: outside the rhlab sandbox's workspace")
        return norm

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        if user is not None:
            raise PermissionError(f"the rhlab sandbox has a single unprivileged user; cannot run as {user!r}")
        if not cmd:
            raise ValueError("exec needs a command")
        argv = [self.sandbox.python if cmd[0] in PYTHON_NAMES else cmd[0], *cmd[1:]]
        data = input.encode() if isinstance(input, str) else input
        wall = timeout or self.config.default_timeout
        job = {
            "argv": argv,
            "input": None if data is None else base64.b64encode(data).decode("ascii"),
            "cwd": self._relative(cwd or "."),
            "env": {"PATH": "/usr/bin:/bin", "HOME": SANDBOX_WORKSPACE, "LANG": "C.UTF-8", **(env or {})},
            "timeout": wall,
            "files": {k: base64.b64encode(v).decode("ascii") for k, v in self.files.items()},
            "dirs": sorted(self.dirs),
        }
        limits = SandboxLimits(
            cpu_seconds=self.config.cpu_seconds,
            wall_seconds=wall + 10.0,
            memory_mb=self.config.memory_mb,
            max_processes=self.config.max_processes,
            workspace_mb=self.config.workspace_mb,
            file_size_mb=self.config.workspace_mb,
            output_bytes=2 * self.config.workspace_mb * 1024 * 1024,  # the files come back base64 in JSON
        )
        res = await anyio.to_thread.run_sync(
            lambda: self.sandbox.run(
                {JOB_NAME: JOB_SCRIPT.read_text()},
                [JOB_NAME, "{report_fd}"],
                stdin=json.dumps(job).encode(),
                limits=limits,
                in_process=True,
            )
        )
        if not res.report:
            if res.timed_out:
                raise TimeoutError(f"command timed out after {wall}s in the rhlab sandbox")
            reason = res.killed_reason or f"exit status {res.returncode}"
            raise RuntimeError(f"the rhlab sandbox ended without a result ({reason}): {res.stderr[-2000:]}")
        out = json.loads(res.report)
        self.files = {k: base64.b64decode(v) for k, v in out["files"].items()}
        self.dirs = set(out["dirs"])
        if out.get("timed_out"):
            raise TimeoutError(f"command timed out after {wall}s in the rhlab sandbox")
        return ExecResult(
            success=out["returncode"] == 0, returncode=out["returncode"], stdout=out["stdout"], stderr=out["stderr"]
        )

    async def write_file(self, file: str, contents: str | bytes) -> None:
        rel = self._relative(file)
        if rel in self.dirs or any(k.startswith(rel + "/") for k in self.files):
            raise IsADirectoryError(f"{file} is a directory in the rhlab sandbox")
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        total = sum(len(v) for k, v in self.files.items() if k != rel) + len(data)
        if total > self.config.workspace_mb * 1024 * 1024:
            raise OutputLimitExceededError(f"{self.config.workspace_mb} MB (the rhlab sandbox's workspace)", None)
        self.files[rel] = data

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        rel = self._relative(file)
        if rel not in self.files:
            if rel in self.dirs or any(k.startswith(rel + "/") for k in self.files):
                raise IsADirectoryError(f"{file} is a directory in the rhlab sandbox")
            raise FileNotFoundError(f"{file}: no such file in the rhlab sandbox")
        data = self.files[rel]
        return data.decode("utf-8") if text else data
