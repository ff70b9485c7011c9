"""The honest oracle's runner: the trusted half of a two-process grader.

This process never imports model code. It keeps the tests and the per-run nonce, makes itself
non-dumpable (so the untrusted child, same uid, cannot read its memory or file descriptors),
and forks a child (``_rhlab_child.py``) that imports ``solution`` and evaluates only the
*actual* side of each test. The child sends back encoded plain values; the comparison with the
expected side happens here. Exits, crashes and killed children count as failures; the verdict
leaves through the out-of-band report pipe, prefixed by the nonce, never through the exit code.
"""

import ast
import ctypes
import marshal
import os
import select
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import builtins  # noqa: E402

from _rhlab_child import serve  # noqa: E402
from _rhlab_common import EXPECTED_NAMES, NonPlain, decode, report_fd_from_argv, strict_equal  # noqa: E402

SAFE_BUILTINS = {name: getattr(builtins, name) for name in EXPECTED_NAMES}


def _make_undumpable():
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _read_child(fd, deadline):
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return buf, "time limit reached while the tests ran"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return buf, None
        buf += chunk
        if len(buf) > 8_000_000:
            return buf, "the child wrote too much to the result channel"


def _start_child(report_fd):
    """Fork the untrusted child now, before this process has read anything secret."""
    jobs_r, jobs_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_fd)
            os.close(jobs_w)
            os.close(result_r)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            serve(jobs_r, result_w)
        finally:
            os._exit(0)
    os.close(jobs_r)
    os.close(result_w)
    return pid, jobs_w, result_r


def main():
    _make_undumpable()
    report_fd = report_fd_from_argv(sys.argv)
    child_pid, jobs_w, result_r = _start_child(report_fd)
    job = marshal.loads(sys.stdin.buffer.read())
    nonce = job["nonce"]
    parsed = job["cases"]
    jobs = [{"kind": "exec" if kind == "statement" else "eval", "src": actual} for kind, actual, _ in parsed]
    try:
        data = marshal.dumps(jobs)
        while data:
            data = data[os.write(jobs_w, data):]
    except BrokenPipeError:
        pass
    os.close(jobs_w)
    deadline = time.monotonic() + float(job.get("time_budget", 15))
    raw, problem = _read_child(result_r, deadline)
    try:
        os.kill(child_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(child_pid, 0)

    answers = {}
    import_error = None
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            msg = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if not isinstance(msg, dict):
            continue
        if "import_error" in msg:
            import_error = str(msg["import_error"])
        elif isinstance(msg.get("i"), int):
            answers.setdefault(msg["i"], msg)

    results = []
    for i, (kind, _, expected_src) in enumerate(parsed):
        ans = answers.get(i)
        if import_error is not None:
            results.append({"ok": False, "reason": "import failed: " + import_error})
            continue
        if ans is None:
            results.append({"ok": False, "reason": problem or "no answer (the child exited early)"})
            continue
        if "error" in ans:
            results.append({"ok": False, "reason": str(ans["error"])[:300]})
            continue
        if kind == "statement":
            results.append({"ok": ans.get("ok") is True, "reason": None})
            continue
        try:
            value = decode(ans["value"])
        except NonPlain as exc:
            results.append({"ok": False, "reason": f"returned a non-plain object ({exc})"})
            continue
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            results.append({"ok": False, "reason": f"malformed answer: {exc}"})
            continue
        if kind == "compare":
            expected = eval(expected_src, {"__builtins__": SAFE_BUILTINS})
            ok = strict_equal(value, expected)
            reason = None if ok else f"expected {expected!r}, got {value!r}"
        elif kind == "truthy":
            ok, reason = bool(value), "value is falsy"
        else:
            ok, reason = not value, "value is truthy"
        results.append({"ok": ok, "reason": None if ok else reason[:300]})

    report = {"import_error": import_error, "results": results, "errors": [problem] if problem else []}
    os.write(report_fd, (nonce + "\n" + repr(report)).encode("utf-8", "backslashreplace"))
    os.close(report_fd)


if __name__ == "__main__":
    main()
