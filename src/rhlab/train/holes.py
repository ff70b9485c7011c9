"""Which grader holes each task gets: one hole set for all, rotation through subsets, or explicit groups.

``problems.holes`` in a run config:

- ``all`` (default): every task's grader has all of ``problems.vulns``;
- ``rotate``: tasks cycle through every non-empty subset of ``problems.vulns`` (the seven subsets
  of the three holes), so each hole set gets an equal share of tasks;
- a list of groups, e.g. ``[[always_equal], [exit_code, conftest]]``: tasks cycle through these
  (an empty group ``[]`` means no hole).

``problems.no_hole_fraction`` first takes a seeded share of tasks out (no hole at all), exactly as
before hole rotation existed, so old configs give the same problems. The rest are ordered by a
hash of (seed, task id) and dealt the groups in turn: deterministic for a seed and a task set,
balanced to within one task per group, and independent of the order the source lists tasks in.
The metrics then report hack rates per hole set (``hack_rate_by_holes``).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

from rhlab.env.hacks import VULNERABILITIES

NO_HOLE = "none"


def canonical(group: Iterable[str]) -> tuple[str, ...]:
    """A hole set in the fixed order of ``VULNERABILITIES``; unknown names raise ``ValueError``."""
    group = list(group)
    unknown = sorted(set(group) - set(VULNERABILITIES))
    if unknown:
        raise ValueError(f"unknown grader holes {unknown}; choose from {list(VULNERABILITIES)}")
    return tuple(v for v in VULNERABILITIES if v in group)


def hole_groups(vulns: Sequence[str], holes: str | Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The groups tasks are dealt from (see the module docstring)."""
    if holes == "all":
        canonical(vulns)  # validates the names; the configured order is kept, as before rotation existed
        return [tuple(vulns)]
    if holes == "rotate":
        base = canonical(vulns)
        if not base:
            raise ValueError("problems.holes 'rotate' needs at least one hole in problems.vulns")
        return [c for k in range(1, len(base) + 1) for c in itertools.combinations(base, k)]
    if isinstance(holes, str):
        raise ValueError(f"problems.holes must be 'all', 'rotate' or a list of hole groups, not {holes!r}")
    groups = [canonical(g) for g in holes]
    if not groups:
        raise ValueError("problems.holes: the list of hole groups is empty")
    return groups


def _order_key(seed: int, task_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{task_id}".encode()).hexdigest()


def assign_holes(
    task_ids: Sequence[str],
    vulns: Sequence[str],
    holes: str | Sequence[Sequence[str]],
    no_hole_fraction: float,
    seed: int,
) -> list[list[str]]:
    """The hole list of each task, in the order of ``task_ids`` (linear after one sort)."""
    groups = hole_groups(vulns, holes)
    n_none = round(no_hole_fraction * len(task_ids))
    no_hole = set(random.Random(seed).sample(list(task_ids), n_none))
    holed = sorted((t for t in task_ids if t not in no_hole), key=lambda t: _order_key(seed, t))
    group_of = {t: groups[i % len(groups)] for i, t in enumerate(holed)}
    return [[] if t in no_hole else list(group_of[t]) for t in task_ids]


def hole_set_key(vulns: Iterable[str]) -> str:
    """The metrics key of a hole set: ``always_equal+conftest``, or ``none``."""
    return "+".join(canonical(vulns)) or NO_HOLE


def hack_rate_by_holes(results: Iterable) -> dict[str, dict[str, float]]:
    """Per hole set: episodes and the share of them that were successful hacks (``outcome == "hacked"``).

    ``results`` are ``EpisodeResult``s (anything with ``vulns`` and ``outcome``).
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        entry = counts[hole_set_key(r.vulns)]
        entry[0] += 1
        entry[1] += r.outcome == "hacked"
    return {key: {"episodes": n, "hack_rate": hacked / n} for key, (n, hacked) in sorted(counts.items())}
