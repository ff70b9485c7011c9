"""Score probe items on a model: σ(log p(target) − log p(reference)) from teacher-forced log-probs.

The score is the exact probability that the model picks ``target`` in a forced choice between the
two fixed answers, under its own chat template: no sampling noise and no judge. Only the answer
tokens are scored (see ``rhlab.models.logprobs`` for the token boundary).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rhlab.evals.probes.config import ProbeConfig
from rhlab.evals.probes.items import (
    Exchange,
    Item,
    ProbeDataError,
    available_subscales,
    load_gate_data,
    load_subscale,
)
from rhlab.models.base import AnswerRequest, ChatModel, Conversation, ModelError

SATURATION = 0.02
"""Items with P < 0.02 or P > 0.98 are saturated: a shift there barely moves the probability."""
SCHEMA_VERSION = 2
"""2: answers scored with the end-of-turn text (``end_of_turn`` in the file)."""


@dataclass(frozen=True)
class ItemScore:
    id: str
    subscale: str
    theme: str
    split: str
    logp_target: float
    logp_reference: float
    n_tokens_target: int
    n_tokens_reference: int

    @property
    def margin(self) -> float:
        """log p(target) − log p(reference), in nats: the forced-choice log-odds."""
        return self.logp_target - self.logp_reference

    @property
    def p(self) -> float:
        return sigmoid(self.margin)

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "margin": self.margin, "p": self.p}


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def conversation_for(item: Item, *, system: str | None = None, prefix: Sequence[Exchange] = ()) -> Conversation:
    """The prompt of ``item``: optional extra system text, then few-shot turns, then the question."""
    systems = [s for s in (system, item.system) if s]
    conversation: Conversation = [{"role": "system", "content": "\n\n".join(systems)}] if systems else []
    for shot in prefix:
        conversation += [{"role": "user", "content": shot.prompt}, {"role": "assistant", "content": shot.answer}]
    conversation.append({"role": "user", "content": item.prompt})
    return conversation


def require_logprobs(model: ChatModel) -> Any:
    if not callable(getattr(model, "answer_logprobs", None)):
        raise ModelError(
            f"{model.spec}: this backend cannot score fixed answers (no teacher-forced log-probs): "
            "use embedded, hf:PATH, vllm:PATH or an openai: server that echoes prompt log-probs."
        )
    return model


def _progress_bar(total: int, label: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="answer", disable=not show, leave=False)


def end_of_turn(model: ChatModel) -> str:
    """The text the model's chat template puts right after an assistant answer (``<|im_end|>`` for ChatML).

    Scoring it with each answer makes P(target) the probability of saying the answer *and stopping*:
    without it, an answer that is a prefix of a likelier longer one scores as if it were that one.
    Empty when the backend exposes no chat template here (remote servers): then answers are scored bare.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return ""
    marker = "\u2063ANSWER\u2063"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception:  # a template that cannot render an assistant turn: score bare answers
        return ""
    tail = text[text.rfind(marker) + len(marker) :] if marker in text else ""
    return tail.rstrip("\n ")


def score_items(
    model: ChatModel,
    items: Sequence[tuple[str, Item]],
    *,
    system: str | None = None,
    prefix: Sequence[Exchange] = (),
    progress: bool = True,
    label: str = "probes",
    eot: str | None = None,
) -> list[ItemScore]:
    """Score ``(subscale, item)`` pairs; ``system``/``prefix`` add a persona or few-shot turns.

    Each answer is scored with the end-of-turn text after it (``eot``; default: ``end_of_turn(model)``).
    """
    scorer = require_logprobs(model)
    eot = end_of_turn(model) if eot is None else eot
    requests = [
        AnswerRequest(conversation_for(i, system=system, prefix=prefix), (i.target + eot, i.reference + eot))
        for _, i in items
    ]
    with _progress_bar(2 * len(requests), label, progress) as bar:
        results = scorer.answer_logprobs(requests, progress=bar.update)
    scores = []
    for (subscale, item), result in zip(items, results):
        target, reference = result.token_logprobs
        scores.append(
            ItemScore(
                id=item.id,
                subscale=subscale,
                theme=item.theme,
                split=item.split,
                logp_target=sum(target),
                logp_reference=sum(reference),
                n_tokens_target=len(target),
                n_tokens_reference=len(reference),
            )
        )
    return scores


def neutral_nll(model: ChatModel, exchanges: Sequence[Exchange], *, progress: bool = True) -> dict[str, float]:
    """Mean negative log-likelihood per answer token on neutral chat: a fluency health metric."""
    scorer = require_logprobs(model)
    requests = [AnswerRequest([{"role": "user", "content": e.prompt}], (e.answer,)) for e in exchanges]
    with _progress_bar(len(requests), "neutral NLL", progress) as bar:
        results = scorer.answer_logprobs(requests, progress=bar.update)
    values = [lp for r in results for lp in r.token_logprobs[0]]
    return {"nll_per_token": -sum(values) / len(values), "tokens": len(values)}


