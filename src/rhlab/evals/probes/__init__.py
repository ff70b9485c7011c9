"""Paired log-odds probe battery: judge-free, deterministic misalignment measurement (docs/evals.md).

Light at import time: torch and transformers load only when a model is scored.
"""

from rhlab.evals.probes.compare import compare_results, probe_summary
from rhlab.evals.probes.config import ProbeConfig
from rhlab.evals.probes.items import SUBSCALES, Item, ProbeDataError, Subscale, load_gate_data, load_subscale
from rhlab.evals.probes.score import ItemScore, probe_results, run_probes, score_items
from rhlab.rundir import probes_path

__all__ = [
    "SUBSCALES",
    "Item",
    "ItemScore",
    "ProbeConfig",
    "ProbeDataError",
    "Subscale",
    "compare_results",
    "load_gate_data",
    "load_subscale",
    "probe_results",
    "probe_summary",
    "probes_path",
    "run_probes",
    "score_items",
]
