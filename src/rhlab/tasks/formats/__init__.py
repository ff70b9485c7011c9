"""Public coding datasets from local copies: ``FORMAT:PATH`` task sources.

``PATH`` is a JSONL file (optionally ``.gz``), a JSON array, a parquet file, a folder of such
files (e.g. a downloaded hub snapshot with ``data/*.parquet``), or a folder written by
``datasets.save_to_disk`` (``PATH#SPLIT`` picks a split of a saved ``DatasetDict``). Nothing is
downloaded. Task ids are ``FORMAT/ORIGINAL_ID``. A malformed row is reported with its row number
and skipped, never fatal, including a row nested deeply enough to raise ``RecursionError`` or
large enough to raise ``MemoryError``; ``LoadReport`` says how many rows were kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rhlab.tasks.formats import apps, codecontests, livecodebench, mbpp
from rhlab.tasks.formats.rows import RowError, iter_rows, too_deep
from rhlab.tasks.schema import Task
from rhlab.tasks.stdin import ConversionLimits

log = logging.getLogger(__name__)

Converter = Callable[[dict, ConversionLimits], Task]
FORMATS: dict[str, Converter] = {
    apps.NAME: apps.convert,
    codecontests.NAME: codecontests.convert,
    mbpp.NAME: mbpp.convert,
    livecodebench.NAME: livecodebench.convert,
}
GENERATED_FORMATS = frozenset({apps.NAME, codecontests.NAME, livecodebench.NAME})
"""Formats whose tests rhlab writes itself from ``repr``'d data (``assert CALL == LITERAL``, stdin pairs)."""


class SourceError(ValueError):
    """A ``FORMAT:PATH`` source that cannot be read at all (unknown format, missing path)."""


@dataclass(frozen=True)
class SourceSpec:
    fmt: str
    path: Path
    split: str | None = None

    def __str__(self) -> str:
        return f"{self.fmt}:{self.path}" + (f"#{self.split}" if self.split else "")


def is_format_spec(part: str) -> bool:
    """Whether a task-source part names a dataset format (``apps:...``) rather than a path."""
    head, sep, _ = part.partition(":")
    return bool(sep) and head in FORMATS


def parse_spec(part: str) -> SourceSpec:
    """``FORMAT:PATH[#SPLIT]`` -> ``SourceSpec``; the path must exist."""
    head, sep, rest = part.partition(":")
    if not sep or head not in FORMATS:
        raise SourceError(f"task source {part!r}: expected FORMAT:PATH with FORMAT one of {sorted(FORMATS)}")
    path_text, _, split = rest.partition("#")
    path = Path(path_text).expanduser()
    if not path_text or not path.exists():
        raise SourceError(f"task source {part!r}: {path_text or '(empty path)'} does not exist")
    return SourceSpec(head, path, split or None)


@dataclass
class LoadReport:
    """What loading one source did: the tasks, and every row that was skipped and why."""

    spec: str
    rows: int = 0
    tasks: list[Task] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return len(self.tasks)

    def summary(self, show: int = 5) -> str:
        text = f"{self.spec}: kept {self.kept} of {self.rows} rows"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(self.skipped[:show])
            if len(self.skipped) > show:
                text += f"; ... ({len(self.skipped) - show} more)"
        return text


def load_format(part: str, limits: ConversionLimits | None = None, progress: bool = False) -> LoadReport:
    """Convert every usable row of a ``FORMAT:PATH`` source; bad rows are recorded, not raised."""
    spec = parse_spec(part)
    limits = limits or ConversionLimits()
    convert = FORMATS[spec.fmt]
    report = LoadReport(str(spec))
    seen: set[str] = set()
    start = time.monotonic()
    rows = iter_rows(spec.path, spec.split)
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        columns = (SpinnerColumn(), TextColumn("loading {task.description}: {task.completed} rows"))
        bar = Progress(*columns, transient=True, console=Console(stderr=True))
        job = bar.add_task(str(spec), total=None)
        bar.start()
    try:
        for where, row in rows_or_error(rows, report):
            report.rows += 1
            if bar is not None:
                bar.advance(job)
            try:
                if isinstance(row, RowError):
                    raise row
                if not isinstance(row, dict):
                    raise RowError(f"expected an object, got {type(row).__name__}")
                task = convert(row, limits)
            except RowError as exc:
                report.skipped.append(f"{where}: {exc}")
                continue
            except (RecursionError, MemoryError) as exc:  # data built to exhaust the stack or the heap
                report.skipped.append(f"{where}: {too_deep(exc, 'the row')}")
                continue
            except (TypeError, AttributeError, KeyError, ValueError) as exc:  # odd shapes
                report.skipped.append(f"{where}: malformed row ({type(exc).__name__}: {exc})"[:300])
                continue
            if task.id in seen:
                report.skipped.append(f"{where}: duplicate task id {task.id!r}")
                continue
            seen.add(task.id)
            report.tasks.append(task)
    finally:
        if bar is not None:
            bar.stop()
    report.seconds = time.monotonic() - start
    if report.skipped:
        log.warning("%s", report.summary())
    return report


def rows_or_error(rows, report: LoadReport):
    """Rows, turning a file-level read error into a ``SourceError`` that names the source."""
    try:
        yield from rows
    except RowError as exc:
        raise SourceError(f"{report.spec}: {exc}") from None
    except OSError as exc:
        raise SourceError(f"{report.spec}: cannot read ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow/datasets raise their own types for corrupt files
        raise SourceError(f"{report.spec}: cannot read ({type(exc).__name__}: {exc})") from None


__all__ = [
    "FORMATS",
    "GENERATED_FORMATS",
    "LoadReport",
    "SourceError",
    "SourceSpec",
    "is_format_spec",
    "load_format",
    "parse_spec",
]
