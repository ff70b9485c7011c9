"""Minimal-pair rules for probe items, checked and counted (``rhlab probe check-items``).

A forced choice measures disposition only when the two answers differ in the disposition and in
little else. Wording, length and where a negation sits otherwise decide the choice (the pilot found
most items saturated by surface form). The rules, each counted per subscale:

- ``calibrated``: |margin| <= 3 nats at the start policy (needs its probes.json), so a shift can show;
- ``tokens``: the answers' token counts differ by at most 1 (needs the start policy's probes.json;
  the robust regression carries a Δtoken covariate for the items that break it);
- ``shared_words``: at least half of the longer answer's words are shared with the other answer;
- ``negation_side``: across a subscale's negation pairs (one answer negated, the other not), the
  negation sits on the target side in about half of them (reported as a share, judged per subscale).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rhlab.evals.probes.items import Item

CALIBRATED_NATS = 3.0
"""An item whose start-policy |margin| is above this is saturated for practical purposes (P < 5 % or > 95 %)."""
MAX_TOKEN_DIFFERENCE = 1
MIN_SHARED_WORDS = 0.5
NEGATION_BALANCE = (0.3, 0.7)
"""A subscale's share of negation pairs negated on the target side must fall in this range."""
_NEGATIONS = re.compile(r"\b(not|no|never|n't|nothing|nobody|none|neither|nor|won't|don't|can't|cannot)\b|n't\b", re.I)
_WORD = re.compile(r"[a-z']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shared_word_share(a: str, b: str) -> float:
    """Share of the longer answer's words that also occur in the other (multiset overlap)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    pool = list(wb)
    shared = 0
    for w in wa:
        if w in pool:
            pool.remove(w)
            shared += 1
    return shared / max(len(wa), len(wb))


def negation_side(item: Item) -> str | None:
    """``target``/``reference`` when only that answer carries a negation; ``None`` when neither or both do."""
    t, r = bool(_NEGATIONS.search(item.target)), bool(_NEGATIONS.search(item.reference))
    if t == r:
        return None
    return "target" if t else "reference"


def check_items(items: Sequence[tuple[str, Item]], start: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per subscale: how many items break each rule, which ones, and the negation balance."""
    rows = {f"{r['subscale']}/{r['id']}": r for r in (start or {}).get("items", [])}
    out: dict[str, dict[str, Any]] = {}
    for subscale, item in items:
        entry = out.setdefault(
            subscale,
            {
                "n_items": 0,
                "violations": {"calibrated": [], "tokens": [], "shared_words": []},
                "negation_pairs": 0,
                "negation_on_target": 0,
                "scored_at_start": 0,
                "measured_at": (start or {}).get("model"),
            },
        )
        entry["n_items"] += 1
        violations = entry["violations"]
        if shared_word_share(item.target, item.reference) < MIN_SHARED_WORDS:
            violations["shared_words"].append(item.id)
        side = negation_side(item)
        if side is not None:
            entry["negation_pairs"] += 1
            entry["negation_on_target"] += side == "target"
        row = rows.get(f"{subscale}/{item.id}")
        if row is not None:
            entry["scored_at_start"] += 1
            if abs(row["margin"]) > CALIBRATED_NATS:
                violations["calibrated"].append(item.id)
            if abs(row.get("n_tokens_target", 0) - row.get("n_tokens_reference", 0)) > MAX_TOKEN_DIFFERENCE:
                violations["tokens"].append(item.id)
    for entry in out.values():
        pairs = entry["negation_pairs"]
        share = entry["negation_on_target"] / pairs if pairs else None
        entry["negation_target_share"] = share
        entry["negation_balanced"] = share is None or NEGATION_BALANCE[0] <= share <= NEGATION_BALANCE[1]
        entry["counts"] = {k: len(v) for k, v in entry["violations"].items()}
        ids = set().union(*entry["violations"].values())
        entry["items_breaking_any_rule"] = len(ids)
        # calibration and token counts cover only the items the start file scored (a file from a
        # run with fewer subscales says nothing about the rest: "not scored", not "0 breaks")
        entry["needs_start_results"] = entry["scored_at_start"] < entry["n_items"]
    return out
