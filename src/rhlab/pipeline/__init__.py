"""One command from knowledge to report: ``ExperimentConfig`` + ``run_experiment`` (``rhlab run``)."""

from rhlab.pipeline.config import EvalSchedule, ExperimentConfig, MatrixConfig, load_experiment
from rhlab.pipeline.run import run_experiment

__all__ = ["EvalSchedule", "ExperimentConfig", "MatrixConfig", "load_experiment", "run_experiment"]
