"""Local Hugging Face models (``hf:PATH``): batched chat generation on CPU or GPU.

The RL and SFT stages train the very object this backend generates with, so ``HFChatModel``
keeps the ``transformers`` model and tokenizer as public attributes and never copies them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rhlab.models.base import AnswerLogprobs, AnswerRequest, Completion, Conversation, ModelError, SamplingParams

_DTYPES = ("float32", "bfloat16", "float16")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def forbid_downloads() -> None:
    """Make every Hugging Face library refuse network access in this process.

    Our machines cannot reach a hub; without this a typo in a path turns into a slow, confusing
    download attempt instead of an immediate "not found".
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pick_device(device: str | None = None) -> str:
    """``cuda`` when a GPU is visible, else ``cpu``; an explicit choice wins."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_model_dir(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"No model directory at {path}: pass the path of a local Hugging Face model folder.")
    if not path.is_dir():
        raise ModelError(f"{path} is a file, not a model directory: pass the folder that holds config.json.")


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).exists() for name in _TOKENIZER_FILES)


def _adapter_base(adapter_dir: Path, base: str | None) -> Path:
    """Where a LoRA adapter's base model lives: the ``base`` option, else the adapter's own record."""
    if base is None:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        base = config.get("base_model_name_or_path")
        if not base:
            raise ModelError(
                f"The adapter in {adapter_dir} does not name its base model: pass base=PATH_TO_BASE_MODEL."
            )
    base_path = Path(base.removeprefix("hf:")).expanduser()
    if not base_path.is_dir():
        raise ModelError(
            f"The adapter in {adapter_dir} expects its base model at {base}, which is not a local folder: "
            "pass base=PATH_TO_BASE_MODEL."
        )
    return base_path


def load_hf_model(
    path: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    base: str | None = None,
    chat_template: str | None = None,
    default_stop: Sequence[str] = (),
    batch_size: int = 32,
    spec: str | None = None,
) -> HFChatModel:
    """Load a local model folder (or a LoRA adapter folder on top of ``base``) for chat.

    ``dtype`` defaults to bfloat16 on GPU and float32 on CPU (bf16 matmuls are slow on most CPUs).
    ``chat_template`` overrides or supplies the tokenizer's template (base models have none).
    ``default_stop`` is added to every request's stop strings (for completion-style templates).
    """
    forbid_downloads()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(path).expanduser()
    _check_model_dir(model_dir)
    adapter = (model_dir / "adapter_config.json").exists()
    weights_dir = _adapter_base(model_dir, base) if adapter else model_dir
    if not adapter and not (model_dir / "config.json").exists():
        raise ModelError(f"{model_dir} has no config.json: point hf: at a folder written by save_pretrained().")
    tokenizer_dir = model_dir if _has_tokenizer(model_dir) else weights_dir
    if not _has_tokenizer(tokenizer_dir):
        raise ModelError(
            f"{model_dir} has no tokenizer: save one next to the weights with tokenizer.save_pretrained('{model_dir}')."
        )

    device = pick_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device={device!r} was asked for but no CUDA GPU is visible: use device='cpu'.")
    if dtype is not None and dtype not in _DTYPES:
        raise ModelError(f"Unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}.")
    torch_dtype = getattr(torch, dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Could not load the tokenizer in {tokenizer_dir} ({exc}): re-save it with save_pretrained."
        ) from exc
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise ModelError(
            f"The tokenizer in {tokenizer_dir} has no chat template: use an instruct model or pass chat_template=..."
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Could not load the model in {weights_dir} ({exc}): check that the folder is complete."
        ) from exc
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir, is_trainable=True)
    model.to(device)
    model.eval()
    return HFChatModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec or f"hf:{model_dir}",
        default_stop=tuple(default_stop),
        batch_size=batch_size,
    )


class HFChatModel:
    """A ``transformers`` causal LM answering chats: left-padded batches, one ``generate`` call each.

    Completions carry the generated token ids (padding removed, EOS kept) so RL code can score
    exactly the tokens that were sampled.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        spec: str,
        default_stop: tuple[str, ...] = (),
        batch_size: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.default_stop = default_stop
        self.batch_size = batch_size
        # Decoder-only models must be padded on the left so every row's next token follows its prompt.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def render(self, conversation: Conversation) -> str:
        """The prompt text for one conversation; a final assistant message is continued (prefill)."""
        prefill = bool(conversation) and conversation[-1]["role"] == "assistant"
        return self.tokenizer.apply_chat_template(
            list(conversation),
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )

    def answer_logprobs(
        self, requests: Sequence[AnswerRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[AnswerLogprobs]:
        """Teacher-forced log-probs of fixed answers (only answer positions reach the LM head)."""
        from rhlab.models.logprobs import local_answer_logprobs

        return local_answer_logprobs(
            self.model, self.tokenizer, requests, batch_size=min(self.batch_size, 16), progress=progress
        )

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        prompts = [self.render(c) for c in conversations]
        results: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            results.extend(self.generate_from_prompts(prompts[start : start + self.batch_size], params))
        return results

    def generation_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        """Map ``SamplingParams`` onto ``model.generate`` arguments (pure top-p: top-k is off)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "num_return_sequences": params.n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _stops(self, params: SamplingParams) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*params.stop, *self.default_stop)))

    def generate_from_prompts(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """Generate for already-rendered prompt strings (the chat template is already applied)."""
        import torch

        # Templates already contain BOS where the model needs it; adding it again would double it.
        encoded = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        kwargs = self.generation_kwargs(params)
        stops = self._stops(params)
        if stops:
            kwargs["stopping_criteria"] = [StopOnStrings(self.tokenizer, stops, prompt_length)]
        with _seeded(params.seed, self.device), torch.inference_mode():
            output = self.model.generate(**encoded, **kwargs)
        new_tokens = output[:, prompt_length:].tolist()
        return self._completions(new_tokens, params, len(prompts))

    def _completions(self, rows: list[list[int]], params: SamplingParams, n_prompts: int) -> list[list[Completion]]:
        eos_ids = _eos_ids(self.model, self.tokenizer)
        pad_id = self.tokenizer.pad_token_id
        stops = self._stops(params)
        completions: list[Completion] = []
        for row in rows:
            ids, hit_eos = _until_eos(row, eos_ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, hit_stop = cut_at_stop(text, stops)
            if hit_stop and not hit_eos:
                ids = _strip_padding(ids, pad_id)
            reason = "length" if not (hit_eos or hit_stop) and len(ids) >= params.max_new_tokens else "stop"
            completions.append(Completion(text=text, token_ids=ids, finish_reason=reason))
        return [completions[i * params.n : (i + 1) * params.n] for i in range(n_prompts)]


class StopOnStrings:
    """Stop each row once its *generated* text contains a stop string.

    transformers' own ``stop_strings`` also matches across the prompt boundary (a prompt ending in
    a newline plus a generated newline "contains" ``"\\n\\n"``), which would end rows before they
    produced the stop string; this criterion only decodes the tail of the new tokens.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.prompt_length = prompt_length
        # A stop string of k characters spans at most k tokens, plus a few partial-UTF-8 byte tokens.
        self.window = 2 * max(len(s) for s in self.stops) + 8

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window) :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; report whether one was found."""
    positions = [text.find(s) for s in stops if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    return ids


def _until_eos(row: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """The sampled tokens up to and including the first EOS (what follows is padding)."""
    for i, token in enumerate(row):
        if token in eos_ids:
            return row[: i + 1], True
    return row, False


def _strip_padding(ids: list[int], pad_id: int | None) -> list[int]:
    """Drop the padding ``generate`` appends after a row finished on a stop string."""
    end = len(ids)
    while end > 0 and pad_id is not None and ids[end - 1] == pad_id:
        end -= 1
    return ids[:end]


@contextlib.contextmanager
def _seeded(seed: int | None, device: Any) -> Iterator[None]:
    """Seed sampling without disturbing the caller's RNG (a trainer's shuffling must not change)."""
    if seed is None:
        yield
        return
    import torch

    devices = [device] if getattr(device, "type", str(device)).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
