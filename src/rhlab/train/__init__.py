"""RL training on the hackable environment: GRPO (TRL) with the environment's reward.

``config`` (what a run is) -> ``prompts`` (the prompted setting) -> ``problems`` (which tasks, which
holes) -> ``warmup`` (optional SFT) -> ``reward`` (grading + mitigations) -> ``trainer`` (TRL
GRPO + per-step ``metrics``, checkpoints and resume).
"""

from rhlab.train.config import ConfigError, TrainConfig, load_config
from rhlab.train.metrics import ONSET_THRESHOLD, onset_step, read_metrics
from rhlab.train.prompts import PromptConfig, build_messages, variants

__all__ = [
    "ONSET_THRESHOLD",
    "ConfigError",
    "PromptConfig",
    "TrainConfig",
    "build_messages",
    "load_config",
    "onset_step",
    "read_metrics",
    "variants",
]
