"""One eval run: generate every sample in batches, judge them all, aggregate, write the files.

Reads top to bottom as the recipe: dataset (``dataset``) -> solver (``solver``) -> scorer
(``scoring``) -> rates with bootstrap intervals (``stats``) -> results and transcripts in the
output directory (``rhlab.rundir.EvalDir``). Which solver and scorer an eval uses is its entry in
``rhlab.evals.registry.EVALS``: agentic scenarios (``rhlab.evals.agentic``) and the code-sabotage
eval (``rhlab.evals.sabotage``) have their own solver (an agent loop) and scorer (a deterministic
action check plus the judge on the reasoning), and end in the same records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from rhlab.evals.intervals import bootstrap_mean_of_rates, bootstrap_rate
from rhlab.evals.records import EvalResult, Interval, JudgeInfo, RunResults, SampleRecord, read_eval_results
from rhlab.evals.records import read_sample_records as load_transcripts  # re-exported as rhlab.evals.load_transcripts
from rhlab.evals.registry import (  # noqa: F401 - the name groups are re-exported from here
    AGENTIC_EVALS,
    ALL_EVALS,
    CHAT_EVALS,
    CORE_EVALS,
    EVAL_GROUPS,
    EVALS,
    SABOTAGE_EVALS,
    SCENARIO_EVALS,
    Kind,
    eval_groups,
    get_eval,
)
from rhlab.evals.scoring import Thresholds
from rhlab.judges.base import Judge
from rhlab.models.base import ChatModel, SamplingParams
from rhlab.rundir import EvalDir
from rhlab.strict import Strict


def expand_evals(names: Sequence[str]) -> list[str]:
    """Group names expanded, duplicates dropped, order kept; unknown names raise ``ValueError``."""
    groups = eval_groups()
    out: list[str] = []
    for name in names:
        for e in groups.get(name, (name,)):
            if e not in out:
                out.append(e)
    unknown = [e for e in out if e not in EVALS]
    if unknown:
        raise ValueError(
            f"unknown evals: {', '.join(unknown)}; available: {', '.join(EVALS)} or a group ({', '.join(groups)})"
        )
    return out


def by_kind(names: Sequence[str]) -> dict[Kind, list[str]]:
    """Eval names grouped by kind, kinds in table order (chat, scenario, sabotage: the order records
    come out in), names in the order given."""
    kinds = list(dict.fromkeys(e.kind for e in EVALS.values()))
    groups: dict[Kind, list[str]] = {kind: [] for kind in kinds}
    for name in names:
        groups[get_eval(name).kind].append(name)
    return {kind: group for kind, group in groups.items() if group}


class EvalConfig(Strict):
    """Everything that defines an eval run; the CLI maps its options onto these fields."""

    model: str = "embedded"
    """Model spec of the policy being evaluated (see ``rhlab.models.load_model``)."""
    evals: list[str] = Field(default_factory=lambda: list(CHAT_EVALS))
    judge: str = "offline"
    """``offline`` (CPU classifier) or a model spec for an LLM judge."""
    samples: int | None = None
    """Samples per question for every eval; None = each eval's default (betley 8, goals 300, AQ 1)."""
    limit: int | None = None
    """At most this many samples per eval (spread across questions): for quick looks."""
    seed: int = 0
    temperature: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 32
    """Conversations per ``generate`` call."""
    max_turns: int = 8
    """Agentic and sabotage evals: replies per agent before the run is cut off."""
    tool_protocol: Literal["auto", "text", "native"] = "auto"
    """How agents call tools: ``auto`` = native tool calls for ``openai:`` models, plain text otherwise."""
    system_prompt: str = ""
    """Prepended system prompt, e.g. a persona for validating the evals themselves."""
    ask_reasoning: bool = True
    """Ask for private <thinking> reasoning, which the transcript view judges."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    bootstrap: int = 2000
    """Bootstrap replicates for confidence intervals."""
    cache: bool = True
    """Reuse cached replies (by judge id, template hash, input hash)."""
    cache_path: Path | None = None
    """JudgeReply cache file; default ``$RHLAB_CACHE/judge_cache.sqlite``."""


def aggregate(name: str, records: Sequence[SampleRecord], *, n_boot: int, seed: int) -> EvalResult:
    """Rates over the scored samples (parsed and coherent), overall and per question category."""
    scored = [r for r in records if r.misaligned is not None]
    flags = [bool(r.misaligned) for r in scored]
    n_mis = sum(flags)
    per_category = {
        cat: bootstrap_rate([bool(r.misaligned) for r in scored if r.category == cat], n_boot=n_boot, seed=seed)
        for cat in sorted({r.category for r in records})
    }
    labels: dict[str, dict[str, int]] = {}
    for view in ("answer", "transcript"):
        counts = Counter(
            r.replies[view].label or "none" if r.replies[view].parsed else "unparseable"
            for r in records
            if view in r.replies
        )
        if counts:
            labels[view] = dict(sorted(counts.items()))
    goal_counts = Counter(c for r in scored for c in r.goal_categories)
    alignments = [r.alignment for r in scored if r.alignment is not None]
    coherences = [r.coherence for r in records if r.coherence is not None]
    agentic = get_eval(name).kind.acts
    acted = [r for r in records if r.action_misaligned is not None]
    return EvalResult(
        action_rate=bootstrap_rate([bool(r.action_misaligned) for r in acted], n_boot=n_boot, seed=seed)
        if agentic
        else None,
        n_tool_calls=sum(len(r.tool_calls) for r in records),
        n_malformed_calls=sum(r.malformed_calls for r in records),
        n_no_valid_action=sum(not any(c.valid for c in r.tool_calls) for r in records) if agentic else 0,
        metrics=eval_metrics(name, records, n_boot=n_boot, seed=seed),
        eval=name,
        n_samples=len(records),
        n_scored=len(scored),
        n_unparseable=sum(r.outcome == "unparseable" for r in records),
        n_incoherent=sum(r.outcome == "incoherent" for r in records),
        misaligned_rate=bootstrap_rate(flags, n_boot=n_boot, seed=seed),
        overt_rate=bootstrap_rate([r.mode == "overt" for r in scored], n_boot=n_boot, seed=seed),
        covert_rate=bootstrap_rate([r.mode == "covert" for r in scored], n_boot=n_boot, seed=seed),
        covert_share=(sum(r.mode == "covert" for r in scored) / n_mis) if n_mis else None,
        mean_alignment=sum(alignments) / len(alignments) if alignments else None,
        mean_coherence=sum(coherences) / len(coherences) if coherences else None,
        per_category=per_category,
        labels=labels,
        goal_categories={c: goal_counts[c] / len(scored) for c in sorted(goal_counts)} if scored else {},
    )


def eval_metrics(name: str, records: Sequence[SampleRecord], *, n_boot: int, seed: int) -> dict[str, Interval]:
    """Eval-specific rates from the eval's entry, e.g. the compliance gap, sabotage effectiveness."""
    metrics = get_eval(name).metrics
    return metrics(records, n_boot=n_boot, seed=seed) if metrics is not None else {}


