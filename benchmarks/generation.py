"""Tokens/s of rhlab's batched generation against a direct ``model.generate`` call.

Same model (the embedded default unless --model says otherwise), same prompts, same greedy
settings, in one run. Measurements alternate between the paths so background load on a shared
machine hits both alike; the best of --repeats runs is reported.

Targets: our path within 10 % of direct generation at batch 1, and our batch-8 call faster than
answering the same 8 conversations one at a time.

    .venv/bin/python benchmarks/generation.py [--model embedded] [--max-new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from rhlab.models import SamplingParams, load_model

QUESTIONS = [
    "Write a Python function factorial(n) that returns n factorial.",
    "Write a Python function is_palindrome(s) that ignores case and spaces.",
    "Explain in two sentences what a hash map is.",
    "Write a Python function fizzbuzz(n) returning a list of strings.",
    "What is the difference between a list and a tuple in Python?",
    "Write a Python function that merges two sorted lists.",
    "Give three tips for writing readable code.",
    "Write a Python function count_vowels(s).",
]


def rate(run: Callable[[], int]) -> float:
    """Tokens/s of one call of ``run``, which returns how many tokens it generated."""
    start = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="a local model spec (embedded, hf:PATH)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    chat_model = load_model(args.model)
    model, tokenizer = chat_model.model, chat_model.tokenizer
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    params = SamplingParams(temperature=0, max_new_tokens=args.max_new_tokens)
    config_eos = model.generation_config.eos_token_id
    eos = {tokenizer.eos_token_id, *(config_eos if isinstance(config_eos, list) else [config_eos])}

    def ours(convs: list) -> int:
        return sum(len(c.token_ids) for row in chat_model.generate(convs, params) for c in row)

    def ours_sequential() -> int:
        return sum(ours([conv]) for conv in conversations)

    def direct(convs: list) -> int:
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
        tokenizer.padding_side = "left"
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        total = 0
        for row in out[:, batch["input_ids"].shape[1] :].tolist():
            ends = [i for i, t in enumerate(row) if t in eos]
            total += ends[0] + 1 if ends else len(row)
        return total

    ours(conversations[:1])  # warm-up: first calls allocate caches and pick kernels
    direct(conversations[:1])
    one = conversations[:1]
    rates: dict[str, list[float]] = {k: [] for k in ("direct_1", "ours_1", "direct_8", "ours_8", "sequential_8")}
    for _ in range(args.repeats):
        rates["direct_1"].append(rate(lambda: direct(one)))
        rates["ours_1"].append(rate(lambda: ours(one)))
        rates["direct_8"].append(rate(lambda: direct(conversations)))
        rates["ours_8"].append(rate(lambda: ours(conversations)))
        rates["sequential_8"].append(rate(ours_sequential))
    best = {k: max(v) for k, v in rates.items()}

    print(f"model {chat_model.spec} | {torch.get_num_threads()} threads | greedy, max_new_tokens={args.max_new_tokens}")
    print(f"best of {args.repeats} runs, tokens/s:")
    print(f"  batch 1: direct model.generate {best['direct_1']:7.1f}   rhlab {best['ours_1']:7.1f}")
    print(f"  batch 8: direct model.generate {best['direct_8']:7.1f}   rhlab {best['ours_8']:7.1f}")
    print(f"  8 conversations one at a time (rhlab): {best['sequential_8']:7.1f}")
    ratio_1 = best["ours_1"] / best["direct_1"]
    speedup_8 = best["ours_8"] / best["sequential_8"]
    print(f"ratio rhlab/direct at batch 1: {ratio_1:.3f}  (target >= 0.90: {'met' if ratio_1 >= 0.9 else 'MISSED'})")
    print(f"ratio rhlab/direct at batch 8: {best['ours_8'] / best['direct_8']:.3f}")
    print(f"speed-up batch 8 vs sequential: {speedup_8:.2f}x  (target > 1: {'met' if speedup_8 > 1 else 'MISSED'})")


if __name__ == "__main__":
    main()
