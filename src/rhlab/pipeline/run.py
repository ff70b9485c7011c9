"""``rhlab run CONFIG``: knowledge -> RL -> checkpoint evals -> report, resumable stage by stage.

Each stage checks whether its outputs exist and are complete before doing anything, so running the
same command again after an interruption finishes the experiment without redoing finished work
(the paths are ``rhlab.rundir``'s; see ``docs/run-directory.md``):

1. knowledge  ``EXP/knowledge/{warmup,sdf}/`` - shared by every run (it does not depend on the variant)
2. RL         ``EXP/runs/<cell>/`` - complete when its run record says so; otherwise resumed from its
              last complete checkpoint, or started over when it was killed before the first one
3. evals      ``EXP/runs/<cell>/evals/<checkpoint>/`` - one directory per evaluated checkpoint,
              swapped in whole when its evaluation finished; the start and final policies are also
              sampled on the environment under the test prompt (``evals/<checkpoint>.environment.json``)
4. after RL  ``EXP/after_rl/<stage>/<cell>/`` - mitigations applied to each finished run (``after_rl:``;
              filter-and-distill, offline recontextualization, safety training), each laid out as a
              run directory and evaluated like one (its start, then its final policy)
5. report     ``EXP/report/`` - rebuilt from the files above every time (cheap, deterministic)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from rhlab.evals.probes.config import ProbeConfig
from rhlab.pipeline.checkpoint_evals import ProbeBattery, checkpoint_evals, evaluate_checkpoint, share_start_results
from rhlab.pipeline.config import EvalSchedule, ExperimentConfig
from rhlab.rundir import FINAL, START, ExperimentDir, RunDir
from rhlab.train import distributed as dist
from rhlab.train.config import TrainConfig, parse_config

console = Console(stderr=True)


def knowledge_stage(config: ExperimentConfig, exp: ExperimentDir) -> str | None:
    """Build the shared starting policy; returns its ``hf:`` spec (None: train from ``train.model``)."""
    if config.knowledge == "sdf":
        from rhlab.knowledge import train_sdf

        console.print("[bold]knowledge[/]: synthetic-document fine-tuning")
        out = train_sdf(config.sdf, config.train.model, exp.sdf)
        return f"hf:{out}"
    if config.train.warmup is not None:
        from rhlab.models.loading import trainable_weights
        from rhlab.train.warmup import run_warmup

        console.print("[bold]knowledge[/]: supervised warm-up")
        _, first = config.cells()[0]
        out = run_warmup(first, trainable_weights(config.train.model), exp.warmup)
        return f"hf:{out}"
    return None


def rl_stage(name: str, cell: TrainConfig, run_dir: Path, *, own_process: bool = True) -> None:
    """Train one cell (or resume it, or skip it when finished).

    With ``own_process`` the cell trains in a spawned child process, so everything it held on the GPU
    (policy, optimizer, a colocated vLLM engine) is freed when it ends and the next cell starts on an
    empty GPU. Under ``accelerate launch`` the ranks train in the launched processes themselves: they
    share one process group, which a child could not join.
    """
    from rhlab.train.trainer import train_cell

    # Under accelerate launch the main process decides (and clears a dead run); every rank trains.
    resume = dist.main_only(rl_start, name, run_dir)
    if resume is None:
        return
    args = (None if resume else cell, RunDir(run_dir).path, resume)
    if own_process and not dist.launched():
        dist.fresh_process(train_cell, *args)
    else:
        train_cell(*args)


def rl_start(name: str, run_dir: Path) -> bool | None:
    """Whether the run resumes (True), starts (False) or is already finished (None)."""
    run = RunDir(run_dir)
    info = run.read_info()
    if info is not None and info.status in ("complete", "stopped"):
        # A stopped run ended on a gate or alarm; resuming it would stop again (delete it to retry).
        console.print(f"[bold]RL[/] {name}: {info.status}, skipped")
        return None
    resume = run.config.exists()
    if resume and not run.complete_checkpoints():
        # Killed before its first checkpoint: nothing to resume from, so start the run over.
        shutil.rmtree(run.path)
        resume = False
    console.print(f"[bold]RL[/] {name}: {'resuming' if resume else 'starting'}")
    return resume


def checkpoints_to_evaluate(run_dir: Path, every_k: int, include_start: bool) -> list[tuple[str, str]]:
    """(eval directory name, model spec): the start, every k-th snapshot, and the final policy."""
    run = RunDir(run_dir)
    snapshots = run.step_snapshots()
    final = run.final_snapshot.is_dir()
    if final:  # the final policy supersedes a snapshot of the same (last) step
        info = run.read_info()
        steps_done = info.steps_done if info is not None else None
        snapshots = [(step, path) for step, path in snapshots if step != steps_done]
    chosen = [(path.name, f"hf:{path}") for _, path in snapshots[every_k - 1 :: every_k]]
    if final:
        chosen.append((FINAL, f"hf:{run.final_snapshot}"))
    if include_start:
        chosen.insert(0, (START, run.read_config(parse_config).model))
    return chosen


def evals_stage(config: ExperimentConfig, run_dir: Path, *, evaluate: Callable[..., object] | None = None) -> None:
    """Evaluate the chosen checkpoints (``rhlab.pipeline.checkpoint_evals``); finished results are skipped."""
    schedule = config.evaluation
    evals = checkpoint_evals(schedule, evaluate)
    run = RunDir(run_dir)
    for name, spec in checkpoints_to_evaluate(run.path, schedule.every_k, schedule.include_start):
        evaluate_checkpoint(evals, run, name, spec)


def probes_stage(run: RunDir, name: str, spec: str, config: ProbeConfig) -> None:
    """The judge-free probe battery on one checkpoint (``evals/<name>.probes.json``), skipped when present."""
    evaluate_checkpoint([ProbeBattery(config)], run, name, spec)


def untouched_probes_stage(config: ExperimentConfig, exp: ExperimentDir) -> None:
    """The battery on the model before warm-up/SDF, so the knowledge stage's own shift is measured."""
    probes = config.evaluation.probes
    if not probes.enabled or exp.untouched_probes.exists():
        return
    from rhlab.evals.probes import run_probes

    console.print(f"[bold]probes[/] untouched model ({config.train.model})")
    run_probes(config.train.model, exp.untouched_probes, probes)


