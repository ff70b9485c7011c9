"""Run untrusted code in isolation.

Every run of model code goes through :func:`Sandbox.run` (a fresh sandbox per run) or
:func:`Sandbox.run_warm` (a warm server, see :mod:`rhlab.sandbox.warm`). A sandbox is a
bubblewrap container with no network, its own pid, IPC, UTS and user namespaces, and an
*allow-list* file system: a read-only empty root holding only the interpreter and the shared
libraries it loads, the standard library (its ``site-packages`` emptied), the harness, and the
few packages pytest needs. Home directories, ``/work``, ``/etc``, other virtualenvs, pip
caches, task files and host sockets are simply not there. ``/tmp`` and ``/dev/shm`` are
size-capped tmpfs, the only writable places. When the host runs as root the sandbox is entered
as ``nobody`` (``setpriv``), because the kernel does not enforce the process-count limit for
root. Resource limits are set by the first program inside the sandbox (``harness/_rhlab_init.py``),
never through ``preexec_fn``. A memory cgroup (or a monitor, see :mod:`rhlab.sandbox.memory`)
bounds the whole sandbox, and seccomp filters (:mod:`rhlab.sandbox.seccomp`) refuse unix-domain
sockets, kernel keys, io_uring and userfaultfd, and, to model code, new namespaces and mounts.

Without a working bubblewrap, model code could only run with rlimits: that weak mode is
refused unless the user opts in (:func:`allow_weak_sandbox`); every result then carries
``isolation="rlimits"``.
"""

from __future__ import annotations

import functools
import json
import logging
import marshal
import os
import re
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

from rhlab.sandbox.memory import MemoryGroup, memory_bound_kind, tree_resident_bytes
from rhlab.sandbox.seccomp import UNCOUNTED_MEMORY, filter_fd

log = logging.getLogger(__name__)

HARNESS_DIR = Path(__file__).with_name("harness")
NOBODY = 65534
SANDBOX_WORKSPACE = "/tmp/ws"
SANDBOX_TOOLS = "/.rhlab"
"""Read-only mount inside the sandbox holding the harness and pytest (outside ``/tmp``, which
each warm run replaces with a fresh tmpfs of its own)."""

WEAK_ENV = "RHLAB_ALLOW_WEAK_SANDBOX"
WEAK_FIX = (
    "Fix: install bubblewrap (`apt-get install bubblewrap`) and allow unprivileged user namespaces "
    "(`sysctl -w kernel.unprivileged_userns_clone=1` on Debian/Ubuntu kernels, "
    "`sysctl -w user.max_user_namespaces=15000` elsewhere, and on Ubuntu >= 23.10 "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or make bubblewrap setuid root "
    "(`chmod u+s $(command -v bwrap)`). To run anyway with rlimits only (no file system, network, "
    "IPC or process isolation: model code can read and change this machine), opt in with "
    f"`sandbox: {{allow_weak: true}}` in the config, `--allow-weak-sandbox` on the command line, or {WEAK_ENV}=1. "
    'See docs/scale.md ("Sandboxes on GPU hosts").'
)

PYTEST_PARTS = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py")
"""What the pytest-based grader needs from site-packages (bound alone: the rest of site-packages
may hold task data, e.g. HumanEval's held-out tests)."""

_hidden_extra: set[str] = set()


def hide_in_sandbox(path: str | Path) -> None:
    """Declare that ``path`` (e.g. a user's task file folder) holds data model code must not see.

    The allow-list mounts nothing outside the interpreter, the harness and pytest, so such a
    folder is absent already; a sandbox refuses to start if one of its mounts would contain it.
    """
    _hidden_extra.add(str(Path(path).resolve()))


def allow_weak_sandbox(allow: bool = True) -> None:
    """Opt in (or back out) of rlimits-only sandboxes when bubblewrap cannot run here.

    Set through the environment, so that worker processes (``accelerate launch`` ranks) inherit it.
    """
    if allow:
        os.environ[WEAK_ENV] = "1"
    else:
        os.environ.pop(WEAK_ENV, None)


