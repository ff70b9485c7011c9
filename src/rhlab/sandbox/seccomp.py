"""A seccomp filter for every sandbox: no unix-domain sockets, no foreign syscall entry points.

The allow-list mounts already leave no host socket path in the sandbox, and abstract sockets
live in the sandbox's own network namespace. The filter makes "no host unix socket" hold even
if a mount ever exposed one: ``socket(AF_UNIX, ...)`` fails with EACCES. ``socketpair`` (used by
the warm server and by asyncio/multiprocessing) is unaffected: its two ends connect only to each
other. On x86_64 the 32-bit and x32 entry points are refused too (they would bypass the check).

Where the sandbox-wide memory bound is the monitor (no cgroup), ``shmget`` and ``memfd_create``
are refused as well: their pages need not be mapped by any process, so the monitor would not see
them. The program is classic BPF, handed to bubblewrap (``--seccomp FD``), which installs it
after ``PR_SET_NO_NEW_PRIVS``. Architectures other than x86_64 and aarch64 get no filter.
"""

from __future__ import annotations

import os
import platform
import struct

AF_UNIX = 1
EACCES, EPERM = 13, 1
_ARCHES = {
    # machine: (AUDIT_ARCH_*, {syscall name: number})
    "x86_64": (0xC000003E, {"socket": 41, "shmget": 29, "memfd_create": 319}),
    "aarch64": (0xC00000B7, {"socket": 198, "shmget": 194, "memfd_create": 279}),
}
UNCOUNTED_MEMORY = ("shmget", "memfd_create")
"""Ways to hold memory that no process maps (so RSS misses it): refused where the sandbox-wide
memory bound is the resident-memory monitor, not a cgroup that charges every page."""
_LD_ABS_W, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_X32_BIT = 0x40000000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None, deny: tuple[str, ...] = ()) -> bytes | None:
    """The compiled filter for this machine (also refusing the syscalls ``deny``), or ``None``."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, numbers = arch
    refused = _insn(_RET, 0, 0, _ERRNO | EPERM)
    program = [
        _insn(_LD_ABS_W, 0, 0, 4),                 # A = arch
        _insn(_JEQ, 1, 0, audit_arch),             # native arch? skip the refusal
        refused,                                   # a foreign entry point
        _insn(_LD_ABS_W, 0, 0, 0),                 # A = syscall number
        _insn(_JGE, 0, 1, _X32_BIT),               # x32 ABI? fall into the refusal
        refused,
    ]  # fmt: skip
    for name in deny:
        program += [_insn(_JEQ, 0, 1, numbers[name]), refused]
    program += [
        _insn(_JEQ, 0, 2, numbers["socket"]),      # socket()? else allow
        _insn(_LD_ABS_W, 0, 0, 16),                # A = low 32 bits of args[0] (the domain)
        _insn(_JEQ, 1, 0, AF_UNIX),                # AF_UNIX? -> refuse
        _insn(_RET, 0, 0, _ALLOW),
        _insn(_RET, 0, 0, _ERRNO | EACCES),
    ]  # fmt: skip
    return b"".join(program)


def filter_fd(deny: tuple[str, ...] = ()) -> int | None:
    """A fresh readable descriptor holding the program, for ``bwrap --seccomp FD``."""
    program = filter_program(deny=deny)
    if program is None:
        return None
    fd = os.memfd_create("rhlab-seccomp")  # close-on-exec: only pass_fds hands it on
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
