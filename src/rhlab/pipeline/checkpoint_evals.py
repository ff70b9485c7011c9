"""What ``rhlab run`` evaluates at a checkpoint: one small contract, each eval listed once.

Every checkpoint eval says four things, and the pipeline needs nothing else from it:

- ``name``: what the console and the docs call it;
- ``target(run, checkpoint)``: the file or directory whose presence means "done" (written last, so a
  killed eval is redone and a finished one is skipped);
- ``share_key(run)``: what its step-0 result depends on besides the checkpoint; runs with equal keys
  share one step-0 result, copied rather than recomputed (None: never shared);
- ``run(run, checkpoint, spec)``: evaluate the policy ``spec`` and write ``target``;
- ``share(source, run)``: copy another run's step-0 result (with equal ``share_key``) into ``run``.

``checkpoint_evals(config)`` lists the evals an experiment asks for, in the order they run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rich.console import Console

from rhlab.evals.leakage import LeakageConfig, leakage_file
from rhlab.evals.probes.config import ProbeConfig
from rhlab.pipeline.config import EvalSchedule
from rhlab.rundir import FINAL, START, RunDir, atomic_dir, atomic_write_text, environment_transcripts, write_jsonl
from rhlab.train.config import parse_config

console = Console(stderr=True)


@runtime_checkable
class CheckpointEval(Protocol):
    """One evaluation of a checkpoint, as ``rhlab run`` schedules, skips and shares it."""

    name: str

    def applies(self, checkpoint: str) -> bool:
        """Whether this eval runs at ``checkpoint`` at all (some run only at the start and the end)."""
        ...

    def target(self, run: RunDir, checkpoint: str) -> Path: ...

    def share_key(self, run: RunDir) -> str | None: ...

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None: ...

    def share(self, source: Path, run: RunDir) -> None:
        """Give ``run`` the step-0 result at ``source`` (another run's ``target``)."""
        ...


def copy_result(source: Path, target: Path) -> None:
    """Copy a finished result (a file, or an eval directory) so that it appears complete at once."""
    if source.is_dir():
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp)
    else:
        atomic_write_text(target, source.read_text())


@dataclass(frozen=True)
class EnvironmentEval:
    """Test-time hacking: the policy sampled on the run's problems under its test prompt."""

    samples: int
    name: str = "environment"

    def applies(self, checkpoint: str) -> bool:
        return self.samples > 0 and checkpoint in (START, FINAL)

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return run.environment(checkpoint)

    def share_key(self, run: RunDir) -> str | None:
        """Sampling is seeded and the prompt, problems and generation settings are the run's, so two
        arms that differ only in their *training* prompt (the usual matrix) share one step-0 eval."""
        problems = run.read_problems()
        if problems is None:
            return None
        config = run.read_config(parse_config)
        return json.dumps(
            {
                "model": config.model,
                "test_prompt": config.test_prompt.model_dump(mode="json"),
                "problems": problems,
                "source": config.problems.source,
                "transform": config.problems.transform,
                "max_completion_length": config.max_completion_length,
                "temperature": config.temperature,
                "grpo": config.grpo,
            },
            sort_keys=True,
            default=str,
        )

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        from rhlab.train.env_eval import environment_eval
        from rhlab.train.problems import select_problems

        config = run.read_config(parse_config)
        problems = select_problems(config, run.path)
        console.print(f"[bold]environment[/] {run.name}/{checkpoint}: test prompt {config.test_prompt.variant!r}")
        environment_eval(spec, config, problems, samples=self.samples, out_path=self.target(run, checkpoint))

    def share(self, source: Path, run: RunDir) -> None:
        # Transcripts first: the summary's presence is what marks the checkpoint as done.
        atomic_write_text(run.environment_transcripts(START), environment_transcripts(source).read_text())
        atomic_write_text(self.target(run, START), source.read_text())


@dataclass(frozen=True)
class ProbeBattery:
    """The judge-free probe battery (paired log-odds items), scored against the start policy."""

    config: ProbeConfig
    name: str = "probes"

    def applies(self, checkpoint: str) -> bool:
        return self.config.enabled

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return run.probes(checkpoint)

    def share_key(self, run: RunDir) -> str | None:
        return run.read_config(parse_config).model  # the battery depends on the policy alone

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        from rhlab.evals.probes import run_probes

        start = run.probes(START)
        console.print(f"[bold]probes[/] {run.name}/{checkpoint} ({spec})")
        run_probes(
            spec,
            self.target(run, checkpoint),
            self.config,
            start_results=start if checkpoint != START and start.exists() else None,
        )

    def share(self, source: Path, run: RunDir) -> None:
        copy_result(source, self.target(run, START))


