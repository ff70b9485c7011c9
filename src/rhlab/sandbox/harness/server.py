"""A warm grading server: one long-lived process per sandbox that forks a child per run.

Started once per pool worker inside its own bubblewrap sandbox (same namespaces and read-only
system as a fresh one), it pre-imports pytest so that a pytest-based grader does not pay for
that import on every episode. Each request is served by a forked child in a fresh workspace
with its own resource limits; afterwards the server kills *every* other process in the pid
namespace (``kill(-1)``) and wipes every writable place, so nothing of one run survives into
the next. The server is non-dumpable, so children (same uid) cannot read its memory or fds.

Protocol on stdin/stdout: 8-byte big-endian length + JSON, one request then one response.
"""

import ctypes
import json
import os
import select
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from init import apply_limits, write_files  # noqa: E402

WORKSPACE = "/tmp/ws"
OUTPUT_DIR = "/tmp/.rhlab-out"
WIPE = ("/tmp", "/dev/shm")
KEEP = ("/tmp/.rhlab",)  # the read-only mount holding this harness and pytest


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
        data = data[os.write(1, data):]


def _wipe():
    for root in WIPE:
        try:
            entries = os.listdir(root)
        except OSError:
            continue
        for name in entries:
            path = os.path.join(root, name)
            if path in KEEP:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _kill_everyone_else():
    """SIGKILL every process of the namespace except pid 1 (bubblewrap) and this server."""
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    while True:  # reap our own children; orphans are reaped by pid 1
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.001)


def _head(path, cap):
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap)
            size = os.fstat(fh.fileno()).st_size
        return data, size
    except OSError:
        return b"", 0


def _child(req, report_w, stdin_r):
    os.setsid()
    os.makedirs(WORKSPACE, exist_ok=True)
    write_files(WORKSPACE, req["files"])
    os.chdir(WORKSPACE)
    out = os.open(os.path.join(OUTPUT_DIR, "stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(os.path.join(OUTPUT_DIR, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(stdin_r, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (out, err, stdin_r):
        os.close(fd)
    # Fresh Python-level stdio objects over the new descriptors.
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    apply_limits(req["limits"])
    os.environ.clear()
    os.environ.update(req["env"])
    argv = [a.replace("{report_fd}", str(report_w)) for a in req["argv"]]
    sys.argv = argv
    import runpy

    runpy.run_path(argv[0], run_name="__main__")


def serve_one(req):
    start = time.monotonic()
    _wipe()
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    report_r, report_w = os.pipe()
    stdin_r, stdin_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(report_r)
            os.close(stdin_w)
            _child(req, report_w, stdin_r)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                pass
            os._exit(code)
    os.close(report_w)
    os.close(stdin_r)
    stdin = req["stdin"].encode("latin-1")
    try:
        while stdin:  # small jobs: fits the pipe buffer long before the child reads it
            stdin = stdin[os.write(stdin_w, stdin[:65536]):]
    except BrokenPipeError:
        pass
    os.close(stdin_w)

    limits = req["limits"]
    deadline = start + float(limits["wall_seconds"])
    report = bytearray()
    timed_out = False
    status = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([report_r], [], [], min(remaining, 0.05))
        if ready:
            chunk = os.read(report_r, 65536)
            if chunk and len(report) < 8_000_000:
                report += chunk
            if not chunk:
                # EOF: everyone holding the pipe is gone; collect the exit status below.
                wpid, status = os.waitpid(pid, 0)
                break
        else:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid:
                status = st
                break
    os.close(report_r)
    _kill_everyone_else()
    if status is None and not timed_out:
        status = 0
    cap = int(limits["output_bytes"])
    out, out_size = _head(os.path.join(OUTPUT_DIR, "stdout"), cap)
    err, err_size = _head(os.path.join(OUTPUT_DIR, "stderr"), cap)
    killed_reason = None
    returncode = None
    if timed_out:
        killed_reason = f"wall time limit of {limits['wall_seconds']:g}s exceeded"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        returncode = -sig
        if sig == signal.SIGXFSZ:
            killed_reason = "output or file size limit exceeded"
        elif sig == signal.SIGXCPU:
            killed_reason = "CPU time limit exceeded"
    else:
        returncode = os.WEXITSTATUS(status)
    _wipe()
    return {
        "returncode": returncode,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "report": bytes(report).decode("latin-1"),
        "timed_out": timed_out,
        "output_truncated": out_size > cap or err_size > cap,
        "killed_reason": killed_reason,
        "duration_s": time.monotonic() - start,
    }


def main():
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except (OSError, AttributeError):
        pass
    sys.dont_write_bytecode = True
    for path in sys.argv[1:]:
        sys.path.append(path)
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
    _send({"ready": True})
    while True:
        size = _read_exact(0, 8)
        if size is None:
            return
        body = _read_exact(0, int.from_bytes(size, "big"))
        if body is None:
            return
        _send(serve_one(json.loads(body)))


if __name__ == "__main__":
    main()
