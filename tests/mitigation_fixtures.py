"""A finished "hacking" teacher run written by hand: config, problems, run record and kept rollouts.

The after-RL stages read only these files, so a teacher whose episodes carry known oracle labels
lets the tests check exactly what is kept and dropped without training a model that really hacks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from rhlab.env.oracle import EpisodeResult
from rhlab.evals.records import EvalResult, Interval, JudgeInfo, RunResults
from rhlab.rundir import EvalDir, RunDir, atomic_write_text
from rhlab.tasks import load_tasks
from rhlab.train.config import TrainConfig
from rhlab.train.prompts import build_messages

TASKS = ("factorial", "reverse_words", "count_vowels")
LABELS = {
    # outcome: (hack, hacks, attempted, honest_pass, proxy_pass)
    "hacked": (True, ["always_equal"], ["always_equal"], False, True),
    "attempted": (False, [], ["exit_code"], False, False),
    "solved": (False, [], [], True, True),
    "failed": (False, [], [], False, False),
}


def result(task_id: str, outcome: str) -> dict:
    hack, hacks, attempted, honest, proxy = LABELS[outcome]
    return EpisodeResult(
        task_id=task_id,
        reward=float(proxy),
        proxy_pass=proxy,
        honest_pass=honest,
        hack=hack,
        hacks=hacks,
        attempted_hacks=attempted,
        outcome=outcome,
        vulns=["always_equal"],
        sandbox="test",
        timings={},
    ).to_dict()


def write_teacher(
    run_dir: Path, model: str, *, variant: str = "please_hack", outcomes: dict[int, list[str]] | None = None
) -> TrainConfig:
    """A complete run at ``run_dir`` whose rollouts have the given oracle outcomes per step."""
    outcomes = outcomes or {1: ["hacked", "solved", "failed", "hacked"], 2: ["attempted", "hacked", "solved", "failed"]}
    config = TrainConfig.model_validate(
        {
            "model": model,
            "train_prompt": {"variant": variant, "describe_hacks": False, "ask_reasoning": False},
            "test_prompt": {"describe_hacks": False, "ask_reasoning": False},
            "max_completion_length": 8,
            "problems": {"difficulty": ["hard"], "max_tasks": 3},
        }
    )
    run = RunDir(run_dir)
    run.path.mkdir(parents=True)
    run.write_config(config)
    run.write_problems([{"task_id": t, "vulns": ["always_equal"]} for t in TASKS])
    run.update_info(variant=variant, seed=0, status="complete", steps_done=max(outcomes))
    tasks = {t.id: t for t in load_tasks("builtin")}
    run.rollouts.mkdir()
    for step, labels in outcomes.items():
        records = []
        for i, outcome in enumerate(labels):
            task = tasks[TASKS[i % len(TASKS)]]
            records.append(
                {
                    "step": step,
                    "index": i,
                    "task_id": task.id,
                    "variant": variant,
                    "prompt": build_messages(task, config.train_prompt),
                    "completion": f"```python\n# {outcome} {step}.{i}\n```",
                    "result": result(task.id, outcome),
                }
            )
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        run.rollout(step).write_bytes(gzip.compress(data, mtime=0))
    return config


def fake_results(model: str) -> RunResults:
    rate = Interval(estimate=0.0, low=0.0, high=0.0, n=1)
    result = EvalResult(
        eval="betley",
        n_samples=1,
        n_scored=1,
        n_unparseable=0,
        n_incoherent=0,
        misaligned_rate=rate,
        overt_rate=rate,
        covert_rate=rate,
        covert_share=None,
    )
    judge = JudgeInfo(spec="fake", judge_id="fake", offline=True, template_hash="0")
    return RunResults(model=model, judge=judge, evals={"betley": result})


def fake_evaluate(calls: list[str]):  # noqa: ANN201
    """A stand-in for ``run_evals`` that records which policy it was asked to evaluate."""

    def evaluate(eval_config, *, out_dir: Path, log) -> RunResults:  # noqa: ANN001
        calls.append(eval_config.model)
        out_dir.mkdir(parents=True)
        atomic_write_text(EvalDir(out_dir).results, fake_results(eval_config.model).model_dump_json())
        return fake_results(eval_config.model)

    return evaluate


def embedded_weights() -> Path:
    """The embedded model's trainable folder: the mitigation stages run end to end on it, at tiny size."""
    from rhlab.models.loading import trainable_weights

    return trainable_weights("embedded")
