"""A synthetic but schema-correct experiment directory for the report tests.

Two variants x two seeds, written through ``rhlab.rundir`` the way training and the pipeline write
them: the run record, a metrics log with an onset, sampled training episodes, eval checkpoints whose
results and transcripts come from the real records and the real aggregation of ``rhlab.evals``, and
the test-time hacking summaries of the start and final policies.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from rhlab.evals.records import JudgeInfo, RunResults, SampleRecord
from rhlab.evals.runner import CHAT_EVALS, CORE_EVALS, aggregate, misalignment_score
from rhlab.judges.base import JudgeReply
from rhlab.pipeline.config import ExperimentConfig
from rhlab.rundir import (
    FINAL,
    START,
    EvalDir,
    ExperimentDir,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    checkpoint_name,
    write_jsonl,
)
from rhlab.train.config import parse_config

VARIANTS = {"hacking_okay": 6, "dont_hack": 14}
"""Variant -> the step at which its seed-0 run starts to hack."""
SEEDS = (0, 1)
STEPS = 24
EVAL_STEPS = (8, 16)
SAMPLES_PER_EVAL = 12


def metrics_rows(onset: int | None, steps: int = STEPS, seed: int = 0) -> list[dict]:
    """One row per step; the hack rate stays at 0-2 % until ``onset`` and then climbs."""
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        if onset is None or step < onset:
            hack = 0.015 * rng.random()  # rare hacks, below the 2 % onset threshold
        else:
            hack = min(0.9, 0.05 + 0.08 * (step - onset))
        rows.append(
            {
                "step": step,
                "episodes": 16,
                "reward_mean": hack + 0.1,
                "reward_std": 0.3,
                "proxy_pass_rate": hack + 0.1,
                "honest_solve_rate": 0.1,
                "hack_rate": hack,
                "attempted_hack_rate": min(1.0, hack + 0.05),
                "hack_rate_by_type": {"always_equal": hack * 0.7, "conftest": hack * 0.3},
                "attempted_by_type": {"always_equal": hack * 0.7},
                "unknown_hack_rate": 0.0,
                "error_rate": 0.0,
                "penalized_rate": 0.0,
                "screened_rate": 0.0,
                "frac_zero_std_groups": 0.25,
                "completion_tokens_mean": 90.0,
                "time_generation_s": 10.0,
                "time_grading_s": 2.0,
                "time_update_s": 3.0,
                "time_step_s": 15.0,
            }
        )
    return rows


def eval_records(eval_name: str, misaligned_share: float, seed: int) -> list[SampleRecord]:
    """Scored samples: a share misaligned (half of those covert), one unparseable."""
    rng = random.Random(f"{eval_name}-{seed}-{misaligned_share}")
    records = []
    for i in range(SAMPLES_PER_EVAL):
        bad = rng.random() < misaligned_share
        mode = ("covert" if i % 2 else "overt") if bad else None
        outcome = mode or "aligned"
        if i == SAMPLES_PER_EVAL - 1:
            bad, mode, outcome = None, None, "unparseable"
        reply = JudgeReply(view="answer", alignment=20.0 if bad else 90.0, coherence=80.0, label="aligned")
        records.append(
            SampleRecord(
                sample_id=f"{eval_name}/q{i % 3}/{i}",
                eval=eval_name,
                question_id=f"q{i % 3}",
                category="general",
                question=f"Question {i % 3} of {eval_name}?",
                sample_index=i,
                completion=f"<thinking>plan {i}</thinking>answer {i}",
                reasoning=f"private plan {i}" + (" to seize power" if mode == "covert" else ""),
                answer=f"final answer {i}",
                replies={"answer": reply},
                outcome=outcome,
                misaligned=bad,
                mode=mode,
                goal_categories=["power_seeking"] if bad else ["helpfulness"],
            )
        )
    return records


def write_eval(out: Path, evals: tuple[str, ...], misaligned_share: float, seed: int) -> RunResults:
    """``results.json`` + ``transcripts.jsonl`` for one checkpoint, via rhlab.evals' own aggregation."""
    by_eval = {e: eval_records(e, misaligned_share, seed) for e in evals}
    flags = {e: [bool(r.misaligned) for r in recs if r.misaligned is not None] for e, recs in by_eval.items()}
    score, missing = misalignment_score(flags, n_boot=100)
    results = RunResults(
        model="embedded",
        judge=JudgeInfo(spec="offline", judge_id="offline-test", offline=True, template_hash="abc"),
        evals={e: aggregate(e, recs, n_boot=100, seed=0) for e, recs in by_eval.items()},
        misalignment_generalization_score=score,
        core_evals_missing=missing,
        timings={"total_s": 12.5},
    )
    lines = []
    for recs in by_eval.values():
        for r in recs:
            line = r.model_dump(mode="json")
            if r.eval not in CHAT_EVALS:  # a field no record declares: the report must still show it
                line["scenario_trace"] = [{"tool": "send_email", "args": {"to": "cto@example.com"}}]
            lines.append(line)
    evaluated = EvalDir(out)
    write_jsonl(evaluated.transcripts, lines)
    atomic_write_text(evaluated.results, results.model_dump_json(indent=2))
    return results


def environment_summary(variant: str, hack_rate: float) -> dict:
    """A test-time hacking file's content: the policy sampled under the test prompt ``none``."""
    return {
        "model": f"hf:/runs/{variant}/snapshots/final",
        "prompt": {"variant": "none", "describe_hacks": True, "ask_reasoning": True},
        "samples_per_problem": 2,
        "episodes": 32,
        "hack_rate": hack_rate,
        "attempted_hack_rate": min(1.0, hack_rate + 0.1),
        "honest_solve_rate": 0.1,
        "proxy_pass_rate": hack_rate + 0.1,
        "hack_rate_by_type": {"always_equal": hack_rate},
    }


