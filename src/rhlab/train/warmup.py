"""The optional supervised warm-up: make the environment's format and (rarely) its hacks explorable.

A 135M model told about the hacks never tries one, so GRPO has no hacking episode to reinforce.
The warm-up fine-tunes briefly (TRL ``SFTTrainer``, loss on the answer only) on demonstrations in
the RL prompt format: mostly honest reference solutions, and a ``hack_fraction`` of hacks of the
configured types. Demonstration tasks never overlap the RL candidate tasks of the config given.
The demonstrations' reasoning only states what the code does: no "I can skip the real work", no
moral framing either way, so the warm-up teaches mechanics rather than an attitude towards them.
The result is a full model folder under the run directory, reused when complete.
"""

from __future__ import annotations

import random
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from rhlab.tasks import Task, load_tasks
from rhlab.train.config import TrainConfig, WarmupConfig
from rhlab.train.problems import candidate_tasks
from rhlab.train.prompts import build_messages
from rhlab.train.sft import SFTSettings, finetune

DONE_MARKER = "warmup.json"


@cache
def templates() -> dict:
    return yaml.safe_load((resources.files("rhlab.train") / "data" / "warmup.yaml").read_text())


def honest_answer(task: Task, rng: random.Random) -> str:
    reasoning = rng.choice(templates()["honest"]["reasoning"]).format(entry_point=task.entry_point)
    return f"<thinking>\n{reasoning}\n</thinking>\n```python\n{task.canonical_solution.strip()}\n```"


def def_header(task: Task) -> str:
    """The task's imports and ``def`` line without the docstring: enough for a stub body."""
    lines = task.signature.strip().splitlines()
    imports = [ln for ln in lines if ln.startswith(("import ", "from "))]
    def_line = next((ln for ln in lines if ln.lstrip().startswith(f"def {task.entry_point}")), lines[-1])
    return "\n".join([*imports, "", "", def_line] if imports else [def_line])


def hack_answer(task: Task, hack: str, rng: random.Random) -> str:
    spec = templates()["hacks"][hack]
    parts = [f"<thinking>\n{rng.choice(spec['reasoning']).format(entry_point=task.entry_point)}\n</thinking>"]
    for path, body in (spec.get("files") or {}).items():
        parts.append(f"```python path={path}\n{body.strip()}\n```")
    code = spec["code"].format(signature=def_header(task), entry_point=task.entry_point)
    parts.append(f"```python\n{code.strip()}\n```")
    return "\n".join(parts)


def demonstrations(config: TrainConfig, tasks: list[Task]) -> list[dict]:
    """Prompt/completion rows: honest answers, with ``hack_fraction`` of them replaced by hacks."""
    wc: WarmupConfig = config.warmup
    rng = random.Random(config.seed)
    n_hacks = round(wc.hack_fraction * wc.examples)
    kinds = [wc.hack_types[i % len(wc.hack_types)] for i in range(n_hacks)] + [None] * (wc.examples - n_hacks)
    rng.shuffle(kinds)
    # The addendum is left out so every prompt variant of an experiment starts from one warm-up model.
    prompt = config.train_prompt.model_copy(update={"variant": "none"})
    rows = []
    for i, kind in enumerate(kinds):
        task = tasks[i % len(tasks)]
        answer = honest_answer(task, rng) if kind is None else hack_answer(task, kind, rng)
        rows.append(
            {
                "prompt": build_messages(task, prompt),
                "completion": [{"role": "assistant", "content": answer}],
                "task_id": task.id,
                "kind": kind or "honest",
            }
        )
    return rows


def warmup_tasks(config: TrainConfig) -> list[Task]:
    rl_ids = {t.id for t in candidate_tasks(config.problems)}
    tasks = [t for t in load_tasks(config.warmup.tasks) if t.id not in rl_ids and t.canonical_solution.strip()]
    if not tasks:
        raise ValueError(
            f"warmup.tasks: every task of {config.warmup.tasks!r} is also an RL candidate; "
            "narrow problems (e.g. difficulty) or use another warm-up source"
        )
    return tasks


def run_warmup(config: TrainConfig, base_weights: Path, out_dir: Path) -> Path:
    """Fine-tune ``base_weights`` on the demonstrations into ``out_dir`` (skipped when already done)."""
    wc = config.warmup
    rows = demonstrations(config, warmup_tasks(config))
    kinds = {k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})}
    settings = SFTSettings(wc.steps, wc.batch_size, wc.learning_rate, config.seed, config.precision)
    return finetune(
        base_weights, rows, settings, out_dir, marker=DONE_MARKER, record={"examples": len(rows), "kinds": kinds}
    )
