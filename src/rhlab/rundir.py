"""The run and experiment directories: every file name, record and reader, in one module.

Training (``rhlab train``), the pipeline (``rhlab run``), the evals (``rhlab eval``) and the report
(``rhlab report``) meet in these directories, so this module is the contract between them: a path
is spelt here and nowhere else, each file has one reader that fails with the file (and line) in
the message, and everything that must not be seen half-written goes through ``atomic_write_text``
or ``atomic_dir``. ``docs/run-directory.md`` describes the same layout; ``tests/test_rundir.py``
checks that every path below appears there.

    EXPERIMENT/                    ExperimentDir
      experiment.yaml              .config           the resolved ExperimentConfig
      runs/<variant>-seed<k>/      .run(name)        one RunDir per matrix cell (``run_name``)
      knowledge/warmup/ | sdf/     .warmup / .sdf    the shared starting policy
      report/                      .report           report.html, numbers.json, figures/

    RUN/                           RunDir
      config.yaml                  .config           the resolved TrainConfig
      run.json                     .info             RunInfo: identity, status, progress
      problems.json                .problems         the chosen problems (reused on resume)
      metrics.jsonl                .metrics          one row per GRPO step (read_metrics)
      trainer.log.jsonl            .trainer_log      TRL's own log dicts (loss, grad norm...), one per line
      transcripts/step_N.jsonl     .transcript(N)    sampled episodes of step N
      rollouts/step_N.jsonl.gz     .rollout(N)       every episode of step N (gzip; step 0: pre-RL gate sample)
      metrics.rescored.jsonl       .rescored_metrics metrics.jsonl re-computed by ``rhlab rescore``
      rescore.json                 .rescore_summary  what ``rhlab rescore`` changed (label transitions)
      rescore.changes.jsonl        .rescore_changes  every episode whose label changed, old and new
      gates.json                   .gates            the pre-RL gate's figures, thresholds, pass or fail
      knowledge/hack_knowledge/    .hack_knowledge   the gate's hack-knowledge eval of the starting policy
      checkpoints/checkpoint-N/    .checkpoint(N)    TRL checkpoints (resume)
      snapshots/step_N/ | final/   .snapshot(N) / .final_snapshot   evaluable weights
      knowledge/warmup/            .warmup           ``rhlab train`` with a warmup: section
      evals/<ckpt>/                .eval_dir(ckpt)   EvalDir: results.json + transcripts.jsonl
      evals/<ckpt>.probes.json     .probes(ckpt)     the probe battery's results
      evals/<ckpt>.hack_knowledge/ .hack_knowledge_at(ckpt)  the hack-knowledge eval (evaluation.hack_knowledge)
      evals/<ckpt>.environment.json  .environment(ckpt)  test-time hacking (EnvironmentResult)
      evals/<ckpt>.environment.transcripts.jsonl  environment_transcripts(...)  its sampled episodes
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rhlab.strict import ConfigError, format_errors, read_yaml_mapping

C = TypeVar("C", bound=BaseModel)
ConfigParser = Callable[[dict[str, Any], str], C]
"""How a config file's mapping becomes its typed model (``train.config.parse_config``,
``pipeline.config.parse_experiment``): passed in by the layer that owns the model, so this module
imports nothing above it."""

START = "step_000000"
"""Checkpoint name of the starting policy (before any RL step)."""
FINAL = "final"
"""Checkpoint name of the policy after the last step."""


class RunDirError(ValueError):
    """A file of a run or experiment directory is malformed; the message names the file (and line)."""


def checkpoint_name(step: int) -> str:
    """``step_000012``: the name of a step's snapshot, transcript file and eval directory."""
    return f"step_{step:06d}"


def step_of(name: str) -> int | None:
    """The step of a ``step_NNNNNN`` name (file stem or directory), None for anything else."""
    prefix, _, digits = name.partition("_")
    return int(digits) if prefix == "step" and digits.isdigit() else None


def probes_path(run_dir: Path, checkpoint: str) -> Path:
    """``RunDir(run_dir).probes(checkpoint)``, for callers that hold a plain path."""
    return RunDir(run_dir).probes(checkpoint)


def environment_transcripts(environment_file: Path) -> Path:
    """The sampled episodes beside a test-time hacking summary (``<ckpt>.environment.transcripts.jsonl``)."""
    return environment_file.with_suffix(".transcripts.jsonl")


