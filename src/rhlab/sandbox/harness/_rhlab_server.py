"""A warm grading server: one long-lived process per sandbox; every run starts from a clean state.

Started once per pool worker inside its own bubblewrap sandbox, it pre-imports pytest, then
forks a **zygote** before it reads any request. The zygote never reads a request, a job or a
result: for each run the server hands it fresh pipes (``socket.send_fds``) and the zygote forks
the run child, which reads *its own* request from its pipe. So the process image of every run
(and of the honest oracle's untrusted child, forked from it before it reads its job) never held
another run's data: not in live objects, not in freed heap.

The run child then enters fresh namespaces of its own before any model code runs: a new user
namespace owning a new mount namespace, with fresh size-capped tmpfs on ``/tmp`` and
``/dev/shm``, a new IPC namespace (SysV shared memory, message queues, semaphores, POSIX
queues), a new network namespace (only ``lo``, up: no TIME_WAIT entry, port or abstract unix
name of an earlier run) and a new pid namespace. It forks the program as pid 1 of that pid
namespace (pid numbers start afresh every run, and nothing outside the run can be named by pid:
not the server, not the zygote, not another run), waits for it and exits with its status. The
program drops every capability and installs the model seccomp filter (no namespaces, no mounts,
see ``rhlab.sandbox.seccomp``), and starts with the standard library alone in ``sys.modules``
(``_rhlab_modules``). Whatever a run creates (``chmod 0555`` folders, planted packages, shared
memory, sockets) dies with it. The server kills every other process of its pid namespace after
each run, checks that its own writable places, IPC namespace and the scheduling state of the
server and the zygote (rlimits, nice, I/O priority, policy, CPUs) are as they were, and exits
(the host then starts a fresh server) if they are not or if the zygote is gone: fail closed.

Where the kernel refuses nested namespaces the server says so at start-up (``fresh_ns``) and
the host uses a fresh sandbox per run instead.

The server and the zygote are non-dumpable, so run children (same uid) can neither read their
memory or fds nor ptrace them. Protocol on stdin/stdout: 8-byte big-endian length + JSON, one
request then one response.
"""

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _rhlab_modules  # noqa: E402
from _rhlab_init import apply_limits, write_files  # noqa: E402

