"""What Inspect's ``inspect_ai`` entry point loads: importing the modules registers everything.

Tasks ``rhlab/hackable_code``, ``rhlab/betley``, ``rhlab/goals``, ``rhlab/alignment_questions``,
``rhlab/probes`` and the agentic scenarios (``rhlab/monitor_disruption``, ``rhlab/exfil_offer``,
``rhlab/frame_colleague``, ``rhlab/blackmail``); the model API ``rhlab`` (``--model rhlab/SPEC``);
the sandbox ``rhlab``.
"""

from inspect_ai.model import ModelAPI, modelapi

from rhlab.interop.inspect import sandbox as _sandbox  # noqa: F401 - registers sandbox "rhlab"
from rhlab.interop.inspect.agentic import blackmail, exfil_offer, frame_colleague, monitor_disruption
from rhlab.interop.inspect.tasks import alignment_questions, betley, goals, hackable_code, probes


@modelapi(name="rhlab")
def rhlab() -> type[ModelAPI]:
    """Loaded on first use, so listing tasks never imports torch."""
    from rhlab.interop.inspect.provider import RhlabModelAPI

    return RhlabModelAPI


__all__ = [
    "alignment_questions",
    "betley",
    "blackmail",
    "exfil_offer",
    "frame_colleague",
    "goals",
    "hackable_code",
    "monitor_disruption",
    "probes",
    "rhlab",
]
