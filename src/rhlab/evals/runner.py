"""One eval run: generate every sample in batches, judge them all, aggregate, write the files.

Reads top to bottom as the recipe: dataset (``dataset``) -> solver (``solver``) -> scorer
(``scoring``) -> rates with bootstrap intervals (``stats``) -> ``results.json`` +
``transcripts.jsonl`` in the output directory.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

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
    return EvalResult(
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
    """Run the configured chat evals and write ``results.json`` and ``transcripts.jsonl``.

    ``model`` and ``judge`` default to loading ``config.model`` / ``config.judge``; passing them in
    lets tests and the persona validation reuse one loaded model.
    """
    unknown = [e for e in config.evals if e not in CHAT_EVALS]
    if unknown:
        later = [e for e in unknown if e in AGENTIC_EVALS]
        raise ValueError(
            f"unknown or unavailable evals: {', '.join(unknown)}"
            + (" (the agentic evals are not implemented yet)" if later else "")
            + f"; available: {', '.join(CHAT_EVALS)}"
        )
    t_start = time.perf_counter()
    if model is None:
        from rhlab.models import load_model

        model = load_model(config.model)
    if judge is None:
        from rhlab.judges import load_judge

        judge = load_judge(config.judge, cache=config.cache, cache_path=config.cache_path)
    t_loaded = time.perf_counter()

    samples = [s for name in config.evals for s in build_samples(load_question_set(name), config.samples, config.limit)]
    params = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed)
    log(f"generating {len(samples)} samples with {model.spec} in batches of {config.batch_size}")
    records = generate_records(
        model,
        samples,
        params,
        system_prompt=config.system_prompt,
        ask_reasoning=config.ask_reasoning,
        batch_size=config.batch_size,
        progress=lambda done, total: log(f"  generated {done}/{total}"),
    )
    t_generated = time.perf_counter()
    log(f"judging with {judge.judge_id}{' (offline classifier)' if judge.offline else ''}")
    score_records(judge, records, config.thresholds)
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
    )
    write_results(out_dir, results, records)
    return results


def summarize(
    records: Sequence[SampleRecord],
    config: EvalConfig,
    *,
    model_spec: str,
    judge: Judge,
    timings: dict[str, float],
) -> RunResults:
    """Aggregate scored records into the results file's content."""
    names = list(dict.fromkeys(r.eval for r in records))
    by_eval = {name: [r for r in records if r.eval == name] for name in names}
    evals = {name: aggregate(name, recs, n_boot=config.bootstrap, seed=config.seed) for name, recs in by_eval.items()}
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
    score_records(judge, records, config.thresholds)
    results = summarize(
        records,
        config,
        model_spec=previous.model,
        judge=judge,
        timings={"judging_s": round(time.perf_counter() - start, 2)},
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