def share_start_evals(run_dirs: list[Path]) -> None:
    """Runs that start from the same policy share one step-0 evaluation (copied, not recomputed).

    The core evals and the probe battery depend on the policy alone; the environment eval also on
    the run's test prompt, problems and sampling settings (each eval's ``share_key``).
    """
    share_start_results(checkpoint_evals(EvalSchedule()), [RunDir(p) for p in run_dirs])


def after_rl_dir(exp: ExperimentDir, stage: str, cell: str) -> RunDir:
    return RunDir(exp.path / "after_rl" / stage / cell)


def after_rl_stage(
    config: ExperimentConfig, exp: ExperimentDir, teacher: RunDir, evaluate: Callable[..., object] | None = None
) -> None:
    """Every ``after_rl`` stage on one finished RL run, then its checkpoint evals (both resumable)."""
    info = teacher.read_info()
    if info is None or info.status != "complete":
        console.print(f"[bold]after RL[/] {teacher.name}: the run is not complete, skipped")
        return
    for stage in config.after_rl:
        out = after_rl_dir(exp, stage.name, teacher.name)
        console.print(f"[bold]after RL[/] {stage.name} on {teacher.name}")
        record = run_after_rl(stage, teacher, out)
        counts = record.get("counts")
        if counts:
            console.print(f"  kept {counts.get('kept', 0)}, dropped {counts.get('dropped', 0)}", highlight=False)
        share_start_evals([teacher.path, out.path])
        evals_stage(config, out.path, evaluate=evaluate)


def run_after_rl(stage: object, teacher: RunDir, out: RunDir) -> dict:
    from rhlab.train.distill import FilterDistillConfig, run_filter_distill
    from rhlab.train.recontext import RecontextOfflineConfig, run_recontext_offline
    from rhlab.train.safety import SafetyTrainingConfig, run_safety

    if isinstance(stage, FilterDistillConfig):
        return run_filter_distill(stage, teacher, out)
    if isinstance(stage, RecontextOfflineConfig):
        return run_recontext_offline(stage, teacher, out)
    if isinstance(stage, SafetyTrainingConfig):
        return run_safety(stage, teacher, out)
    raise TypeError(f"after_rl: no runner for {type(stage).__name__}")


def run_experiment(
    config: ExperimentConfig,
    exp_dir: Path,
    *,
    build_report: bool = True,
    evaluate: Callable[..., object] | None = None,
    cell_processes: bool = True,
) -> Path:
    """Run every stage that is not complete yet; returns the report path (or the experiment dir).

    ``cell_processes``: train each RL cell in its own child process (``rl_stage``); off only for tests
    that patch the trainer in this process."""
    exp = ExperimentDir(exp_dir)
    config.sandbox.apply()
    # Under accelerate launch only the RL stage runs on every rank; the rest is the main process's,
    # and the knowledge stage's fine-tuning runs in a plain child process (see rhlab.train.distributed).
    dist.main_only(exp.path.mkdir, parents=True, exist_ok=True)
    dist.main_only(exp.write_config, config)
    start = dist.main_only(dist.single_process, knowledge_stage, config, exp)
    if start is not None:
        dist.main_only(untouched_probes_stage, config, exp)
    run_dirs: list[Path] = []
    for name, cell in config.cells():
        if start is not None:
            cell = cell.model_copy(update={"model": start, "warmup": None})
        run = exp.run(name)
        rl_stage(name, cell, run.path, own_process=cell_processes)
        dist.main_only(share_start_evals, [*run_dirs, run.path])
        dist.main_only(evals_stage, config, run.path, evaluate=evaluate)
        if config.after_rl:
            dist.main_only(dist.single_process, after_rl_stage, config, exp, run, evaluate)
        run_dirs.append(run.path)
    if not build_report:
        return exp.path
    from rhlab.report import build_report as make_report

    return dist.main_only(make_report, exp.path)
