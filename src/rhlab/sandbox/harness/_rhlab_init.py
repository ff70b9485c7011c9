"""First program inside every sandbox (stdlib only, runs as ``python -I -S _rhlab_init.py``).

It reads a length-prefixed header from stdin (``marshal``: free to load, and only the trusted
host writes it), writes the workspace files, applies the resource limits to *itself* (so they
hold for everything it runs; setting them from the host with ``preexec_fn`` would make each
spawn from a large trainer process slow), then execs the requested program, which inherits the
rest of stdin. A Python script is run in this process instead, halving interpreter start-ups.
"""

import marshal
import os
import resource
import runpy
import sys


def _read_exact(n):
    chunks = []
    while n:
        chunk = os.read(0, n)
        if not chunk:
            raise SystemExit("rhlab-init: truncated header")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_files(root, files):
    real_root = os.path.realpath(root)
    for rel, content in files.items():
        target = os.path.realpath(os.path.join(real_root, rel))
        if not target.startswith(real_root + os.sep):
            raise SystemExit(f"rhlab-init: refusing path outside the workspace: {rel!r}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # O_EXCL|O_NOFOLLOW: never follow a link planted earlier in the same workspace.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)


def apply_limits(limits):
    mb = 1024 * 1024
    table = [
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_AS, limits["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_NPROC, limits["max_processes"]),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, value in table:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            # An already lower hard limit is fine: keep the stricter one.
            soft, hard = resource.getrlimit(which)
            if hard == resource.RLIM_INFINITY or value < hard:
                raise


def main():
    size = int.from_bytes(_read_exact(8), "big")
    header = marshal.loads(_read_exact(size))
    workspace = header["workspace"]
    os.makedirs(workspace, exist_ok=True)
    write_files(workspace, header["files"])
    os.chdir(workspace)
    apply_limits(header["limits"])
    argv = header["argv"]
    env = header["env"]
    if header.get("in_process"):
        # A Python script for this very interpreter: run it here and save a second start-up.
        os.environ.clear()
        os.environ.update(env)
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")
        return
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
