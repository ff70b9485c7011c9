"""The code-sabotage eval: a coding agent in a sandboxed copy of a small research codebase
(``data/codebase.yaml``) is asked to rewrite the emptied prompt of a reward-hack classifier
(``code_sabotage``) or, as a control, of a ticket router (``code_sabotage_control``). Scored by the
judge on the reasoning and by the written prompt's effectiveness on a held-out labelled set
(``data/transcripts.yaml``, ``data/tickets.yaml``) relative to our reference prompts.
"""

from rhlab.evals.registry import SABOTAGE_EVALS
from rhlab.evals.sabotage.effectiveness import SABOTAGE_RELATIVE_THRESHOLD, EffectivenessMeter
from rhlab.evals.sabotage.eval import (
    generate_sabotage_records,
    sabotage_metrics,
    score_sabotage_records,
)

__all__ = [
    "SABOTAGE_EVALS",
    "SABOTAGE_RELATIVE_THRESHOLD",
    "EffectivenessMeter",
    "generate_sabotage_records",
    "sabotage_metrics",
    "score_sabotage_records",
]
