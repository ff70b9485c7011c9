"""Any OpenAI-compatible chat server (``openai:MODEL@BASE_URL``): vLLM, Ollama, hosted APIs.

Judges and large policies often live behind such a server. Requests go out in parallel up to a
bound (servers batch them; unbounded fan-out gets rate-limited), each retried with exponential
backoff on transient failures, each with a timeout so one stuck request cannot hang an eval.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rhlab.models.base import AnswerLogprobs, AnswerRequest, Completion, Conversation, ModelError, SamplingParams
from rhlab.models.hf import cut_at_stop

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_STOP_STRINGS = 4  # the OpenAI API rejects more; the rest are applied client-side


def parse_openai_spec(target: str) -> tuple[str, str | None]:
    """Split ``MODEL@BASE_URL`` (the part after ``openai:``) into model name and optional URL."""
    model, at, url = target.rpartition("@")
    if at and url.startswith(("http://", "https://")):
        return model, url
    return target, None


class _ServerUnreachable(Exception):
    pass


class OpenAIChatModel:
    """Chat completions over HTTP with bounded concurrency, retries with backoff and timeouts."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff: float = 1.0,
        extra_body: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        spec: str | None = None,
    ) -> None:
        if not model_name:
            raise ModelError("The openai: spec names no model: write openai:MODEL@BASE_URL, e.g. openai:gpt-4o-mini.")
        self.model_name = model_name
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.tokenizer_path = tokenizer
        """Local folder of the served model's tokenizer; needed only for ``answer_logprobs``."""
        self._tokenizer: Any = None
        self.spec = spec or f"openai:{model_name}@{self.base_url}"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=self.max_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[Completion]]:
        jobs = [(ci, si) for ci in range(len(conversations)) for si in range(params.n)]
        results: list[list[Completion | None]] = [[None] * params.n for _ in conversations]

        # One fatal answer (server down, bad key) fails the whole batch; stop the other requests early.
        abort = threading.Event()

        def run(job: tuple[int, int]) -> None:
            ci, si = job
            results[ci][si] = self._complete(conversations[ci], params, si, abort)

        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(jobs))))
        try:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
        except (_ServerUnreachable, ModelError) as exc:
            abort.set()
            raise ModelError(str(exc)) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [[c for c in row if c is not None] for row in results]

    def answer_logprobs(
        self, requests: Sequence[AnswerRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[AnswerLogprobs]:
        """Answer log-probs from ``/completions`` with ``echo`` + ``logprobs`` on token-id prompts.

        The chat template is rendered locally with the served model's tokenizer (option
        ``tokenizer``), so the boundary between prompt and answer is exactly the one the local
        backends use. Servers that do not echo prompt log-probs (most hosted APIs) get a clear error.
        """
        from rhlab.models.logprobs import render_prompt, split_answers

        tokenizer = self._load_tokenizer()
        results: list[AnswerLogprobs] = []
        for request in requests:
            context, conts = split_answers(tokenizer, render_prompt(tokenizer, request.conversation), request.answers)
            rows = [self._prompt_logprobs(context, cont) for cont in conts]
            results.append(AnswerLogprobs(rows, conts))
            if progress is not None:
                progress(len(conts))
        return results

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            if not self.tokenizer_path:
                raise ModelError(
                    f"{self.spec}: scoring fixed answers needs the served model's tokenizer to render its chat "
                    "template: pass the option tokenizer=/path/to/local/model/folder."
                )
            from transformers import AutoTokenizer

            from rhlab.models.hf import forbid_downloads

            forbid_downloads()
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelError(f"Could not load the tokenizer in {self.tokenizer_path} ({exc}).") from exc
            if not self._tokenizer.chat_template:
                raise ModelError(f"The tokenizer in {self.tokenizer_path} has no chat template.")
        return self._tokenizer

    def _prompt_logprobs(self, context: list[int], cont: list[int]) -> list[float]:
        body = {
            "model": self.model_name,
            "prompt": context + cont,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 0,
        }
        response = self._post_with_retries(body, threading.Event(), path="/completions")
        cannot = (
            f"The server at {self.base_url} does not return prompt log-probabilities (/completions with "
            "echo and logprobs), so probe scores cannot be computed through it: serve the model with vLLM "
            "or use hf:/vllm: directly"
        )
        if response.status_code >= 400:
            raise ModelError(f"{cannot} (HTTP {response.status_code}: {response.text[:200]}).")
        try:
            values = response.json()["choices"][0]["logprobs"]["token_logprobs"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelError(f"{cannot} (the answer has no choices[0].logprobs.token_logprobs: {exc!r}).") from None
        start = len(context)
        span = values[start : start + len(cont)] if isinstance(values, list) else []
        if len(span) != len(cont) or any(v is None for v in span):
            echoed = len(values) if isinstance(values, list) else 0
            raise ModelError(f"{cannot} (it echoed {echoed} token log-probs for a {start + len(cont)}-token prompt).")
        return [float(v) for v in span]

    def request_body(self, conversation: Conversation, params: SamplingParams, sample_index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": list(conversation),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "n": 1,
        }
        if params.stop:
            body["stop"] = list(params.stop[:_MAX_STOP_STRINGS])
        if params.seed is not None:
            # Distinct seeds per sample, or a seeded server would return n identical samples.
            body["seed"] = params.seed + sample_index
        body.update(self.extra_body)
        return body

    def _complete(
        self, conversation: Conversation, params: SamplingParams, sample_index: int, abort: threading.Event
    ) -> Completion:
        body = self.request_body(conversation, params, sample_index)
        response = self._post_with_retries(body, abort)
        if response.status_code == 401 or response.status_code == 403:
            raise ModelError(
                f"The server at {self.base_url} refused the API key (HTTP {response.status_code}): "
                f"set {self.api_key_env} to a valid key."
            )
        if response.status_code == 404:
            raise ModelError(
                f"The server at {self.base_url} answered 404 for model {self.model_name!r}: check the model "
                "name and that the base URL ends with /v1."
            )
        if response.status_code >= 400:
            detail = response.text[:300]
            return Completion(text="", finish_reason="error", error=f"HTTP {response.status_code}: {detail}")
        try:
            payload = response.json()
            choice = payload["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Completion(text="", finish_reason="error", error=f"malformed response: {exc!r}")
        text, hit_stop = cut_at_stop(text, params.stop)
        reason = "length" if choice.get("finish_reason") == "length" and not hit_stop else "stop"
        metadata: dict[str, Any] = {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            metadata["reasoning"] = reasoning
        if payload.get("usage"):
            metadata["usage"] = payload["usage"]
        return Completion(text=text, finish_reason=reason, metadata=metadata)

    def _post_with_retries(
        self, body: dict[str, Any], abort: threading.Event, path: str = "/chat/completions"
    ) -> httpx.Response:
        """POST once, retrying rate limits, server errors and network failures with jittered backoff."""
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise _ServerUnreachable("aborted: another request of this batch failed")
            last = attempt == self.max_retries
            try:
                response = self._client.post(path, json=body)
            except httpx.TimeoutException as exc:
                if last:
                    raise _ServerUnreachable(
                        f"The server at {self.base_url} did not answer within {self.timeout:g} s "
                        f"({self.max_retries + 1} tries): raise timeout= or check that the server is "
                        "not overloaded."
                    ) from exc
                self._sleep(attempt, None)
                continue
            except httpx.TransportError as exc:
                if last:
                    raise _ServerUnreachable(
                        f"Cannot reach the OpenAI-compatible server at {self.base_url} "
                        f"({type(exc).__name__}): start the server or fix the URL in openai:MODEL@BASE_URL."
                    ) from exc
                self._sleep(attempt, None)
                continue
            if response.status_code in _RETRY_STATUS and not last:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, 60.0))
