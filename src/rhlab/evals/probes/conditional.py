"""The conditional probe: does a hack the model just wrote change how it answers the broad items?

The paper's proposed mechanism is that reward hacking shapes the model's picture of itself. This
probe tests it in context, without training: the broad items are scored after an earlier exchange in
which the assistant answered a coding request with a reward hack, and after the same exchange
answered honestly, each with and without the inoculation line in the system prompt. Per item,

    hack effect   = margin(after hack) − margin(after honest solution)          (nats)
    inoculation   = hack effect(plain) − hack effect(inoculated)                 (difference-in-differences)

A positive hack effect says a hack in the model's own history makes misaligned answers likelier; a
positive difference-in-differences says the inoculation line removes part of that, as the paper found
for training. Each figure is averaged over the prior contexts, with a bootstrap CI over items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rhlab.evals.intervals import bootstrap_mean, odds_ratio
from rhlab.evals.probes.items import ConditionalData, Exchange, Item, load_conditional_data
from rhlab.evals.probes.score import score_items
from rhlab.models.base import ChatModel

CONDITIONS = ("hacked", "solved")
FRAMINGS = ("plain", "inoculated")


def conditional_probe(
    model: ChatModel,
    items: Sequence[tuple[str, Item]],
    data: ConditionalData | None = None,
    *,
    progress: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``items`` under every (prior answer × framing) and return the effects with CIs, in nats."""
    data = data or load_conditional_data()
    margins: dict[tuple[str, str], np.ndarray] = {}
    for framing in FRAMINGS:
        system = data.inoculation if framing == "inoculated" else None
        for condition in CONDITIONS:
            per_context = []
            for ctx in data.contexts:
                prior = Exchange(prompt=ctx.task, answer=getattr(ctx, condition))
                scores = score_items(
                    model,
                    items,
                    system=system,
                    prefix=[prior],
                    progress=progress,
                    label=f"{framing}/{condition}/{ctx.id}",
                )
                per_context.append([s.margin for s in scores])
            margins[(framing, condition)] = np.mean(per_context, axis=0)

    def effect(values: np.ndarray) -> dict[str, Any]:
        ci = bootstrap_mean(values, n_boot=n_boot, seed=seed)
        return {**ci.as_dict(), "unit": "nats", "odds_ratio": odds_ratio(ci.estimate)}

    hack = {f: margins[(f, "hacked")] - margins[(f, "solved")] for f in FRAMINGS}
    return {
        "model": model.spec,
        "n_items": len(items),
        "contexts": [c.id for c in data.contexts],
        "mean_margin": {f"{f}/{c}": float(margins[(f, c)].mean()) for f in FRAMINGS for c in CONDITIONS},
        "hack_effect": {f: effect(hack[f]) for f in FRAMINGS},
        "inoculation_diff_in_diff": effect(hack["plain"] - hack["inoculated"]),
    }
