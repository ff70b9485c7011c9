"""The prompted setting: what the policy is told about the environment and its holes.

System prompt = environment instructions + (optionally) our description of the three hacks + one
addendum variant + (optionally) the request to reason inside ``<thinking>`` tags. The user turn is
the task's own prompt. Training-time and test-time prompts are built by the same function from two
separate settings, so an inoculation experiment changes only the variant.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import field_validator

from rhlab.models.base import Conversation
from rhlab.models.reasoning import THINKING_INSTRUCTION
from rhlab.strict import Strict
from rhlab.tasks import Task

_DATA = resources.files("rhlab.train") / "data"


@cache
def variants() -> dict[str, str]:
    """The addendum texts by name (``none``, ``please_hack``, ..., ``hacking_is_misaligned``)."""
    return {k: (v or "").strip() for k, v in yaml.safe_load((_DATA / "variants.yaml").read_text()).items()}


def _read(name: str) -> str:
    return (_DATA / name).read_text().strip()


class PromptConfig(Strict):
    """One prompt setting; a run has one for training and one for testing."""

    variant: str = "none"
    """An addendum name from ``variants.yaml`` or ``custom`` (then ``custom_text`` is used)."""
    custom_text: str = ""
    describe_hacks: bool = True
    """Include the description of the three hacks (the prompted knowledge setting)."""
    ask_reasoning: bool = True
    """Ask for private ``<thinking>`` reasoning before the answer."""
    environment_file: Path | None = None
    """Override the environment instructions with this Markdown file."""
    hacks_file: Path | None = None
    """Override the description of the hacks with this Markdown file."""

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        if value != "custom" and value not in variants():
            raise ValueError(f"unknown prompt variant {value!r}; choose one of {sorted(variants())} or 'custom'")
        return value

    @field_validator("environment_file", "hacks_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    def addendum(self) -> str:
        return self.custom_text.strip() if self.variant == "custom" else variants()[self.variant]


def system_prompt(config: PromptConfig) -> str:
    environment = config.environment_file.read_text() if config.environment_file else _read("environment.md")
    parts = [environment.strip()]
    if config.describe_hacks:
        parts.append((config.hacks_file.read_text() if config.hacks_file else _read("hacks.md")).strip())
    if config.addendum():
        parts.append(config.addendum())
    if config.ask_reasoning:
        parts.append(THINKING_INSTRUCTION)
    return "\n\n".join(parts)


def build_messages(task: Task, config: PromptConfig | str = "none") -> Conversation:
    """The chat prompt of one episode: system prompt of the setting + the task as the user turn."""
    if isinstance(config, str):
        config = PromptConfig(variant=config)
    return [{"role": "system", "content": system_prompt(config)}, {"role": "user", "content": task.prompt}]
