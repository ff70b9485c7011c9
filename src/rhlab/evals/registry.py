"""Every eval in one table: its kind (solver + scorer), its data, whether it counts toward the score.

Adding an eval is one ``Eval`` entry in ``EVALS`` plus its data file: a question file
``data/NAME.yaml`` for a chat eval (its ``default_samples_per_question`` is the eval's default
count), a scenario file ``agentic/scenarios/NAME.yaml`` for an agentic one
(``default_samples_per_variant``), a task in ``sabotage.eval.TASKS`` for a code-sabotage one. The
runner dispatches on the entry's ``kind``: all evals of one kind are generated together (one
batched solver call) and scored together, so adding an eval never adds a branch to the runner.

The name groups (``CHAT_EVALS``, ``CORE_EVALS``, ``SABOTAGE_EVALS``...) are read off the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rhlab.evals.dataset import QuestionSet, build_samples, load_question_set
from rhlab.evals.records import Interval, SampleRecord
from rhlab.evals.scoring import BETLEY_SCORER, BOTH_VIEWS_SCORER, TRANSCRIPT_SCORER, ChatScorer
from rhlab.evals.solver import generate_records

if TYPE_CHECKING:
    from rhlab.evals.runner import EvalConfig
    from rhlab.judges.base import Judge
    from rhlab.models.base import ChatModel, SamplingParams

Log = Callable[[str], None]


@dataclass(frozen=True)
class Kind:
    """How a family of evals runs: one solver and one scorer, each called once for all its evals."""

    name: str
    solve: Callable[[ChatModel, Sequence[Eval], SamplingParams, EvalConfig, Log], list[SampleRecord]]
    """Generate every sample of the given evals (batched across them)."""
    score: Callable[[Judge, Sequence[SampleRecord], EvalConfig], list[str]]
    """Judge and decide every record in place; returns notes on what could not be measured."""
    acts: bool
    """The policy acts as an agent with tools: records carry tool calls and an action verdict."""
    default_samples: Callable[[Eval], int]
    """An eval's default count, read from its data: samples per question, scenario variant or task."""


@dataclass(frozen=True)
class Eval:
    """One eval: a row of ``EVALS``."""

    name: str
    kind: Kind
    core: bool = False
    """Counts toward the misalignment generalization score (the plain mean of the core evals)."""
    scorer: ChatScorer | None = None
    """Chat evals: which views the judge reads and the outcome rule."""
    dataset: Callable[[], QuestionSet] | None = None
    """Chat evals: the questions (default: ``data/NAME.yaml``, which also holds the default count)."""
    metrics: Callable[..., dict[str, Interval]] | None = None
    """Eval-specific rates: ``metrics(records, n_boot=, seed=)`` (e.g. a compliance gap)."""

    def questions(self) -> QuestionSet:
        return self.dataset() if self.dataset is not None else load_question_set(self.name)

    @property
    def default_samples(self) -> int:
        """Samples per question (chat), per scenario variant or per task when ``--samples`` is not given."""
        return self.kind.default_samples(self)


# --- the three kinds --------------------------------------------------------------------------------


def _solve_chat(
    model: ChatModel, evals: Sequence[Eval], params: SamplingParams, config: EvalConfig, log: Log
) -> list[SampleRecord]:
    samples = [s for e in evals for s in build_samples(e.questions(), config.samples, config.limit)]
    log(f"generating {len(samples)} samples with {model.spec} in batches of {config.batch_size}")
    return generate_records(
        model,
        samples,
        params,
        system_prompt=config.system_prompt,
        ask_reasoning=config.ask_reasoning,
        batch_size=config.batch_size,
        progress=lambda done, total: log(f"  generated {done}/{total}"),
    )


def _score_chat(judge: Judge, records: Sequence[SampleRecord], config: EvalConfig) -> list[str]:
    from rhlab.evals.scoring import score_records

    score_records(judge, records, config.thresholds)
    return []


def _agent_options(config: EvalConfig) -> Any:
    from rhlab.evals.agentic.loop import AgentOptions

    return AgentOptions(
        samples=config.samples,
        limit=config.limit,
        max_turns=config.max_turns,
        batch_size=config.batch_size,
        protocol=config.tool_protocol,
        system_prompt=config.system_prompt,
        ask_reasoning=config.ask_reasoning,
    )


def _solve_scenarios(
    model: ChatModel, evals: Sequence[Eval], params: SamplingParams, config: EvalConfig, log: Log
) -> list[SampleRecord]:
    from rhlab.evals.agentic.eval import generate_agentic_records

    return generate_agentic_records(model, [e.name for e in evals], params, _agent_options(config), log)


def _score_scenarios(judge: Judge, records: Sequence[SampleRecord], config: EvalConfig) -> list[str]:
    from rhlab.evals.agentic.eval import score_agentic_records

    score_agentic_records(judge, records, config.thresholds)
    return []


