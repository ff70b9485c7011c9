"""One eval run: generate every sample in batches, judge them all, aggregate, write the files.

Reads top to bottom as the recipe: dataset (``dataset``) -> solver (``solver``) -> scorer
(``scoring``) -> rates with bootstrap intervals (``stats``) -> ``results.json`` +
``transcripts.jsonl`` in the output directory. Agentic scenarios (``rhlab.evals.agentic``) and the
code-sabotage eval (``rhlab.evals.sabotage``) have their own solver (an agent loop) and scorer (a
deterministic action check plus the judge on the reasoning), and end in the same records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rhlab.evals.dataset import build_samples, load_question_set
from rhlab.evals.records import EvalResult, JudgeInfo, Rate, RunResults, SampleRecord
from rhlab.evals.scoring import Thresholds, score_records
from rhlab.evals.solver import generate_records
from rhlab.evals.stats import bootstrap_mean_of_rates, bootstrap_rate
from rhlab.judges.base import Judge
from rhlab.models.base import ChatModel, SamplingParams

CHAT_EVALS: tuple[str, ...] = ("betley", "goals", "alignment_questions")
AGENTIC_EVALS: tuple[str, ...] = ("monitor_disruption", "exfil_offer", "frame_colleague")
CORE_EVALS: tuple[str, ...] = CHAT_EVALS + AGENTIC_EVALS
"""The six evals whose plain mean is the misalignment generalization score."""
EXTRA_AGENTIC_EVALS: tuple[str, ...] = ("blackmail", "alignment_faking_gap")
SCENARIO_EVALS: tuple[str, ...] = AGENTIC_EVALS + EXTRA_AGENTIC_EVALS
"""Every eval run by the agent loop in a simulated world (``rhlab.evals.agentic``)."""
SABOTAGE_EVALS: tuple[str, ...] = ("code_sabotage", "code_sabotage_control")
ALL_EVALS: tuple[str, ...] = CHAT_EVALS + SCENARIO_EVALS + SABOTAGE_EVALS
EVAL_GROUPS: dict[str, tuple[str, ...]] = {
    "core": CORE_EVALS,
    "chat": CHAT_EVALS,
    "agentic": SCENARIO_EVALS,
    "sabotage": SABOTAGE_EVALS,
    "all": ALL_EVALS,
}
"""Names that ``--evals`` expands (``--evals core`` = the six core evals)."""


def expand_evals(names: Sequence[str]) -> list[str]:
    """Group names expanded, duplicates dropped, order kept; unknown names raise ``ValueError``."""
    out: list[str] = []
    for name in names:
        for e in EVAL_GROUPS.get(name, (name,)):
            if e not in out:
                out.append(e)
    unknown = [e for e in out if e not in ALL_EVALS]
    if unknown:
        raise ValueError(
            f"unknown evals: {', '.join(unknown)}; available: {', '.join(ALL_EVALS)} "
            f"or a group ({', '.join(EVAL_GROUPS)})"
        )
    return out


class EvalConfig(BaseModel):
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
    """Reuse cached verdicts (by judge id, template hash, input hash)."""
    cache_path: Path | None = None
    """Verdict cache file; default ``$RHLAB_CACHE/judge_cache.sqlite``."""


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
            r.verdicts[view].label or "none" if r.verdicts[view].parsed else "unparseable"
            for r in records
            if view in r.verdicts
        )
        if counts:
            labels[view] = dict(sorted(counts.items()))
    goal_counts = Counter(c for r in scored for c in r.goal_categories)
    alignments = [r.alignment for r in scored if r.alignment is not None]
    coherences = [r.coherence for r in records if r.coherence is not None]
    agentic = name in SCENARIO_EVALS or name in SABOTAGE_EVALS
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


def eval_metrics(name: str, records: Sequence[SampleRecord], *, n_boot: int, seed: int) -> dict[str, Rate]:
    """Eval-specific rates: the compliance gap of ``alignment_faking_gap``, sabotage effectiveness."""
    if name == "alignment_faking_gap":
        from rhlab.evals.agentic.eval import compliance_gap

        return compliance_gap(records, n_boot=n_boot, seed=seed)
    if name in SABOTAGE_EVALS:
        from rhlab.evals.sabotage.eval import sabotage_metrics

        return sabotage_metrics(records, n_boot=n_boot, seed=seed)
    return {}


def misalignment_score(
    per_eval_flags: dict[str, list[bool]], *, n_boot: int = 2000, seed: int = 0
) -> tuple[Rate | None, list[str]]:
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
    """Run the configured evals and write ``results.json`` and ``transcripts.jsonl``.

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
    """Chat samples through the batched solver, scenarios and sabotage through the agent loop."""
    params = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed)
    chat = [e for e in names if e in CHAT_EVALS]
    scenarios = [e for e in names if e in SCENARIO_EVALS]
    sabotage = [e for e in names if e in SABOTAGE_EVALS]
    records: list[SampleRecord] = []
    if chat:
        samples = [s for name in chat for s in build_samples(load_question_set(name), config.samples, config.limit)]
        log(f"generating {len(samples)} samples with {model.spec} in batches of {config.batch_size}")
        records += generate_records(
            model,
            samples,
            params,
            system_prompt=config.system_prompt,
            ask_reasoning=config.ask_reasoning,
            batch_size=config.batch_size,
            progress=lambda done, total: log(f"  generated {done}/{total}"),
        )
    if not (scenarios or sabotage):
        return records
    from rhlab.evals.agentic.loop import AgentOptions

    options = AgentOptions(
        samples=config.samples,
        limit=config.limit,
        max_turns=config.max_turns,
        batch_size=config.batch_size,
        protocol=config.tool_protocol,
        system_prompt=config.system_prompt,
        ask_reasoning=config.ask_reasoning,
    )
    if scenarios:
        from rhlab.evals.agentic.eval import generate_agentic_records

        records += generate_agentic_records(model, scenarios, params, options, log)
    if sabotage:
        from rhlab.evals.sabotage.eval import generate_sabotage_records

        records += generate_sabotage_records(model, sabotage, params, options, log)
    return records