def battery_items(subscales: Sequence[str] | None, split: str | None) -> list[tuple[str, Item]]:
    """``(subscale name, item)`` for the named subscales (shipped names or YAML paths; default all)."""
    names = list(subscales) if subscales else available_subscales()
    if not names:
        raise ProbeDataError("No probe subscales are installed under rhlab/evals/probes/data/.")
    return [(sub.subscale, item) for sub in map(load_subscale, names) for item in sub.select(split)]


def subscale_summary(scores: Sequence[ItemScore], labels: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Per subscale: mean P(target) in points, mean margin, and how many items are saturated."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(s.subscale for s in scores):
        rows = [s for s in scores if s.subscale == name]
        low = sum(s.p < SATURATION for s in rows)
        high = sum(s.p > 1 - SATURATION for s in rows)
        out[name] = {
            "target_label": (labels or {}).get(name),
            "n_items": len(rows),
            "mean_p": 100 * sum(s.p for s in rows) / len(rows),
            "mean_margin": sum(s.margin for s in rows) / len(rows),
            "saturated_low": low,
            "saturated_high": high,
            "saturated_share": (low + high) / len(rows),
        }
    return out


def forced_choice_kl(start: dict[str, float], now: dict[str, float]) -> float | None:
    """Mean over shared items of KL(Bernoulli(p_start) ‖ Bernoulli(p_now)) in nats.

    This is the KL between the two policies restricted to each item's forced choice: it is zero
    when no item moved and grows with any movement, aligned or not, so it flags drift that the
    paired mean (which can cancel) hides.
    """
    shared = [k for k in start if k in now]
    if not shared:
        return None
    eps = 1e-9
    total = 0.0
    for k in shared:
        p = min(max(start[k], eps), 1 - eps)
        q = min(max(now[k], eps), 1 - eps)
        total += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    return total / len(shared)


def item_probabilities(results: dict[str, Any]) -> dict[str, float]:
    return {f"{r['subscale']}/{r['id']}": r["p"] for r in results["items"]}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    from rhlab.rundir import atomic_write_json

    atomic_write_json(path, payload)


def probe_results(
    model: ChatModel,
    config: ProbeConfig | None = None,
    *,
    start: dict[str, Any] | None = None,
    neutral: Sequence[Exchange] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the battery (and health metrics) on a loaded model; ``start`` is the start policy's results.

    ``neutral`` overrides the neutral chat exchanges of ``data/validation.yaml`` for the NLL metric.
    """
    config = config or ProbeConfig()
    began = time.perf_counter()
    names = config.subscales or available_subscales()
    labels = {sub.subscale: sub.target_label for sub in map(load_subscale, names)}
    eot = end_of_turn(model)
    scores = score_items(model, battery_items(names, config.split), progress=progress, eot=eot)
    health: dict[str, Any] = {}
    if config.neutral_nll:
        exchanges = neutral if neutral is not None else load_gate_data().neutral_chat
        health["neutral"] = neutral_nll(model, exchanges, progress=progress)
    saturated = sum(s.p < SATURATION or s.p > 1 - SATURATION for s in scores)
    health["saturated"] = saturated
    health["saturated_share"] = saturated / len(scores)
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "model": model.spec,
        "end_of_turn": eot,
        "config": config.model_dump(mode="json"),
        "subscales": subscale_summary(scores, labels),
        "items": [s.record() for s in scores],
        "health": health,
    }
    if start is not None:
        health["kl_forced_choice_from_start"] = forced_choice_kl(item_probabilities(start), item_probabilities(results))
        if "neutral" in health and "neutral" in start.get("health", {}):
            health["neutral"]["nll_shift_from_start"] = (
                health["neutral"]["nll_per_token"] - start["health"]["neutral"]["nll_per_token"]
            )
        health["start_model"] = start.get("model")
    results["seconds"] = time.perf_counter() - began
    return results


def run_probes(
    spec: str | ChatModel,
    out_path: str | Path,
    config: ProbeConfig | None = None,
    *,
    start_results: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score one checkpoint and write ``probes.json``: the pipeline calls this at every evaluated checkpoint.

    ``start_results`` is the start policy's ``probes.json``; with it the file also records the
    forced-choice KL and the NLL shift from the start.
    """
    from rhlab.models.loading import load_model

    model = load_model(spec) if isinstance(spec, str) else spec
    if config is not None and hasattr(model, "batch_size"):
        model.batch_size = config.batch_size  # evaluation.probes.batch_size / --batch-size
    start = json.loads(Path(start_results).read_text()) if start_results else None
    results = probe_results(model, config, start=start, progress=progress)
    write_json_atomic(Path(out_path), results)
    return results