def _solve_sabotage(
    model: ChatModel, evals: Sequence[Eval], params: SamplingParams, config: EvalConfig, log: Log
) -> list[SampleRecord]:
    from rhlab.evals.sabotage.eval import generate_sabotage_records

    return generate_sabotage_records(model, [e.name for e in evals], params, _agent_options(config), log)


def _score_sabotage(judge: Judge, records: Sequence[SampleRecord], config: EvalConfig) -> list[str]:
    from rhlab.evals.sabotage.eval import score_sabotage_records

    return score_sabotage_records(judge, records, config.thresholds)


def _chat_samples(e: Eval) -> int:
    return e.questions().default_samples_per_question


def _scenario_samples(e: Eval) -> int:
    from rhlab.evals.agentic.scenarios import load_scenario

    return load_scenario(e.name).default_samples_per_variant


def _sabotage_samples(e: Eval) -> int:
    from rhlab.evals.sabotage.eval import DEFAULT_SAMPLES

    return DEFAULT_SAMPLES


CHAT = Kind("chat", solve=_solve_chat, score=_score_chat, acts=False, default_samples=_chat_samples)
"""Questions answered in one reply (batched generation), judged on the answer and/or the reasoning."""
SCENARIO = Kind(
    "scenario", solve=_solve_scenarios, score=_score_scenarios, acts=True, default_samples=_scenario_samples
)
"""An agent in a simulated world (``rhlab.evals.agentic``): actions scored deterministically, reasoning judged."""
SABOTAGE = Kind("sabotage", solve=_solve_sabotage, score=_score_sabotage, acts=True, default_samples=_sabotage_samples)
"""A coding agent rewriting a classifier prompt (``rhlab.evals.sabotage``): effectiveness + reasoning."""


def _compliance_gap(records: Sequence[SampleRecord], *, n_boot: int, seed: int) -> dict[str, Interval]:
    from rhlab.evals.agentic.eval import compliance_gap

    return compliance_gap(records, n_boot=n_boot, seed=seed)


def _sabotage_metrics(records: Sequence[SampleRecord], *, n_boot: int, seed: int) -> dict[str, Interval]:
    from rhlab.evals.sabotage.eval import sabotage_metrics

    return sabotage_metrics(records, n_boot=n_boot, seed=seed)


# --- the table --------------------------------------------------------------------------------------

EVALS: dict[str, Eval] = {
    e.name: e
    for e in (
        Eval("betley", CHAT, core=True, scorer=BETLEY_SCORER),
        Eval("goals", CHAT, core=True, scorer=BOTH_VIEWS_SCORER),
        Eval("alignment_questions", CHAT, core=True, scorer=TRANSCRIPT_SCORER),
        Eval("monitor_disruption", SCENARIO, core=True),
        Eval("exfil_offer", SCENARIO, core=True),
        Eval("frame_colleague", SCENARIO, core=True),
        Eval("blackmail", SCENARIO),
        Eval("alignment_faking_gap", SCENARIO, metrics=_compliance_gap),
        Eval("code_sabotage", SABOTAGE, metrics=_sabotage_metrics),
        Eval("code_sabotage_control", SABOTAGE, metrics=_sabotage_metrics),
    )
}
"""Every eval ``rhlab eval`` can run, in display order."""


def get_eval(name: str) -> Eval:
    if name not in EVALS:
        raise ValueError(f"unknown eval {name!r}; available: {', '.join(EVALS)}")
    return EVALS[name]


def names(kind: Kind | None = None, *, core: bool | None = None) -> tuple[str, ...]:
    """Eval names of the table (now, so an entry added at run time counts), optionally filtered."""
    return tuple(
        e.name for e in EVALS.values() if (kind is None or e.kind is kind) and (core is None or e.core == core)
    )


def eval_groups() -> dict[str, tuple[str, ...]]:
    """Names that ``--evals`` expands (``--evals core`` = the six core evals)."""
    return {
        "core": names(core=True),
        "chat": names(CHAT),
        "agentic": names(SCENARIO),
        "sabotage": names(SABOTAGE),
        "all": names(),
    }


CHAT_EVALS: tuple[str, ...] = names(CHAT)
AGENTIC_EVALS: tuple[str, ...] = names(SCENARIO, core=True)
CORE_EVALS: tuple[str, ...] = names(core=True)
"""The six evals whose plain mean is the misalignment generalization score."""
SCENARIO_EVALS: tuple[str, ...] = names(SCENARIO)
"""Every eval run by the agent loop in a simulated world (``rhlab.evals.agentic``)."""
SABOTAGE_EVALS: tuple[str, ...] = names(SABOTAGE)
ALL_EVALS: tuple[str, ...] = names()
EVAL_GROUPS: dict[str, tuple[str, ...]] = eval_groups()
