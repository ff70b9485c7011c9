"""TRL's raw log dicts go to the run's ``trainer.log.jsonl``, not the terminal.

``transformers``' progress callback prints every log dict (``{'loss': '1.048', ...}``) under the
progress bar, once per step. The terminal shows rhlab's own one-line step summary instead; the raw
dicts are kept, one JSON object per line, for anyone who needs TRL's view of a step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.trainer_callback import ProgressCallback


class QuietProgress(ProgressCallback):
    """TRL's progress bar, with its log dicts appended to ``path`` instead of printed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")


def quiet_progress(trainer: Any, path: Path) -> None:
    """Swap ``trainer``'s progress callback for one that logs to ``path``."""
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress(path))
