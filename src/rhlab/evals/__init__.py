"""Misalignment evals, in Inspect AI's split: datasets (``data/`` + ``dataset``), a solver
(``solver``: batched generation), scorers (``scoring`` + ``rhlab.judges``), and a runner that writes
results and transcripts (``rhlab.rundir.EvalDir``).

Chat evals live here (``betley``, ``goals``, ``alignment_questions``); agentic scenarios in
``rhlab.evals.agentic`` and code sabotage in ``rhlab.evals.sabotage``. ``run_evals`` runs any mix of
them (``EvalConfig.evals`` may name groups: ``core``, ``chat``, ``agentic``, ``sabotage``, ``all``).
"""

from rhlab.evals.records import EvalResult, EvalSample, Interval, RunResults, SampleRecord, ToolCall
from rhlab.evals.runner import (
    AGENTIC_EVALS,
    ALL_EVALS,
    CHAT_EVALS,
    CORE_EVALS,
    EVAL_GROUPS,
    SABOTAGE_EVALS,
    SCENARIO_EVALS,
    EvalConfig,
    expand_evals,
    load_transcripts,
    misalignment_score,
    run_evals,
)
from rhlab.evals.scoring import Thresholds

__all__ = [
    "AGENTIC_EVALS",
    "ALL_EVALS",
    "CHAT_EVALS",
    "CORE_EVALS",
    "EVAL_GROUPS",
    "SABOTAGE_EVALS",
    "SCENARIO_EVALS",
    "EvalConfig",
    "EvalResult",
    "EvalSample",
    "Interval",
    "RunResults",
    "SampleRecord",
    "Thresholds",
    "ToolCall",
    "expand_evals",
    "load_transcripts",
    "misalignment_score",
    "run_evals",
]
