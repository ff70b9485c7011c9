"""The during-RL mitigation configs (preference reward, faithfulness reward, answer-only KL) train at tiny size.

Each config is run as written except for its size (a tiny random model, two steps, no warm-up), so its
mitigation settings reach a real GRPO run: the preference judge scores every episode, faithfulness is
logged per step, and the KL term is computed (and masked) by the trainer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rhlab.pipeline.config import load_train_config
from rhlab.train.metrics import read_metrics
from rhlab.train.rollouts import read_rollouts

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("preference-low", "preference-high", "faithfulness-reward", "answer-only-kl")
TINY = [
    "train.warmup=null",
    "train.steps=2",
    "train.problems.max_tasks=2",
    "train.prompts_per_step=2",
    "train.group_size=2",
    "train.max_completion_length=12",
    "train.checkpoint_every=5",
    "train.grading_workers=2",
    "train.transcripts_per_step=1",
]


@pytest.mark.parametrize("name", CONFIGS)
def test_mitigation_config_passes_dry_run(name: str) -> None:
    from typer.testing import CliRunner

    from rhlab.cli import app

    path = ROOT / "configs" / "mitigations" / f"{name}.yaml"
    done = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert done.exit_code == 0, done.output
    assert "10 steps x" in done.output
    text = path.read_text()
    if "judge: offline" in text and name.startswith("preference"):
        assert "stand-in" in text, "a config with the offline preference judge says it is a stand-in"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from rhlab.models.testing import tiny_reward_model, tiny_test_model

    root = tmp_path_factory.mktemp("models")
    return {"policy": tiny_test_model(root / "policy"), "reward_model": tiny_reward_model(root / "rm")}


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_mitigation_config_trains_at_tiny_size(
    name: str, models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rhlab.train.trainer import train

    monkeypatch.setenv("RHLAB_CACHE", str(tmp_path / "cache"))
    path = ROOT / "configs" / "mitigations" / f"{name}.yaml"
    sets = [*TINY, f"train.model=hf:{models['policy']}"]
    if name == "preference-high":  # the low-weight config keeps the offline stand-in; this one a reward model
        sets.append(f"train.preference.judge=hf:{models['reward_model']}")
    config = load_train_config(path, sets=sets)
    run = tmp_path / "run"
    info = train(config, run)
    assert info["status"] == "complete" and info["steps_done"] == 2
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all("faithfulness" in r and "faithfulness_n" in r and "cot_faithful" in r for r in rows)
    records = [rec for _, recs in read_rollouts(run) for rec in recs]
    assert len(records) == 8
    if name.startswith("preference"):
        assert all(0.0 <= rec["preference"] <= 1.0 for rec in records), "every episode was scored"
        weight = config.reward["preference"]
        for rec in records:
            if rec["reward"] is not None:
                expected = rec["components"]["proxy_pass"] + weight * rec["preference"]
                assert rec["reward"] == pytest.approx(expected)
        assert (tmp_path / "cache" / "preference_cache.sqlite").is_file()
        if name == "preference-low":  # rescore re-grades in the sandbox and re-reads the recorded scores
            from rhlab.train.rescore import rescore

            rescore(run, workers=2, progress=False)
            again = read_metrics(run / "metrics.rescored.jsonl")
            assert [r["preference"] for r in again] == pytest.approx([r["preference"] for r in rows])
            assert [r["reward_mean"] for r in again] == pytest.approx([r["reward_mean"] for r in rows])
    else:
        assert all(rec["preference"] is None for rec in records)
        assert all("kl" in r for r in rows), "beta > 0: TRL's KL term was computed"
        assert all("faithfulness_judged_n" in r for r in rows), "the offline judge's view is logged beside"
    if name == "faithfulness-reward":
        for rec in records:
            expected = rec["components"]["proxy_pass"] + 0.5 * rec["components"]["cot_faithful"]
            assert rec["reward"] == pytest.approx(expected)
