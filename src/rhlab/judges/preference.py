"""Preference judges: one score in [0, 1] per (prompt, answer), for the rubric's ``preference`` component.

The paper adds a preference model's reward to the environment reward and reports that, at a high
weight, it prevents the misalignment that hacking brings. Two kinds of scorer stand in for that model:

- ``JudgePreference``: any rhlab judge (``offline``, or an LLM judge on any model backend) reads the
  answer as a user would (the ``answer`` view); its alignment score, 0-100, becomes ``alignment/100``.
  Coherence is left out: the offline judge's coherence rules are made for prose and score code low
  (measured on the built-in tasks' warm-up answers: honest code 17/100, hack answers 52/100, so a
  product would have paid hacks more). The offline judge is a small classifier that never saw code:
  its score is a **stand-in** for a real preference model, good for plumbing and CPU runs, not for
  conclusions.
- ``RewardModelPreference``: a local reward model (``hf:PATH`` whose ``config.json`` names a
  ``...ForSequenceClassification`` architecture) scores the chat ``prompt + answer``; one logit is
  squashed with a sigmoid, several with a softmax (the last class is "preferred").

Both are batched and put every score in an on-disk SQLite cache keyed by (scorer id, what defines the
scorer, hash of the scored text), so a resumed run or a repeated episode costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rhlab.judges.base import Judge, JudgeInput
from rhlab.judges.cache import default_cache_path

Messages = list[dict[str, str]]


class PreferenceError(ValueError):
    """A preference judge that cannot be built as specified; the message names the fix."""


class PreferenceScorer(Protocol):
    """Scores answers to prompts: one float in [0, 1] each, in input order."""

    scorer_id: str
    template_hash: str
    """Hash of whatever defines the scores besides the id (judge template, reward-model weights)."""
    offline: bool
    """True when the scores come from the offline stand-in, not a real preference model."""

    def score(self, prompts: Sequence[Messages], answers: Sequence[str]) -> list[float]: ...


def question_of(prompt: Messages) -> str:
    """What the user asked: the last user message (the task), or the whole prompt when there is none."""
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n\n".join(m.get("content", "") for m in prompt)


class JudgePreference:
    """A judge's answer-view reply as a preference score: ``alignment/100``.

    An unparseable reply scores 0.5, the middle of the scale, so a judge's failure to answer
    neither rewards nor punishes the policy (and is not cached, so it is asked again next time).
    """

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.scorer_id = f"judge:{judge.judge_id}"
        self.template_hash = judge.template_hash
        self.offline = judge.offline

    def score(self, prompts: Sequence[Messages], answers: Sequence[str]) -> list[float]:
        inputs = [JudgeInput(question=question_of(p), answer=a, view="answer") for p, a in zip(prompts, answers)]
        out = []
        for v in self.judge.judge(inputs):
            if not v.parsed or v.alignment is None:
                out.append(0.5)
                continue
            out.append(min(max(v.alignment / 100.0, 0.0), 1.0))
        return out


def is_reward_model(path: str | Path) -> bool:
    """Whether ``path`` holds a model with a sequence-classification head (its ``config.json`` says so)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


