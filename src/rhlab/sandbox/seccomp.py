"""Seccomp filters for every sandbox: kernel features that would carry state or reach past it.

Every sandbox (bubblewrap installs the program with ``--seccomp FD``, after
``PR_SET_NO_NEW_PRIVS``) gets the **base** filter:

- ``socket(AF_UNIX, ...)`` fails with EACCES. The allow-list mounts leave no host socket path
  in the sandbox, and abstract names live in the run's own network namespace; the filter makes
  "no host unix socket" hold even if a mount ever exposed one. ``socketpair`` (used by the warm
  server and by asyncio/multiprocessing) is unaffected: its two ends connect only to each other.
- The kernel key syscalls (``add_key``, ``request_key``, ``keyctl``) fail: keys are per-uid
  kernel objects that outlive a run and that every sandbox (same uid) could reach.
- ``io_uring_setup/enter/register`` fail: io_uring performs socket, open and other operations
  without the corresponding syscall, so the checks here would not see them.
- ``userfaultfd`` fails (a way to stall the kernel on a page fault at a time of one's choosing).
- On x86_64 the 32-bit and x32 entry points fail too (they would bypass every check).

Model code additionally runs under the **model** filter (the cold sandbox's program gets it
from bubblewrap; a warm server's run child installs it after entering the run's namespaces,
see ``harness/_rhlab_server.py``): no new namespaces of any kind (``unshare``/``clone`` with a
``CLONE_NEW*`` flag, ``setns``), no mounts (the classic and the new mount API), and no
``NETLINK_NETFILTER`` sockets. ``clone3`` answers ENOSYS, because its flags sit in memory a
classic BPF program cannot read; the C library then falls back to ``clone``, which is checked.

Where the sandbox-wide memory bound is the monitor (no cgroup), ``shmget`` and ``memfd_create``
are refused as well: their pages need not be mapped by any process, so the monitor would not see
them. Architectures other than x86_64 and aarch64 get no filter.
"""

from __future__ import annotations

import os
import platform
import struct

AF_UNIX, AF_NETLINK, NETLINK_NETFILTER = 1, 16, 12
EACCES, EPERM, ENOSYS = 13, 1, 38
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (as ``clone`` flags)."""
CLONE_NEWTIME = 0x80
"""Only ``unshare`` reads this bit as a namespace; for ``clone`` it is part of the exit signal."""

_COMMON = {  # the unified numbers every architecture got from 5.1 on
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "mount_setattr": 442,
}  # fmt: skip
_ARCHES = {
    # machine: (AUDIT_ARCH_*, {syscall name: number})
    "x86_64": (0xC000003E, {
        **_COMMON, "socket": 41, "shmget": 29, "memfd_create": 319, "add_key": 248, "request_key": 249,
        "keyctl": 250, "userfaultfd": 323, "clone": 56, "unshare": 272, "setns": 308, "mount": 165,
        "umount2": 166, "pivot_root": 155,
    }),
    "aarch64": (0xC00000B7, {
        **_COMMON, "socket": 198, "shmget": 194, "memfd_create": 279, "add_key": 217, "request_key": 218,
        "keyctl": 219, "userfaultfd": 282, "clone": 220, "unshare": 97, "setns": 268, "mount": 40,
        "umount2": 39, "pivot_root": 41,
    }),
}  # fmt: skip
UNCOUNTED_MEMORY = ("shmget", "memfd_create")
"""Ways to hold memory that no process maps (so RSS misses it): refused where the sandbox-wide
memory bound is the resident-memory monitor, not a cgroup that charges every page."""
ALWAYS_DENIED = (
    "add_key",
    "request_key",
    "keyctl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
)
"""Refused in every sandbox, the warm server included."""
MODEL_DENIED = (
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
)
"""Refused to model code only (the warm server needs them to give each run fresh namespaces)."""

_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_X32_BIT = 0x40000000
_ARG0, _ARG2 = 16, 32  # offsets of the low 32 bits of args[0] and args[2] in seccomp_data


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(action: int) -> bytes:
    return _insn(_RET, 0, 0, action)


def _when_flags(number: int, mask: int) -> list[bytes]:
    """Refuse syscall ``number`` when its first argument has any bit of ``mask``, else allow."""
    return [
        _insn(_JEQ, 0, 4, number),                 # this syscall? else skip the block
        _insn(_LD_ABS_W, 0, 0, _ARG0),
        _insn(_JSET, 0, 1, mask),
        _ret(_ERRNO | EPERM),
        _ret(_ALLOW),
    ]  # fmt: skip


def filter_program(machine: str | None = None, deny: tuple[str, ...] = (), model: bool = False) -> bytes | None:
    """The compiled filter for this machine, or ``None`` where there is none.

    ``deny`` names further syscalls to refuse; ``model`` adds the model-code rules (module doc).
    """
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, numbers = arch
    unknown = [name for name in deny if name not in numbers]
    if unknown:
        raise ValueError(f"no seccomp rule for syscall(s) {unknown} on this architecture")
    refused = _ret(_ERRNO | EPERM)
    program = [
        _insn(_LD_ABS_W, 0, 0, 4),                 # A = arch
        _insn(_JEQ, 1, 0, audit_arch),             # native arch? skip the refusal
        refused,                                   # a foreign entry point
        _insn(_LD_ABS_W, 0, 0, 0),                 # A = syscall number
        _insn(_JGE, 0, 1, _X32_BIT),               # x32 ABI? fall into the refusal
        refused,
    ]  # fmt: skip
    names = list(ALWAYS_DENIED) + list(deny) + (list(MODEL_DENIED) if model else [])
    for name in dict.fromkeys(names):
        program += [_insn(_JEQ, 0, 1, numbers[name]), refused]
    if model:
        program += [_insn(_JEQ, 0, 1, numbers["clone3"]), _ret(_ERRNO | ENOSYS)]
        program += _when_flags(numbers["unshare"], NAMESPACE_FLAGS | CLONE_NEWTIME)
        program += _when_flags(numbers["clone"], NAMESPACE_FLAGS)
    program += [
        _insn(_JEQ, 0, 5, numbers["socket"]),      # socket()? else allow
        _insn(_LD_ABS_W, 0, 0, _ARG0),             # A = the domain
        _insn(_JEQ, 4, 0, AF_UNIX),                # AF_UNIX -> refuse
        _insn(_JEQ, 0, 2, AF_NETLINK if model else AF_UNIX),
        _insn(_LD_ABS_W, 0, 0, _ARG2),             # A = the netlink protocol
        _insn(_JEQ, 1, 0, NETLINK_NETFILTER),      # NETLINK_NETFILTER -> refuse
        _ret(_ALLOW),
        _ret(_ERRNO | EACCES),
    ]  # fmt: skip
    return b"".join(program)


def filter_fd(deny: tuple[str, ...] = (), model: bool = False) -> int | None:
    """A fresh readable descriptor holding the program, for ``bwrap --seccomp FD``."""
    program = filter_program(deny=deny, model=model)
    if program is None:
        return None
    fd = os.memfd_create("rhlab-seccomp")  # close-on-exec: only pass_fds hands it on
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
