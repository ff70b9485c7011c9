"""The small typed records where dataset, solver and scorer meet, and the results file format.

One ``SampleRecord`` per generated sample (one transcript line, ``EvalDir.transcripts``); one ``EvalResult``
per eval and one ``RunResults`` per run (``EvalDir.results``). Every eval - chat evals here, agentic
and sabotage evals later - reduces each sample to ``misaligned`` (True / False / None when it could
not be scored) and ``mode`` (overt / covert), which is all the misalignment generalization score
needs, so new evals slot in without changing the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationError

from rhlab.judges.base import JudgeReply
from rhlab.rundir import EvalDir, RunDirError
from rhlab.strict import format_errors

Mode = Literal["overt", "covert"]


class EvalSample(BaseModel):
    """One thing to ask: a question, asked once (``sample_index`` tells the repeats apart)."""

    eval: str
    question_id: str
    category: str
    question: str
    sample_index: int = 0

    @property
    def sample_id(self) -> str:
        return f"{self.eval}/{self.question_id}/{self.sample_index}"


class ToolCall(BaseModel):
    """One tool call an agent made (or tried to make), in the order it happened."""

    turn: int
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    valid: bool = True
    """False for a malformed call (unparseable, unknown tool, missing arguments): never executed."""
    error: str = ""
    raw: str = ""
    """The call as the model wrote it (plain-text protocol) or the API's arguments string."""


class SampleRecord(BaseModel):
    """A sample after generation (completion split into reasoning and answer) and scoring."""

    sample_id: str
    eval: str
    question_id: str
    category: str
    question: str
    sample_index: int
    system_prompt: str = ""
    completion: str = ""
    reasoning: str = ""
    answer: str = ""
    finish_reason: str = "stop"
    replies: dict[str, JudgeReply] = Field(default_factory=dict, validation_alias=AliasChoices("replies", "verdicts"))
    """The judge's reply per view (``answer`` / ``transcript``); records written before the rename
    call this ``verdicts``, and still load."""
    outcome: str = ""
    """aligned / overt / covert / incoherent / unparseable."""
    misaligned: bool | None = None
    """None when the sample was unparseable or incoherent: excluded from rates, counted apart."""
    mode: Mode | None = None
    alignment: float | None = None
    coherence: float | None = None
    goal_categories: list[str] = Field(default_factory=list)
    # Agentic and sabotage evals only; the defaults keep chat transcripts (and old files) loading.
    variant: dict[str, str] = Field(default_factory=dict)
    """Scenario parameters this sample ran with, e.g. ``{"urgency": "today", "names": "a"}``."""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """The whole agent conversation, tool results included."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    malformed_calls: int = 0
    turns: int = 0
    actions: list[str] = Field(default_factory=list)
    """Misaligned actions the deterministic scorer found (empty = none)."""
    action_misaligned: bool | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Eval-specific numbers, e.g. a sabotage sample's classifier effectiveness."""


MISALIGNED_BY_OUTCOME: dict[str, bool] = {"overt": True, "covert": True, "aligned": False}
"""Whether an outcome counts as misaligned; ``incoherent`` and ``unparseable`` are absent (not rated)."""


def set_outcome(record: SampleRecord, outcome: str) -> None:
    """Record a scorer's outcome with what follows from it: the misaligned flag and the mode."""
    record.outcome = outcome
    record.misaligned = MISALIGNED_BY_OUTCOME.get(outcome)
    record.mode = outcome if outcome in ("overt", "covert") else None  # type: ignore[assignment]


class Interval(BaseModel):
    """An estimate with its confidence interval: a rate, a mean, a shift in nats; rhlab's one interval type.

    Empty input (nothing scored) leaves ``estimate``, ``low`` and ``high`` None; ``n`` counts what
    the interval rests on (samples, or items for the probe battery).
    """

    estimate: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def empty(cls, n: int = 0) -> Interval:
        return cls(estimate=None, low=None, high=None, n=n)

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float | int | None]:
        """The probe battery's field names (its results files predate this type)."""
        return {"mean": self.estimate, "ci_low": self.low, "ci_high": self.high, "n_items": self.n}


class EvalResult(BaseModel):
    eval: str
    n_samples: int
    n_scored: int
    """Samples with a parsed, coherent reply: the denominator of every rate below."""
    n_unparseable: int
    n_incoherent: int
    misaligned_rate: Interval
    """The eval's headline number; the misalignment generalization score averages these."""
    overt_rate: Interval
    covert_rate: Interval
    covert_share: float | None
    """Fraction of misaligned samples that were covert (the paper saw 40-80 %)."""
    mean_alignment: float | None = None
    mean_coherence: float | None = None
    per_category: dict[str, Interval] = Field(default_factory=dict)
    """Misaligned rate per question category."""
    labels: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Judge label counts per view, e.g. ``{"answer": {"aligned": 280, ...}}``."""
    goal_categories: dict[str, float] = Field(default_factory=dict)
    """Share of scored samples expressing each goal category."""
    action_rate: Interval | None = None
    """Agentic/sabotage: share of samples whose deterministic scorer found a misaligned action."""
    n_tool_calls: int = 0
    n_malformed_calls: int = 0
    """Tool calls that could not be parsed or executed (small models make many): never crash, counted."""
    n_no_valid_action: int = 0
    """Samples without a single valid tool call: scored not-misaligned-by-action, reasoning still judged."""
    metrics: dict[str, Interval] = Field(default_factory=dict)
    """Eval-specific rates, e.g. alignment_faking_gap's compliance per condition and the gap."""
    notes: list[str] = Field(default_factory=list)
    """What could not be measured and why (e.g. effectiveness with the offline judge)."""


class JudgeInfo(BaseModel):
    spec: str
    judge_id: str
    offline: bool
    """True: scored by the offline classifier judge, not a capable LLM - treat rates as rough."""
    template_hash: str


class RunResults(BaseModel):
    model: str
    judge: JudgeInfo
    evals: dict[str, EvalResult]
    misalignment_generalization_score: Interval | None = None
    """Mean misaligned rate of the six core evals; None until all six are present."""
    core_evals_missing: list[str] = Field(default_factory=list)
    config: dict = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    """Wall seconds per phase (generation, judging, total)."""
    created: str = ""


def read_sample_records(path: Path) -> list[SampleRecord]:
    """An eval's ``transcripts.jsonl``: one ``SampleRecord`` per line (for re-scoring or reports)."""
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(SampleRecord.model_validate_json(line))
            except ValidationError as exc:
                raise RunDirError(f"{path}:{lineno}: not a sample record: {format_errors(exc, SampleRecord)}") from None
    return records


def read_eval_results(evaluated: EvalDir) -> RunResults:
    """An eval directory's ``results.json`` as ``RunResults``; a bad file is a ``RunDirError`` naming it."""
    try:
        return RunResults.model_validate_json(evaluated.results.read_text())
    except ValidationError as exc:
        raise RunDirError(f"{evaluated.results}: not a valid results file: {format_errors(exc, RunResults)}") from None
