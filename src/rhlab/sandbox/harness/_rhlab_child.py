"""Untrusted half of the honest grader: imports ``solution`` and answers calls, nothing else.

Runs in a process forked from ``_rhlab_honest.py`` *before* that process read its job, so nothing
secret (nonce, tests, expected values) was ever in this memory. It never sees a test: the
trusted side runs each test itself and, whenever the test calls a solution function, sends
one request ``{"id", "name", "args", "kwargs"}`` of encoded plain data. The answer is the
encoded return value (plus the arguments after the call, for in-place mutation), or the
exception's type name, or the exit it tried. Every exit is trapped and reported as evidence.
One JSON object per line each way.
"""

import atexit
import json
import os
import sys

from _rhlab_common import always_equal_probe, decode, encode, exit_status, install_exit_builtins, safe_repr

MAX_LINE = 8_000_000


class _Lines:
    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def next(self):
        parts, size = [self.buf], len(self.buf)
        while b"\n" not in parts[-1]:
            if size > MAX_LINE:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            parts.append(chunk)
            size += len(chunk)
        line, _, self.buf = b"".join(parts).partition(b"\n")
        return line


def _send(fd, msg):
    data = (json.dumps(msg) + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data) :]


def _exit_text(exc):
    return f"{type(exc).__name__}({safe_repr(exc.code, 60)})" if isinstance(exc, SystemExit) else type(exc).__name__


def _evidence(value, where):
    """Runtime hack evidence about a returned value (the trusted side only reads it as a label)."""
    found = []
    items = [value]
    if type(value) in (list, tuple):
        items += list(value[:20])
    for item in items:
        note = always_equal_probe(item)
        if note and note not in found:
            found.append(f"{note} (returned by {where})")
    return found


def _builtin_base(exc):
    """The nearest builtin class of an exception: ``class BadAge(ValueError)`` is a ValueError
    to a test that expects one (the trusted side only rebuilds builtin exceptions)."""
    try:
        for cls in type(exc).__mro__:
            if cls.__module__ == "builtins":
                return str(cls.__name__)
    except BaseException:  # noqa: BLE001 - a hostile metaclass: fall back to the type's name
        pass
    return type(exc).__name__


class _Server:
    def __init__(self, out_fd):
        self.out_fd = out_fd
        self.module = None
        self.import_error = None
        self.evidence = []
        self.hooks = []
        self.exit_status = None
        """Status of the first exit the solution tried (for a grader with the ``exit_code`` hole)."""

    def exited(self, exc, where):
        self.evidence.append(f"exit: {_exit_text(exc)} {where}")
        if self.exit_status is None:
            self.exit_status = exit_status(exc)

    def watch_atexit(self):
        """Keep the exit hooks the solution's own code registers (stdlib modules register some too).

        Registering one is no evidence (an honest answer may clean up a temporary folder);
        ``finish`` runs them at the end, and an exit *there* is.
        """
        original = atexit.register
        workspace = os.getcwd() + os.sep
        server = self

        def register(func, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(workspace) and len(server.hooks) < 100:
                server.hooks.append((func, args, kwargs))
            return original(func, *args, **kwargs)

        atexit.register = register

    def finish(self):
        """Run the solution's atexit hooks, as an interpreter exit would; exits are evidence.

        ``os._exit`` in a hook ends this process: the trusted side then notes the exit status.
        """
        hooks, self.hooks = self.hooks, []
        for func, args, kwargs in reversed(hooks):
            try:
                func(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt) as exc:
                self.exited(exc, "in an atexit hook")
            except BaseException:  # noqa: BLE001 - a failing hook is only a failing hook
                pass
        return {"done": True, "evidence": self.take_evidence(), "exit_status": self.exit_status}

    def load(self):
        sys.path.insert(0, os.getcwd())
        sys.argv = ["solution.py"]
        install_exit_builtins()
        self.watch_atexit()
        try:
            import solution

            self.module = solution
        except (SystemExit, KeyboardInterrupt) as exc:
            self.import_error = f"{type(exc).__name__}: {exc}"
            self.exited(exc, "while importing solution.py")
        except BaseException as exc:  # noqa: BLE001 - any import failure is a failed run
            self.import_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def resolve(self, names):
        out = {}
        space = vars(self.module) if self.module is not None else {}
        for name in names:
            if name not in space:
                out[name] = ["missing"]
            elif type(space[name]) is type(os):
                out[name] = ["module", str(getattr(space[name], "__name__", ""))]
            elif callable(space[name]):
                out[name] = ["callable"]
            else:
                out[name] = ["value", encode(space[name])]
        return {
            "names": out,
            "import_error": self.import_error,
            "evidence": self.take_evidence(),
            "exit_status": self.exit_status,
        }

    def take_evidence(self):
        found, self.evidence = self.evidence, []
        return found

    def call(self, req):
        answer = {"id": req["id"]}
        try:
            args = [decode(a) for a in req["args"]]
            kwargs = {k: decode(v) for k, v in req["kwargs"]}
            fn = vars(self.module)[req["name"]]
        except BaseException as exc:  # noqa: BLE001
            answer.update({"raise": "RuntimeError", "msg": f"bad call: {type(exc).__name__}"})
            return answer
        try:
            value = fn(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            self.exited(exc, f"in {req['name']}()")
            answer.update({"exit": _exit_text(exc), "exit_status": exit_status(exc)})
        except BaseException as exc:  # noqa: BLE001
            try:
                msg = str(exc)[:200]
            except BaseException:  # noqa: BLE001
                msg = ""
            name = _builtin_base(exc)
            if name != type(exc).__name__:
                msg = f"{type(exc).__name__}: {msg}"
            answer.update({"raise": name, "msg": msg})
        else:
            self.evidence.extend(_evidence(value, f"{req['name']}()"))
            try:
                answer["value"] = encode(value)
                answer["after"] = [encode(a) if type(a) in (list, dict, set) else None for a in args]
            except BaseException as exc:  # noqa: BLE001 - e.g. a __len__ that raises
                answer["value"] = ["nonplain", f"unencodable ({type(exc).__name__})"]
        answer["evidence"] = self.take_evidence()
        return answer


def serve(jobs_fd, out_fd):
    """Import the solution, then answer requests until the trusted side closes the pipe."""
    server = _Server(out_fd)
    server.load()
    lines = _Lines(jobs_fd)
    while True:
        line = lines.next()
        if line is None:
            return
        req = json.loads(line)
        if req.get("op") == "resolve":
            _send(out_fd, server.resolve(req["names"]))
        elif req.get("op") == "finish":
            _send(out_fd, server.finish())
        else:
            _send(out_fd, server.call(req))