@dataclass(frozen=True)
class JudgedEvals:
    """The core misalignment evals (and any others configured), judged; one eval directory per checkpoint."""

    config: EvalSchedule
    evaluate: Callable[..., object] | None = None
    """The eval runner (``rhlab.evals.runner.run_evals``; tests pass a stand-in)."""
    name: str = "evals"

    def applies(self, checkpoint: str) -> bool:
        return True

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return run.eval_dir(checkpoint).results  # written last: the directory is complete

    def share_key(self, run: RunDir) -> str | None:
        return run.read_config(parse_config).model  # the judged evals depend on the policy alone

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        from rhlab.evals.runner import EvalConfig, run_evals

        schedule, final = self.config, checkpoint == FINAL
        eval_config = EvalConfig(
            model=spec,
            evals=schedule.evals,
            judge=schedule.judge,
            seed=0,
            limit=schedule.final_limit if final else schedule.checkpoint_limit,
            samples=schedule.final_samples if final else None,
            max_new_tokens=schedule.max_new_tokens,
            batch_size=schedule.batch_size,
            max_turns=schedule.max_turns,
        )
        console.print(f"[bold]evals[/] {run.name}/{checkpoint} ({spec})")
        with atomic_dir(run.eval_dir(checkpoint).path) as tmp:
            (self.evaluate or run_evals)(
                eval_config, out_dir=tmp, log=lambda msg: console.print(f"  {msg}", highlight=False)
            )

    def share(self, source: Path, run: RunDir) -> None:
        copy_result(source.parent, run.eval_dir(START).path)


@dataclass(frozen=True)
class HackKnowledge:
    """What the policy knows about the hacks (probes and questions), at the start and the end."""

    enabled: bool
    name: str = "hack_knowledge"

    def applies(self, checkpoint: str) -> bool:
        return self.enabled and checkpoint in (START, FINAL)

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return run.hack_knowledge_at(checkpoint)  # a directory, renamed into place when complete

    def share_key(self, run: RunDir) -> str | None:
        return run.read_config(parse_config).model  # seeded: depends on the policy alone

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        from rhlab.knowledge.hack_knowledge import hack_knowledge_eval, summary
        from rhlab.models.loading import load_model

        console.print(f"[bold]hack knowledge[/] {run.name}/{checkpoint} ({spec})")
        with atomic_dir(self.target(run, checkpoint)) as tmp:
            result = hack_knowledge_eval(load_model(spec), tmp)
        console.print(summary(result), highlight=False)

    def share(self, source: Path, run: RunDir) -> None:
        copy_result(source, self.target(run, START))


@dataclass(frozen=True)
class LeakageGrid:
    """Inoculation leakage: test-time hacking and the battery under each test prompt line of the grid."""

    config: LeakageConfig
    probes: ProbeConfig
    name: str = "leakage"

    def applies(self, checkpoint: str) -> bool:
        wanted = {START if c == "start" else FINAL for c in self.config.checkpoints}
        return self.config.enabled and checkpoint in wanted

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return leakage_file(run, checkpoint)

    def share_key(self, run: RunDir) -> str | None:
        return None  # the lines follow each arm's own training line: nothing to share between arms

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        from rhlab.evals.leakage import leakage_eval
        from rhlab.models.loading import load_model
        from rhlab.train.problems import select_problems

        config = run.read_config(parse_config)
        problems = select_problems(config, run.path)
        console.print(f"[bold]leakage[/] {run.name}/{checkpoint}: {', '.join(self.config.conditions)}")
        result, transcripts = leakage_eval(
            load_model(spec),
            spec,
            checkpoint,
            config,
            problems,
            self.config,
            self.probes if self.probes.enabled else None,
            seed=config.seed,
        )
        target = self.target(run, checkpoint)
        # Transcripts first: the record's presence is what marks the checkpoint as done.
        write_jsonl(target.with_name(f"{checkpoint}.leakage.transcripts.jsonl"), transcripts)
        atomic_write_text(target, result.model_dump_json(indent=2) + "\n")

    def share(self, source: Path, run: RunDir) -> None:
        copy_result(source, self.target(run, START))  # unused while share_key is None; kept for the contract


def checkpoint_evals(config: EvalSchedule, evaluate: Callable[..., object] | None = None) -> list[CheckpointEval]:
    """The evals ``rhlab run`` runs at each checkpoint, in order (the list is the one place they are named)."""
    return [
        EnvironmentEval(config.environment_samples),
        ProbeBattery(config.probes),
        HackKnowledge(config.hack_knowledge),
        JudgedEvals(config, evaluate),
        LeakageGrid(config.leakage, config.probes),
    ]


def evaluate_checkpoint(evals: list[CheckpointEval], run: RunDir, checkpoint: str, spec: str) -> None:
    """Run every eval that applies at ``checkpoint`` and has no result yet."""
    for ev in evals:
        if ev.applies(checkpoint) and not ev.target(run, checkpoint).exists():
            ev.run(run, checkpoint, spec)


def share_start_results(evals: list[CheckpointEval], runs: list[RunDir]) -> None:
    """Runs whose step-0 evals have equal share keys share one result (copied, not recomputed)."""
    done: dict[tuple[str, str], Path] = {}
    for run in runs:
        for ev in evals:
            key = ev.share_key(run)
            if key is None:
                continue
            target = ev.target(run, START)
            if target.exists():
                done.setdefault((ev.name, key), target)
            elif (ev.name, key) in done:
                ev.share(done[(ev.name, key)], run)