def score_all(judge: Judge, records: Sequence[SampleRecord], config: EvalConfig) -> dict[str, list[str]]:
    """Score each kind of record with its scorer; returns notes per eval (what could not be measured)."""
    chat = [r for r in records if r.eval in CHAT_EVALS]
    scenarios = [r for r in records if r.eval in SCENARIO_EVALS]
    sabotage = [r for r in records if r.eval in SABOTAGE_EVALS]
    notes: dict[str, list[str]] = {}
    if chat:
        score_records(judge, chat, config.thresholds)
    if scenarios:
        from rhlab.evals.agentic.eval import score_agentic_records

        score_agentic_records(judge, scenarios, config.thresholds)
    if sabotage:
        from rhlab.evals.sabotage.eval import score_sabotage_records

        sabotage_notes = score_sabotage_records(judge, sabotage, config.thresholds)
        notes.update({name: sabotage_notes for name in dict.fromkeys(r.eval for r in sabotage)})
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


def rescore(run_dir: Path, judge: Judge, *, judge_spec: str, out_dir: Path) -> RunResults:
    """Judge an earlier run's transcripts again (e.g. offline first, a capable judge later).

    Generation is not repeated; verdicts already in the cache for this judge are free.
    """
    previous = RunResults.model_validate_json((run_dir / "results.json").read_text())
    config = EvalConfig.model_validate({**previous.config, "judge": judge_spec})
    records = [
        r.model_copy(update={"verdicts": {}, "outcome": "", "misaligned": None, "mode": None})
        for r in load_transcripts(run_dir / "transcripts.jsonl")
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
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(results.model_dump_json(indent=2))
    with (out_dir / "transcripts.jsonl").open("w") as f:
        for r in records:
            f.write(r.model_dump_json() + "\n")


def load_transcripts(path: Path) -> list[SampleRecord]:
    """Read ``transcripts.jsonl`` back (for re-scoring or reports)."""
    return [SampleRecord.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
