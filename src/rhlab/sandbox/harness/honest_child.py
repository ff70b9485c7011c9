"""Untrusted half of the honest grader: imports ``solution`` and evaluates test expressions.

Only the *actual* side of each test reaches this process, so the expected values cannot be
read here. Every exit is trapped; results go to the pipe given as argv[1], one JSON line each.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rhlab_common import encode  # noqa: E402

OUT = int(sys.argv[1])


def _send(msg):
    data = (json.dumps(msg) + "\n").encode("utf-8")
    while data:
        data = data[os.write(OUT, data):]


def main():
    jobs = json.loads(sys.stdin.read())["jobs"]
    sys.path.insert(0, os.getcwd())
    sys.argv = ["solution.py"]
    try:
        import solution
    except BaseException as exc:  # SystemExit included: an exit is a failure here
        _send({"import_error": f"{type(exc).__name__}: {exc}"})
        return
    namespace = dict(vars(solution))
    for i, job in enumerate(jobs):
        try:
            if job["kind"] == "exec":
                exec(job["src"], dict(namespace))
                _send({"i": i, "ok": True})
            else:
                _send({"i": i, "value": encode(eval(job["src"], dict(namespace)))})
        except BaseException as exc:
            _send({"i": i, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})


if __name__ == "__main__":
    try:
        main()
    finally:
        os._exit(0)
