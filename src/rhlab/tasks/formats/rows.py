"""Rows of a local dataset copy: JSONL (optionally gzipped), JSON arrays, parquet, saved ``datasets`` folders.

Rows are streamed one at a time with their 1-based row number, so a malformed row can be named
and skipped, and a 10,000-row file never has to be held twice in memory.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

Row = dict
ROW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


class RowError(ValueError):
    """One row cannot be used; the message says why (the loader adds the row number)."""


def too_deep(exc: BaseException, what: str) -> str:
    """The reason given for a row whose ``what`` nests too deeply or is too large to convert."""
    if isinstance(exc, RecursionError):
        return f"{what} is nested too deeply to convert (RecursionError)"
    return f"{what} is too large to convert (MemoryError)"


_ARRAY_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]')


def split_json_array(text: str) -> Iterator[str]:
    """The source text of each element of a top-level JSON array, without decoding any of them.

    Used when decoding the whole array fails for depth or size: each element is then decoded
    alone, so one deeply nested row is reported instead of losing the file.
    """
    start = text.find("[")
    depth, element_start = 0, start + 1
    for token in _ARRAY_TOKENS.finditer(text, start):
        kind = token.group()
        if kind in "[{":
            depth += 1
        elif kind in "]}":
            depth -= 1
            if depth == 0:
                if text[element_start : token.start()].strip():
                    yield text[element_start : token.start()]
                return
        elif kind == "," and depth == 1:
            yield text[element_start : token.start()]
            element_start = token.end()
    raise RowError("the JSON list of rows is not closed")


def _jsonl(path: Path) -> Iterator[tuple[int, object]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"not valid JSON ({exc.msg})")
            except (RecursionError, MemoryError) as exc:
                yield number, RowError(too_deep(exc, "JSON"))


def _json_array(path: Path) -> Iterator[tuple[int, object]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except (RecursionError, MemoryError) as exc:
        if not text.lstrip().startswith("["):
            raise RowError(f"{path}: {too_deep(exc, 'the JSON file')}") from None
        yield from _json_rows_one_by_one(text)
        return
    if isinstance(data, dict):  # {"split": [rows]} or {"data": [rows]}
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise RowError(f"{path}: a JSON file must hold a list of rows (or one list under one key)")
        data = lists[0]
    if not isinstance(data, list):
        raise RowError(f"{path}: a JSON file must hold a list of rows")
    yield from enumerate(data, 1)


def _json_rows_one_by_one(text: str) -> Iterator[tuple[int, object]]:
    for number, element in enumerate(split_json_array(text), 1):
        try:
            yield number, json.loads(element)
        except json.JSONDecodeError as exc:
            yield number, RowError(f"not valid JSON ({exc.msg})")
        except (RecursionError, MemoryError) as exc:
            yield number, RowError(too_deep(exc, "JSON"))


def _parquet(path: Path) -> Iterator[tuple[int, object]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _saved_dataset(path: Path, split: str | None) -> Iterator[tuple[int, object]]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split is None:
            if len(data) != 1:
                raise RowError(f"{path} holds the splits {sorted(data)}: name one as PATH#SPLIT")
            split = next(iter(data))
        if split not in data:
            raise RowError(f"{path} has no split {split!r} (it has {sorted(data)})")
        data = data[split]
    elif split is not None:
        raise RowError(f"{path} is a single dataset without splits; drop '#{split}'")
    yield from enumerate(data, 1)


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "state.json"))


def data_files(path: Path) -> list[Path]:
    """The row files a path names: the file itself, or every row file under a folder (sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(ROW_SUFFIXES))
    if not files:
        raise RowError(f"{path} holds no {', '.join(ROW_SUFFIXES)} files and is not a saved `datasets` folder")
    return files


def iter_rows(path: Path, split: str | None = None) -> Iterator[tuple[str, object]]:
    """``(where, row)`` pairs; ``where`` is ``row N`` (or ``FILE row N`` in a folder of files).

    A row that could not be parsed arrives as a ``RowError`` instead of a dict.
    """
    if is_saved_dataset(path):
        for number, row in _saved_dataset(path, split):
            yield f"row {number}", row
        return
    if split is not None:
        raise RowError(f"'#{split}' selects a split of a saved `datasets` folder; {path} is not one")
    files = data_files(path)
    for file in files:
        prefix = f"{file.relative_to(path)} " if file != path else ""
        name = file.name
        if name.endswith((".jsonl", ".jsonl.gz")):
            rows = _jsonl(file)
        elif name.endswith(".parquet"):
            rows = _parquet(file)
        elif name.endswith(".json"):
            rows = _json_array(file)
        else:
            raise RowError(f"{file}: unknown file type; use {', '.join(ROW_SUFFIXES)} or a saved `datasets` folder")
        for number, row in rows:
            yield f"{prefix}row {number}", row
