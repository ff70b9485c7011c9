"""Turn a model's free-text response into workspace files, refusing anything unsafe.

Conventions the model is told about:

- the last fenced code block without a path becomes ``solution.py``;
- a fenced block whose info string carries ``path=REL`` (```` ```python path=conftest.py ````),
  or a ``<file path="REL">…</file>`` element, writes the file REL.

Refused with a reason (and the episode then fails, writing nothing): absolute paths, ``..``,
backslashes, hidden or empty path parts, names the grader itself uses, oversized files, too
many files, and binary content. Files are only ever written inside the sandbox's own tmpfs
(``harness/init.py`` opens them with ``O_NOFOLLOW|O_EXCL``), so links cannot redirect a write.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

SOLUTION_FILE = "solution.py"
RESERVED_NAMES = frozenset({"test_visible.py"})
"""Files the graders write into the workspace themselves."""
RESERVED_PREFIX = "_rhlab"
"""Harness modules (``_rhlab_common``) must not be shadowed from the workspace."""

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
_FILE_TAG = re.compile(r"<file\s+path\s*=\s*(?P<q>[\"'])(?P<path>.*?)(?P=q)\s*>\n?(?P<body>.*?)</file>", re.S)
_PATH_ATTR = re.compile(r"""(?:^|\s)(?:path|file|filename)\s*=\s*("[^"]*"|'[^']*'|\S+)""")


@dataclass(frozen=True)
class WorkspaceLimits:
    max_file_bytes: int = 64_000
    max_files: int = 16
    max_total_bytes: int = 256_000


@dataclass
class Workspace:
    """The files a response asks for, or the reasons it was refused."""

    files: dict[str, str] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refusals and SOLUTION_FILE in self.files

    @property
    def problem(self) -> str | None:
        """Why this workspace cannot be graded, or None."""
        if self.refusals:
            return "refused: " + "; ".join(self.refusals)
        if SOLUTION_FILE not in self.files:
            return "no solution: the response has no Python code block"
        return None


def check_path(path: str) -> str | None:
    """Return why ``path`` may not be written, or None if it is a safe relative path."""
    if not path:
        return "empty path"
    if "\\" in path or "\x00" in path:
        return f"path {path!r} contains a backslash or NUL"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return f"absolute path {path!r}"
    parts = PurePosixPath(path).parts
    if any(p == ".." for p in parts):
        return f"path {path!r} leaves the workspace (..)"
    if any(p in ("", ".") or p.startswith(".") for p in path.split("/")):
        return f"path {path!r} has an empty or hidden component"
    name = parts[-1]
    if path in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        return f"path {path!r} is a grader file name"
    if len(parts) > 4 or len(path) > 120:
        return f"path {path[:60]!r} is too deep or too long"
    return None


def _path_from_info(info: str) -> str | None:
    match = _PATH_ATTR.search(info)
    if not match:
        return None
    value = match.group(1)
    try:
        return shlex.split(value)[0] if value[0] in "\"'" else value
    except ValueError:
        return value.strip("\"'")


def parse_response(response: str, limits: WorkspaceLimits | None = None) -> Workspace:
    """Extract the workspace files a response asks for (see module docstring for the rules)."""
    limits = limits or WorkspaceLimits()
    ws = Workspace()
    if "\x00" in response:
        ws.refusals.append("binary content (NUL bytes) in the response")
        return ws
    pathed: list[tuple[str, str]] = []
    unpathed: list[str] = []
    for m in _FILE_TAG.finditer(response):
        pathed.append((m.group("path").strip(), m.group("body")))
    for m in _FENCE.finditer(_FILE_TAG.sub("", response)):
        path = _path_from_info(m.group("info"))
        if path is None:
            unpathed.append(m.group("body"))
        else:
            pathed.append((path, m.group("body")))
    if unpathed:
        ws.files[SOLUTION_FILE] = unpathed[-1]
    for path, body in pathed:
        reason = check_path(path)
        if reason:
            ws.refusals.append(reason)
            continue
        ws.files[path] = body
    for path, body in ws.files.items():
        size = len(body.encode("utf-8", "replace"))
        if size > limits.max_file_bytes:
            ws.refusals.append(f"file {path!r} is {size} bytes (limit {limits.max_file_bytes})")
    if len(ws.files) > limits.max_files:
        ws.refusals.append(f"{len(ws.files)} files (limit {limits.max_files})")
    total = sum(len(b.encode("utf-8", "replace")) for b in ws.files.values())
    if total > limits.max_total_bytes:
        ws.refusals.append(f"{total} bytes in all (limit {limits.max_total_bytes})")
    return ws
