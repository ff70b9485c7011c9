"""Logs both ways: rhlab eval results as Inspect eval logs, and Inspect logs as a score table.

``write_inspect_logs`` writes one Inspect log per eval of an ``rhlab eval`` run, through Inspect's
own ``write_eval_log``, so ``inspect view --log-dir DIR`` lists them beside any other Inspect run:
each sample keeps its conversation, the model's completion, rhlab's outcome as the score
(``misaligned`` 1/0, unscored when incoherent or unparseable) and the judge's labels as metadata; the
results hold rhlab's bootstrap rates. ``score_table`` reads any Inspect log back (only its header)
into plain rows, which ``rhlab report --inspect-log`` shows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    read_eval_log,
    write_eval_log,
)
from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, ModelOutput
from inspect_ai.scorer import Score

from rhlab.evals.records import EvalResult, Interval, RunResults, SampleRecord

SCORER = "rhlab_judge"


def _messages(record: SampleRecord) -> list[ChatMessage]:
    """The sample's conversation (agent transcripts keep tool turns as labelled user messages)."""
    if record.messages:
        out: list[ChatMessage] = []
        for m in record.messages:
            content = str(m.get("content") or "")
            if m.get("role") == "system":
                out.append(ChatMessageSystem(content=content))
            elif m.get("role") == "assistant":
                out.append(ChatMessageAssistant(content=content))
            elif m.get("role") == "user":
                out.append(ChatMessageUser(content=content))
            else:
                out.append(ChatMessageUser(content=f"[{m.get('role', 'tool')}] {content}"))
        return out
    system = [ChatMessageSystem(content=record.system_prompt)] if record.system_prompt else []
    return [*system, ChatMessageUser(content=record.question), ChatMessageAssistant(content=record.completion)]


def _score(record: SampleRecord) -> Score:
    metadata = record.model_dump(
        mode="json",
        include={
            "outcome",
            "misaligned",
            "mode",
            "alignment",
            "coherence",
            "goal_categories",
            "replies",
            "actions",
            "action_misaligned",
            "metrics",
        },
    )
    if record.misaligned is None:
        return Score.unscored(
            reason="grader_failed", answer=record.answer, explanation=record.outcome, metadata=metadata
        )
    return Score(
        value={"misaligned": float(record.misaligned)},
        answer=record.answer,
        explanation=record.outcome + (f" ({record.mode})" if record.mode else ""),
        metadata=metadata,
    )


def _sample(record: SampleRecord, model: str) -> EvalSample:
    messages = _messages(record)
    first_reply = next((i for i, m in enumerate(messages) if m.role == "assistant"), len(messages))
    return EvalSample(
        id=record.sample_id,
        epoch=1,
        input=messages[:first_reply],
        target="",
        messages=messages,
        output=ModelOutput.from_content(model=model, content=record.completion),
        scores={SCORER: _score(record)},
        metadata={
            "question_id": record.question_id,
            "category": record.category,
            "variant": record.variant,
            "finish_reason": record.finish_reason,
        },
    )


def _metrics(result: EvalResult) -> dict[str, EvalMetric]:
    def rate(name: str, r: Interval | None) -> dict[str, EvalMetric]:
        if r is None or r.estimate is None:
            return {}
        out = {name: EvalMetric(name=name, value=r.estimate)}
        if r.low is not None and r.high is not None:
            out[f"{name}_ci_low"] = EvalMetric(name=f"{name}_ci_low", value=r.low)
            out[f"{name}_ci_high"] = EvalMetric(name=f"{name}_ci_high", value=r.high)
        return out

    return {
        **rate("mean", result.misaligned_rate),
        **rate("overt", result.overt_rate),
        **rate("covert", result.covert_rate),
        **rate("action", result.action_rate),
    }


def eval_log(name: str, result: EvalResult, records: Sequence[SampleRecord], results: RunResults) -> EvalLog:
    """One eval of an rhlab run as an Inspect ``EvalLog`` (task ``rhlab/NAME``, model ``rhlab/SPEC``)."""
    created = results.created or datetime.now(UTC).isoformat(timespec="seconds")
    model = f"rhlab/{results.model}"
    spec = EvalSpec(
        created=created,
        task=f"rhlab/{name}",
        task_id=uuid.uuid4().hex[:22],
        run_id=uuid.uuid4().hex[:22],
        eval_id=uuid.uuid4().hex[:22],
        dataset=EvalDataset(name=f"rhlab:{name}", samples=len(records), sample_ids=[r.sample_id for r in records]),
        model=model,
        config=EvalConfig(),
        task_args={k: results.config.get(k) for k in ("samples", "limit", "seed", "temperature", "max_new_tokens")},
        metadata={"source": "rhlab eval", "judge": results.judge.model_dump(mode="json"), "notes": result.notes},
    )
    score = EvalScore(
        name="misaligned",
        scorer=SCORER,
        scored_samples=result.n_scored,
        unscored_samples=result.n_samples - result.n_scored,
        metrics=_metrics(result),
        metadata={"judge_id": results.judge.judge_id, "offline_judge": results.judge.offline},
    )
    return EvalLog(
        status="success",
        eval=spec,
        results=EvalResults(total_samples=len(records), completed_samples=len(records), scores=[score]),
        stats=EvalStats(started_at=created, completed_at=created),
        samples=[_sample(r, model) for r in records],
    )


def write_inspect_logs(log_dir: Path, results: RunResults, records: Sequence[SampleRecord]) -> list[Path]:
    """Write one Inspect log per eval of the run into ``log_dir``; returns the files written."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S+00-00")
    written = []
    for name, result in results.evals.items():
        log = eval_log(name, result, [r for r in records if r.eval == name], results)
        path = log_dir / f"{stamp}_rhlab-{name.replace('_', '-')}_{log.eval.eval_id}.eval"
        write_eval_log(log, str(path))
        written.append(path)
    return written


def score_table(path: str | Path) -> dict[str, Any]:
    """The header of an Inspect log as plain data: task, model, status and one row per metric."""
    log = read_eval_log(str(path), header_only=True)
    rows = []
    for score in log.results.scores if log.results else []:
        for metric in score.metrics.values():
            rows.append(
                {
                    "scorer": score.scorer,
                    "score": score.name,
                    "metric": metric.name,
                    "value": metric.value,
                    "scored": score.scored_samples,
                    "unscored": score.unscored_samples,
                }
            )
    return {
        "file": str(path),
        "task": log.eval.task,
        "model": log.eval.model,
        "status": log.status,
        "created": log.eval.created,
        "samples": log.results.total_samples if log.results else 0,
        "rows": rows,
    }
