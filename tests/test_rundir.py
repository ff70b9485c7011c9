"""``rhlab.rundir``: the one home of run-directory paths, records, readers and the atomic writer."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

import rhlab.report.numbers
import rhlab.train.metrics
from rhlab.env.hacks import HACK_TYPES, HOLE_FOR_HACK, VULNERABILITIES, family_for, hole_for
from rhlab.pipeline.config import parse_experiment
from rhlab.rundir import (
    EvalDir,
    ExperimentDir,
    RunDir,
    RunDirError,
    atomic_dir,
    atomic_write_text,
    checkpoint_name,
    read_metrics,
    step_of,
)

DOC = Path("docs/run-directory.md")
SAMPLE_ARGS = {"step": 12, "checkpoint": "final"}
"""Arguments the path methods are called with; the doc's examples use the same ones. (A run's own
paths are checked on the ``RunDir``; ``ExperimentDir.run`` is not followed.)"""


def spelled_paths(obj: object) -> dict[str, Path]:
    """Every path an ``ExperimentDir`` / ``RunDir`` / ``EvalDir`` spells, by attribute name."""
    out: dict[str, Path] = {}
    for attr, member in inspect.getmembers(type(obj)):
        if attr.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(obj, attr)
        elif inspect.isfunction(member):
            params = list(inspect.signature(member).parameters)[1:]
            returns = str(inspect.signature(member).return_annotation)
            if returns not in ("Path", "EvalDir") or not set(params) <= set(SAMPLE_ARGS):
                continue
            value = getattr(obj, attr)(*(SAMPLE_ARGS[p] for p in params))
        else:
            continue
        if isinstance(value, EvalDir):
            out.update({f"{attr}.{k}": v for k, v in spelled_paths(value).items()})
            value = value.path
        if isinstance(value, Path):
            out[attr] = value
    return out


def layout_names() -> set[str]:
    """The file and folder names in the doc's layout blocks (``name/`` and ``name.ext``)."""
    blocks = re.findall(r"```\n(.*?)```", DOC.read_text(), re.S)
    names = set()
    for block in blocks:
        for line in block.splitlines():
            entry = line.split("#", 1)[0].strip()
            names.update(part for part in entry.split("/") if part)
    return names


@pytest.mark.parametrize(
    ("root", "obj"),
    [(Path("EXPERIMENT"), ExperimentDir(Path("EXPERIMENT"))), (Path("RUN"), RunDir(Path("RUN")))],
)
def test_every_path_the_module_spells_is_on_the_docs_page(root: Path, obj: object) -> None:
    paths = spelled_paths(obj)
    assert len(paths) >= 8  # the introspection found the paths (not an empty, always-passing check)
    documented = layout_names()
    missing = {
        attr: str(path.relative_to(root))
        for attr, path in paths.items()
        if path != root and not set(path.relative_to(root).parts) <= documented
    }
    assert not missing, f"{DOC} does not show these rhlab.rundir paths: {missing}"


FILE_NAMES = {
    "config.yaml",
    "run.json",
    "problems.json",
    "metrics.jsonl",
    "experiment.yaml",
    "results.json",
    "transcripts.jsonl",
    "numbers.json",
}
"""Run-directory file names that are never dictionary keys too (``checkpoints`` and ``evals`` are)."""


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            ids.update(id(stmt.value) for stmt in body if isinstance(stmt, ast.Expr))
    return ids


def test_run_directory_file_names_are_spelt_only_in_rundir() -> None:
    offenders = []
    for path in sorted(Path("src/rhlab").rglob("*.py")):
        if path.name == "rundir.py":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docs and node.value in FILE_NAMES:
                offenders.append(f"{path}:{node.lineno}: {node.value!r}")
    assert not offenders, "use rhlab.rundir instead of spelling these names:\n" + "\n".join(offenders)


