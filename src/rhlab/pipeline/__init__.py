"""One command from knowledge to report: ``ExperimentConfig`` + ``run.run_experiment`` (``rhlab run``).

``run_experiment`` lives in ``rhlab.pipeline.run``; it is not imported here so that the command line
starts without loading torch and transformers.
"""

from rhlab.pipeline.config import EvalSchedule, ExperimentConfig, MatrixConfig, load_experiment

__all__ = ["EvalSchedule", "ExperimentConfig", "MatrixConfig", "load_experiment"]
