"""Misalignment evals, in Inspect AI's split: datasets (``data/`` + ``dataset``), a solver
(``solver``: batched generation), scorers (``scoring`` + ``rhlab.judges``), and a runner that writes
``results.json`` and ``transcripts.jsonl``.

Chat evals live here (``betley``, ``goals``, ``alignment_questions``); agentic scenarios will live
in ``rhlab.evals.agentic`` and code sabotage in ``rhlab.evals.sabotage``.
"""

from rhlab.evals.records import EvalResult, EvalSample, Rate, RunResults, SampleRecord
from rhlab.evals.runner import (
    AGENTIC_EVALS,
    CHAT_EVALS,
    CORE_EVALS,
    EvalConfig,
    load_transcripts,
    misalignment_score,
    run_evals,
)
from rhlab.evals.scoring import Thresholds

__all__ = [
    "AGENTIC_EVALS",
    "CHAT_EVALS",
    "CORE_EVALS",
    "EvalConfig",
    "EvalResult",
    "EvalSample",
    "Rate",
    "RunResults",
    "SampleRecord",
    "Thresholds",
    "load_transcripts",
    "misalignment_score",
    "run_evals",
]