def test_one_metrics_reader_for_training_and_the_report(tmp_path: Path) -> None:
    assert rhlab.train.metrics.read_metrics is read_metrics is rhlab.report.numbers.read_metrics
    assert read_metrics(tmp_path / "absent.jsonl") == []
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "hack_rate": 0.0}\n\n{"step": 0}\n')
    with pytest.raises(RunDirError, match=re.escape(f"{path}:3: 'step' must be a positive integer")):
        read_metrics(path)


def test_run_record_is_strict_and_merged_atomically(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.read_info() is None
    run.update_info(variant="none", seed=3, steps_done=0)
    info = run.update_info(steps_done=4, onset_step=2)
    assert (info.variant, info.seed, info.steps_done, info.onset_step) == ("none", 3, 4, 2)
    assert run.read_info() == info
    with pytest.raises(RunDirError, match=r"run\.json: not a valid run\.json: stepz_done"):
        run.update_info(stepz_done=5)
    run.info.write_text(json.dumps({"variant": "none"}))
    with pytest.raises(RunDirError, match="seed"):
        run.read_info()
    assert [p.name for p in run.path.iterdir()] == ["run.json"]  # no temp file left behind


def test_atomic_dir_keeps_the_old_directory_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "evals" / "final"
    with atomic_dir(target) as tmp:
        tmp.mkdir()
        atomic_write_text(tmp / "results.json", "{}")
    assert (target / "results.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        tmp.mkdir()
        (tmp / "results.json").write_text("half")
        raise RuntimeError("killed")
    assert (target / "results.json").read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["final"]


def test_checkpoint_names_round_trip_and_paths_list_what_exists(tmp_path: Path) -> None:
    assert checkpoint_name(12) == "step_000012" and step_of("step_000012") == 12
    assert step_of("final") is None and step_of("step_x") is None
    run = RunDir(tmp_path)
    for step in (10, 5):
        run.snapshot(step).mkdir(parents=True)
        run.eval_dir(checkpoint_name(step)).path.mkdir(parents=True)
    run.final_snapshot.mkdir()
    (run.evals / "final.tmp").mkdir()
    atomic_write_text(run.environment("final"), "{}")
    assert [s for s, _ in run.step_snapshots()] == [5, 10]
    assert [e.name for e in run.eval_dirs()] == ["step_000005", "step_000010"]
    assert list(run.environments()) == ["final"]
    assert run.checkpoint(10).name == "checkpoint-10" and run.complete_checkpoints() == []


def test_experiment_dir_finds_runs_or_is_a_bare_run(tmp_path: Path) -> None:
    exp = ExperimentDir(tmp_path / "exp")
    assert exp.run_dirs() == []
    exp.run("none-seed0").update_info(variant="none", seed=0)
    assert [r.name for r in exp.run_dirs()] == ["none-seed0"]
    bare = ExperimentDir(exp.run("none-seed0").path)
    assert [r.path for r in bare.run_dirs()] == [bare.path]
    assert exp.read_config(parse_experiment) is None
    exp.config.write_text("matrix: {variant: [none]}\n")
    with pytest.raises(RunDirError, match=r"matrix\.variant: unknown key \(did you mean 'variants'\?\)"):
        exp.read_config(parse_experiment)


# --- the words for hacks ------------------------------------------------------------------------------


def test_one_mapping_between_hack_families_and_grader_holes() -> None:
    assert set(HOLE_FOR_HACK) == set(HACK_TYPES)
    assert {h for h in HOLE_FOR_HACK.values() if h} == set(VULNERABILITIES)
    assert hole_for("exit") == "exit_code" and family_for("exit_code") == "exit"
    assert hole_for("special_casing") is None
    assert all(family_for(hole_for(f)) == f for f in HACK_TYPES if hole_for(f))
    with pytest.raises(ValueError, match="unknown hack family"):
        hole_for("exit_code")
    from rhlab.env import detectors, graders, oracle

    assert detectors.HACK_TYPES is HACK_TYPES and graders.VULNERABILITIES is VULNERABILITIES
    assert oracle.HOLE_FOR_HACK is HOLE_FOR_HACK
