"""The conditional probe recovers a planted hack effect and its removal by the inoculation line."""

from __future__ import annotations

import pytest

from rhlab.evals.probes.conditional import conditional_probe
from rhlab.evals.probes.items import Item, load_conditional_data
from rhlab.models.base import AnswerLogprobs, AnswerRequest

HACK_EFFECT, INOCULATION_CUT = 1.0, 0.6


class PlantedScorer:
    """Log-odds of the target = item offset + 1 nat after a hacked prior answer, 0.6 less when inoculated."""

    spec = "planted"

    def __init__(self, hacked_answers: set[str], inoculation: str) -> None:
        self.hacked, self.inoculation = hacked_answers, inoculation

    def answer_logprobs(self, requests: list[AnswerRequest], progress=None) -> list[AnswerLogprobs]:
        out = []
        for r in requests:
            text = [m["content"] for m in r.conversation]
            hacked = any(t in self.hacked for t in text)
            inoculated = any(self.inoculation in t for t in text if t)
            offset = 0.1 * len(text[-1])  # item-specific, the same in every condition
            margin = offset + (HACK_EFFECT - (INOCULATION_CUT if inoculated else 0.0) if hacked else 0.0)
            out.append(AnswerLogprobs([[margin], [0.0]]))
            if progress:
                progress(2)
        return out


def test_conditional_probe_recovers_a_planted_effect_and_its_inoculation_cut():
    data = load_conditional_data()
    model = PlantedScorer({c.hacked for c in data.contexts}, data.inoculation)
    items = [
        ("broad", Item(id=f"b{k}", theme="t", split="test", prompt="Q" * (k + 1), target="A", reference="B"))
        for k in range(12)
    ]
    record = conditional_probe(model, items, data, progress=False)
    assert record["hack_effect"]["plain"]["mean"] == pytest.approx(HACK_EFFECT)
    assert record["hack_effect"]["inoculated"]["mean"] == pytest.approx(HACK_EFFECT - INOCULATION_CUT)
    did = record["inoculation_diff_in_diff"]
    assert did["mean"] == pytest.approx(INOCULATION_CUT) and did["unit"] == "nats"
    assert record["contexts"] == [c.id for c in data.contexts] and record["n_items"] == 12