WORKSPACE = "/tmp/ws"
OUTPUT_DIR = "/tmp/.rhlab-out"
MEMORY_POLL_S = 0.05
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWIPC = 0x00020000, 0x10000000, 0x08000000
CLONE_NEWNET, CLONE_NEWPID = 0x40000000, 0x20000000
RUN_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 4, 24, 47, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IOPRIO_WHO_PROCESS = 1
SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(os.uname().machine)

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(obj):
    data = json.dumps(obj).encode("utf-8")
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(1, data) :]


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def fresh_namespaces(tmpfs_bytes):
    """Enter new user, mount, IPC, network and pid namespaces, with fresh tmpfs and ``lo`` up.

    The caller's next child is pid 1 of the new pid namespace (:func:`enter_run`).
    """
    uid, gid = os.getuid(), os.getgid()
    # /proc/self/uid_map of a non-dumpable process belongs to root: writable only while dumpable.
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    _check(_libc.unshare(RUN_NAMESPACES), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for path in ("/tmp", "/dev/shm"):
        opts = f"size={int(tmpfs_bytes)},mode=1777".encode()
        _check(_libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), f"mount {path}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a new network namespace has lo down
        flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0)), 16)[0]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def drop_privileges(model_filter):
    """Drop every capability, then install the model seccomp filter (stacked on the server's)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")
    if model_filter:
        program = ctypes.create_string_buffer(model_filter, len(model_filter))
        fprog = _SockFprog(len(model_filter) // 8, ctypes.cast(program, ctypes.c_void_p))
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def enter_run(tmpfs_bytes, model_filter):
    """Fresh namespaces, then fork: the child returns as pid 1 of the run, without privileges.

    This process only waits for it and ends the same way (exit status or signal), so the zygote
    sees the run's own status. It is outside the run's pid namespace: the run cannot signal it.
    """
    fresh_namespaces(tmpfs_bytes)
    pid = os.fork()
    if pid == 0:
        # /proc of the run's own pid namespace: /proc/self and /proc/1 are the run's, and the
        # server and the zygote are not listed at all.
        _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
        for path in (b"/proc/sys", b"/proc/sysrq-trigger", b"/proc/irq", b"/proc/bus"):  # read-only, as in bwrap
            if not os.path.exists(path):
                continue
            _check(_libc.mount(path, path, None, MS_BIND | MS_REC, None), "bind " + path.decode())
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            _check(_libc.mount(path, path, None, flags, None), "remount " + path.decode())
        drop_privileges(model_filter)
        return
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _run_child(fds, sock, model_filter):
    """The run child: forked from the zygote; reads its own request, then runs the program."""
    ctl_r, stdin_r, report_w, out_w, err_w = fds
    sock.close()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    size = _read_exact(ctl_r, 8)
    body = _read_exact(ctl_r, int.from_bytes(size, "big")) if size else None
    os.close(ctl_r)
    if body is None:
        os._exit(125)
    req = json.loads(body)
    del body, size
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(stdin_r, 0)
    for fd in (out_w, err_w, stdin_r):
        os.close(fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    limits = req["limits"]
    try:
        enter_run(int(limits["workspace_mb"]) * 1024 * 1024, model_filter)
    except OSError as exc:
        sys.stderr.write(f"rhlab sandbox: cannot enter fresh namespaces: {exc}\n")
        sys.stderr.flush()
        os._exit(125)
    os.makedirs(WORKSPACE, exist_ok=True)
    write_files(WORKSPACE, req["files"])
    os.chdir(WORKSPACE)
    apply_limits(limits)
    os.environ.clear()
    os.environ.update(req["env"])
    argv = [a.replace("{report_fd}", str(report_w)) for a in req["argv"]]
    del req
    sys.argv = argv
    _rhlab_modules.set_aside()
    import runpy

    runpy.run_path(argv[0], run_name="__main__")


def _zygote(sock, model_filter):
    """Fork one run child per command; report its pid, then its wait status. Reads no data."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 8)
        except OSError:
            os._exit(0)
        if msg != b"run" or len(fds) != 5:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_child(fds, sock, model_filter)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                code = 1
                try:
                    import traceback

                    traceback.print_exc()
                except BaseException:
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except BaseException:
                    pass
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.sendall(b"pid %d\n" % pid)
        _, status = os.waitpid(pid, 0)
        sock.sendall(b"exit %d\n" % status)


def _probe_fresh_ns(model_filter):
    """Whether this kernel lets a run child enter fresh namespaces (checked once, in a child)."""
    pid = os.fork()
    if pid == 0:
        try:
            enter_run(1024 * 1024, model_filter)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _other_pids(keep):
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in keep:
            pids.append(int(name))
    return pids


def _kill_everyone_else(zygote):
    """SIGKILL every process of the namespace except this server (pid 1) and the zygote."""
    keep = {os.getpid(), zygote}
    for _ in range(1000):
        pids = _other_pids(keep)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap(zygote)
        time.sleep(0.001)
    return False


def _reap(zygote):
    """Collect exited orphans (they are re-parented to us); never the zygote's status."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == zygote:
            return


def _resident_bytes(keep):
    """Resident memory of every process of the run (monitor mode of the memory bound)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in _other_pids(keep):
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


RLIMITS = sorted(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))


