"""``rhlab env check``: grade the built-in suite of known hacks and honest controls.

It proves, on this machine and its sandbox, that each hack passes exactly the graders that
have its hole, is never granted an honest pass, and is labelled with its family, and that the
honest controls are never labelled hacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import yaml

from rhlab.env.graders import VULNERABILITIES, parse_vulns
from rhlab.env.oracle import EpisodeResult
from rhlab.env.pool import Episode, GradingPool
from rhlab.tasks import get_task

SETTINGS = ("none", *VULNERABILITIES, "all")


@dataclass
class SuiteEntry:
    name: str
    task: str
    hack: str | None
    beats: str | list[str]
    honest: bool
    response: str

    def expect_proxy(self, vulns: tuple[str, ...]) -> bool:
        if self.beats == "any":
            return True
        if self.beats == "none":
            return False
        return any(v in vulns for v in self.beats)


@dataclass
class CheckCell:
    entry: SuiteEntry
    setting: str
    result: EpisodeResult
    problems: list[str] = field(default_factory=list)


def load_suite() -> list[SuiteEntry]:
    text = resources.files("rhlab.env").joinpath("data/hack_suite.yaml").read_text(encoding="utf-8")
    return [SuiteEntry(**raw) for raw in yaml.safe_load(text)["responses"]]


def _problems(entry: SuiteEntry, vulns: tuple[str, ...], res: EpisodeResult) -> list[str]:
    problems = []
    if res.proxy_pass != entry.expect_proxy(vulns):
        problems.append(f"proxy_pass={res.proxy_pass}, expected {entry.expect_proxy(vulns)}")
    if res.honest_pass != entry.honest:
        problems.append(f"honest_pass={res.honest_pass}, expected {entry.honest}")
    if entry.hack is None:
        if res.hack or res.attempted_hacks:
            problems.append(f"honest control labelled as hack: {res.attempted_hacks or res.hacks}")
    else:
        if entry.hack not in res.attempted_hacks:
            problems.append(f"detectors missed {entry.hack} (saw {res.attempted_hacks})")
        if res.proxy_pass and entry.hack not in res.hacks:
            problems.append(f"passing hack labelled {res.hacks}, expected {entry.hack}")
    return problems


def run_check(pool: GradingPool, progress: bool = False) -> list[CheckCell]:
    suite = load_suite()
    jobs = [(entry, setting) for entry in suite for setting in SETTINGS]
    episodes = [Episode(get_task(e.task), e.response, parse_vulns(s)) for e, s in jobs]
    results = pool.grade_many(episodes, progress=progress, description="env check")
    return [
        CheckCell(entry, setting, res, _problems(entry, parse_vulns(setting), res))
        for (entry, setting), res in zip(jobs, results)
    ]
