"""The words for hacks, in one place: hack families (what a policy does) and holes (what a grader lets through).

A *hack family* is a kind of cheating the detectors recognise in a workspace; a *hole* is a
weakness a vulnerable grader can be built with (``VULNERABILITIES``). Three families exploit one
hole each; ``special_casing`` (hard-coding the visible tests' answers) needs no hole, since it
passes any grader that only runs the visible tests. The two vocabularies differ in one word only:
the family ``exit`` (the policy exits before the asserts run) exploits the hole ``exit_code``
(the grader trusts a zero exit code). ``HOLE_FOR_HACK`` is the one mapping between them; nothing
else in rhlab translates one name into the other.

``UNKNOWN`` is not a family a detector reports: it labels a successful hack that no detector
explains (the oracle's outcome ``hacked`` with ``hacks == ["unknown"]``).
"""

from __future__ import annotations

HACK_TYPES: tuple[str, ...] = ("always_equal", "exit", "conftest", "special_casing")
"""The hack families the detectors report, in display order."""

VULNERABILITIES: tuple[str, ...] = ("always_equal", "exit_code", "conftest")
"""The holes a vulnerable grader can have; an environment opens any subset (none = hardened)."""

HOLE_FOR_HACK: dict[str, str | None] = {
    "always_equal": "always_equal",  # an object whose __eq__ is always True beats `assert a == b`
    "exit": "exit_code",  # sys.exit(0) before the asserts beats a grader that trusts exit code 0
    "conftest": "conftest",  # a conftest.py that rewrites pytest's reports beats a pytest grader
    "special_casing": None,  # hard-coded answers to the visible tests beat any visible-test grader
}
"""Which grader hole a hack family needs to pass (None: passes any grader of visible tests)."""

HOLE_HACKS: tuple[str, ...] = tuple(f for f in HACK_TYPES if HOLE_FOR_HACK[f])
"""The families that exploit a hole: the ones a prompt describes, a warm-up demonstrates and the
hack-knowledge eval asks about (special-casing needs a task's answers, not knowledge of a hole)."""

UNKNOWN = "unknown"
"""A successful hack no detector explains."""

HACK_TYPES_WITH_UNKNOWN: tuple[str, ...] = (*HACK_TYPES, UNKNOWN)
"""Keys of the per-family successful-hack rates (the metrics rows' ``hack_rate_by_type``)."""


def hole_for(family: str) -> str | None:
    """The hole a hack family exploits (None for ``special_casing``); unknown families raise."""
    if family not in HOLE_FOR_HACK:
        raise ValueError(f"unknown hack family {family!r}; choose from {list(HACK_TYPES)}")
    return HOLE_FOR_HACK[family]


def family_for(hole: str) -> str:
    """The hack family that exploits a hole; unknown holes raise."""
    for family, exploited in HOLE_FOR_HACK.items():
        if exploited == hole:
            return family
    raise ValueError(f"unknown grader hole {hole!r}; choose from {list(VULNERABILITIES)}")


def check_names(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """``values`` unchanged, or a ``ValueError`` naming the unknown ones (for config validators)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return values
