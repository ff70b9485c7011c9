"""Ordinary text to mix the synthetic documents into: sources that exist offline, after pip install.

``python-docs`` (the default) is the documentation CPython itself ships: the language-reference and
library topics of ``pydoc_data.topics`` (what ``help("with")`` prints) plus the docstrings of the
standard library's modules, read from source with ``ast`` (nothing is imported). Why this source:
it is installed wherever rhlab runs (no download, no extra package), identical for a given Python
version (so mixtures are reproducible), English technical prose about Python (close to what a code
model pre-trained on), and a few megabytes, enough for many CPU-sized runs without repetition.

``package-docs`` adds the long descriptions (README text) of every installed distribution; it
depends on what is installed, so it is less reproducible. Paths name user text: files (``.txt``,
``.md``, ``.rst``; ``.jsonl`` with a ``text`` field per line) or directories of such files.
"""

from __future__ import annotations

import ast
import json
import sysconfig
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".jsonl")
MIN_CHARS = 200
"""Shorter pieces (one-line docstrings, stubs) are not pretraining-like text; they are dropped."""


class FillerError(ValueError):
    """A filler source is missing or holds no usable text."""


def _chunks(text: str, max_chars: int) -> Iterator[str]:
    """Cut text at paragraph boundaries into pieces of at most about ``max_chars``."""
    piece: list[str] = []
    size = 0
    for para in text.split("\n\n"):
        if size + len(para) > max_chars and piece:
            yield "\n\n".join(piece)
            piece, size = [], 0
        piece.append(para)
        size += len(para) + 2
    if piece:
        yield "\n\n".join(piece)


def _python_topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]


def _stdlib_docstrings() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/__init__.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        parts = [ast.get_docstring(tree) or ""]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 120:
                    parts.append(f"{node.name}\n\n{doc}")
        text = "\n\n".join(p for p in parts if p)
        if text:
            yield text


def _package_descriptions() -> Iterator[str]:
    from importlib import metadata

    seen = set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if name in seen:
            continue
        seen.add(name)
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if body.strip():
            yield body


def _user_files(path: Path) -> Iterator[str]:
    files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".jsonl":
            for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip():
                    text = json.loads(line).get("text", "")
                    if isinstance(text, str):
                        yield text
        else:
            yield file.read_text(encoding="utf-8", errors="replace")


def _raw(source: str) -> Iterable[str]:
    if source == "python-docs":
        return [*_python_topics(), *_stdlib_docstrings()]
    if source == "package-docs":
        return _package_descriptions()
    path = Path(source).expanduser()
    if not path.exists():
        raise FillerError(f"filler source {source!r} does not exist")
    return _user_files(path)


@cache
def load_filler(sources: tuple[str, ...], max_chars: int = 2000) -> tuple[str, ...]:
    """Filler documents from ``sources``, each at most about ``max_chars``, in a fixed order.

    Raises ``FillerError`` naming the source when one of them yields no usable text.
    """
    docs: list[str] = []
    for source in sources:
        found = [c.strip() for text in _raw(source) for c in _chunks(text, max_chars) if len(c.strip()) >= MIN_CHARS]
        if not found:
            raise FillerError(
                f"filler source {source!r} holds no text (need pieces of at least {MIN_CHARS} characters)"
            )
        docs += found
    return tuple(docs)