def weak_sandbox_allowed() -> bool:
    return os.environ.get(WEAK_ENV, "").strip().lower() in ("1", "true", "yes")


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
    """Size of each tmpfs (``/tmp`` holding the workspace, and ``/dev/shm``; bubblewrap only)."""
    output_bytes: int = 64_000
    """Bytes of stdout/stderr kept per stream; beyond 16x this the run is killed."""
    sandbox_memory_mb: int = 2048
    """Memory of everything in the sandbox together (see :mod:`rhlab.sandbox.memory`)."""


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
    memory_bound: str = ""
    """Which sandbox-wide memory bound applied: cgroup2, cgroup1, monitor, or none (rlimits mode)."""


class SandboxError(RuntimeError):
    """The sandbox itself could not be started (not the code inside failing)."""


@dataclass(frozen=True)
class _Isolation:
    kind: str  # "bwrap" | "rlimits"
    python: str
    drop_to_nobody: bool
    why_weak: str = ""


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


_PROBE_LAYOUT = (
    "import json, os, sys, sysconfig\n"
    "p = sysconfig.get_paths()\n"
    "import _ctypes\n"
    "print(json.dumps({'stdlib': p['stdlib'], 'platstdlib': p['platstdlib'],"
    " 'dynload': os.path.dirname(_ctypes.__file__), 'prefix': sys.prefix}))"
)
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _shared_libraries(paths: list[str]) -> list[str]:
    """Every shared library the given ELF files load, as the dynamic linker names them."""
    libs: set[str] = set()
    for i in range(0, len(paths), 64):
        try:
            out = subprocess.run(["ldd", *paths[i : i + 64]], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"cannot list the interpreter's shared libraries (ldd): {exc}") from exc
        libs.update(m.group(1) for m in map(_LDD_LINE.search, out.splitlines()) if m)
    return sorted(libs)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@functools.lru_cache(maxsize=8)
def _system_mounts(python: str) -> tuple[str, ...]:
    """bubblewrap arguments for the allow-list: the interpreter, its libraries and stdlib only."""
    raw = _run_probe([python, "-I", "-S", "-c", _PROBE_LAYOUT])
    if raw is None:
        raise SandboxError(f"cannot inspect the interpreter {python}")
    layout = json.loads(raw)
    args: list[str] = []
    for top in ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
    real_python = os.path.realpath(python)
    dynload = layout["dynload"]
    elves = [real_python] + sorted(os.path.join(dynload, f) for f in os.listdir(dynload) if f.endswith(".so"))
    binds: dict[str, str] = {python: real_python, real_python: real_python}
    for lib in _shared_libraries(elves):
        dest = os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))
        binds[dest] = os.path.realpath(lib)
    stdlib_dirs = sorted({os.path.realpath(layout["stdlib"]), os.path.realpath(layout["platstdlib"])})
    for path in stdlib_dirs:
        binds[path] = path
    if not any(_inside(dynload, d) for d in stdlib_dirs):
        binds[os.path.realpath(dynload)] = os.path.realpath(dynload)
    for dest, src in sorted(binds.items(), key=lambda kv: kv[0].count("/")):
        args += ["--ro-bind", src, dest]
    # A stdlib folder may hold the interpreter's own site-packages (pip installs, task data).
    for path in stdlib_dirs:
        for sub in ("site-packages", "dist-packages"):
            if os.path.isdir(os.path.join(path, sub)):
                args += ["--tmpfs", os.path.join(path, sub), "--remount-ro", os.path.join(path, sub)]
    return tuple(args)


def _tool_mounts() -> list[tuple[str, str]]:
    """(host path, sandbox path) of the harness and of what pytest needs from site-packages."""
    mounts = [(str(HARNESS_DIR), f"{SANDBOX_TOOLS}/harness")]
    site = _pytest_site()
    if site:
        for part in PYTEST_PARTS:
            if os.path.exists(os.path.join(site, part)):
                mounts.append((os.path.join(site, part), f"{SANDBOX_TOOLS}/site/{part}"))
    return mounts


def _check_not_hidden(sources: list[str]) -> None:
    """Refuse a mount that would bring a declared task folder along (a subfolder of one is fine)."""
    for src in sources:
        real = os.path.realpath(src)
        for hidden in _hidden_extra:
            if _inside(hidden, real):
                raise SandboxError(
                    f"refusing to mount {src} into the sandbox: it overlaps {hidden}, which holds task data"
                )


