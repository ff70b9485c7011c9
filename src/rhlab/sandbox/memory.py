"""The sandbox-wide memory bound: a cgroup where one is writable here, otherwise a monitor.

RLIMIT_AS bounds each process, but a sandbox may hold ``max_processes`` of them (and tmpfs and
shared-memory pages belong to no process at all). So every sandbox also gets one bound on the
memory of everything in it:

- ``cgroup2`` / ``cgroup1``: the sandbox runs in its own memory cgroup (``memory.max`` or
  ``memory.limit_in_bytes``) below the cgroup this process is in. The kernel charges every page
  (processes, tmpfs, SysV shared memory) and OOM-kills inside the group only.
- ``monitor``: no writable memory cgroup (an unprivileged user without a delegated cgroup). The
  warm server sums the resident memory of every process of the run every 50 ms and kills the run
  when the sum passes the bound. Memory no process needs to map is kept small instead: tmpfs
  size caps, and the seccomp filter refuses ``shmget`` and ``memfd_create`` in this mode (see
  :mod:`rhlab.sandbox.seccomp`); pipe and socket buffers remain, bounded by kernel defaults.

``RHLAB_SANDBOX_MEMORY_BOUND=monitor`` forces the monitor (tests; hosts whose cgroup is shared).
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import subprocess
import time
import uuid

FORCE_ENV = "RHLAB_SANDBOX_MEMORY_BOUND"
_counter = itertools.count()


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every cgroup mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) >= 5 and len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                    out.append((fields[4], rfields[0], rfields[2]))
    except OSError:
        pass
    return out


def _own_paths() -> dict[str, str]:
    """Controller list (``""`` for cgroup2) -> this process's cgroup path in that hierarchy."""
    paths = {}
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    paths[parts[1]] = parts[2]
    except OSError:
        pass
    return paths


def _memory_delegated(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "cgroup.subtree_control")) as fh:
            return "memory" in fh.read().split()
    except OSError:
        return False


def _candidates() -> list[tuple[str, str]]:
    """(kind, parent dir) where a memory child group could be made, best first.

    cgroup2: this process's own group or the nearest ancestor that hands the memory controller
    to its children (e.g. a systemd-delegated ``user@UID.service``); cgroup1: our memory group.
    """
    own = _own_paths()
    found = []
    for mount, fstype, opts in _mounts():
        if fstype == "cgroup2" and "" in own:
            rel = own[""].rstrip("/")
            while True:
                if _memory_delegated(mount + rel):
                    found.append(("cgroup2", mount + rel))
                if not rel:
                    break
                rel = rel.rsplit("/", 1)[0]
        elif fstype == "cgroup" and "memory" in opts.split(","):
            rel = next((p for ctl, p in own.items() if "memory" in ctl.split(",")), None)
            if rel is not None:
                found.append(("cgroup1", mount + rel.rstrip("/")))
    return sorted(found, key=lambda kv: kv[0] != "cgroup2")


@functools.lru_cache(maxsize=1)
def _usable() -> tuple[str, str] | None:
    """The first candidate where a group can be made, limited, and a process moved into it."""
    if os.environ.get(FORCE_ENV) == "monitor":
        return None
    for kind, parent in _candidates():
        probe = os.path.join(parent, f"rhlab-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        try:
            limit_file = "memory.max" if kind == "cgroup2" else "memory.limit_in_bytes"
            with open(os.path.join(probe, limit_file), "w") as fh:
                fh.write(str(64 * 1024 * 1024))
            moved = subprocess.run(
                _enter(os.path.join(probe, "cgroup.procs"), ["/bin/sh", "-c", "exit 0"]),
                capture_output=True,
                timeout=20,
            )
            if moved.returncode == 0:
                _sweep(parent)
                return kind, parent
        except (OSError, subprocess.TimeoutExpired):
            continue
        finally:
            try:
                os.rmdir(probe)
            except OSError:
                pass
    return None


def _enter(procs: str, cmd: list[str]) -> list[str]:
    """``cmd`` started inside the group: the shell moves itself in, then execs ``cmd``.

    (A pid written after ``Popen`` returns would miss what bubblewrap forked meanwhile.)
    """
    return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', procs, *cmd]


def _sweep(parent: str) -> None:
    """Remove empty groups left by rhlab processes that died without closing them."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        parts = [p for p in name.split("-") if p != "probe"]
        if parts[0] != "rhlab" or len(parts) < 3 or not parts[1].isdigit() or os.path.exists(f"/proc/{parts[1]}"):
            continue
        try:
            os.rmdir(os.path.join(parent, name))  # fails (and stays) if anything still runs in it
        except OSError:
            pass


def memory_bound_kind() -> str:
    """Which sandbox-wide memory bound applies on this host: cgroup2, cgroup1 or monitor."""
    usable = _usable()
    return usable[0] if usable else "monitor"


class MemoryGroup:
    """One memory cgroup holding one sandbox (a warm server's or a one-off run's)."""

    def __init__(self, limit_bytes: int) -> None:
        usable = _usable()
        if usable is None:
            raise RuntimeError("no writable memory cgroup here")
        self.kind, parent = usable
        self.path = os.path.join(parent, f"rhlab-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}")
        os.mkdir(self.path)
        try:
            if self.kind == "cgroup2":
                self._write("memory.max", limit_bytes)
                self._write("memory.swap.max", 0, optional=True)
            else:
                self._write("memory.limit_in_bytes", limit_bytes)
                self._write("memory.memsw.limit_in_bytes", limit_bytes, optional=True)
        except OSError:
            self.close()
            raise

    def _write(self, name: str, value: int, optional: bool = False) -> None:
        try:
            with open(os.path.join(self.path, name), "w") as fh:
                fh.write(str(value))
        except OSError:
            if not optional:
                raise

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside this group."""
        return _enter(os.path.join(self.path, "cgroup.procs"), cmd)

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this group for exceeding the bound."""
        name = "memory.events" if self.kind == "cgroup2" else "memory.oom_control"
        try:
            with open(os.path.join(self.path, name)) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def close(self) -> None:
        """Kill whatever is left in the group and remove it."""
        for _ in range(50):
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as fh:
                    pids = [int(p) for p in fh.read().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def tree_resident_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (the monitor for one-off sandboxes).

    Orphans inside a sandbox are re-parented to its pid 1, itself a descendant of ``root``, so
    the tree is the whole sandbox.
    """
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 22:
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total * os.sysconf("SC_PAGE_SIZE")
