"""The checkpoint-eval contract: every eval is listed once, skipped when done, and shared at step 0 by key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rhlab.pipeline.checkpoint_evals import (
    CheckpointEval,
    EnvironmentEval,
    HackKnowledge,
    JudgedEvals,
    LeakageGrid,
    ProbeBattery,
    checkpoint_evals,
    evaluate_checkpoint,
    share_start_results,
)
from rhlab.pipeline.config import EvalSchedule
from rhlab.rundir import FINAL, START, RunDir, atomic_write_text
from rhlab.train.config import TrainConfig


@dataclass
class CountingEval:
    """A stand-in eval that writes its target and counts its runs."""

    name: str = "counting"
    ran: list[str] = field(default_factory=list)

    def applies(self, checkpoint: str) -> bool:
        return checkpoint != "step_000002"

    def target(self, run: RunDir, checkpoint: str) -> Path:
        return run.evals / f"{checkpoint}.counting.json"

    def share_key(self, run: RunDir) -> str | None:
        return "same"

    def run(self, run: RunDir, checkpoint: str, spec: str) -> None:
        self.ran.append(checkpoint)
        atomic_write_text(self.target(run, checkpoint), spec)

    def share(self, source: Path, run: RunDir) -> None:
        atomic_write_text(self.target(run, START), source.read_text())


def _run(tmp_path: Path, name: str, model: str = "hf:/models/start") -> RunDir:
    run = RunDir(tmp_path / name)
    run.evals.mkdir(parents=True)
    run.write_config(TrainConfig.model_validate({"model": model}))
    return run


def test_every_checkpoint_eval_is_listed_once_in_run_order() -> None:
    evals = checkpoint_evals(EvalSchedule())
    assert [e.name for e in evals] == ["environment", "probes", "hack_knowledge", "evals", "leakage"]
    assert [type(e) for e in evals] == [EnvironmentEval, ProbeBattery, HackKnowledge, JudgedEvals, LeakageGrid]
    assert not evals[2].applies(FINAL) and HackKnowledge(True).applies(FINAL)
    assert not evals[4].applies(FINAL)  # the leakage grid is opt-in
    assert all(isinstance(e, CheckpointEval) for e in [*evals, CountingEval()])
    environment = evals[0]
    assert environment.applies(START) and environment.applies(FINAL) and not environment.applies("step_000005")
    assert not EnvironmentEval(0).applies(FINAL)


def test_a_finished_eval_is_skipped_and_one_that_does_not_apply_never_runs(tmp_path: Path) -> None:
    run, ev = _run(tmp_path, "a"), CountingEval()
    for checkpoint in (START, START, "step_000002", FINAL):
        evaluate_checkpoint([ev], run, checkpoint, f"hf:{checkpoint}")
    assert ev.ran == [START, FINAL]


def test_step0_results_are_shared_by_key_and_only_by_key(tmp_path: Path) -> None:
    first, same, other = _run(tmp_path, "a"), _run(tmp_path, "b"), _run(tmp_path, "c", model="hf:/models/other")
    probes, judged = ProbeBattery(EvalSchedule().probes), JudgedEvals(EvalSchedule())
    atomic_write_text(probes.target(first, START), '{"items": []}')
    first.eval_dir(START).path.mkdir()
    atomic_write_text(first.eval_dir(START).transcripts, "")
    atomic_write_text(judged.target(first, START), '{"evals": {}}')
    counting = CountingEval()
    evaluate_checkpoint([counting], first, START, "hf:start")
    share_start_results([counting, probes, judged], [first, same, other])
    assert counting.target(same, START).read_text() == "hf:start" and counting.target(other, START).exists()
    assert probes.target(same, START).read_text() == '{"items": []}' and not probes.target(other, START).exists()
    assert same.eval_dir(START).complete() and same.eval_dir(START).transcripts.is_file()
    assert not other.eval_dir(START).complete()  # another starting policy: its own evals


def test_hack_knowledge_at_a_checkpoint_writes_a_typed_record_once(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import json

    import rhlab.models.loading
    from rhlab.knowledge.hack_knowledge import RESULTS_FILE, HackKnowledgeResult
    from rhlab.models import ScriptedModel

    loads: list[str] = []

    def scripted(spec: str) -> ScriptedModel:
        loads.append(spec)
        return ScriptedModel(replies=["Return an object whose __eq__ always returns True."])

    monkeypatch.setattr(rhlab.models.loading, "load_model", scripted)
    run, ev = _run(tmp_path, "a"), HackKnowledge(True)
    for checkpoint in (START, START, "step_000003"):
        evaluate_checkpoint([ev], run, checkpoint, "hf:start")
    assert loads == ["hf:start"]
    record = HackKnowledgeResult.model_validate(json.loads((ev.target(run, START) / RESULTS_FILE).read_text()))
    assert record.score is not None and set(record.per_hack) == {"always_equal", "exit", "conftest"}