def run_name(variant: str, seed: int) -> str:
    """The run directory name of a matrix cell; the run's identity itself is stored in ``run.json``."""
    return f"{variant}-seed{seed}"


# --- writing without half-written files -----------------------------------------------------------


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a sibling temp file, then rename it over ``path`` (readers never see half).

    The temp name is unique, so two processes writing the same file never write into one temp file;
    the last rename wins with a whole file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a directory at ``<target>.tmp`` (not created: the writer makes it) and swap it in on success.

    A crash leaves ``target`` as it was (absent or complete); the next attempt starts with a fresh
    temp directory, and a failure removes the half-built one.
    """
    tmp = _tmp(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


# --- readers --------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object, or ``RunDirError`` naming the file."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return data


def _validated(model: type[BaseModel], data: Any, path: Path, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RunDirError(f"{path}: not a valid {what}: {format_errors(exc, model)}") from None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (none when the file does not exist yet).

    Training (resume) and the report read the file through this one function. A malformed line
    raises ``RunDirError`` with file and line: not JSON, not an object, a ``step`` that is not a
    positive integer or does not follow the previous one, a ``hack_rate`` that is not a number. The
    other keys are the metrics of ``rhlab.train.metrics.step_metrics`` and pass through as they are.
    """
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise RunDirError(f"{where}: expected a JSON object, got {type(row).__name__}")
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise RunDirError(f"{where}: 'step' must be a positive integer, got {step!r}")
        if rows and step <= rows[-1]["step"]:
            raise RunDirError(f"{where}: step {step} does not follow step {rows[-1]['step']}")
        if not isinstance(row.get("hack_rate", 0.0), int | float):
            raise RunDirError(f"{where}: 'hack_rate' must be a number, got {row['hack_rate']!r}")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Any) -> Path:
    """One JSON object per line, written atomically (a transcript or rollout file, a truncated log)."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# --- records --------------------------------------------------------------------------------------


class RunInfo(BaseModel):
    """``run.json``: who the run is (its matrix cell) and how far it got.

    The run's identity lives here, not in its directory name: the report groups runs by
    ``variant`` and ``seed`` as recorded. New fields are added here first (unknown keys are refused).
    """

    model_config = ConfigDict(extra="forbid")

    variant: str
    """The training prompt's variant (``train_prompt.variant``)."""
    seed: int
    status: Literal["running", "complete", "stopped"] = "running"
    """``stopped``: a gate or the no-signal alarm ended the run (see ``stopped``)."""
    steps_done: int = 0
    onset_step: int | None = None
    """First step whose successful-hack share exceeds 2 % (``rhlab.train.metrics.onset_step``)."""
    started: str | None = None
    finished: str | None = None
    versions: dict[str, str] = {}
    """Python and library versions the run was trained with."""
    alarms: list[dict[str, Any]] = []
    """Alarms raised during training (``rhlab.train.gates``): ``{"alarm", "step", "message", "action"}``."""
    stopped: dict[str, Any] | None = None
    """Why the run stopped early: ``{"by", "step", "message"}`` (None: it did not)."""


