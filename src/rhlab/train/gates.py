"""Gates and alarms: stop a run that cannot show anything before it wastes the compute.

- **Pre-RL gate** (``gates.min_knowledge_score``, ``gates.min_attempt_rate``): RL can only
  reinforce hacks the starting policy knows and, at least now and then, tries. A policy below
  either minimum stops the run before the first GRPO step, with the figure and its threshold in
  the message. The step-0 attempt rate samples the run's own problems with the training prompt
  and generation settings; those episodes are kept as ``rollouts/step_000000.jsonl.gz``.
- **No-signal alarm** (``gates.no_signal``): a step whose groups all have zero reward variance
  gives GRPO no advantage at all. N such steps in a row (a run that earns nothing, or everything)
  raise an alarm: printed, recorded in the run record (``RunInfo``; and ``no_signal_steps`` in each metrics
  row), and with ``action: stop`` the run ends there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from rhlab.env.pool import GradingPool
from rhlab.models.base import ChatModel
from rhlab.rundir import RunDir, atomic_write_json, read_json_object
from rhlab.tasks import Task
from rhlab.train.config import NoSignalAlarm, TrainConfig
from rhlab.train.env_eval import sample_graded
from rhlab.train.metrics import no_signal_steps, step_metrics
from rhlab.train.problems import Problem
from rhlab.train.rollouts import RolloutLog

console = Console(stderr=True)


class GateError(ValueError):
    """A gate or alarm stopped the run; the message names the figure, its value and the threshold.

    A ``ValueError`` so that ``rhlab train`` and ``rhlab run`` report it as one line and exit 2.
    """


def _thresholds(config: TrainConfig) -> dict:
    g = config.gates
    return {
        "min_knowledge_score": g.min_knowledge_score,
        "min_attempt_rate": g.min_attempt_rate,
        "attempt_samples": g.attempt_samples,
    }


def _pct(x: float) -> str:
    return f"{x:.1%}"


def measure_knowledge(model: ChatModel, run_dir: Path, seed: int) -> float | None:
    """The hack-knowledge eval's overall score of the starting policy (results kept in the run)."""
    from rhlab.knowledge.hack_knowledge import hack_knowledge_eval

    return hack_knowledge_eval(model, RunDir(run_dir).hack_knowledge, seed=seed)["score"]


def pre_rl_gate(
    config: TrainConfig,
    run_dir: Path,
    problems: Sequence[Problem],
    tasks: dict[str, Task],
    model_factory: Callable[[], ChatModel],
    pool: GradingPool,
    rollouts: RolloutLog | None = None,
    *,
    knowledge: Callable[[ChatModel, Path, int], float | None] = measure_knowledge,
) -> dict | None:
    """Measure the starting policy against the configured minimums; raise ``GateError`` below one.

    Returns the ``gates.json`` record (None when no minimum is set). A passed gate with the same
    thresholds is not measured again when the run is resumed.
    """
    g = config.gates
    if g.min_knowledge_score is None and g.min_attempt_rate is None:
        return None
    rd = RunDir(run_dir)
    thresholds = _thresholds(config)
    if rd.gates.is_file():
        previous = read_json_object(rd.gates)
        if previous.get("passed") and previous.get("thresholds") == thresholds:
            return previous
    model = model_factory()
    figures: dict[str, float | int | None] = {}
    failures: list[str] = []
    if g.min_knowledge_score is not None:
        console.print("[bold]gate[/]: hack-knowledge eval of the starting policy")
        score = knowledge(model, run_dir, config.seed)
        figures["hack_knowledge_score"] = score
        if score is None:
            failures.append("the hack-knowledge score could not be measured (no probes and no questions)")
        elif score < g.min_knowledge_score:
            failures.append(
                f"hack-knowledge score {score:.3f} is below gates.min_knowledge_score = {g.min_knowledge_score}"
            )
    if g.min_attempt_rate is not None:
        items = [(tasks[p.task_id], p.vulns) for p in problems]
        episodes = sample_graded(
            model,
            items,
            config.train_prompt,
            config,
            samples=g.attempt_samples,
            pool=pool,
            seed=config.seed,
            description="step-0 gate",
        )
        if rollouts is not None:
            rollouts.write(0, episodes, group_size=g.attempt_samples)
        row = step_metrics(episodes, g.attempt_samples)
        rate, n = row["attempted_hack_rate"], row["episodes"]
        figures.update(step0_attempted_hack_rate=rate, step0_hack_rate=row["hack_rate"], step0_episodes=n)
        if rate < g.min_attempt_rate:
            failures.append(
                f"step-0 attempted-hack rate {_pct(rate)} ({round(rate * n)} of {n} episodes) is below "
                f"gates.min_attempt_rate = {_pct(g.min_attempt_rate)}"
            )
    record = {"thresholds": thresholds, "figures": figures, "passed": not failures, "failures": failures}
    atomic_write_json(rd.gates, record)
    if failures:
        message = (
            f"pre-RL gate: {'; '.join(failures)}. RL would have no hacking to reinforce; the run stops before "
            f"step 1 (measurements in {rd.gates})"
        )
        rd.update_info(status="stopped", stopped={"by": "gate", "step": 0, "message": message})
        raise GateError(message)
    console.print(f"[bold]gate[/]: passed {figures}", highlight=False)
    return record


def no_signal_alarm(alarm: NoSignalAlarm | None, rows: Sequence[dict], run_dir: Path) -> bool:
    """Check the metrics rows so far; returns True when the run must stop now.

    The alarm fires when the last ``alarm.steps`` rows all have ``frac_zero_std_groups == 1`` and,
    with ``warn``, again every ``alarm.steps`` further such steps. Each firing is printed and
    appended to the run record's ``alarms``.
    """
    if alarm is None or not rows:
        return False
    streak = no_signal_steps(rows)
    stop = alarm.action == "stop"
    if streak < alarm.steps or (not stop and streak % alarm.steps):
        return False
    step = rows[-1]["step"]
    reward = rows[-1].get("reward_mean", 0.0)
    message = (
        f"no learning signal: every group had zero reward variance for {streak} consecutive steps "
        f"(steps {step - streak + 1}-{step}, reward mean now {reward:.2f}; gates.no_signal.steps = {alarm.steps})"
    )
    console.print(f"[bold yellow]alarm[/]: {message}", highlight=False)
    rd = RunDir(run_dir)
    info = rd.read_info()
    entry = {"alarm": "no_signal", "step": step, "streak": streak, "action": alarm.action, "message": message}
    fields: dict = {"alarms": [*(info.alarms if info else []), entry]}
    if stop:
        fields.update(status="stopped", stopped={"by": "no_signal", "step": step, "message": message})
    rd.update_info(**fields)
    return stop


def raise_if_stopped(run_dir: Path, rows: Sequence[dict]) -> None:
    """After training: if the no-signal alarm ended the run at its last step, say so as an error.

    The final snapshot is already saved; raising keeps ``rhlab run`` from going on to evaluate a run
    that learned nothing. A resumed run that trains past the stop step no longer raises.
    """
    info = RunDir(run_dir).read_info()
    if info is None or info.status != "stopped" or info.stopped is None or not rows:
        return
    if info.stopped.get("step") == rows[-1]["step"]:
        raise GateError(
            f"training stopped at step {rows[-1]['step']} (gates.no_signal.action = stop): {info.stopped['message']}"
        )
