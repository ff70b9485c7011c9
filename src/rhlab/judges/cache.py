"""On-disk reply cache keyed by (judge id, template hash, input hash), so re-scoring is free.

SQLite because it is in the standard library, survives interrupted runs and is safe to share
between processes. Only parsed replies are stored: an unparseable reply is retried on the next run.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from rhlab.judges.base import Judge, JudgeInput, JudgeReply


def default_cache_path() -> Path:
    """``$RHLAB_CACHE/judge_cache.sqlite`` (default ``~/.cache/rhlab``)."""
    root = Path(os.environ.get("RHLAB_CACHE", Path.home() / ".cache" / "rhlab"))
    return root / "judge_cache.sqlite"


class VerdictCache:
    """A tiny key-value store of replies."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (judge_id TEXT, template_hash TEXT, input_hash TEXT,"
            " reply TEXT, PRIMARY KEY (judge_id, template_hash, input_hash))"
        )
        self._db.commit()

    def get(self, judge_id: str, template_hash: str, input_hash: str) -> JudgeReply | None:
        row = self._db.execute(
            "SELECT reply FROM replies WHERE judge_id=? AND template_hash=? AND input_hash=?",
            (judge_id, template_hash, input_hash),
        ).fetchone()
        return JudgeReply.model_validate_json(row[0]) if row else None

    def put(self, judge_id: str, template_hash: str, input_hash: str, reply: JudgeReply) -> None:
        self.put_many(judge_id, template_hash, [(input_hash, reply)])

    def put_many(self, judge_id: str, template_hash: str, items: list[tuple[str, JudgeReply]]) -> None:
        """One transaction for a whole batch: per-row commits would dominate offline judging."""
        self._db.executemany(
            "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
            [(judge_id, template_hash, h, v.model_dump_json()) for h, v in items],
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedJudge:
    """Wraps a judge: cache hits are returned as they are, only misses reach the inner judge."""

    def __init__(self, inner: Judge, cache: VerdictCache) -> None:
        self.inner = inner
        self.cache = cache
        self.judge_id = inner.judge_id
        self.offline = inner.offline
        self.template_hash = inner.template_hash

    def judge(self, inputs: Sequence[JudgeInput]) -> list[JudgeReply]:
        hashes = [x.content_hash() for x in inputs]
        out: list[JudgeReply | None] = [self.cache.get(self.judge_id, self.template_hash, h) for h in hashes]
        misses = [i for i, v in enumerate(out) if v is None]
        for i, v in enumerate(out):
            if v is not None:
                out[i] = v.model_copy(update={"cached": True})
        if misses:
            fresh = self.inner.judge([inputs[i] for i in misses])
            for i, reply in zip(misses, fresh, strict=True):
                out[i] = reply
            self.cache.put_many(
                self.judge_id,
                self.template_hash,
                [(hashes[i], v) for i, v in zip(misses, fresh, strict=True) if v.parsed],
            )
        return [v for v in out if v is not None]
