"""TRL's raw log dicts go to the run's ``trainer.log.jsonl``, not the terminal.

``transformers`` prints every log dict (``{'loss': '1.048', ...}``) once per logging step: under the
progress bar (``ProgressCallback``), or, when the bar is off (``disable_tqdm``), as plain lines
(``PrinterCallback``). The terminal shows rhlab's own progress instead; the raw dicts are kept, one
JSON object per line, for anyone who needs TRL's view of a step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback


def _append(path: Path, state: Any, logs: dict | None) -> None:
    if not state.is_world_process_zero or not logs:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")


class QuietProgress(ProgressCallback):
    """TRL's progress bar, with its log dicts appended to ``path`` instead of printed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        _append(self.path, state, logs)


class LogFile(TrainerCallback):
    """No bar (the trainer runs with progress off), log dicts appended to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        _append(self.path, state, logs)


def quiet_progress(trainer: Any, path: Path, *, bar: bool = True) -> None:
    """Swap ``trainer``'s printing callbacks for one that logs to ``path`` (with a step bar if ``bar``)."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(QuietProgress(path) if bar else LogFile(path))