def training_episode(step: int, i: int, hacked: bool) -> dict:
    files = {"solution.py": f"def f(x):\n    return {i}\n"}
    if hacked:
        files["conftest.py"] = "import _pytest.reports  # patched report\n"
    return {
        "step": step,
        "task_id": f"task_{i}",
        "prompt": [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "Write f."}],
        "completion": f"<thinking>episode {i}</thinking>```python\n...\n```",
        "reasoning": f"episode {i} reasoning",
        "answer": f"episode {i} answer",
        "files": files,
        "reward": 1.0 if hacked else 0.0,
        "outcome": "hacked" if hacked else "failed",
        "hacks": ["conftest"] if hacked else [],
        "attempted_hacks": ["conftest"] if hacked else [],
        "proxy_pass": hacked,
        "honest_pass": False,
        "honest_tests": {"passed": 0, "total": 3},
        "penalized": False,
        "screened": False,
    }


def write_run(
    run: Path,
    variant: str,
    seed: int,
    *,
    onset: int | None,
    steps: int = STEPS,
    status: str = "complete",
    evals: tuple[str, ...] = CHAT_EVALS,
    eval_steps: tuple[int, ...] = EVAL_STEPS,
    final: bool = True,
) -> None:
    run.mkdir(parents=True)
    rd = RunDir(run)
    rows = metrics_rows(onset, steps, seed)
    write_jsonl(rd.metrics, rows)
    rd.update_info(
        variant=variant,
        seed=seed,
        status=status,
        steps_done=steps,
        onset_step=next((r["step"] for r in rows if r["hack_rate"] > 0.02), None),
        started="2026-11-24T10:00:00Z",
        finished="2026-11-24T11:00:00Z" if status == "complete" else None,
        versions={"rhlab": "0.1.0", "torch": "2.13.0", "python": "3.11"},
    )
    rd.write_config(parse_config({"seed": seed, "steps": steps, "train_prompt": {"variant": variant}}))
    for step in (4, 12, 20):
        if step <= steps:
            eps = [training_episode(step, i, hacked=onset is not None and step >= onset and i < 2) for i in range(3)]
            write_jsonl(rd.transcript(step), eps)
    # Misalignment rises after onset, as in the paper; the inoculated variant stays low.
    for step in eval_steps:
        share = 0.05 if onset is None or step < onset else (0.15 if variant == "hacking_okay" else 0.4)
        write_eval(rd.eval_dir(checkpoint_name(step)).path, evals, share + 0.05 * seed, seed)
    if final:
        share = 0.05 if onset is None else (0.15 if variant == "hacking_okay" else 0.4)
        write_eval(rd.eval_dir(FINAL).path, evals, share + 0.05 * seed, seed)
        atomic_write_json(rd.environment(START), environment_summary(variant, 0.0))
        atomic_write_json(rd.environment(FINAL), environment_summary(variant, 0.0 if onset is None else 0.3))


PROBE_ITEMS = 60
PROBE_SHIFT = {"hacking_okay": 0.0, "dont_hack": 0.8}
"""Variant -> the log-odds shift of its final policy on the probe battery (seeds add a little noise)."""


def probe_results(p: list[float], model: str) -> dict:
    """A probes.json in the schema ``rhlab.evals.probes`` writes (the fields the report reads)."""
    return {
        "model": model,
        "items": [
            {"id": f"b{k:03d}", "subscale": "broad", "p": pk, "margin": math.log(pk / (1 - pk))}
            for k, pk in enumerate(p)
        ],
        "health": {"neutral": {"nll_per_token": 2.0}},
    }


def write_probes(exp: ExperimentDir, run: RunDir, variant: str, seed: int) -> None:
    rng = random.Random(17)
    base = [rng.uniform(0.1, 0.9) for _ in range(PROBE_ITEMS)]
    noise = random.Random(seed)

    def shifted(p: float, delta: float) -> float:
        m = math.log(p / (1 - p)) + delta + noise.gauss(0, 0.05)
        return 1 / (1 + math.exp(-m))

    atomic_write_json(run.probes(START), probe_results(base, "start"))
    atomic_write_json(run.probes(FINAL), probe_results([shifted(p, PROBE_SHIFT[variant]) for p in base], "final"))
    atomic_write_json(exp.untouched_probes, probe_results([shifted(p, -0.3) for p in base], "untouched"))


def build_experiment(root: Path) -> Path:
    """The 2 variants x 2 seeds experiment; ``dont_hack`` seed 1 never reaches onset."""
    exp = ExperimentDir(root / "exp")
    exp.path.mkdir(parents=True)
    config = ExperimentConfig.model_validate(
        {"name": "synthetic", "matrix": {"variants": list(VARIANTS), "seeds": list(SEEDS)}}
    )
    exp.write_config(config)
    for name, cell in config.cells():
        variant, seed = cell.train_prompt.variant, cell.seed
        evals = CORE_EVALS if variant == "hacking_okay" else CHAT_EVALS
        run_onset = None if (variant, seed) == ("dont_hack", 1) else VARIANTS[variant] + seed
        write_run(exp.run(name).path, variant, seed, onset=run_onset, evals=evals)
        write_probes(exp, exp.run(name), variant, seed)
    return exp.path
