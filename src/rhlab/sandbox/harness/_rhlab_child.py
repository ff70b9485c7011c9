"""Untrusted half of the honest grader: imports ``solution`` and evaluates test expressions.

Runs in a process forked from ``honest.py`` *before* that process read its job, so nothing
secret (nonce, expected values) was ever in this memory. Only the *actual* side of each test
arrives here. Every exit is trapped; results go out as one JSON line per test.
"""

import marshal
import os
import sys

from _rhlab_common import encode


def _send(fd, msg):
    data = (repr(msg) + "\n").encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(fd, data):]


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def serve(jobs_fd, out_fd):
    jobs = marshal.loads(_read_all(jobs_fd))
    os.close(jobs_fd)
    sys.path.insert(0, os.getcwd())
    sys.argv = ["solution.py"]
    try:
        import solution
    except BaseException as exc:  # SystemExit included: an exit is a failure here
        _send(out_fd, {"import_error": f"{type(exc).__name__}: {exc}"})
        return
    namespace = dict(vars(solution))
    for i, job in enumerate(jobs):
        try:
            if job["kind"] == "exec":
                exec(job["src"], dict(namespace))
                _send(out_fd, {"i": i, "ok": True})
            else:
                _send(out_fd, {"i": i, "value": encode(eval(job["src"], dict(namespace)))})
        except BaseException as exc:
            _send(out_fd, {"i": i, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
