"""Warm sandboxes: a long-lived bubblewrap sandbox per worker that forks a child per run.

Starting bubblewrap and Python, and importing pytest, costs far more than grading a typical
episode. A warm server (``harness/_rhlab_server.py``) pays that once. Each run is forked from a clean
zygote (a process image that never held any request) and enters fresh user, mount, IPC,
network and pid namespaces with fresh tmpfs; afterwards the server kills every other process
in its pid namespace (see its docstring for why that keeps runs apart). A server that cannot prove its
state clean exits and is replaced. Both graders use it; :meth:`Sandbox.run` remains for one-off
programs. Each server lives in its own memory cgroup when one is writable here.
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

from rhlab.sandbox.memory import MemoryGroup, memory_bound_kind
from rhlab.sandbox.runner import SandboxError, SandboxLimits, SandboxResult, _bwrap_prefix
from rhlab.sandbox.seccomp import UNCOUNTED_MEMORY, filter_fd, filter_program

MAX_FRAME = 64 * 1024 * 1024
RESULT_TYPES = {
    "returncode": (int, type(None)),
    "stdout": str,
    "stderr": str,
    "report": str,
    "timed_out": bool,
    "output_truncated": bool,
    "killed_reason": (str, type(None)),
    "duration_s": (int, float),
    "recycle": bool,
}


class ServerDied(RuntimeError):
    """The warm server went away mid-run (most likely killed by the code it ran)."""


class WarmServer:
    """One server process inside one bubblewrap sandbox."""

    def __init__(
        self, python: str, drop_to_nobody: bool, server: str, workspace_mb: int, extra_path: list[str], memory_mb: int
    ) -> None:
        self.memory_bound = memory_bound_kind()
        self.group = None
        seccomp = None
        try:
            if self.memory_bound != "monitor":
                self.group = MemoryGroup(memory_mb * 1024 * 1024)
            seccomp = filter_fd(UNCOUNTED_MEMORY if self.group is None else ())
            cmd = _bwrap_prefix(python, drop_to_nobody, workspace_mb, seccomp)
            cmd += [python, "-I", "-S", server, *extra_path]
            model_filter = filter_program(deny=UNCOUNTED_MEMORY if self.group is None else (), model=True)
            if model_filter is not None:  # installed by each run child, on top of the server's own
                cmd.append(f"--model-filter={model_filter.hex()}")
            if self.group is None:
                cmd.append(f"--memory-monitor={memory_mb * 1024 * 1024}")
            else:
                cmd = self.group.wrap(cmd)
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=() if seccomp is None else (seccomp,),
            )
        except (OSError, SandboxError) as exc:
            if self.group is not None:
                self.group.close()
            raise SandboxError(f"could not start a warm sandbox: {exc}") from exc
        finally:
            if seccomp is not None:
                os.close(seccomp)
        try:
            ready = self._recv(time.monotonic() + 60)
        except ServerDied as exc:
            self.close()
            raise SandboxError(f"the warm sandbox server did not start: {exc}") from exc
        if not ready.get("ready"):
            self.close()
            raise SandboxError("the warm sandbox server did not start")
        self.fresh_ns = ready.get("fresh_ns") is True
        self.recycle = not self.fresh_ns

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

    def run(
        self, files: dict[str, str], argv: list[str], stdin: bytes, limits: SandboxLimits, env: dict[str, str]
    ) -> dict:
        req = json.dumps(
            {"files": files, "argv": argv, "stdin": stdin.decode("latin-1"), "limits": asdict(limits), "env": env}
        ).encode("utf-8")
        ooms = self.group.oom_kills() if self.group else 0
        try:
            self.proc.stdin.write(len(req).to_bytes(8, "big") + req)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ServerDied("the warm sandbox server exited") from exc
        try:
            out = self._recv(time.monotonic() + limits.wall_seconds + 10)
        except ServerDied as exc:
            if self.group and self.group.oom_kills() > ooms:
                raise ServerDied(
                    f"sandbox memory bound of {limits.sandbox_memory_mb} MB exceeded "
                    f"({self.group.kind}); the server went with it"
                ) from exc
            raise
        if set(out) != set(RESULT_TYPES) or not all(isinstance(out[k], t) for k, t in RESULT_TYPES.items()):
            raise ServerDied("the warm sandbox server sent a malformed result")
        if self.group and self.group.oom_kills() > ooms:
            out["killed_reason"] = f"sandbox memory bound of {limits.sandbox_memory_mb} MB exceeded ({self.group.kind})"
            out["recycle"] = True  # the kernel may have picked the server or the zygote
        self.recycle = out["recycle"]
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
        if self.group is not None:
            self.group.close()


class WarmPool:
    """Idle warm servers, handed out one per concurrent run and created on demand."""

    def __init__(self, python: str, drop_to_nobody: bool, server: str, extra_path: list[str]) -> None:
        self._args = (python, drop_to_nobody, server)
        self._extra_path = extra_path
        self._idle: list[tuple[tuple[int, int], WarmServer]] = []
        self._no_fresh_ns = False
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self, files: dict[str, str], argv: list[str], stdin: bytes, limits: SandboxLimits, env: dict[str, str]
    ) -> SandboxResult | None:
        """One run in a warm server; ``None`` where warm servers cannot give runs fresh namespaces."""
        if self._no_fresh_ns:
            return None
        key = (limits.workspace_mb, limits.sandbox_memory_mb)
        server = self._acquire(key)
        if not server.fresh_ns:
            server.close()
            self._no_fresh_ns = True
            return None
        start = time.monotonic()
        try:
            out = server.run(files, argv, stdin, limits, env)
        except ServerDied as exc:
            server.close()
            return SandboxResult(
                returncode=None,
                stdout="",
                stderr="",
                report=b"",
                timed_out=False,
                output_truncated=False,
                killed_reason=f"{exc} (the code under test may have killed it)",
                isolation="bwrap-warm",
                duration_s=time.monotonic() - start,
                memory_bound=server.memory_bound,
            )
        self._release(key, server)
        return SandboxResult(
            returncode=out["returncode"],
            stdout=out["stdout"],
            stderr=out["stderr"],
            report=out["report"].encode("latin-1"),
            timed_out=out["timed_out"],
            output_truncated=out["output_truncated"],
            killed_reason=out["killed_reason"],
            isolation="bwrap-warm",
            duration_s=out["duration_s"],
            memory_bound=server.memory_bound,
        )

    def _acquire(self, key: tuple[int, int]) -> WarmServer:
        with self._lock:
            for i, (k, server) in enumerate(self._idle):
                if k == key:
                    del self._idle[i]
                    if server.alive:
                        return server
                    server.close()
                    break
        return WarmServer(*self._args, key[0], self._extra_path, key[1])

    def _release(self, key: tuple[int, int], server: WarmServer) -> None:
        """Back to the idle list, unless it said its state is not provably clean (then it goes)."""
        with self._lock:
            if not self._closed and server.alive and not server.recycle:
                self._idle.append((key, server))
                return
        server.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, server in idle:
            server.close()
