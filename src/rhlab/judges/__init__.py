"""Judges: a backend + a prompt template + a parser into a structured ``JudgeReply``.

``load_judge("offline")`` gives the CPU classifier judge; any model spec (``openai:MODEL@URL``,
``hf:PATH``, ``vllm:PATH``, ``embedded``, ``scripted``) gives an LLM judge on that backend. Both are
wrapped in the on-disk reply cache unless ``cache=False``.
"""

from __future__ import annotations

from pathlib import Path

from rhlab.judges.base import GOAL_CATEGORIES, LABELS, OUTCOMES, Judge, JudgeInput, JudgeReply, outcome
from rhlab.judges.cache import CachedJudge, VerdictCache, default_cache_path

OFFLINE_SPEC = "offline"


def load_judge(spec: str = OFFLINE_SPEC, *, cache: bool = True, cache_path: Path | None = None) -> Judge:
    """Build the judge named by ``spec``; model loading is lazy so ``offline`` never touches backends."""
    judge: Judge
    if spec.strip() == OFFLINE_SPEC:
        from rhlab.judges.offline import OfflineJudge

        judge = OfflineJudge()
    else:
        from rhlab.judges.llm import LLMJudge
        from rhlab.models import load_model

        judge = LLMJudge(load_model(spec))
    return CachedJudge(judge, VerdictCache(cache_path)) if cache else judge


__all__ = [
    "GOAL_CATEGORIES",
    "LABELS",
    "OFFLINE_SPEC",
    "OUTCOMES",
    "CachedJudge",
    "Judge",
    "JudgeInput",
    "JudgeReply",
    "VerdictCache",
    "default_cache_path",
    "load_judge",
    "outcome",
]
