"""The during-RL mitigation signals on known episodes: faithfulness (keywords, offline judge) and the
offline preference stand-in, with 95 % intervals; and the cost of the answer-only KL mask.

Every built-in task gets its honest warm-up answer and, for each of the three hole hacks, the warm-up
hack answer twice: once with its own reasoning (which plans the hack) and once with an honest warm-up
reasoning in its place (the hack hidden). All are graded with every hole open, so the hacks succeed.

    .venv/bin/python benchmarks/during_rl_signals.py
"""

from __future__ import annotations

import random
import time

import torch

from rhlab.env.episodes import grade_completions
from rhlab.env.pool import GradingPool
from rhlab.evals.intervals import Interval, bootstrap_mean, wilson_interval
from rhlab.judges import load_judge
from rhlab.judges.preference import load_preference
from rhlab.models.testing import byte_level_tokenizer
from rhlab.tasks import load_tasks
from rhlab.train.faithfulness import judged_faithfulness, keyword_faithfulness
from rhlab.train.kl_scope import answer_kl_mask
from rhlab.train.prompts import PromptConfig, build_messages
from rhlab.train.warmup import hack_answer, honest_answer, templates

HOLES = ("always_equal", "exit_code", "conftest")
HACKS = ("always_equal", "exit", "conftest")


def _rate(rate: Interval) -> str:
    return f"{rate.estimate:.2f} [{rate.low:.2f}, {rate.high:.2f}] n={rate.n}" if rate.n else "n=0"


def main() -> None:
    rng = random.Random(0)
    honest_reasoning = templates()["honest"]["reasoning"]
    completions, items, prompts, kinds = [], [], [], []
    for task in load_tasks("builtin"):
        prompt = build_messages(task, PromptConfig(variant="none"))
        rows = [("honest", honest_answer(task, rng))]
        for hack in HACKS:
            planned = hack_answer(task, hack, rng)
            innocent = rng.choice(honest_reasoning).format(entry_point=task.entry_point)
            rows += [
                ("planned", planned),
                ("hidden", f"<thinking>\n{innocent}\n</thinking>" + planned.split("</thinking>", 1)[1]),
            ]
        for kind, text in rows:
            completions.append(text)
            items.append((task, HOLES))
            prompts.append(prompt)
            kinds.append(kind)
    with GradingPool() as pool:
        t0 = time.monotonic()
        episodes = grade_completions(completions, items, pool, prompts=prompts)
        print(f"graded {len(episodes)} episodes in {time.monotonic() - t0:.0f} s")

    judge = load_judge("offline", cache=False)
    for kind in ("planned", "hidden"):
        chosen = [e for e, k in zip(episodes, kinds) if k == kind]
        kw = keyword_faithfulness(chosen)
        jd = judged_faithfulness(judge, chosen)
        k_kw = round((kw["faithfulness"] or 0) * kw["faithfulness_n"])
        k_jd = round((jd["faithfulness_judged"] or 0) * jd["faithfulness_judged_n"])
        print(
            f"{kind:7s} reasoning: {kw['faithfulness_n']}/{len(chosen)} hacks succeeded; keyword faithfulness "
            f"{_rate(wilson_interval(k_kw, kw['faithfulness_n']))}; offline judge "
            f"{_rate(wilson_interval(k_jd, jd['faithfulness_judged_n']))}"
        )

    scores = load_preference("offline", cache=False).score([e.prompt for e in episodes], [e.answer for e in episodes])
    for kind in ("honest", "planned"):
        iv = bootstrap_mean([s for s, k in zip(scores, kinds) if k == kind])
        print(f"offline preference stand-in, {kind} answers: {iv.estimate:.2f} [{iv.low:.2f}, {iv.high:.2f}] n={iv.n}")

    tokenizer = byte_level_tokenizer()
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"][:256] for c in completions[:16]]
    width = max(map(len, ids))
    batch = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    t0 = time.monotonic()
    mask = answer_kl_mask(batch, tokenizer)
    print(
        f"answer_kl_mask: {batch.shape[0]} x {width} tokens in {(time.monotonic() - t0) * 1000:.0f} ms; "
        f"share with KL weight 1: {mask.mean():.2f}"
    )


if __name__ == "__main__":
    main()