class EnvironmentResult(BaseModel):
    """``evals/<ckpt>.environment.json``: a checkpoint sampled on the run's problems under ``test_prompt``.

    The typed keys are what the report shows; the rest of the row are the same metrics as a
    ``metrics.jsonl`` row (``rhlab.train.metrics.step_metrics``) and are kept as they are.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: dict[str, Any]
    """The test prompt setting (``PromptConfig`` as JSON)."""
    samples_per_problem: int
    episodes: int
    hack_rate: float
    attempted_hack_rate: float
    honest_solve_rate: float


# --- directories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalDir:
    """One ``rhlab eval`` output: ``results.json`` (``RunResults``) and ``transcripts.jsonl`` (``SampleRecord``s)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def transcripts(self) -> Path:
        return self.path / "transcripts.jsonl"

    def complete(self) -> bool:
        """Written last, so its presence means the whole evaluation finished."""
        return self.results.is_file()

    def write(self, results: BaseModel, records: Iterable[BaseModel]) -> None:
        """Transcripts first, results last: ``complete()`` then implies both are there."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.transcripts, "".join(r.model_dump_json() + "\n" for r in records))
        atomic_write_text(self.results, results.model_dump_json(indent=2))


@dataclass(frozen=True)
class RunDir:
    """One RL run (``rhlab train`` or one matrix cell of ``rhlab run``)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    # files at the top
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def info(self) -> Path:
        return self.path / "run.json"

    @property
    def problems(self) -> Path:
        return self.path / "problems.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def exists(self) -> bool:
        """Something of a run is here (the report accepts a bare run directory)."""
        return self.info.is_file() or self.metrics.is_file()

    @property
    def trainer_log(self) -> Path:
        """TRL's raw log dicts, one JSON object per line: kept out of the terminal, not lost."""
        return self.path / "trainer.log.jsonl"

    # per-step episode logs
    @property
    def transcripts(self) -> Path:
        return self.path / "transcripts"

    def transcript(self, step: int) -> Path:
        """Sampled episodes of one step (``transcripts_per_step`` of them)."""
        return self.transcripts / f"{checkpoint_name(step)}.jsonl"

    def transcript_files(self) -> list[Path]:
        return sorted(self.transcripts.glob("step_*.jsonl"))

    @property
    def rollouts(self) -> Path:
        return self.path / "rollouts"

    def rollout(self, step: int) -> Path:
        """Every episode of one step, gzip-compressed (the full rollout log, for re-scoring)."""
        return self.rollouts / f"{checkpoint_name(step)}.jsonl.gz"

    def rollout_files(self) -> list[Path]:
        return sorted(self.rollouts.glob("step_*.jsonl.gz"))

    @property
    def rescored_metrics(self) -> Path:
        """``metrics.jsonl`` re-computed from the kept rollouts by ``rhlab rescore`` (never the original)."""
        return self.path / "metrics.rescored.jsonl"

    @property
    def rescore_summary(self) -> Path:
        return self.path / "rescore.json"

    @property
    def rescore_changes(self) -> Path:
        return self.path / "rescore.changes.jsonl"

    @property
    def gates(self) -> Path:
        """The pre-RL gate's measurements (``rhlab.train.gates``)."""
        return self.path / "gates.json"

    # weights
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"checkpoint-{step}"

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoints whose trainer state was written (a kill during saving leaves none), oldest first."""
        found = []
        for d in self.checkpoints.glob("checkpoint-*"):
            step = d.name.removeprefix("checkpoint-")
            if step.isdigit() and (d / "trainer_state.json").is_file():
                found.append((int(step), d))
        return sorted(found)

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    def snapshot(self, step: int) -> Path:
        return self.snapshots / checkpoint_name(step)

    @property
    def final_snapshot(self) -> Path:
        return self.snapshots / FINAL

    def step_snapshots(self) -> list[tuple[int, Path]]:
        """Complete step snapshots (not ``final``), oldest first."""
        found = [(step_of(p.name), p) for p in self.snapshots.glob("step_*") if p.is_dir()]
        return sorted((s, p) for s, p in found if s is not None)

    @property
    def warmup(self) -> Path:
        return self.path / "knowledge" / "warmup"

    @property
    def hack_knowledge(self) -> Path:
        """The pre-RL gate's hack-knowledge eval of the starting policy (``hack_knowledge.json``)."""
        return self.path / "knowledge" / "hack_knowledge"

    # evaluations
    @property
    def evals(self) -> Path:
        return self.path / "evals"

    def eval_dir(self, checkpoint: str) -> EvalDir:
        return EvalDir(self.evals / checkpoint)

    def eval_dirs(self) -> list[EvalDir]:
        """Evaluated (or being evaluated) checkpoints: ``step_*`` and ``final``, by name."""
        if not self.evals.is_dir():
            return []
        names = sorted(p.name for p in self.evals.iterdir() if p.is_dir())
        return [self.eval_dir(n) for n in names if n == FINAL or step_of(n) is not None]

    def probes(self, checkpoint: str) -> Path:
        """The probe battery's results for one checkpoint (``rhlab.evals.probes``), beside its eval directory."""
        return self.evals / f"{checkpoint}.probes.json"

    def probe_files(self) -> dict[str, Path]:
        """Checkpoint name -> its probe results, for every one written."""
        suffix = ".probes.json"
        files = sorted(self.evals.glob(f"*{suffix}")) if self.evals.is_dir() else []
        return {p.name.removesuffix(suffix): p for p in files}

    def hack_knowledge_at(self, checkpoint: str) -> Path:
        """The hack-knowledge eval of one checkpoint (``rhlab.knowledge.hack_knowledge``), a directory."""
        return self.evals / f"{checkpoint}.hack_knowledge"

    def environment(self, checkpoint: str) -> Path:
        """Test-time hacking of one checkpoint (``rhlab.train.env_eval``)."""
        return self.evals / f"{checkpoint}.environment.json"

    def environment_transcripts(self, checkpoint: str) -> Path:
        return self.evals / f"{checkpoint}.environment.transcripts.jsonl"

    def environments(self) -> dict[str, Path]:
        """Checkpoint name -> its test-time hacking file, for every one written."""
        suffix = ".environment.json"
        files = sorted(self.evals.glob(f"*{suffix}")) if self.evals.is_dir() else []
        return {p.name.removesuffix(suffix): p for p in files}

    # readers and writers
    def read_info(self) -> RunInfo | None:
        """``run.json``, or None when the run has none yet."""
        if not self.info.is_file():
            return None
        return _validated(RunInfo, read_json_object(self.info), self.info, "run.json")

    def update_info(self, **fields: Any) -> RunInfo:
        """Merge ``fields`` into ``run.json`` (created with them if absent), validated, atomically."""
        current = read_json_object(self.info) if self.info.is_file() else {}
        info = _validated(RunInfo, {**current, **fields}, self.info, "run.json")
        atomic_write_text(self.info, info.model_dump_json(indent=1))
        return info

    def read_config(self, parse: ConfigParser[C]) -> C:
        """``config.yaml`` through ``parse`` (``rhlab.train.config.parse_config``)."""
        return parse(read_yaml_mapping(self.config, "run config"), str(self.config))

    def write_config(self, config: BaseModel) -> None:
        atomic_write_text(self.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics)

    def read_problems(self) -> list[dict[str, Any]] | None:
        """The saved problem selection (``[{"task_id", "vulns"}]``), or None before the first start."""
        if not self.problems.is_file():
            return None
        try:
            data = json.loads(self.problems.read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{self.problems}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, list) or not all(isinstance(p, dict) and "task_id" in p for p in data):
            raise RunDirError(f"{self.problems}: expected a list of {{task_id, vulns}} objects")
        return data

    def write_problems(self, problems: list[dict[str, Any]]) -> None:
        atomic_write_json(self.problems, problems)

    def read_environment(self, checkpoint: str) -> EnvironmentResult:
        path = self.environment(checkpoint)
        return _validated(EnvironmentResult, read_json_object(path), path, "test-time hacking file")


