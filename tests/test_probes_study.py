"""The CPU study config: enough seeds, a declared primary contrast, and the movement it is sized for."""

from __future__ import annotations

from pathlib import Path

from rhlab.pipeline.config import load_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cpu_study_declares_its_contrast_and_has_three_seeds_per_arm():
    study = load_experiment(CONFIGS / "cpu-study.yaml")
    arms = [a.variant for a in study.matrix.arms]
    assert arms == ["dont_hack", "control"] and len(study.matrix.seeds) >= 3
    assert study.evaluation.probes.primary == ("dont_hack", "control")
    assert study.evaluation.probes.margin == 0.5
    quick = load_experiment(CONFIGS / "quickstart.yaml")
    # sized against the quickstart: 3.6x its summed step size (steps x learning rate), longer completions
    ratio = (study.train.steps * study.train.learning_rate) / (quick.train.steps * quick.train.learning_rate)
    assert ratio >= 3 and study.train.max_completion_length > quick.train.max_completion_length
