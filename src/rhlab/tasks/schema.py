"""What a coding task is: the record every source (built-in, HumanEval, user JSONL) produces."""

from __future__ import annotations

import ast
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Difficulty = Literal["easy", "medium", "hard"]


@lru_cache(maxsize=1)
def _prompt_template() -> str:
    return resources.files("rhlab.tasks").joinpath("data/task_prompt.md").read_text(encoding="utf-8")


class Task(BaseModel):
    """A function-style coding problem.

    ``visible_tests`` are shown to the model (in ``prompt``) and used by the vulnerable grader;
    ``heldout_tests`` are never shown and are used only by the honest oracle. Each test is Python
    source, normally one ``assert ENTRY(args) == expected`` line.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    entry_point: str
    description: str = ""
    signature: str = ""
    prompt: str = ""
    """What the model is asked; rendered from description, signature and visible tests if empty."""
    visible_tests: list[str] = Field(min_length=1)
    heldout_tests: list[str] = Field(default_factory=list)
    canonical_solution: str | None = None
    tags: list[str] = Field(default_factory=list)
    difficulty: Difficulty | None = None
    source: str = "user"

    @field_validator("entry_point")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"entry_point {value!r} is not a Python identifier")
        return value

    @field_validator("visible_tests", "heldout_tests")
    @classmethod
    def _parses(cls, tests: list[str]) -> list[str]:
        for test in tests:
            try:
                ast.parse(test)
            except SyntaxError as exc:
                raise ValueError(f"test {test!r} is not valid Python: {exc.msg}") from exc
        return tests

    @model_validator(mode="after")
    def _render_prompt(self) -> Task:
        if not self.prompt:
            if not self.description and not self.signature:
                raise ValueError("a task needs a prompt, or a description/signature to build one from")
            self.prompt = _prompt_template().format(
                description=self.description.strip(),
                signature=self.signature.strip() or f"def {self.entry_point}(...):",
                visible_tests="\n".join(self.visible_tests),
            )
        return self

    @property
    def all_tests(self) -> list[str]:
        return self.visible_tests + self.heldout_tests
