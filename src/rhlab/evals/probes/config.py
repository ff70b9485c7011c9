"""Probe settings shared by the CLI and the pipeline (``evaluation.probes`` in an experiment config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rhlab.strict import Strict


class ProbeConfig(Strict):
    """Which items to score at each checkpoint, and the margin a null is stated at."""

    enabled: bool = True
    subscales: list[str] | None = None
    """Subscales to score; ``None`` means every shipped one."""
    split: Literal["dev", "test", "all"] = "test"
    margin: float = Field(default=3.0, gt=0, le=50)
    """Equivalence margin m in probability points: ``null within ±m`` needs TOST to pass at this m."""
    primary: tuple[str, str] | None = None
    """The contrast ``A - B`` the experiment's verdict is computed on (default: see ``probe_summary``)."""
    gates: str | None = None
    """``gates.json`` written by ``rhlab probe validate`` for this model (default: EXPERIMENT/probe_gates.json).
    Without a file whose gates all passed, no comparison can be called an ``effect``."""
    batch_size: int = Field(default=16, ge=1)
    neutral_nll: bool = True
    """Also score the neutral chat answers (health metric: NLL per token)."""
    n_boot: int = Field(default=2000, ge=200)
    seed: int = 0
