"""From a model spec string to a ``ChatModel``, and what is available on this machine.

Specs:
    ``embedded`` / ``embedded:NAME``   a model shipped in a pip package (default SmolLM2-135M-Instruct)
    ``hf:PATH``                         a local Hugging Face model folder or LoRA adapter folder
    ``openai:MODEL@BASE_URL``           an OpenAI-compatible server (URL optional: $OPENAI_BASE_URL)
    ``vllm:PATH``                       in-process vLLM on a GPU (optional extra)
    ``scripted``                        canned replies for tests and demos
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from rhlab.models.base import ChatModel, ModelError
from rhlab.strict import Strict

SPEC_FORMS = "embedded, embedded:NAME, hf:PATH, openai:MODEL@BASE_URL, vllm:PATH or scripted"


class ModelConfig(Strict):
    """How a stage config names a model: a spec plus backend options (YAML maps onto it 1:1)."""

    spec: str = "embedded"
    """Which model; see ``rhlab.models.loading`` for the forms."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend keyword options, e.g. ``device``, ``max_concurrency``, ``api_key_env``."""


def _call(factory: Callable[..., ChatModel], backend: str, *args: Any, **options: Any) -> ChatModel:
    """Call a backend factory, turning a misspelled option into one sentence instead of a TypeError."""
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(k for k in options if k not in parameters) if not takes_any else []
    if unknown:
        accepted = ", ".join(
            name
            for name, p in parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY or p.default is not p.empty
        )
        raise ModelError(f"The {backend} backend has no option {', '.join(unknown)}: use one of {accepted}.")
    return factory(*args, **options)


def load_model(spec: str | ModelConfig = "embedded", **options: Any) -> ChatModel:
    """Load the chat model named by ``spec``; ``options`` go to the backend (see ``SPEC_FORMS``).

    Raises ``ModelError`` with one sentence naming the fix for any bad input.
    """
    if isinstance(spec, ModelConfig):
        options = {**spec.options, **options}
        spec = spec.spec
    spec = spec.strip()
    kind, colon, target = spec.partition(":")
    if kind == "embedded":
        from rhlab.models.embedded import load_embedded

        return _call(load_embedded, "embedded", target or None, spec=spec, **options)
    if kind == "hf" and colon:
        from rhlab.models.hf import load_hf_model

        if not target:
            raise ModelError("The hf: spec names no folder: write hf:/path/to/model.")
        return _call(load_hf_model, "hf", target, spec=spec, **options)
    if kind == "openai" and colon:
        from rhlab.models.openai_compat import OpenAIChatModel, parse_openai_spec

        model_name, base_url = parse_openai_spec(target)
        options.setdefault("base_url", base_url)
        return _call(OpenAIChatModel, "openai", model_name, spec=spec, **options)
    if kind == "vllm" and colon:
        from rhlab.models.vllm_backend import VLLMChatModel

        if not target:
            raise ModelError("The vllm: spec names no folder: write vllm:/path/to/model.")
        return VLLMChatModel(target, spec=spec, **options)
    if spec == "scripted":
        from rhlab.models.scripted import ScriptedModel

        return _call(ScriptedModel, "scripted", **options)
    if os.path.isdir(os.path.expanduser(spec)):
        raise ModelError(f"{spec!r} is a folder but not a spec: write hf:{spec} to load it as a local model.")
    raise ModelError(f"Unknown model spec {spec!r}: write one of {SPEC_FORMS}.")


@dataclass(frozen=True)
class Availability:
    """One row of ``rhlab models list``."""

    spec: str
    available: bool
    detail: str


def available_models() -> list[Availability]:
    """Every backend and embedded model, whether it can run here, and why not if it cannot."""
    import importlib.util

    from rhlab.models.embedded import (
        DEFAULT_EMBEDDED,
        EMBEDDED_MODELS,
        converted_dir,
        is_converted,
        missing_reason,
    )
    from rhlab.models.vllm_backend import vllm_missing_reason

    rows: list[Availability] = []
    for name, entry in EMBEDDED_MODELS.items():
        spec = "embedded" if name == DEFAULT_EMBEDDED else f"embedded:{name}"
        reason = missing_reason(entry)
        if reason is None:
            state = "converted" if is_converted(converted_dir(entry)) else "converted on first use"
            rows.append(Availability(spec, True, f"{entry.description} Cache: {converted_dir(entry)} ({state})."))
        else:
            rows.append(Availability(spec, False, reason))
    has_gpu = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_gpu = torch.cuda.is_available()
    device = "GPU (bf16)" if has_gpu else "CPU (float32)"
    rows.append(Availability("hf:PATH", True, f"Any local Hugging Face model or LoRA adapter folder, on {device}."))
    key_note = (
        "key from $OPENAI_API_KEY"
        if os.environ.get("OPENAI_API_KEY")
        else "$OPENAI_API_KEY unset (fine for local servers)"
    )
    rows.append(Availability("openai:MODEL@BASE_URL", True, f"Any OpenAI-compatible server; {key_note}."))
    vllm_reason = vllm_missing_reason()
    rows.append(Availability("vllm:PATH", vllm_reason is None, vllm_reason or "In-process vLLM on the GPU."))
    rows.append(Availability("scripted", True, "Canned replies for tests and demos (no weights)."))
    return rows


def has_local_weights(spec: str) -> bool:
    """Whether ``spec`` names weights in this process (``embedded``, ``hf:``) that can be fine-tuned."""
    return spec.strip().partition(":")[0] in ("embedded", "hf")


def trainable_weights(spec: str) -> Path:
    """The local folder of trainable weights behind an ``embedded[:NAME]`` or ``hf:PATH`` spec.

    Training needs plain safetensors weights; the embedded GGUF is converted into the cache once.
    """
    kind, colon, target = spec.strip().partition(":")
    if kind == "embedded":
        from rhlab.models.embedded import (
            convert_gguf,
            converted_dir,
            ensure_converted,
            missing_reason,
            resolve_embedded,
        )

        entry = resolve_embedded(target or None)
        reason = missing_reason(entry)
        if reason is not None:
            raise ModelError(f"The embedded model {entry.name} is not available ({reason}).")
        return ensure_converted(converted_dir(entry), lambda tmp: convert_gguf(entry, tmp))
    if kind == "hf" and colon and target:
        path = Path(target).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec}: no model folder with a config.json at {path} (training needs full weights).")
        return path
    raise ModelError(f"Training needs local weights: use embedded or hf:PATH, not {spec!r}.")
