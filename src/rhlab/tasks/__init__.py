"""Coding tasks: visible tests for the model and the reward, held-out tests for the oracle."""

from rhlab.tasks.schema import Task
from rhlab.tasks.sources import (
    TaskLoadError,
    builtin_tasks,
    check_source,
    format_report,
    get_task,
    humaneval_tasks,
    jsonl_tasks,
    load_tasks,
)

__all__ = [
    "Task",
    "TaskLoadError",
    "builtin_tasks",
    "check_source",
    "format_report",
    "get_task",
    "humaneval_tasks",
    "jsonl_tasks",
    "load_tasks",
]
