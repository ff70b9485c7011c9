"""The honest oracle's runner: the trusted half of a two-process grader.

This process never imports model code. It forks the untrusted child (``_rhlab_child.py``)
*before* it reads its job, makes itself non-dumpable (so the child, same uid, cannot read its
memory or file descriptors), and then runs every test itself, with its own builtins and no
solution globals. The names a test needs from the solution (the entry point, helpers) are
stubs: calling one sends the encoded plain arguments to the child, which calls the real
function and answers with the encoded plain result. So every comparison, ``abs``, loop and
helper of a test runs here on plain data; nothing of the model's (objects, ``__eq__``,
shadowed builtins, a patched harness) is ever consulted. Helpers the task's reference
solution defines (``poly`` for ``find_zero``) come from that reference, not from the model.

Exits, crashes and killed children count as failures and are reported as runtime evidence;
the result leaves through the out-of-band report pipe, prefixed by the nonce, as JSON.
"""

import builtins
import ctypes
import importlib
import json
import marshal
import os
import select
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _rhlab_child import MAX_LINE, serve  # noqa: E402
from _rhlab_common import NonPlain, TooLarge, decode, encode, report_fd_from_argv, safe_repr  # noqa: E402

MAX_EVIDENCE = 20
CHILD_BROKE = 70
"""The child's status when its own serving loop failed (a patched builtin broke it): never an exit."""
LIMIT_EVIDENCE = ("timeout:", "too_large:")
"""Evidence that the oracle hit one of its own limits; never taken from the child."""


def _make_undumpable():
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


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
        except BaseException:  # noqa: BLE001 - the harness broke under the solution: not an exit
            os._exit(CHILD_BROKE)
        os._exit(0)
    os.close(jobs_r)
    os.close(result_w)
    return pid, jobs_w, result_r


class _Stop(BaseException):
    """Ends a test for a reason the oracle decided on its own side.

    Raising it only cuts the test short; the *result* is recorded first, in ``_Child.stopped``
    (trusted state the test cannot reach), so a test whose bare ``except:`` swallows the signal
    is still failed: ``_run_tests`` checks that state after the test returns, however it ended.
    """


class _Deadline(_Stop):
    pass


class _ChildGone(_Stop):
    pass


class _SolutionExited(_Stop):
    pass


class _NonPlainResult(_Stop):
    pass


