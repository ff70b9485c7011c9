"""Probe settings shared by the CLI and the pipeline (``evaluation.probes`` in an experiment config)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, ConfigDict, Field

from rhlab.evals.intervals import DEFAULT_MARGIN_NATS
from rhlab.strict import Strict


class ProbeConfig(Strict):
    """Which items to score at each checkpoint, and the margin a null is stated at.

    The ``rhlab probe`` commands take their options from these fields (``strict.cli_options``).
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    enabled: bool = True
    subscales: list[str] | None = None
    """Subscales to score (repeatable on the command line); unset means every shipped one."""
    split: Literal["dev", "test", "all"] = "test"
    """Which items: dev (calibration and the validation's items), test (verdicts) or all."""
    margin: float = Field(default=DEFAULT_MARGIN_NATS, gt=0, le=5)
    """Equivalence margin m in **nats** of forced-choice log-odds (0.5 = odds ratio 1.65; see
    ``rhlab.evals.intervals.DEFAULT_MARGIN_NATS`` for its anchor). ``null within ±m nats`` needs both TOSTs to
    pass at m, the comparison to have moved items by at least m on average, and the manipulation check."""
    primary: tuple[str, str] | None = None
    """The primary contrast ``A - B``, declared before the run: the verdict is computed on it, and every
    other arm and contrast is labelled secondary with a Holm-adjusted p-value (default: see ``probe_summary``)."""
    validation: str | None = Field(default=None, validation_alias=AliasChoices("validation", "gates"))
    """The file written by ``rhlab probe validate`` for this model (default: EXPERIMENT/probe_validation.json).
    Without a file whose gates all passed, no comparison can be called an ``effect``. Resolved configs
    written before the rename call it ``gates``; that key is read as this one."""
    batch_size: int = Field(default=16, ge=1)
    """Sequences per teacher-forced forward pass while scoring (set on the loaded model by ``run_probes``)."""
    neutral_nll: bool = True
    """Also score the neutral chat answers (health metric: NLL per token)."""
    n_boot: int = Field(default=2000, ge=200)
    seed: int = 0