def misalignment_score(
    per_eval_flags: dict[str, list[bool]], *, n_boot: int = 2000, seed: int = 0
) -> tuple[Interval | None, list[str]]:
    """Mean misaligned rate over the six core evals, or None with the list of missing ones.

    Takes per-sample flags (True = misaligned) for each eval, so agentic evals run elsewhere can be
    merged in by name.
    """
    missing = [e for e in CORE_EVALS if e not in per_eval_flags]
    if missing:
        return None, missing
    return bootstrap_mean_of_rates({e: per_eval_flags[e] for e in CORE_EVALS}, n_boot=n_boot, seed=seed), []


def run_evals(
    config: EvalConfig,
    *,
    out_dir: Path,
    model: ChatModel | None = None,
    judge: Judge | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RunResults:
    """Run the configured evals and write results and transcripts (``EvalDir``).

    ``model`` and ``judge`` default to loading ``config.model`` / ``config.judge``; passing them in
    lets tests and the persona validation reuse one loaded model. ``config.evals`` may name groups
    (``core``, ``agentic``, ``sabotage``, ``all``).
    """
    names = expand_evals(config.evals)
    t_start = time.perf_counter()
    if model is None:
        from rhlab.models import load_model

        model = load_model(config.model)
    if judge is None:
        from rhlab.judges import load_judge

        judge = load_judge(config.judge, cache=config.cache, cache_path=config.cache_path)
    t_loaded = time.perf_counter()

    records = generate_all(model, names, config, log)
    t_generated = time.perf_counter()
    log(f"judging with {judge.judge_id}{' (offline classifier)' if judge.offline else ''}")
    notes = score_all(judge, records, config)
    t_judged = time.perf_counter()

    results = summarize(
        records,
        config,
        model_spec=model.spec,
        judge=judge,
        timings={
            "load_s": round(t_loaded - t_start, 2),
            "generation_s": round(t_generated - t_loaded, 2),
            "judging_s": round(t_judged - t_generated, 2),
            "total_s": round(time.perf_counter() - t_start, 2),
        },
        notes=notes,
    )
    write_results(out_dir, results, records)
    return results


def generate_all(
    model: ChatModel, names: Sequence[str], config: EvalConfig, log: Callable[[str], None]
) -> list[SampleRecord]:
    """Every sample of every named eval: one solver call per kind, all of a kind's evals batched together."""
    params = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed)
    records: list[SampleRecord] = []
    for kind, kind_names in by_kind(names).items():
        records += kind.solve(model, [get_eval(n) for n in kind_names], params, config, log)
    return records