def _pytest_site() -> str | None:
    """Where pytest (pure Python, the host's copy) lives, for the pytest-based grader."""
    try:
        import pytest
    except ImportError:
        return None
    return str(Path(pytest.__file__).resolve().parent.parent)


@functools.lru_cache(maxsize=4)
def _detect(prefer: str) -> _Isolation:
    """The strongest isolation that works here (cached: probing starts a sandbox)."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    if prefer == "rlimits":
        return _Isolation("rlimits", sys.executable, False, "rlimits requested")
    if not shutil.which("bwrap"):
        if prefer == "bwrap":
            raise SandboxError("bubblewrap (`bwrap`) is not installed: `apt-get install bubblewrap`")
        return _Isolation("rlimits", sys.executable, False, "bubblewrap (`bwrap`) is not installed")
    drop = os.geteuid() == 0 and shutil.which("setpriv") is not None
    problems = []
    for python in _python_candidates():
        seccomp = filter_fd()
        try:
            cmd = _bwrap_prefix(python, drop, 8, seccomp) + [python, "-I", "-S", "-c", probe]
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=20, pass_fds=() if seccomp is None else (seccomp,)
            )
        except (SandboxError, OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{python}: {exc}")
            continue
        finally:
            if seccomp is not None:
                os.close(seccomp)
        if out.returncode == 0 and out.stdout.strip() == want:
            return _Isolation("bwrap", python, drop)
        problems.append(f"{python}: {(out.stderr.strip().splitlines() or ['wrong version'])[-1][:200]}")
    why = (
        f"bubblewrap is installed but could not start a sandbox with a Python {want} in it "
        f"(user namespaces disabled, or no interpreter usable by the sandbox user: {'; '.join(problems)})"
    )
    if prefer == "bwrap":
        raise SandboxError(why)
    return _Isolation("rlimits", sys.executable, False, why)


def detect_isolation(prefer: str = "auto", allow_weak: bool | None = None) -> _Isolation:
    """Pick the strongest isolation that works here and an interpreter that runs inside it.

    The interpreter must have the host's major.minor version, because the pytest-based grader
    imports the host's pure-Python pytest into it. Falling back to rlimits only is refused
    unless ``allow_weak`` (default: :func:`weak_sandbox_allowed`) or ``prefer="rlimits"``.
    """
    if prefer not in ("auto", "bwrap", "rlimits"):
        raise SandboxError(f"unknown sandbox isolation {prefer!r}: choose auto, bwrap or rlimits")
    iso = _detect(prefer)
    if iso.kind == "rlimits" and prefer != "rlimits":
        if not (weak_sandbox_allowed() if allow_weak is None else allow_weak):
            raise SandboxError(f"no strong sandbox: {iso.why_weak}. {WEAK_FIX}")
        log.warning("rhlab sandbox: %s; model code runs with rlimits only (opted in).", iso.why_weak)
    return iso


def _bwrap_prefix(python: str, drop_to_nobody: bool, workspace_mb: int, seccomp_fd: int | None) -> list[str]:
    """The command that enters a fresh sandbox; ``seccomp_fd`` (see :mod:`.seccomp`) must be passed on."""
    tools = _tool_mounts()
    system = _system_mounts(python)
    binds = [system[i + 1] for i, arg in enumerate(system) if arg == "--ro-bind"]
    _check_not_hidden([src for src, _ in tools] + binds)
    prefix: list[str] = []
    if drop_to_nobody:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    size = str(workspace_mb * 1024 * 1024)
    return prefix + [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-all",  # network, pid, ipc, uts, cgroup, user namespaces
        "--as-pid-1",  # no bubblewrap init inside: it would hold our pipes and be ptrace-able
        "--cap-drop", "ALL",
        *([] if seccomp_fd is None else ["--seccomp", str(seccomp_fd)]),
        *system,
        *[arg for src, dest in tools for arg in ("--ro-bind", src, dest)],
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", size, "--tmpfs", "/tmp",
        "--size", size, "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--dir", SANDBOX_WORKSPACE,
        "--remount-ro", "/",
        "--chdir", SANDBOX_WORKSPACE,
        "--clearenv",
        "--",
    ]  # fmt: skip


class Sandbox:
    """Runs a program on a set of workspace files under :class:`SandboxLimits`.

    Thread-safe: a pool of threads may call :meth:`run` concurrently; each call is its own
    sandbox.
    """

    def __init__(
        self, limits: SandboxLimits | None = None, isolation: str = "auto", allow_weak: bool | None = None
    ) -> None:
        self.limits = limits or SandboxLimits()
        self._iso = detect_isolation(isolation, allow_weak)
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

        See :mod:`rhlab.sandbox.warm`. Without bubblewrap, or where a warm server cannot give
        each run fresh namespaces, this is :meth:`run` in-process (a fresh sandbox per run).
        """
        limits = limits or self.limits
        if self._iso.kind != "bwrap":
            return self.run(files, argv, stdin, limits, env, in_process=True)
        with self._warm_lock:
            if self._warm is None:
                from rhlab.sandbox.warm import WarmPool

                self._warm = WarmPool(
                    self._iso.python, self._iso.drop_to_nobody, self.harness("_rhlab_server.py"), self.pytest_path
                )
        res = self._warm.run(files, argv, stdin, limits, {**_base_env(SANDBOX_WORKSPACE), **(env or {})})
        if res is None:  # no fresh per-run namespaces here: cold sandboxes keep runs apart instead
            return self.run(files, argv, stdin, limits, env, in_process=True)
        return res

    def close(self) -> None:
        """Stop warm servers (fresh sandboxes need no cleanup)."""
        with self._warm_lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None

    @property
    def isolation(self) -> str:
        return self._iso.kind

    @property
    def memory_bound(self) -> str:
        """The sandbox-wide memory bound that applies: cgroup2, cgroup1, monitor or none."""
        return memory_bound_kind() if self._iso.kind == "bwrap" else "none"

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
        extra: list[int] = []  # the seccomp program's descriptor, handed to bubblewrap
        group = None
        if self._iso.kind == "bwrap":
            workspace = SANDBOX_WORKSPACE
            monitored = memory_bound_kind() == "monitor"
            seccomp = filter_fd(UNCOUNTED_MEMORY if monitored else (), model=True)
            extra = [] if seccomp is None else [seccomp]
            prefix = _bwrap_prefix(self._iso.python, self._iso.drop_to_nobody, limits.workspace_mb, seccomp)
            if not monitored:
                try:
                    group = MemoryGroup(limits.sandbox_memory_mb * 1024 * 1024)
                except OSError:
                    for fd in extra:
                        os.close(fd)
                    raise
                prefix = group.wrap(prefix)
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
            cmd = prefix + [self._iso.python, "-I", "-S", self.harness("_rhlab_init.py")]
            res = self._communicate(cmd, payload, owned, limits, cwd=tmpdir, extra_fds=extra)
            res.memory_bound = self.memory_bound
            if group is not None and group.oom_kills():
                res.killed_reason = f"sandbox memory bound of {limits.sandbox_memory_mb} MB exceeded ({group.kind})"
            return res
        finally:
            for fd in owned + extra:
                os.close(fd)
            if group is not None:
                group.close()
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _communicate(
        self,
        cmd: list[str],
        payload: bytes,
        owned: list[int],
        limits: SandboxLimits,
        cwd: str | None,
        extra_fds: list[int],
    ) -> SandboxResult:
        report_r, report_w = owned
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w, *extra_fds),
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
        # No memory cgroup here: bound the sandbox's processes together by watching them.
        monitor = self._iso.kind == "bwrap" and memory_bound_kind() == "monitor"
        bound = limits.sandbox_memory_mb * 1024 * 1024
        while open_readers:
            if monitor and tree_resident_bytes(proc.pid) > bound:
                killed_reason = f"sandbox memory bound of {limits.sandbox_memory_mb} MB exceeded (monitor)"
                break
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
            for key, _ in sel.select(timeout=min(remaining, 0.05 if monitor else 0.5)):
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
