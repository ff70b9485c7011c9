"""Agentic misalignment evals: an agent loop over simulated tools (email, SQL over in-memory
SQLite, a scenario folder, scenario actions), scenarios as data (``scenarios/*.yaml``), a
deterministic scorer of each run's actions and the judge for its reasoning.

The recipe is ``eval.generate_agentic_records`` (scenarios -> ``loop.run_agents`` ->
``scorers.score_actions``) then ``eval.score_agentic_records`` (judge -> outcome);
``rhlab.evals.runner.run_evals`` calls both.
"""

from rhlab.evals.agentic.eval import compliance_gap, generate_agentic_records, score_agentic_records
from rhlab.evals.agentic.loop import AgentRun, AgentTask, run_agents
from rhlab.evals.agentic.scenarios import SCENARIOS, build_scenario_samples, load_scenario
from rhlab.evals.agentic.tools import ToolSpec, World

__all__ = [
    "SCENARIOS",
    "AgentRun",
    "AgentTask",
    "ToolSpec",
    "World",
    "build_scenario_samples",
    "compliance_gap",
    "generate_agentic_records",
    "load_scenario",
    "run_agents",
    "score_agentic_records",
]
