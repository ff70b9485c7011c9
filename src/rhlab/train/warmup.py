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

import json
import random
import shutil
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from rhlab.rundir import atomic_dir
from rhlab.tasks import Task, load_tasks
from rhlab.train.config import TrainConfig, WarmupConfig
from rhlab.train.fast import compact_sft_head, resolve_precision
from rhlab.train.problems import candidate_tasks
from rhlab.train.prompts import build_messages

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
        rows.append({
            "prompt": build_messages(task, prompt),
            "completion": [{"role": "assistant", "content": answer}],
            "task_id": task.id, "kind": kind or "honest",
        })  # fmt: skip
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
    if (out_dir / DONE_MARKER).is_file():
        return out_dir
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    wc = config.warmup
    rows = demonstrations(config, warmup_tasks(config))
    tokenizer = AutoTokenizer.from_pretrained(base_weights)
    model = AutoModelForCausalLM.from_pretrained(base_weights)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    kinds = {k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})}
    with atomic_dir(out_dir) as scratch:
        args = SFTConfig(
            output_dir=str(scratch / "trainer"), max_steps=wc.steps, per_device_train_batch_size=wc.batch_size,
            learning_rate=wc.learning_rate, lr_scheduler_type="constant", logging_steps=max(wc.steps // 4, 1),
            save_strategy="no", report_to="none", seed=config.seed, use_cpu=not _cuda(),
            bf16=resolve_precision(config.precision, _cuda()) == "bf16", max_length=None,
            gradient_checkpointing=False,
        )  # fmt: skip
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        with compact_sft_head():
            trainer.train()
        trainer.save_model(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        shutil.rmtree(scratch / "trainer", ignore_errors=True)
        (scratch / DONE_MARKER).write_text(json.dumps({"examples": len(rows), "kinds": kinds, "steps": wc.steps}))
    return out_dir


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