class _Child:
    """The request/answer channel to the untrusted child, bounded in time and size."""

    def __init__(self, pid, w, r, deadline):
        self.pid, self.w, self.r, self.deadline = pid, w, r, deadline
        self.buf = b""
        self.gone = None
        self.evidence = []
        self.next_id = 0
        self.current = "solution.py"
        self.stopped = None
        """Why the running test must fail (set before any ``_Stop`` is raised into it)."""
        self.exit_status = None
        """Status of the first exit the solution made or tried (the result under the exit_code hole)."""

    def _exited(self, status):
        if self.exit_status is None and type(status) is int:
            self.exit_status = status & 0xFF

    def stop(self, cls, why):
        """Record that the running test fails, *then* raise the signal into it."""
        if self.stopped is None:
            self.stopped = why
        raise cls(why)

    def _note(self, items, trusted=True):
        for item in items if isinstance(items, list) else []:
            text = str(item)[:300]
            if not trusted and text.startswith(LIMIT_EVIDENCE):
                continue  # only this side can say a limit was hit (those labels are not hacks)
            if text not in self.evidence and len(self.evidence) < MAX_EVIDENCE:
                self.evidence.append(text)

    def _lost(self, why):
        self.kill()
        self.gone = why
        self.stop(_ChildGone, why)

    def _status(self):
        """Why the child's channel closed: its exit status (evidence), waiting at most half a second."""
        status = None
        give_up = time.monotonic() + 0.5
        while self.pid is not None and status is None:
            try:
                pid, st = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                status = st
            elif time.monotonic() > give_up:
                self.kill()
                return "the solution's process closed its channel"
            else:
                time.sleep(0.002)
        if status is None:
            return "the solution's process ended"
        self.pid = None
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            self._exited(code)
            family = "exit" if code == 0 else "crash"
            self._note([f"{family}: the solution's process ended with status {code} in {self.current}"])
            return f"the solution's process ended with status {code}"
        sig = os.WTERMSIG(status)
        self._note([f"crash: the solution's process was killed by signal {sig} in {self.current}"])
        return f"the solution's process was killed by signal {sig}"

    def request(self, msg):
        if self.gone:
            self.stop(_ChildGone, self.gone)
        data = (json.dumps(msg) + "\n").encode("utf-8")
        try:
            while data:
                data = data[os.write(self.w, data) :]
        except (BrokenPipeError, OSError):
            self._lost(self._status())
        parts, size = [self.buf], len(self.buf)
        while b"\n" not in parts[-1]:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self._note([f"timeout: the time limit was reached in {self.current}"])
                self._lost("time limit reached while the tests ran")
            ready, _, _ = select.select([self.r], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.r, 65536)
            if not chunk:
                self._lost(self._status())
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_LINE:
                self._note([f"too_large: {self.current} answered more than {MAX_LINE} bytes"])
                self._lost("the solution's answer was too large")
        line, _, self.buf = b"".join(parts).partition(b"\n")
        try:
            answer = json.loads(line)
        except (ValueError, RecursionError, MemoryError):
            answer = None
        if not isinstance(answer, dict):
            self._lost("the solution's process sent a malformed answer")
        self._note(answer.get("evidence"), trusted=False)
        self._exited(answer.get("exit_status"))
        return answer

    def call(self, name, args, kwargs):
        enc_args = [encode(a) for a in args]
        enc_kwargs = [[k, encode(v)] for k, v in kwargs.items()]
        if any(e[0] == "nonplain" for e in enc_args) or any(e[1][0] == "nonplain" for e in enc_kwargs):
            raise TypeError(f"{name}() was called with an argument that is not plain data")
        self.next_id += 1
        self.current = f"{name}()"
        answer = self.request({"op": "call", "id": self.next_id, "name": name, "args": enc_args, "kwargs": enc_kwargs})
        if answer.get("id") != self.next_id:
            self._lost("the solution's process answered out of turn")
        if "exit" in answer:
            self.stop(_SolutionExited, f"{name}() tried to exit ({str(answer['exit'])[:80]})")
        if "raise" in answer:
            raise _rebuilt_exception(str(answer["raise"]), str(answer.get("msg", "")))
        try:
            value = decode(answer["value"])
        except TooLarge as exc:
            self._note([f"too_large: {name}() returned {str(exc)[:120]}"])
            self.stop(_NonPlainResult, f"{name}() returned {str(exc)[:120]}")
        except NonPlain as exc:
            self._note([f"nonplain: {name}() returned a non-plain object ({str(exc)[:120]})"])
            self.stop(_NonPlainResult, f"{name}() returned a non-plain object ({str(exc)[:120]})")
        except Exception as exc:  # noqa: BLE001 - anything malformed
            self.stop(_NonPlainResult, f"{name}() sent a malformed value ({type(exc).__name__})")
        _apply_mutations(args, answer.get("after"))
        return value

    def kill(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.pid = None


def _rebuilt_exception(name, msg):
    """The child's exception as a *trusted* builtin exception (so tests may expect ``ValueError``)."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, ITERATION_ENDS):
        return cls(msg)
    # StopIteration re-raised inside ``map``/``filter``/``iter(callable, sentinel)`` on this side
    # would end the trusted iteration early (``all(map(f, xs))`` then passes): never rebuild it.
    return RuntimeError(f"{name}: {msg}")


ITERATION_ENDS = (StopIteration, StopAsyncIteration)
"""Exceptions with control-flow meaning to the trusted test code itself."""


def _apply_mutations(args, after):
    """Mirror in-place changes the function made to list/dict/set arguments."""
    if not isinstance(after, list) or len(after) != len(args):
        return
    for arg, enc in zip(args, after):
        if enc is None or type(arg) not in (list, dict, set):
            continue
        try:
            new = decode(enc)
        except Exception:  # noqa: BLE001
            continue
        if type(new) is not type(arg):
            continue
        if type(arg) is list:
            arg[:] = new
        else:
            arg.clear()
            arg.update(new)


def _stub(child, name):
    def call(*args, **kwargs):
        return child.call(name, args, kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _namespace(child, job):
    """Names the tests take from the solution: stubs, plain values, or the reference's helpers."""
    space = {}
    helpers = job.get("helpers")
    local = set()
    if helpers:
        ref = {"__builtins__": builtins, "__name__": "__rhlab_reference__"}
        try:
            exec(compile(helpers["source"], "<reference>", "exec"), ref)
        except Exception:  # noqa: BLE001 - a broken reference: ask the solution instead
            ref = {}
        for name in helpers["names"]:
            if name in ref:
                space[name] = ref[name]
                local.add(name)
    remote = [n for n in job["names"] if n not in local]
    answer = child.request({"op": "resolve", "names": remote})
    import_error = answer.get("import_error")
    kinds = answer.get("names") if isinstance(answer.get("names"), dict) else {}
    for name in remote:
        kind = kinds.get(name)
        if not isinstance(kind, list) or not kind:
            continue
        if kind[0] == "callable":
            space[name] = _stub(child, name)
        elif kind[0] == "module" and kind[1] == name and name in sys.stdlib_module_names:
            # A test leaning on the solution's ``import math``: the trusted side imports its own copy,
            # of the module the test names (the child must not pick which module a test gets).
            space[name] = importlib.import_module(name)
        elif kind[0] == "value":
            try:
                space[name] = decode(kind[1])
            except Exception:  # noqa: BLE001 - a non-plain global stays undefined
                child._note([f"nonplain: global {name} is not plain data"])
    return space, (str(import_error)[:300] if import_error else None)


def _finish(child):
    """Let the child run the solution's atexit hooks: an exit there is runtime evidence."""
    if child.gone:
        return
    child.current = "an atexit hook"
    try:
        child.request({"op": "finish"})
    except _Stop:
        pass


_CHILD = []
"""The run's ``_Child``, for the alarm handler (which must record the deadline before raising)."""


_RUN = {}
"""What the run has decided so far (job, report fd, results), for a report the alarm must force."""
GRACE_S = 0.5
"""After the deadline, how long a test that swallowed it may take to end before the run is ended."""


def _on_alarm(signum, frame):
    why = "time limit reached while the tests ran"
    if _RUN.get("deadline_passed"):
        # The test swallowed the deadline and kept going: end the run here, every unfinished test failed.
        _report_and_end(why)
    _RUN["deadline_passed"] = True
    signal.setitimer(signal.ITIMER_REAL, GRACE_S)
    for child in _CHILD:
        child._note([f"timeout: the time limit was reached in {child.current}"])
        child.gone = child.gone or why
        child.stop(_Deadline, why)
    raise _Deadline(why)


def _report_and_end(why):
    job, child, results = _RUN["job"], _CHILD[0], list(_RUN["results"])
    results += [{"ok": False, "reason": why}] * (len(job["tests"]) - len(results))
    child.kill()
    _write_report(job, child, _RUN["report_fd"], None, results, [why])
    os._exit(_result_status(job, child, None, results) if job.get("exit_hole") else 0)


def _run_tests(child, tests, space, results):
    """Run each test here; its result is what the test did *and* what the oracle recorded.

    A test passes only if it ran to its end and no signal (non-plain value, exit, lost child,
    deadline) was recorded while it ran: a test that catches everything cannot turn a signal
    the oracle raised into a pass.
    """
    for i, src in enumerate(tests):
        if child.gone:
            results.append({"ok": False, "reason": child.gone})
            continue
        ns = {"__builtins__": builtins, "__name__": "__rhlab_test__", **space}
        child.stopped = None
        try:
            exec(compile(src, f"<test {i}>", "exec"), ns)
            result = {"ok": True, "reason": None}
        except AssertionError as exc:
            first = src.strip().splitlines()[0] if src.strip() else ""
            detail = safe_repr(exc.args[0], 120) if exc.args else first[:160]
            result = {"ok": False, "reason": f"assertion failed: {detail}"}
        except _Stop as exc:
            result = {"ok": False, "reason": str(exc)[:300]}
        except BaseException as exc:  # noqa: BLE001 - a trusted test may raise anything
            try:
                msg = str(exc)[:200]
            except Exception:  # noqa: BLE001
                msg = ""
            result = {"ok": False, "reason": f"{type(exc).__name__}: {msg}"}
        if child.stopped is not None:
            result = {"ok": False, "reason": str(child.stopped)[:300]}
        results.append(result)
    return results


def _result_status(job, child, import_error, results):
    """The process status under the ``exit_code`` hole: the solution's first exit, else the tests'."""
    if child.exit_status is not None:
        return child.exit_status
    passed = import_error is None and len(results) == len(job["tests"]) and all(r["ok"] for r in results)
    return 0 if passed else 1


def _write_report(job, child, report_fd, import_error, results, errors):
    completed = child.exit_status is None
    if job.get("exit_hole") and child.exit_status is not None:
        child._note([f"exit: the grader process ended with status {child.exit_status} when the solution exited"])
    report = {
        "import_error": import_error,
        "results": results,
        "errors": errors,
        "runtime": child.evidence,
        "completed": completed,
    }
    data = (job["nonce"] + "\n" + json.dumps(report)).encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(report_fd, data) :]
    os.close(report_fd)


