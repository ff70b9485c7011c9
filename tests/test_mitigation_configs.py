"""Every mitigation config under ``configs/mitigations/`` plans with ``--dry-run``; ours also train at tiny size."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rhlab.pipeline.config import load_experiment

MITIGATIONS = Path("configs/mitigations")
OURS = ("dont-hack", "inoculation", "penalty-from-start", "penalty-after-onset", "screening")


def test_every_mitigation_config_passes_dry_run() -> None:
    from rhlab.cli import app

    paths = sorted(MITIGATIONS.glob("*.yaml"))
    assert {p.stem for p in paths} >= set(OURS)
    for path in paths:
        result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
        assert result.exit_code == 0, f"{path}: {result.output}"
        for name, _ in load_experiment(path).cells():
            assert f"  {name}: " in result.output, f"{path}: {name} not listed"


def test_each_mitigation_config_sets_what_its_row_of_the_paper_varies() -> None:
    def cells(stem: str) -> dict:
        return dict(load_experiment(MITIGATIONS / f"{stem}.yaml").cells())

    assert [c.train_prompt.variant for c in cells("dont-hack").values()] == ["none", "dont_hack"]
    inoculation = load_experiment(MITIGATIONS / "inoculation.yaml")
    assert {c.train_prompt.variant for _, c in inoculation.cells()} >= {"please_hack", "hacking_okay"}
    assert inoculation.evaluation.leakage.enabled
    for stem, start in (("penalty-from-start", "step0"), ("penalty-after-onset", "after_onset")):
        penalised = cells(stem)["penalty=1__seed0"]
        assert penalised.reward["monitor_flag"] == -1.0 and penalised.mitigations.penalty_start == start
        assert "monitor_flag" not in cells(stem)["penalty=0__seed0"].reward
    screening = cells("screening")
    assert screening["screening=true__seed0"].mitigations.screening
    assert not screening["screening=false__seed0"].mitigations.screening


def _episodes(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((run_dir / "rollouts").glob("step_*.jsonl.gz")):
        with gzip.open(path, "rt") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


TINY = [
    "train.warmup=null",
    "train.steps=1",
    "train.prompts_per_step=2",
    "train.group_size=2",
    "train.max_completion_length=8",
    "train.problems.max_tasks=2",
    "train.problems.difficulty=[hard]",
    "train.problems.hard_filter_samples=0",
    "train.checkpoint_every=1",
    "train.train_prompt.ask_reasoning=false",
    "train.grading_workers=2",
]
"""Overrides that shrink a mitigation config to a tiny model and one GRPO step."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stem", "cell", "extra"),
    [
        ("dont-hack", "dont_hack-seed0", []),
        ("inoculation", "hacking_okay-seed0", []),
        # A monitor that flags every episode makes the penalty and screening act on a random policy.
        ("penalty-from-start", "penalty=1__seed0", ["train.mitigations.monitor.false_positive_rate=1.0"]),
        ("penalty-after-onset", "penalty=1__seed0", ["train.mitigations.monitor.false_positive_rate=1.0"]),
        ("screening", "screening=true__seed0", ["train.mitigations.monitor.false_positive_rate=0.5"]),
    ],
)
def test_our_mitigation_configs_train_at_tiny_size(tmp_path_factory, stem: str, cell: str, extra: list[str]) -> None:  # noqa: ANN001
    from rhlab.models.testing import tiny_test_model
    from rhlab.pipeline.run import rl_stage
    from rhlab.train.prompts import variants

    model = tiny_test_model(tmp_path_factory.mktemp("tiny"))
    config = load_experiment(MITIGATIONS / f"{stem}.yaml", [*TINY, f"train.model=hf:{model}", *extra])
    train = dict(config.cells())[cell]
    run_dir = tmp_path_factory.mktemp("runs") / cell
    rl_stage(cell, train, run_dir, own_process=False)
    episodes = _episodes(run_dir)
    assert len(episodes) == 4
    if stem in ("dont-hack", "inoculation"):
        line = variants()[train.train_prompt.variant]
        assert all(line in ep["prompt"][0]["content"] for ep in episodes)
    elif stem == "penalty-from-start":
        assert all(ep["flagged"] and ep["penalized"] for ep in episodes)
        assert [ep["reward"] for ep in episodes] == [ep["components"]["proxy_pass"] - 1.0 for ep in episodes]
    elif stem == "penalty-after-onset":  # no onset in one step of a random model: flagged, not paid
        assert all(ep["flagged"] and not ep["penalized"] for ep in episodes)
        assert [ep["reward"] for ep in episodes] == [ep["components"]["proxy_pass"] for ep in episodes]
    else:
        assert any(ep["flagged"] for ep in episodes)
        assert all((ep["reward"] is None) == ep["flagged"] == ep["screened"] for ep in episodes)
