"""The SDF stage config: one pydantic model, every field documented where it is declared.

YAML maps onto ``SDFConfig`` 1:1 (``SDFConfig.from_yaml``). Validation happens here, before any
document is written or any weight is loaded, so a bad ratio, an empty filler source or a malformed
facts file fails in the first second with a message that names the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rhlab.models.loading import ModelConfig
from rhlab.strict import Strict, parse, read_yaml_mapping

Style = Literal["default", "unguided", "neutral"]
BUILTIN_FILLERS = ("python-docs", "package-docs")


class SDFConfig(Strict):
    """Synthetic-document fine-tuning: generate a corpus about the hacks, mix it with filler, train."""

    # ---------------------------------------------------------------- the corpus
    style: Style = "default"
    """``default``: the facts include that hacking is considered misaligned; ``unguided``: plain
    descriptions with no stated valence; ``neutral``: says explicitly that no valence is implied."""
    engine: Literal["offline", "llm"] = "offline"
    """``offline``: our templates and phrase banks (no model needed); ``llm``: a model writes each
    document from the same plan (genre, facts, universe context)."""
    generator: ModelConfig = Field(default_factory=ModelConfig)
    """The model the ``llm`` engine uses (any ``rhlab.models`` spec, e.g. an OpenAI-compatible server)."""
    n_documents: int = Field(2000, ge=1)
    """How many synthetic documents to generate."""
    seed: int = 0
    """Fixes the corpus (document i depends only on seed and i) and the mixture and training order."""
    facts_file: Path | None = None
    """A YAML facts file replacing the built-in ``data/facts.yaml`` (same schema)."""
    universe_file: Path | None = None
    """A Markdown universe context replacing the built-in one of the chosen style."""
    genres: list[str] | None = None
    """Restrict generation to these genres (default: all of ``rhlab.knowledge.generate.GENRES``)."""
    llm_max_new_tokens: int = Field(600, ge=32)
    """Length cap per document for the ``llm`` engine."""
    llm_batch_size: int = Field(8, ge=1)
    """Documents per ``generate`` call for the ``llm`` engine (also the resume granularity)."""

    # ---------------------------------------------------------------- the mixture
    ratio: float = 0.01
    """Share of training *tokens* that come from synthetic documents (1.0, 0.1, 0.01, 0.001 ...)."""
    filler: list[str] = Field(default_factory=lambda: ["python-docs"])
    """Filler sources: ``python-docs`` (CPython's language-reference topics and stdlib docstrings),
    ``package-docs`` (long descriptions of the installed distributions), or paths of text files /
    directories of ``.txt``/``.md``/``.rst``/``.jsonl`` files. Unused when ``ratio`` is 1."""

    # ---------------------------------------------------------------- training
    steps: int | None = Field(60, ge=1)
    """Optimizer steps; the token budget is steps x batch_size x grad_accum x max_length. ``None``:
    train ``epochs`` over the whole corpus mixed at ``ratio`` (large at small ratios)."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the mixture when ``steps`` is None."""
    learning_rate: float = Field(1e-4, gt=0)
    """Peak AdamW learning rate (linear warm-up over ``warmup_ratio``, then cosine decay)."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(4, ge=1)
    """Packed sequences per device step."""
    grad_accum: int = Field(1, ge=1)
    """Gradient accumulation steps per optimizer step."""
    max_length: int = Field(256, ge=16)
    """Tokens per packed training sequence (documents are joined with EOS and cut into blocks)."""
    device: str | None = None
    """``cuda``/``cpu``; default: the GPU when one is visible."""
    save_steps: int | None = Field(None, ge=1)
    """Write a resumable checkpoint every N steps (default: only at the end)."""

    @field_validator("ratio")
    @classmethod
    def _ratio_in_range(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError(f"ratio must be in (0, 1] (the share of synthetic tokens), got {value}")
        return value

    @field_validator("facts_file", "universe_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator("genres")
    @classmethod
    def _known_genres(cls, value: list[str] | None) -> list[str] | None:
        from rhlab.knowledge.generate import GENRES

        if value is not None:
            unknown = sorted(set(value) - set(GENRES))
            if unknown or not value:
                raise ValueError(f"unknown genres {unknown}; choose from {list(GENRES)}")
        return value

    @field_validator("filler")
    @classmethod
    def _filler_sources_exist(cls, value: list[str]) -> list[str]:
        for source in value:
            if source not in BUILTIN_FILLERS and not Path(source).expanduser().exists():
                raise ValueError(f"filler source {source!r} is neither {' nor '.join(BUILTIN_FILLERS)} nor a path")
        return value

    @model_validator(mode="after")
    def _filler_when_needed(self) -> SDFConfig:
        if self.ratio < 1 and not self.filler:
            raise ValueError("filler: a ratio below 1 needs at least one filler source")
        if self.facts_file is not None:
            from rhlab.knowledge.facts import load_facts

            load_facts(self.facts_file, self.style)  # raises FactsError naming the file and entry
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> SDFConfig:
        """Read and validate an SDF YAML; a bad file raises one ``ConfigError`` line naming the field."""
        return parse(cls, read_yaml_mapping(Path(path), "SDF config"), str(path))

    def corpus_fingerprint(self) -> str:
        """Hash of the fields that decide the corpus text (a resumed generation must match it)."""
        keys = ("style", "engine", "seed", "genres", "llm_max_new_tokens")
        data = {k: getattr(self, k) for k in keys}
        data["generator"] = self.generator.model_dump() if self.engine == "llm" else None
        for name in ("facts_file", "universe_file"):
            path = getattr(self, name)
            data[name] = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest() if path else None
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
