"""In-process vLLM (``vllm:PATH``) for fast GPU sampling when the ``vllm`` extra is installed.

Prompts are rendered with the model's own chat template and handed over as token ids, exactly as
the ``hf:`` backend does, so a model samples the same prompt tokens under both backends (vLLM's
text path would add a second BOS to templates that already contain one).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rhlab.models.base import AnswerLogprobs, AnswerRequest, Completion, Conversation, ModelError, SamplingParams
from rhlab.models.hf import cut_at_stop, forbid_downloads


def vllm_missing_reason() -> str | None:
    """Why the vLLM backend cannot run here, or ``None`` when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed: pip install 'rhlab[vllm]' on a machine with a CUDA GPU"
    import torch

    if not torch.cuda.is_available():
        return "vllm needs a CUDA GPU and none is visible: use hf:PATH on this machine"
    return None


class VLLMChatModel:
    """Chat generation through ``vllm.LLM``; ``tokenizer`` is exposed, trainable weights are not."""

    def __init__(self, path: str, *, spec: str | None = None, **engine_options: Any) -> None:
        reason = vllm_missing_reason()
        if reason is not None:
            raise ModelError(f"The vllm backend is unavailable ({reason}).")
        model_dir = Path(path).expanduser()
        if not model_dir.is_dir():
            raise ModelError(f"No model directory at {model_dir}: pass the path of a local Hugging Face model folder.")
        forbid_downloads()
        from vllm import LLM

        engine_options.setdefault("dtype", "bfloat16")
        self.llm = LLM(model=str(model_dir), **engine_options)
        self.tokenizer = self.llm.get_tokenizer()
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"The tokenizer in {model_dir} has no chat template: use an instruct model.")
        self.spec = spec or f"vllm:{model_dir}"

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        prefill = bool(conversation) and conversation[-1]["role"] == "assistant"
        text = self.tokenizer.apply_chat_template(
            list(conversation),
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMSamplingParams

        sampling = VLLMSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
        )
        prompts = [{"prompt_token_ids": self._prompt_ids(c)} for c in conversations]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        results: list[list[Completion]] = []
        for request in outputs:
            row = []
            for sample in request.outputs:
                text, _ = cut_at_stop(sample.text, params.stop)
                reason = "length" if sample.finish_reason == "length" else "stop"
                row.append(Completion(text=text, token_ids=list(sample.token_ids), finish_reason=reason))
            results.append(row)
        return results

    def answer_logprobs(
        self, requests: Sequence[AnswerRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[AnswerLogprobs]:
        """Teacher-forced answer log-probs through vLLM's ``prompt_logprobs`` (one token generated)."""
        from vllm import SamplingParams as VLLMSamplingParams

        return vllm_answer_logprobs(self.llm, self.tokenizer, requests, VLLMSamplingParams, progress=progress)


def vllm_answer_logprobs(
    llm: Any,
    tokenizer: Any,
    requests: Sequence[AnswerRequest],
    sampling_cls: Any,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[AnswerLogprobs]:
    """Score answers with ``llm.generate(..., prompt_logprobs=0)``: the log-prob of every prompt token.

    Split out of the class so it can be tested with a fake engine on machines without vLLM.
    """
    from rhlab.models.logprobs import render_prompt, split_answers

    flat: list[tuple[list[int], list[int]]] = []
    for request in requests:
        context, conts = split_answers(tokenizer, render_prompt(tokenizer, request.conversation), request.answers)
        flat.extend((context, c) for c in conts)
    params = sampling_cls(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    outputs = llm.generate([{"prompt_token_ids": c + a} for c, a in flat], params, use_tqdm=False)
    scores: list[list[float]] = []
    for (context, cont), output in zip(flat, outputs):
        per_position = output.prompt_logprobs
        if per_position is None or len(per_position) != len(context) + len(cont):
            raise ModelError("vLLM returned no prompt log-probabilities: upgrade vLLM (prompt_logprobs is needed).")
        row = []
        for pos, token in enumerate(cont, start=len(context)):
            entry = per_position[pos][token]
            row.append(float(getattr(entry, "logprob", entry)))
        scores.append(row)
    if progress is not None:
        progress(len(flat))
    results, k = [], 0
    for request in requests:
        n = len(request.answers)
        results.append(AnswerLogprobs(scores[k : k + n], [flat[k + j][1] for j in range(n)]))
        k += n
    return results
