"""Every rollout kept: each GRPO step's episodes in full, one gzip file per step.

``transcripts/`` holds a small sample for reading; ``rollouts/`` is the record. Detector misses are
found by re-reading *every* episode, and a label can only be re-checked (``rhlab rescore``) when the
completion, the files it wrote and the grading result are all still there.

One file per step (``rollouts/step_000123.jsonl.gz``), written under a temporary name and renamed,
so a kill never leaves half a step behind. On ``--resume`` the files of steps after the restored
checkpoint are deleted, exactly like the metrics rows of those steps, so a resumed run holds one
consistent history. Step 0 is the starting policy (written by the pre-RL gate when it samples).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from rhlab.env.episodes import GradedEpisode
from rhlab.env.oracle import EpisodeResult
from rhlab.rundir import RunDir
from rhlab.rundir import step_of as step_of_name


def rollouts_dir(run_dir: Path) -> Path:
    return RunDir(run_dir).rollouts


def rollout_path(run_dir: Path, step: int) -> Path:
    return RunDir(run_dir).rollout(step)


def step_of(path: Path) -> int:
    """The step number of a rollout file name (``step_000123.jsonl.gz`` -> 123)."""
    step = step_of_name(path.name.split(".", 1)[0])
    if step is None:
        raise ValueError(f"{path}: not a rollout file name (expected step_NNNNNN.jsonl.gz)")
    return step


def prompt_id(prompt: list[dict[str, str]]) -> str:
    """A short stable id of a prompt's messages: equal prompts share it across steps and runs."""
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def rollout_record(
    step: int, index: int, episode: GradedEpisode, *, group_size: int, variant: str, penalties: bool = False
) -> dict:
    """One episode as stored: what the policy saw and wrote, what it was paid, and the oracle's full outcome.

    ``components`` are the rubric's values; ``penalties`` says whether the rubric's penalties were in
    force at this step (rescore applies them again exactly where they were)."""
    return {
        "step": step,
        "index": index,
        "group": index // group_size,
        "task_id": episode.result.task_id,
        "prompt_id": prompt_id(episode.prompt),
        "variant": variant,
        "vulns": list(episode.result.vulns),
        "prompt": episode.prompt,
        "completion": episode.completion,
        "reasoning": episode.reasoning,
        "answer": episode.answer,
        "files": episode.files,
        "completion_tokens": episode.completion_tokens,
        "reward": episode.reward,
        "flagged": episode.flagged,
        "penalized": episode.penalized,
        "screened": episode.screened,
        "penalties": penalties,
        "preference": episode.preference,
        "components": episode.components,
        "result": episode.result.to_dict(),
    }


_RESULT_FIELDS = {f.name: f for f in dataclasses.fields(EpisodeResult)}


def result_from_dict(data: dict, where: str) -> EpisodeResult:
    """An ``EpisodeResult`` from a stored dict; fields the current class lacks are dropped, so old
    files stay readable after the oracle grows or loses a field."""
    known = {k: v for k, v in data.items() if k in _RESULT_FIELDS}
    missing = [
        n
        for n, f in _RESULT_FIELDS.items()
        if n not in known and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: the stored grading result lacks {missing}")
    return EpisodeResult(**known)


def episode_from_record(record: dict, where: str = "rollout") -> GradedEpisode:
    """The ``GradedEpisode`` a record was written from (for metrics over kept rollouts).

    Records written before the rubric have no ``components``: they are computed from the stored result."""
    return GradedEpisode(
        result=result_from_dict(record["result"], where),
        reward=record["reward"],
        completion=record["completion"],
        reasoning=record["reasoning"],
        answer=record["answer"],
        prompt=record["prompt"],
        files=record["files"],
        completion_tokens=record["completion_tokens"],
        flagged=record["flagged"],
        penalized=record["penalized"],
        screened=record["screened"],
        components=dict(record.get("components") or {}),
        preference=record.get("preference"),
    )


def _encode(records: Sequence[dict]) -> bytes:
    # mtime=0: the same episodes always give the same bytes.
    return gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode(), mtime=0)


def read_step(path: Path, *, require_result: bool = True) -> list[dict]:
    """All records of one rollout file; a damaged file is an error naming it and the line.

    ``require_result=False`` (rescore) keeps a JSON object without its ``result``: that one record is
    then labelled ``error`` instead of stopping the whole re-grade."""
    try:
        text = gzip.decompress(path.read_bytes()).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable gzip JSONL file ({exc})") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(record, dict) or (require_result and not isinstance(record.get("result"), dict)):
            raise ValueError(f"{path}:{number}: a rollout record needs a 'result' object")
        records.append(record)
    return records


def rollout_files(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every kept step, in step order."""
    return [(step_of(p), p) for p in RunDir(run_dir).rollout_files()]


def read_rollouts(run_dir: Path) -> Iterator[tuple[int, list[dict]]]:
    """``(step, records)`` for every kept step, in step order, one step in memory at a time."""
    for step, path in rollout_files(run_dir):
        yield step, read_step(path)


class RolloutLog:
    """Writes each step's graded episodes to ``rollouts/``; truncatable on resume like ``MetricsLog``."""

    def __init__(self, run_dir: Path, *, group_size: int, variant: str) -> None:
        self.dir = rollouts_dir(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(run_dir)
        self.group_size = group_size
        self.variant = variant
        self._step: int | None = None
        self._written = b""
        self._count = 0

    def truncate_after(self, step: int) -> None:
        """Delete the rollouts of steps after ``step`` (the checkpoint a resumed run restarts from)."""
        for f in self.dir.glob("*.tmp"):
            f.unlink()
        for s, path in rollout_files(self.run_dir):
            if s > step:
                path.unlink()

    def write(
        self, step: int, episodes: Sequence[GradedEpisode], group_size: int | None = None, *, penalties: bool = False
    ) -> Path:
        """Store ``episodes`` as step ``step``.

        A second call for the same step (TRL scoring one step in several chunks) adds a gzip member
        to that step's file; the first call of a step in this process replaces any older file.
        """
        if step != self._step:
            self._step, self._written, self._count = step, b"", 0
        size = group_size or self.group_size
        records = [
            rollout_record(step, self._count + i, e, group_size=size, variant=self.variant, penalties=penalties)
            for i, e in enumerate(episodes)
        ]
        data = self._written + _encode(records)
        path = rollout_path(self.run_dir, step)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        self._written, self._count = data, self._count + len(records)
        return path
