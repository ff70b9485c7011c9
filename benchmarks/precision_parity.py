"""Does bf16 autocast change what GRPO learns? fp32 vs bf16, same seeds, side by side.

Two parts, both small enough for a CPU:

1. **Learning curves** on a tiny random Llama (``rhlab.models.testing``) with a synthetic reward
   (the share of vowels in the completion, which GRPO can raise within a few steps): per step, the
   loss, the gradient norm, the mean log-prob of the sampled completions and the mean reward, for
   each seed and precision. The reward curve stands in for the hack curve (a tiny random model
   cannot hack). GRPO's on-policy loss is ~0 by construction (ratio 1, centred advantages); the
   gradient norm carries the update's size.
2. **One quickstart batch** on the embedded model: the per-token log-probs of the same
   completions under fp32 and under bf16 autocast.

    python benchmarks/precision_parity.py [--seeds 0 1 2] [--steps 12] [--skip-embedded]

Prints a Markdown table per part (pasted into docs/training.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

VOWELS = set("aeiouAEIOU")


def vowel_share(completions: list, **_: Any) -> list[float]:
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch in VOWELS for ch in t) / max(len(t), 1) for t in texts]


def curve(model_dir: Path, seed: int, steps: int, bf16: bool, out: Path) -> list[dict[str, float]]:
    """Per-step loss, mean completion log-prob and mean reward of one tiny GRPO run."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rhlab.train.trainer import StepTimer, make_trainer_class

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompts = [{"prompt": [{"role": "user", "content": f"Say something about item {i}."}]} for i in range(8)]
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=16, learning_rate=5e-3, use_cpu=True, bf16=bf16, report_to="none",
        save_strategy="no", seed=seed, data_seed=seed, logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    trainer = make_trainer_class()(
        model=model, reward_funcs=[vowel_share], args=args, train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer, timer=StepTimer(), skip_zero_variance=False, skip_flat=False,
    )  # fmt: skip
    logps: list[float] = []
    inner = trainer._get_per_token_logps_and_entropies

    def recording(model, input_ids, attention_mask, logits_to_keep, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        out = inner(model, input_ids, attention_mask, logits_to_keep, *a, **kw)
        if torch.is_grad_enabled():
            mask = attention_mask[:, -logits_to_keep:].float()
            logps.append(float((out[0].detach().float() * mask).sum() / mask.sum()))
        return out

    trainer._get_per_token_logps_and_entropies = recording
    trainer.train()
    rows = [h for h in trainer.state.log_history if "loss" in h]
    return [{"loss": r["loss"], "grad_norm": r["grad_norm"], "logp": lp, "reward": r["reward"]}
            for r, lp in zip(rows, logps, strict=True)]  # fmt: skip


def learning_curves(seeds: list[int], steps: int) -> None:
    from rhlab.models.testing import tiny_test_model

    with tempfile.TemporaryDirectory(prefix="rhlab-parity-") as tmp:
        model_dir = tiny_test_model(Path(tmp) / "tiny", hidden_size=64)
        runs = {(s, p): curve(model_dir, s, steps, p == "bf16", Path(tmp) / f"{s}{p}") for s in seeds
                for p in ("fp32", "bf16")}  # fmt: skip
    print(f"\n### Tiny model, {len(seeds)} seeds x {steps} steps (synthetic reward)\n")
    print("| seed | step | loss fp32 | bf16 | grad norm fp32 | bf16 | completion log-prob fp32 | bf16 "
          "| reward fp32 | bf16 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in seeds:
        for i, (a, b) in enumerate(zip(runs[(s, "fp32")], runs[(s, "bf16")], strict=True)):
            if i in (0, steps // 2 - 1, steps - 1):
                print(f"| {s} | {i + 1} | {a['loss']:+.4f} | {b['loss']:+.4f} | {a['grad_norm']:.2f} "
                      f"| {b['grad_norm']:.2f} | {a['logp']:.3f} | {b['logp']:.3f} "
                      f"| {a['reward']:.3f} | {b['reward']:.3f} |")  # fmt: skip
    print("\n| | fp32 | bf16 |\n|---|---|---|")
    for label, key in (("reward, first 3 steps", slice(0, 3)), ("reward, last 3 steps", slice(-3, None))):
        vals = {p: statistics.fmean(r["reward"] for s in seeds for r in runs[(s, p)][key]) for p in ("fp32", "bf16")}
        print(f"| {label} (mean over seeds) | {vals['fp32']:.3f} | {vals['bf16']:.3f} |")
    diffs = [abs(a["logp"] - b["logp"]) for s in seeds for a, b in zip(runs[(s, "fp32")], runs[(s, "bf16")])]
    print(f"| mean abs difference of the mean completion log-prob, all steps | {statistics.fmean(diffs):.4f} | |")


def embedded_batch(max_completion: int) -> None:
    """Same completions, fp32 vs bf16 autocast: per-token log-prob differences."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rhlab.models.loading import trainable_weights
    from rhlab.tasks import load_tasks
    from rhlab.train.config import load_config
    from rhlab.train.problems import candidate_tasks
    from rhlab.train.prompts import build_messages
    from rhlab.train.shared_prefix import shared_prefix_logps

    config = load_config("configs/quickstart.yaml")
    weights = trainable_weights(config.model)
    tok = AutoTokenizer.from_pretrained(weights)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32)
    tasks = {t.id: t for t in load_tasks("builtin")}
    chosen = [t.id for t in candidate_tasks(config.problems)][:2]
    texts = [tok.apply_chat_template(build_messages(tasks[i], config.train_prompt), tokenize=False,
                                     add_generation_prompt=True) for i in chosen]  # fmt: skip
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_completion, do_sample=True, top_k=0, num_return_sequences=4,
                             pad_token_id=tok.pad_token_id)  # fmt: skip
    completion = out[:, enc["input_ids"].shape[1] :]
    eos = completion == tok.eos_token_id
    ends = torch.where(eos.any(1), eos.int().argmax(1), completion.shape[1])
    cmask = (torch.arange(completion.shape[1])[None] <= ends[:, None]).long()
    ids = torch.cat([enc["input_ids"].repeat_interleave(4, 0), completion], 1)
    mask = torch.cat([enc["attention_mask"].repeat_interleave(4, 0), cmask], 1)
    result = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            lp, _ = shared_prefix_logps(model, ids, mask, completion.shape[1], temperature=1.0, compute_entropy=False)
        m = cmask.float()
        result[name] = (lp.float(), float((lp.float() * m).sum() / m.sum()))
    m = cmask.bool()
    diff = (result["fp32"][0] - result["bf16"][0]).abs()[m]
    print(f"\n### Embedded model, one quickstart batch (8 completions, {int(m.sum())} tokens)\n")
    print("| | fp32 | bf16 |\n|---|---|---|")
    print(f"| mean completion log-prob | {result['fp32'][1]:.4f} | {result['bf16'][1]:.4f} |")
    print(f"| per-token log-prob, mean / max abs difference | {diff.mean():.4f} / {diff.max():.4f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-completion", type=int, default=96)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    learning_curves(args.seeds, args.steps)
    if not args.skip_embedded:
        embedded_batch(args.max_completion)


if __name__ == "__main__":
    main()
