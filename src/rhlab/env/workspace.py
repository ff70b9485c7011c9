"""Turn a model's free-text response into workspace files, refusing anything unsafe.

Conventions the model is told about:

- the last fenced Python code block without a path (info string empty, ``python``, ``py``,
  ``python3``) becomes ``solution.py``; blocks in other languages (``text``, ``bash``) are prose;
- a fenced block whose info string carries ``path=REL`` (```` ```python path=conftest.py ````),
  or a ``<file path="REL">…</file>`` element, writes the file REL.

What counts as a block (so that prose *quoting* the conventions cannot break an answer): a fence
opens on its own line (up to three spaces of indent) and closes at the next line made of the
same fence character, at least as long; an unclosed fence is not a block. A ``<file>`` element
counts only where its opening tag starts a line outside every fence, and runs to the next
``</file>``. Inside a fence nothing else is interpreted. The scan is one pass over the lines,
so parsing is linear in the response's length.

Refused with a reason (and the episode then fails, writing nothing): absolute paths, ``..``,
backslashes, hidden or empty path parts, names the grader itself uses, oversized files, too
many files, binary content, and anything that would be imported instead of ``solution.py`` (a
``solution/`` package, ``solution.so``). Files are only ever written inside the sandbox's own tmpfs
(``harness/_rhlab_init.py`` opens them with ``O_NOFOLLOW|O_EXCL``), so links cannot redirect a write.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

SOLUTION_FILE = "solution.py"
RESERVED_NAMES = frozenset({"test_visible.py"})
"""Files the graders write into the workspace themselves."""
RESERVED_PREFIX = "_rhlab"
"""Harness modules (``_rhlab_common``) must not be shadowed from the workspace."""

_OPENER = re.compile(
    r"^(?: {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)"
    r"|[ \t]*<file[ \t]+path[ \t]*=[ \t]*(?P<q>[\"'])(?P<path>[^\"'\n]*)(?P=q)[ \t]*>)",
    re.M,
)
"""A line that opens a fenced block, or starts with a ``<file path=...>`` tag."""
_FENCE_ONLY = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)", re.M)
"""Used once no ``</file>`` is left: further tags could never close."""
_FILE_CLOSE = "</file>"
PYTHON_INFOS = frozenset({"", "python", "py", "python3", "py3"})


@functools.lru_cache(maxsize=64)
def _closer(char: str, length: int) -> re.Pattern[str]:
    return re.compile(rf"^ {{0,3}}{re.escape(char)}{{{length},}}[ \t]*$", re.M)


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
    top = parts[0]
    if top != SOLUTION_FILE and top.split(".", 1)[0] == "solution":
        # ``solution/__init__.py`` (or ``solution.so``) is imported *instead of* solution.py: the
        # graders would run code the answer's solution.py does not show.
        return f"path {path!r} would shadow solution.py (a package or module named 'solution')"
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


def scan_blocks(response: str) -> tuple[list[tuple[str, str]], list[str]]:
    """One forward pass: (pathed files in order, unpathed Python block bodies in order).

    Every regex search starts where the previous block ended and each is linear, so the whole
    scan is linear in the response (the old backtracking patterns were quadratic and cubic).
    """
    pathed: list[tuple[str, str]] = []
    unpathed: list[str] = []
    no_close_from = len(response) + 1  # no "</file>" at or after this offset
    pos = 0
    opener = _OPENER
    while True:
        m = opener.search(response, pos)
        if m is None:
            break
        fence = m.group("fence")
        if fence is None:  # a <file> tag at the start of a line
            start = m.end()
            end = response.find(_FILE_CLOSE, start) if start < no_close_from else -1
            if end < 0:
                no_close_from = min(no_close_from, start)
                opener = _FENCE_ONLY
                pos = m.end()
                continue
            body = response[start:end]
            pathed.append((m.group("path").strip(), body[1:] if body.startswith("\n") else body))
            pos = end + len(_FILE_CLOSE)
            continue
        info = m.group("info")
        if fence[0] == "`" and "`" in info:  # not a fence (CommonMark): inline code
            pos = m.end()
            continue
        newline = response.find("\n", m.end())
        close = _closer(fence[0], len(fence)).search(response, newline + 1) if newline >= 0 else None
        if close is None:
            break  # unclosed: the rest is inside it, and it is not a block
        body = response[newline + 1 : close.start()]
        info = info.strip()
        path = _path_from_info(info)
        if path is not None:
            pathed.append((path, body))
        elif (info.split() or [""])[0].lower() in PYTHON_INFOS:
            unpathed.append(body)
        pos = close.end()
    return pathed, unpathed


def parse_response(response: str, limits: WorkspaceLimits | None = None) -> Workspace:
    """Extract the workspace files a response asks for (see module docstring for the rules)."""
    limits = limits or WorkspaceLimits()
    ws = Workspace()
    if "\x00" in response:
        ws.refusals.append("binary content (NUL bytes) in the response")
        return ws
    # Windows (and old Mac) line endings: a fence line "```\r" would never close, and Python
    # reads source with universal newlines anyway, so this changes no program's meaning.
    response = response.replace("\r\n", "\n").replace("\r", "\n")
    pathed, unpathed = scan_blocks(response)
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
