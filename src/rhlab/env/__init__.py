"""The hackable coding environment: response -> workspace -> vulnerable grader + honest oracle."""

from rhlab.env.detectors import HACK_TYPES, Finding, scan_workspace
from rhlab.env.graders import VULNERABILITIES, parse_vulns
from rhlab.env.oracle import EpisodeResult, grade_episode
from rhlab.env.pool import Episode, GradingPool, grade_all
from rhlab.env.workspace import Workspace, parse_response

__all__ = [
    "HACK_TYPES",
    "VULNERABILITIES",
    "Episode",
    "EpisodeResult",
    "Finding",
    "GradingPool",
    "Workspace",
    "grade_all",
    "grade_episode",
    "parse_response",
    "parse_vulns",
    "scan_workspace",
]