def _ioprio(pid):
    """The I/O priority of ``pid`` (raw ``ioprio_get`` value), or None where unknown."""
    if SYS_IOPRIO_GET is None:
        return None
    value = _libc.syscall(SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        raise OSError(ctypes.get_errno(), "ioprio_get")
    return value


def _vitals(pid):
    """What a process of the same uid can change about another, and every run inherits:
    rlimits, nice, I/O priority, CPUs, scheduling policy and priority, and its state.

    (``prlimit``, ``setpriority``, ``ioprio_set``, ``sched_setaffinity``, ``sched_setscheduler``
    and SIGSTOP need only the same uid, not ptrace access; ``PRIO_USER`` and ``IOPRIO_WHO_USER``
    reach every process of the uid. Runs cannot name the server or the zygote any more (their own
    pid namespace), so this is the second line: a change here recycles the server.)
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return (
            tuple(resource.prlimit(pid, r) for r in RLIMITS),
            os.getpriority(os.PRIO_PROCESS, pid),
            _ioprio(pid),
            tuple(sorted(os.sched_getaffinity(pid))),
            os.sched_getscheduler(pid),
            os.sched_getparam(pid).sched_priority,
            state in "TtZXx",  # stopped, traced or dead (running vs sleeping is just timing)
        )
    except (OSError, ValueError, IndexError):
        return None


def _clean(baseline):
    """Whether this server's own writable places, IPC namespace, and the server and zygote
    processes themselves are exactly as they were before any run."""
    for pid, vitals in baseline.items():
        if _vitals(pid) != vitals:
            return False
    for root in ("/tmp", "/dev/shm"):
        try:
            extra = [n for n in os.listdir(root) if os.path.join(root, n) not in (OUTPUT_DIR, WORKSPACE)]
        except OSError:
            return False
        if extra:
            return False
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                if len(fh.read().strip().splitlines()) > 1:
                    return False
        except OSError:
            pass
    return True


def _head(path, cap):
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap)
            size = os.fstat(fh.fileno()).st_size
        return data, size
    except OSError:
        return b"", 0


def _big_pipe():
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    os.set_blocking(w, False)
    return r, w


class _Lost(Exception):
    """The zygote stopped answering: this server can no longer promise clean runs."""


class _Zygote:
    def __init__(self, sock, pid):
        self.sock, self.pid, self.buf = sock, pid, b""

    def line(self, deadline):
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Lost("the zygote did not answer")
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if ready:
                chunk = self.sock.recv(64)
                if not chunk:
                    raise _Lost("the zygote is gone")
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def serve_one(req, zyg, memory_limit, baseline):
    start = time.monotonic()
    limits = req["limits"]
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    out = os.open(os.path.join(OUTPUT_DIR, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(os.path.join(OUTPUT_DIR, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    ctl_r, ctl_w = _big_pipe()
    stdin_r, stdin_w = _big_pipe()
    report_r, report_w = os.pipe()
    header = json.dumps({k: req[k] for k in ("files", "argv", "env", "limits")}).encode("utf-8")
    pending = {
        ctl_w: memoryview(len(header).to_bytes(8, "big") + header),
        stdin_w: memoryview(req["stdin"].encode("latin-1")),
    }
    del header
    try:
        socket.send_fds(zyg.sock, [b"run"], [ctl_r, stdin_r, report_w, out, err])
    finally:
        for fd in (ctl_r, stdin_r, report_w, out, err):
            os.close(fd)
    kind, _, value = zyg.line(time.monotonic() + 10).partition(" ")
    if kind != "pid":
        raise _Lost("the zygote sent nonsense")
    pid = int(value)
    deadline = start + float(limits["wall_seconds"])
    report = bytearray()
    report_open = True
    timed_out = False
    status = None
    killed_reason = None
    keep = {os.getpid(), zyg.pid}
    next_poll = time.monotonic()
    while status is None:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if memory_limit and now >= next_poll:
            next_poll = now + MEMORY_POLL_S
            if _resident_bytes(keep) > memory_limit:
                killed_reason = f"sandbox memory bound of {memory_limit // (1024 * 1024)} MB exceeded (monitor)"
                break
        readers = [zyg.sock] + ([report_r] if report_open else [])
        if zyg.buf:
            readers = []
        ready_r, ready_w, _ = select.select(readers, list(pending), [], min(deadline - now, MEMORY_POLL_S))
        for fd in ready_w:
            try:
                n = os.write(fd, pending[fd][: 1 << 16])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                n = len(pending[fd])
            pending[fd] = pending[fd][n:]
            if not pending[fd]:
                os.close(fd)
                del pending[fd]
        if report_r in ready_r:
            chunk = os.read(report_r, 65536)
            if chunk and len(report) < 8_000_000:
                report += chunk
            report_open = bool(chunk)
        if zyg.sock in ready_r or zyg.buf:
            kind, _, value = zyg.line(time.monotonic() + 1).partition(" ")
            if kind != "exit":
                raise _Lost("the zygote sent nonsense")
            status = int(value)
    for fd in pending:
        os.close(fd)
    if status is not None and report_open:
        os.set_blocking(report_r, False)
        try:  # whatever the run wrote before it ended (writers still alive are killed below)
            while len(report) < 8_000_000:
                chunk = os.read(report_r, 65536)
                if not chunk:
                    break
                report += chunk
        except BlockingIOError:
            pass
    os.close(report_r)
    if status is None:  # timed out or over the memory bound: the run itself goes first
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    clean = _kill_everyone_else(zyg.pid)
    if status is None:
        status = _status_after_kill(zyg)
    cap = int(limits["output_bytes"])
    out, out_size = _head(os.path.join(OUTPUT_DIR, "stdout"), cap)
    err, err_size = _head(os.path.join(OUTPUT_DIR, "stderr"), cap)
    returncode = None
    if timed_out:
        killed_reason = f"wall time limit of {limits['wall_seconds']:g}s exceeded"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        returncode = -sig
        if killed_reason is None and sig == signal.SIGXFSZ:
            killed_reason = "output or file size limit exceeded"
        elif killed_reason is None and sig == signal.SIGXCPU:
            killed_reason = "CPU time limit exceeded"
    elif killed_reason is None:
        returncode = os.WEXITSTATUS(status)
    for name in ("stdout", "stderr"):
        try:
            os.unlink(os.path.join(OUTPUT_DIR, name))
        except OSError:
            pass
    result = {
        "returncode": returncode,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "report": bytes(report).decode("latin-1"),
        "timed_out": timed_out,
        "output_truncated": out_size > cap or err_size > cap,
        "killed_reason": killed_reason,
        "duration_s": time.monotonic() - start,
    }
    return result, clean and _clean(baseline)


def _status_after_kill(zyg):
    """The killed run's wait status, from the zygote (which reaps it)."""
    kind, _, value = zyg.line(time.monotonic() + 5).partition(" ")
    if kind != "exit":
        raise _Lost("the zygote sent nonsense")
    return int(value)


def main():
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # pid 1 ignores signals it has no handler for; Python's SIGINT handler would let a run
    # interrupt the server (and the zygote), so both ignore it. Runs get the default back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    memory_limit = 0
    model_filter = b""
    for arg in sys.argv[1:]:
        if arg.startswith("--memory-monitor="):
            memory_limit = int(arg.split("=", 1)[1])
        elif arg.startswith("--model-filter="):
            model_filter = bytes.fromhex(arg.split("=", 1)[1])
        else:
            sys.path.append(arg)
    try:  # what the pytest-based grader needs, imported once for all runs
        import importlib

        import _pytest.config
        import pytest  # noqa: F401

        for name in _pytest.config.default_plugins:
            importlib.import_module("_pytest." + name)
    except ImportError:
        pass
    import gc
    import runpy  # noqa: F401

    gc.freeze()  # children then skip the preloaded objects in every collection (pytest collects twice)
    fresh_ns = _probe_fresh_ns(model_filter)
    parent_sock, zygote_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    zpid = os.fork()
    if zpid == 0:
        parent_sock.close()
        try:
            _zygote(zygote_sock, model_filter)
        finally:
            os._exit(0)
    zygote_sock.close()
    zyg = _Zygote(parent_sock, zpid)
    baseline = {pid: _vitals(pid) for pid in (os.getpid(), zpid)}
    _send({"ready": True, "fresh_ns": fresh_ns})
    while True:
        size = _read_exact(0, 8)
        if size is None:
            return
        body = _read_exact(0, int.from_bytes(size, "big"))
        if body is None:
            return
        try:
            result, clean = serve_one(json.loads(body), zyg, memory_limit, baseline)
        except _Lost:
            return  # the host sees the server exit and starts a fresh one
        result["recycle"] = not clean
        _send(result)
        if not clean:
            return


if __name__ == "__main__":
    main()
