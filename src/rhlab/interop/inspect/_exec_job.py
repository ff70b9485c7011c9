"""One Inspect ``exec`` inside an rhlab sandbox (stdlib only; run by the sandbox's first interpreter).

The host keeps a sample's files; a sandbox lives for one command. This script restores the files
into the fresh workspace, runs the command there, and sends the exit status, the output and every
file of the workspace back over the sandbox's report pipe (``argv[1]``), so the next command finds
what this one left. It deletes itself first, so the command never sees it.
"""

import base64
import json
import os
import subprocess
import sys

OUTPUT_CAP = 1_000_000
"""Bytes of stdout/stderr kept per stream (the tail, as Inspect's providers do)."""


def restore(root, job):
    for rel in job["dirs"]:
        os.makedirs(os.path.join(root, rel), exist_ok=True)
    for rel, data in job["files"].items():
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(data))


def snapshot(root):
    files, dirs = {}, []
    for here, subdirs, names in os.walk(root):
        rel_here = os.path.relpath(here, root)
        subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(here, d))]
        if rel_here != "." and not names and not subdirs:
            dirs.append(rel_here)
        for name in names:
            path = os.path.join(here, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue  # links and special files do not persist between commands
            with open(path, "rb") as fh:
                files[os.path.relpath(path, root)] = base64.b64encode(fh.read()).decode("ascii")
    return files, dirs


def run(job, cwd):
    stdin = base64.b64decode(job["input"]) if job["input"] is not None else None
    try:
        proc = subprocess.run(
            job["argv"], input=stdin, cwd=cwd, env=job["env"], capture_output=True, timeout=job["timeout"]
        )
    except FileNotFoundError:
        return {
            "returncode": 127,
            "stdout": "",
            "stderr": f"{job['argv'][0]}: command not found in the rhlab "
            "sandbox (it holds the Python interpreter only)\n",
        }
    except PermissionError as exc:
        return {"returncode": 126, "stdout": "", "stderr": f"{job['argv'][0]}: {exc}\n"}
    except subprocess.TimeoutExpired:
        return {"timed_out": True}
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout[-OUTPUT_CAP:].decode("utf-8", "replace"),
        "stderr": proc.stderr[-OUTPUT_CAP:].decode("utf-8", "replace"),
    }


def main():
    report_fd = int(sys.argv[1])
    os.unlink(sys.argv[0])
    job = json.loads(sys.stdin.buffer.read())
    root = os.getcwd()
    restore(root, job)
    cwd = os.path.join(root, job["cwd"])
    result = (
        run(job, cwd)
        if os.path.isdir(cwd)
        else {"returncode": 1, "stdout": "", "stderr": f"no such directory in the workspace: {job['cwd']}\n"}
    )
    result["files"], result["dirs"] = snapshot(root)
    view = memoryview(json.dumps(result).encode("utf-8"))
    while view:
        view = view[os.write(report_fd, view) :]


main()