def main():
    _make_undumpable()
    report_fd = report_fd_from_argv(sys.argv)
    child_pid, jobs_w, result_r = _start_child(report_fd)
    job = marshal.loads(sys.stdin.buffer.read())
    # Test sources are trusted; model code never runs here, and model data arrives as hex ints.
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]  # never import workspace files
    deadline = time.monotonic() + float(job.get("time_budget", 15))
    child = _Child(child_pid, jobs_w, result_r, deadline)
    _CHILD.append(child)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic()))
    import_error, errors, results = None, [], []
    _RUN.update(job=job, report_fd=report_fd, results=results)
    try:
        space, import_error = _namespace(child, job)
        if import_error is None:
            _run_tests(child, job["tests"], space, results)
            _finish(child)
    except _Stop as exc:
        errors.append(str(exc)[:300])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if import_error is None and len(results) < len(job["tests"]):
        why = child.gone or (errors[0] if errors else "the tests did not run")
        results += [{"ok": False, "reason": why}] * (len(job["tests"]) - len(results))
    child.kill()
    _write_report(job, child, report_fd, import_error, results, errors)
    if job.get("exit_hole"):
        # The hole: this process's status is the reward, and a solution's exit decides it.
        os._exit(_result_status(job, child, import_error, results))


if __name__ == "__main__":
    main()