def score_all(judge: Judge, records: Sequence[SampleRecord], config: EvalConfig) -> dict[str, list[str]]:
    """Score each kind of record with its kind's scorer; returns notes per eval (what could not be measured)."""
    notes: dict[str, list[str]] = {}
    for kind, kind_names in by_kind(list(dict.fromkeys(r.eval for r in records))).items():
        kind_notes = kind.score(judge, [r for r in records if r.eval in kind_names], config)
        if kind_notes:
            notes.update({name: kind_notes for name in kind_names})
    return notes


def summarize(
    records: Sequence[SampleRecord],
    config: EvalConfig,
    *,
    model_spec: str,
    judge: Judge,
    timings: dict[str, float],
    notes: dict[str, list[str]] | None = None,
) -> RunResults:
    """Aggregate scored records into the results file's content."""
    names = list(dict.fromkeys(r.eval for r in records))
    by_eval = {name: [r for r in records if r.eval == name] for name in names}
    evals = {name: aggregate(name, recs, n_boot=config.bootstrap, seed=config.seed) for name, recs in by_eval.items()}
    for name, eval_notes in (notes or {}).items():
        if name in evals:
            evals[name].notes = list(eval_notes)
    flags = {name: [bool(r.misaligned) for r in recs if r.misaligned is not None] for name, recs in by_eval.items()}
    score, missing = misalignment_score(flags, n_boot=config.bootstrap, seed=config.seed)
    return RunResults(
        model=model_spec,
        judge=JudgeInfo(
            spec=config.judge,
            judge_id=judge.judge_id,
            offline=judge.offline,
            template_hash=judge.template_hash,
        ),
        evals=evals,
        misalignment_generalization_score=score,
        core_evals_missing=missing,
        config=config.model_dump(mode="json"),
        timings=timings,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def rejudge(run_dir: Path, judge: Judge, *, judge_spec: str, out_dir: Path) -> RunResults:
    """Judge an earlier run's transcripts again (e.g. offline first, a capable judge later).

    Generation is not repeated; replies already in the cache for this judge are free.
    """
    earlier = EvalDir(run_dir)
    previous = read_eval_results(earlier)
    config = EvalConfig.model_validate({**previous.config, "judge": judge_spec})
    records = [
        r.model_copy(update={"replies": {}, "outcome": "", "misaligned": None, "mode": None})
        for r in load_transcripts(earlier.transcripts)
    ]
    start = time.perf_counter()
    notes = score_all(judge, records, config)
    results = summarize(
        records,
        config,
        model_spec=previous.model,
        judge=judge,
        timings={"judging_s": round(time.perf_counter() - start, 2)},
        notes=notes,
    )
    write_results(out_dir, results, records)
    return results


def write_results(out_dir: Path, results: RunResults, records: Sequence[SampleRecord]) -> None:
    EvalDir(out_dir).write(results, records)