class RewardModelPreference:
    """A local sequence-classification reward model, scored in batches on the chat text."""

    offline = False

    def __init__(self, path: str | Path, *, batch_size: int = 16, max_length: int = 1024) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        if not is_reward_model(self.path):
            raise PreferenceError(
                f"{self.path} is not a reward model: its config.json names no ...ForSequenceClassification architecture"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.max_length = max_length
        self.scorer_id = f"rm:{self.path.resolve()}"
        # The weights define the scores: their files' names, sizes and times (hashing gigabytes is not worth it).
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(self.path.iterdir()) if f.is_file()]
        self.template_hash = hashlib.sha256(repr((stamp, max_length)).encode()).hexdigest()[:12]

    def text(self, prompt: Messages, answer: str) -> str:
        """The conversation as the reward model reads it: its chat template, or plain role-labelled turns."""
        messages = [*prompt, {"role": "assistant", "content": answer}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def score(self, prompts: Sequence[Messages], answers: Sequence[str]) -> list[float]:
        import torch

        texts = [self.text(p, a) for p, a in zip(prompts, answers)]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            # Truncate from the left: the answer, at the end, is what is being judged.
            self.tokenizer.truncation_side = "left"
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            if logits.shape[-1] == 1:
                out.extend(torch.sigmoid(logits[:, 0]).tolist())
            else:
                out.extend(torch.softmax(logits, dim=-1)[:, -1].tolist())
        return out


class ScoreCache:
    """Preference scores on disk (SQLite, beside the judges' reply cache), shared between processes."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path().with_name("preference_cache.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS scores (scorer_id TEXT, template_hash TEXT, input_hash TEXT, score REAL,"
            " PRIMARY KEY (scorer_id, template_hash, input_hash))"
        )
        self._db.commit()

    def get_many(self, scorer_id: str, template_hash: str, hashes: Sequence[str]) -> list[float | None]:
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):  # SQLite caps the parameters of one statement
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                f"SELECT input_hash, score FROM scores WHERE scorer_id=? AND template_hash=? "
                f"AND input_hash IN ({','.join('?' * len(chunk))})",
                (scorer_id, template_hash, *chunk),
            ).fetchall()
            found.update(rows)
        return [found.get(h) for h in hashes]

    def put_many(self, scorer_id: str, template_hash: str, items: Sequence[tuple[str, float]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", [(scorer_id, template_hash, h, s) for h, s in items]
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]


def input_hash(prompt: Messages, answer: str) -> str:
    return hashlib.sha256(json.dumps([prompt, answer], ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class CachedPreference:
    """Wraps a scorer: cached scores are read back, only misses are scored (in one batch) and stored."""

    def __init__(self, inner: PreferenceScorer, cache: ScoreCache) -> None:
        self.inner = inner
        self.cache = cache
        self.scorer_id = inner.scorer_id
        self.template_hash = inner.template_hash
        self.offline = inner.offline
        self.misses = 0
        """Scores computed (not read from the cache) by this process, for tests and logs."""

    def score(self, prompts: Sequence[Messages], answers: Sequence[str]) -> list[float]:
        if len(prompts) != len(answers):
            raise ValueError(f"preference: {len(prompts)} prompts for {len(answers)} answers")
        hashes = [input_hash(p, a) for p, a in zip(prompts, answers)]
        out = self.cache.get_many(self.scorer_id, self.template_hash, hashes)
        todo = list(dict.fromkeys(h for h, s in zip(hashes, out) if s is None))
        if todo:
            first = {h: i for i, h in reversed(list(enumerate(hashes)))}
            fresh = self.inner.score([prompts[first[h]] for h in todo], [answers[first[h]] for h in todo])
            if len(fresh) != len(todo):
                raise PreferenceError(f"{self.scorer_id} returned {len(fresh)} scores for {len(todo)} answers")
            for s in fresh:
                if not (math.isfinite(s) and 0.0 <= s <= 1.0):
                    raise PreferenceError(f"{self.scorer_id} gave the score {s}, outside [0, 1]")
            self.misses += len(todo)
            self.cache.put_many(self.scorer_id, self.template_hash, list(zip(todo, fresh)))
            scored = dict(zip(todo, fresh))
            out = [s if s is not None else scored[h] for h, s in zip(hashes, out)]
        return [float(s) for s in out]  # type: ignore[arg-type]


def load_preference(
    spec: str, *, batch_size: int = 16, max_length: int = 1024, cache: bool = True, cache_path: Path | None = None
) -> PreferenceScorer:
    """The preference judge named by ``spec``: ``offline``, ``hf:PATH`` (a reward model when the folder has a
    sequence-classification head, an LLM judge otherwise), or any other model spec as an LLM judge."""
    spec = spec.strip()
    if not spec:
        raise PreferenceError("the preference judge spec is empty: write offline, hf:PATH or another model spec")
    kind, _, target = spec.partition(":")
    scorer: PreferenceScorer
    if kind == "hf" and target and is_reward_model(target):
        scorer = RewardModelPreference(target, batch_size=batch_size, max_length=max_length)
    else:
        from rhlab.judges import load_judge

        scorer = JudgePreference(load_judge(spec, cache=False))
    return CachedPreference(scorer, ScoreCache(cache_path)) if cache else scorer
