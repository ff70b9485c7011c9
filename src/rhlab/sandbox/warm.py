"""Warm sandboxes: a long-lived bubblewrap sandbox per worker that forks a child per run.

Starting bubblewrap and Python, and importing pytest, costs far more than grading a typical
episode. A warm server (``harness/server.py``) pays that once; between runs it kills every other
process in its pid namespace and wipes every writable place (see its docstring for why that
keeps runs apart). Both graders use it; :meth:`Sandbox.run` remains for one-off programs.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import asdict

from rhlab.sandbox.runner import SandboxError, SandboxLimits, SandboxResult, _bwrap_prefix

MAX_FRAME = 64 * 1024 * 1024
RESULT_TYPES = {"returncode": (int, type(None)), "stdout": str, "stderr": str, "report": str, "timed_out": bool,
                "output_truncated": bool, "killed_reason": (str, type(None)), "duration_s": (int, float)}


class ServerDied(RuntimeError):
    """The warm server went away mid-run (most likely killed by the code it ran)."""


class WarmServer:
    """One server process inside one bubblewrap sandbox."""

    def __init__(self, python: str, drop_to_nobody: bool, server: str, workspace_mb: int,
                 extra_path: list[str]) -> None:
        cmd = _bwrap_prefix(drop_to_nobody, workspace_mb) + [python, "-I", "-S", server, *extra_path]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"could not start a warm sandbox: {exc}") from exc
        ready = self._recv(time.monotonic() + 60)
        if not ready.get("ready"):
            self.close()
            raise SandboxError("the warm sandbox server did not start")

    def _recv(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        buf = b""
        need = 8
        size = None
        while len(buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerDied("the warm sandbox server stopped answering")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, max(need - len(buf), 65536) if size is None else need - len(buf))
            if not chunk:
                raise ServerDied("the warm sandbox server exited")
            buf += chunk
            if size is None and len(buf) >= 8:
                size = int.from_bytes(buf[:8], "big")
                if size > MAX_FRAME:
                    raise ServerDied("the warm sandbox server sent an oversized frame")
                need = 8 + size
        if len(buf) != need:
            raise ServerDied("the warm sandbox server sent more than one frame")
        try:
            frame = json.loads(buf[8:need])
        except ValueError as exc:
            raise ServerDied("the warm sandbox server sent a malformed frame") from exc
        if not isinstance(frame, dict):
            raise ServerDied("the warm sandbox server sent a malformed frame")
        return frame

    def run(self, files: dict[str, str], argv: list[str], stdin: bytes, limits: SandboxLimits,
            env: dict[str, str]) -> dict:
        req = json.dumps({"files": files, "argv": argv, "stdin": stdin.decode("latin-1"),
                          "limits": asdict(limits), "env": env}).encode("utf-8")
        try:
            self.proc.stdin.write(len(req).to_bytes(8, "big") + req)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ServerDied("the warm sandbox server exited") from exc
        out = self._recv(time.monotonic() + limits.wall_seconds + 10)
        if set(out) != set(RESULT_TYPES) or not all(isinstance(out[k], t) for k, t in RESULT_TYPES.items()):
            raise ServerDied("the warm sandbox server sent a malformed result")
        return out

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class WarmPool:
    """Idle warm servers, handed out one per concurrent run and created on demand."""

    def __init__(self, python: str, drop_to_nobody: bool, server: str, extra_path: list[str]) -> None:
        self._args = (python, drop_to_nobody, server)
        self._extra_path = extra_path
        self._idle: list[tuple[int, WarmServer]] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self, files: dict[str, str], argv: list[str], stdin: bytes, limits: SandboxLimits,
            env: dict[str, str]) -> SandboxResult:
        server = self._acquire(limits.workspace_mb)
        start = time.monotonic()
        try:
            out = server.run(files, argv, stdin, limits, env)
        except ServerDied as exc:
            server.close()
            return SandboxResult(
                returncode=None, stdout="", stderr="", report=b"", timed_out=False, output_truncated=False,
                killed_reason=f"{exc} (the code under test may have killed it)", isolation="bwrap-warm",
                duration_s=time.monotonic() - start,
            )
        self._release(limits.workspace_mb, server)
        return SandboxResult(
            returncode=out["returncode"], stdout=out["stdout"], stderr=out["stderr"],
            report=out["report"].encode("latin-1"), timed_out=out["timed_out"],
            output_truncated=out["output_truncated"], killed_reason=out["killed_reason"],
            isolation="bwrap-warm", duration_s=out["duration_s"],
        )

    def _acquire(self, workspace_mb: int) -> WarmServer:
        with self._lock:
            for i, (mb, server) in enumerate(self._idle):
                if mb == workspace_mb:
                    del self._idle[i]
                    if server.alive:
                        return server
                    server.close()
                    break
        return WarmServer(*self._args, workspace_mb, self._extra_path)

    def _release(self, workspace_mb: int, server: WarmServer) -> None:
        with self._lock:
            if not self._closed and server.alive:
                self._idle.append((workspace_mb, server))
                return
        server.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, server in idle:
            server.close()