@dataclass(frozen=True)
class ExperimentDir:
    """One ``rhlab run``: the shared knowledge stage, a run per matrix cell, the report."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / "experiment.yaml"

    @property
    def runs(self) -> Path:
        return self.path / "runs"

    def run(self, name: str) -> RunDir:
        return RunDir(self.runs / name)

    def run_dirs(self) -> list[RunDir]:
        """The runs of the experiment, by name; the directory itself when it is a bare run directory."""
        if self.runs.is_dir():
            return [RunDir(p) for p in sorted(self.runs.iterdir()) if p.is_dir()]
        return [RunDir(self.path)] if RunDir(self.path).exists() else []

    @property
    def knowledge(self) -> Path:
        return self.path / "knowledge"

    @property
    def warmup(self) -> Path:
        return self.knowledge / "warmup"

    @property
    def sdf(self) -> Path:
        return self.knowledge / "sdf"

    @property
    def untouched_probes(self) -> Path:
        """The probe battery on the model before the knowledge stage (its effect = start - untouched)."""
        return self.knowledge / "untouched.probes.json"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def report_html(self) -> Path:
        return self.report / "report.html"

    @property
    def numbers(self) -> Path:
        return self.report / "numbers.json"

    @property
    def figures(self) -> Path:
        return self.report / "figures"

    def read_config(self, parse: ConfigParser[C]) -> C | None:
        """``experiment.yaml`` through ``parse`` (``rhlab.pipeline.config.parse_experiment``), or None
        when there is none."""
        if not self.config.is_file():
            return None
        try:
            return parse(read_yaml_mapping(self.config, "experiment config"), str(self.config))
        except ConfigError as exc:
            raise RunDirError(str(exc)) from None

    def write_config(self, config: BaseModel) -> None:
        atomic_write_text(self.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
