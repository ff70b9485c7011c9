"""``rhlab run CONFIG``: knowledge -> RL -> checkpoint evals -> report, resumable stage by stage.

Each stage checks whether its outputs exist and are complete before doing anything, so running the
same command again after an interruption finishes the experiment without redoing finished work:

1. knowledge  ``EXP/knowledge/{warmup,sdf}/`` - shared by every run (it does not depend on variant)
2. RL         ``EXP/runs/<cell>/`` - complete when ``run.json`` says so; otherwise resumed
3. evals      ``EXP/runs/<cell>/evals/<step>/results.json`` - one directory per evaluated checkpoint
4. report     ``EXP/report/`` - rebuilt from the files above every time (cheap, deterministic)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console

from rhlab.pipeline.config import ExperimentConfig
from rhlab.train.config import TrainConfig
from rhlab.train.trainer import complete_checkpoints, train

console = Console(stderr=True)


def knowledge_stage(config: ExperimentConfig, exp_dir: Path) -> str | None:
    """Build the shared starting policy; returns its ``hf:`` spec (None: train from ``train.model``)."""
    if config.knowledge == "sdf":
        from rhlab.knowledge import SDFConfig, train_sdf

        console.print("[bold]knowledge[/]: synthetic-document fine-tuning")
        out = train_sdf(SDFConfig.model_validate(config.sdf), config.train.model, exp_dir / "knowledge" / "sdf")
        return f"hf:{out}"
    if config.train.warmup is not None:
        from rhlab.models.loading import trainable_weights
        from rhlab.train.warmup import run_warmup

        console.print("[bold]knowledge[/]: supervised warm-up")
        _, first = config.cells()[0]
        out = run_warmup(first, trainable_weights(config.train.model), exp_dir / "knowledge" / "warmup")
        return f"hf:{out}"
    return None


def rl_stage(name: str, cell: TrainConfig, run_dir: Path) -> None:
    status = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    if status.get("status") == "complete":
        console.print(f"[bold]RL[/] {name}: complete, skipped")
        return
    resume = (run_dir / "config.yaml").exists()
    if resume and not complete_checkpoints(run_dir):
        # Killed before its first checkpoint: nothing to resume from, so start the run over.
        shutil.rmtree(run_dir)
        resume = False
    console.print(f"[bold]RL[/] {name}: {'resuming' if resume else 'starting'}")
    train(None if resume else cell, run_dir, resume=resume)


def checkpoints_to_evaluate(run_dir: Path, every_k: int, include_start: bool) -> list[tuple[str, str]]:
    """(eval directory name, model spec): the start, every k-th snapshot, and the final policy."""
    snaps = sorted(p for p in (run_dir / "snapshots").glob("step_*") if p.is_dir())
    final = run_dir / "snapshots" / "final"
    if final.is_dir():  # the final policy supersedes a snapshot of the same (last) step
        steps_done = json.loads((run_dir / "run.json").read_text()).get("steps_done")
        snaps = [p for p in snaps if int(p.name.split("_")[1]) != steps_done]
    chosen = [(p.name, f"hf:{p}") for p in snaps[every_k - 1 :: every_k]]
    if final.is_dir():
        chosen.append(("final", f"hf:{final}"))
    if include_start:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        chosen.insert(0, ("step_000000", cfg["model"]))
    return chosen


def evals_stage(
    config: ExperimentConfig, run_dir: Path, *, evaluate: Callable[..., object] | None = None
) -> None:
    """Evaluate the chosen checkpoints; a checkpoint whose results.json exists is skipped."""
    from rhlab.evals.runner import EvalConfig, run_evals

    evaluate = evaluate or run_evals
    sched = config.evaluation
    for name, spec in checkpoints_to_evaluate(run_dir, sched.every_k, sched.include_start):
        out = run_dir / "evals" / name
        if sched.environment_samples and name in ("step_000000", "final"):
            environment_stage(run_dir, name, spec, sched.environment_samples)
        if (out / "results.json").exists():
            continue
        final = name == "final"
        eval_config = EvalConfig(
            model=spec, evals=sched.evals, judge=sched.judge, seed=0,
            limit=sched.final_limit if final else sched.checkpoint_limit,
            samples=sched.final_samples if final else None,
            max_new_tokens=sched.max_new_tokens, batch_size=sched.batch_size, max_turns=sched.max_turns,
        )  # fmt: skip
        console.print(f"[bold]evals[/] {run_dir.name}/{name} ({spec})")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        evaluate(eval_config, out_dir=tmp, log=lambda msg: console.print(f"  {msg}", highlight=False))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)


def environment_stage(run_dir: Path, name: str, spec: str, samples: int) -> None:
    """Test-time hacking of one checkpoint (``evals/<name>/environment.json``), skipped when present."""
    from rhlab.train.config import load_config
    from rhlab.train.env_eval import environment_eval
    from rhlab.train.problems import select_problems

    target = run_dir / "evals" / f"{name}.environment.json"
    if target.exists():
        return
    config = load_config(run_dir / "config.yaml")
    problems = select_problems(config, run_dir)
    console.print(f"[bold]environment[/] {run_dir.name}/{name}: test prompt {config.test_prompt.variant!r}")
    environment_eval(spec, config, problems, samples=samples, out_path=target)


def share_start_evals(run_dirs: list[Path]) -> None:
    """Runs that start from the same policy share one step-0 evaluation (copied, not recomputed)."""
    done: dict[str, Path] = {}
    for run_dir in run_dirs:
        model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
        target = run_dir / "evals" / "step_000000"
        if (target / "results.json").exists():
            done.setdefault(model, target)
        elif model in done:
            shutil.copytree(done[model], target)


def run_experiment(
    config: ExperimentConfig, exp_dir: Path, *, build_report: bool = True, evaluate: Callable[..., object] | None = None
) -> Path:
    """Run every stage that is not complete yet; returns the report path (or the experiment dir)."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    start = knowledge_stage(config, exp_dir)
    run_dirs = []
    for name, cell in config.cells():
        if start is not None:
            cell = cell.model_copy(update={"model": start, "warmup": None})
        run_dir = exp_dir / "runs" / name
        rl_stage(name, cell, run_dir)
        share_start_evals([*run_dirs, run_dir])
        evals_stage(config, run_dir, evaluate=evaluate)
        run_dirs.append(run_dir)
    if not build_report:
        return exp_dir
    from rhlab.report import build_report as make_report

    return make_report(exp_dir)
