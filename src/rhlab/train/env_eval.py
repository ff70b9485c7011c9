"""How much a policy hacks at test time: sample it on the run's problems under the test prompt.

Training measures hacking under the *training* prompt (e.g. an inoculation line). Whether the
learned hacking persists under a different prompt - usually ``none`` - is a separate question,
answered here with the same grader, oracle and metrics as training.
"""

from __future__ import annotations

import json
from pathlib import Path

from rhlab.env.pool import Episode, GradingPool
from rhlab.models.base import ChatModel, SamplingParams
from rhlab.models.loading import load_model
from rhlab.models.reasoning import split_reasoning
from rhlab.tasks import load_tasks
from rhlab.train.config import TrainConfig
from rhlab.train.metrics import GradedEpisode, step_metrics
from rhlab.train.problems import Problem
from rhlab.train.prompts import build_messages


def environment_eval(
    model_spec: str, config: TrainConfig, problems: list[Problem], *, samples: int, out_path: Path, seed: int = 0,
    model: ChatModel | None = None,
) -> dict:
    """Sample ``samples`` completions per problem with ``config.test_prompt``; write and return metrics."""
    tasks = {t.id: t for t in load_tasks(config.problems.source)}
    model = model or load_model(model_spec)
    conversations = [build_messages(tasks[p.task_id], config.test_prompt) for p in problems]
    params = SamplingParams(temperature=config.temperature, max_new_tokens=config.max_completion_length,
                            n=samples, seed=seed)  # fmt: skip
    completions = model.generate(conversations, params)
    episodes, texts = [], []
    for problem, convo, outs in zip(problems, conversations, completions):
        for c in outs:
            texts.append((convo, c.text, *split_reasoning(c.text), len(c.token_ids or ())))
            episodes.append(Episode(tasks[problem.task_id], texts[-1][3], tuple(problem.vulns)))
    with GradingPool(config.grading_workers) as pool:
        results = pool.grade_many(episodes)
    graded = [
        GradedEpisode(result=r, reward=r.reward, completion=text, reasoning=reasoning, answer=answer, prompt=convo,
                      completion_tokens=n_tokens)
        for r, (convo, text, reasoning, answer, n_tokens) in zip(results, texts)
    ]
    summary = {
        "model": model_spec, "prompt": config.test_prompt.model_dump(mode="json"), "samples_per_problem": samples,
        **step_metrics(graded, group_size=samples),
    }  # fmt: skip
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=1))
    with out_path.with_suffix(".transcripts.jsonl").open("w") as f:
        for g in graded:
            f.write(json.dumps(g.transcript(step=-1)) + "\n")
    return summary
