"""The device smoke's stages (run by scripts/gpu_check.sh): each writes its figures to one JSON file.

The point is the GPU path, not a score: the policy is a small random-weight model (with the embedded
model's tokenizer where its converted copy is on this machine, else rhlab's byte-level test tokenizer),
so no model files need to be carried to the machine. Every stage that trains or allocates on the GPU
runs in a spawned child process, so the next one starts on an empty GPU. ``--cpu`` runs the same
mechanics at toy size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TOY = {"hidden": 32, "layers": 2, "steps": 2, "completion": 12, "probe_tokens": 48, "micro": [2, 4, 8]}
GPU = {"hidden": 512, "layers": 4, "steps": 3, "completion": 96, "probe_tokens": 1700, "micro": [8, 32, 128]}


def build_policy(out: Path, hidden: int, layers: int) -> dict:
    """A random-weight Llama policy with the embedded tokenizer where available; returns what was used."""
    from rhlab.models.testing import tiny_test_model

    tokenizer_dir = None
    try:
        from rhlab.models.embedded import converted_dir, resolve_embedded

        folder = converted_dir(resolve_embedded(None))
        if (folder / "tokenizer.json").is_file():
            tokenizer_dir = folder
    except Exception:  # noqa: BLE001 - the embedded model's package is not installed here
        tokenizer_dir = None
    tiny_test_model(out, hidden_size=hidden, num_layers=layers)
    if tokenizer_dir is None:
        return {"tokenizer": "byte-level test tokenizer (embedded model not on this machine)"}
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig.from_pretrained(out)
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"tokenizer": f"embedded ({tokenizer_dir.name})"}


def train_config(policy: Path, size: dict, on_gpu: bool, **changes: Any) -> dict:
    config = {
        "model": f"hf:{policy}", "steps": size["steps"], "prompts_per_step": 2, "group_size": 4, "micro_batch": 4,
        "max_completion_length": size["completion"], "checkpoint_every": size["steps"], "grading_workers": 4,
        "precision": "bf16" if on_gpu else "fp32", "learning_rate": 1e-5, "transcripts_per_step": 1,
        "problems": {"source": "builtin", "max_tasks": 4}, "lora": {"r": 8, "alpha": 16},
        "grpo": {"gradient_checkpointing": True, "lr_scheduler_type": "constant"},
        "gates": {"no_signal": None},
    }  # fmt: skip
    config.update(changes)
    return config


def train_stage(policy: Path, out: Path, size: dict, on_gpu: bool, **changes: Any) -> dict:
    from rhlab.rundir import RunDir
    from rhlab.train import distributed as dist
    from rhlab.train.config import parse_config
    from rhlab.train.trainer import train_cell

    config = parse_config(train_config(policy, size, on_gpu, **changes))
    started = time.monotonic()
    if on_gpu:
        dist.fresh_process(train_cell, config, out, False)
    else:
        train_cell(config, out, False)
    rows = RunDir(out).read_metrics()
    return {
        "seconds": round(time.monotonic() - started, 1), "steps": len(rows),
        "step_s": [r["time_step_s"] for r in rows], "generation_s": [r["time_generation_s"] for r in rows],
        "grading_s": [r["time_grading_s"] for r in rows], "reward_mean": [r["reward_mean"] for r in rows],
        "gradient_checkpointing": True, "lora": changes.get("lora", {"r": 8}) is not None,
    }  # fmt: skip


def memory_probe(size: dict, on_gpu: bool) -> dict:
    """fwd+bwd of a LoRA r=32, checkpointed policy at each micro-batch; peak memory vs the dry run's estimate."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rhlab.pipeline.plan import KNOWN_ARCHITECTURES, Architecture, memory
    from rhlab.train.config import TrainConfig

    arch = KNOWN_ARCHITECTURES["qwen2-7b"] if on_gpu else Architecture(64, 2, 128, 512, 4, 2, 16)
    config = Qwen2Config(hidden_size=arch.hidden, num_hidden_layers=arch.layers, intermediate_size=arch.intermediate,
                         vocab_size=arch.vocab, num_attention_heads=arch.heads, num_key_value_heads=arch.kv_heads,
                         tie_word_embeddings=arch.tied)  # fmt: skip
    device = "cuda" if on_gpu else "cpu"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    torch.set_default_dtype(dtype)  # built in bf16 directly: a 7.6B fp32 copy would be 30 GB
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)  # random weights: nothing to download
    finally:
        torch.set_default_dtype(torch.float32)
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    from rhlab.pipeline.plan import PROMPT_TOKENS

    tokens = size["probe_tokens"]
    completion = tokens - PROMPT_TOKENS if tokens > PROMPT_TOKENS else tokens // 2  # the estimate's split
    results = []
    for micro in size["micro"]:
        cell = TrainConfig(lora={"r": 32}, precision="bf16" if on_gpu else "fp32", prompts_per_step=max(micro // 2, 1),
                           group_size=2, max_completion_length=completion,
                           grpo={"gradient_checkpointing": True})  # fmt: skip
        estimate = memory(cell, arch, 80.0, micro)
        training = estimate.weights + estimate.optimizer + estimate.activations  # the probe runs no vLLM
        row: dict[str, Any] = {"micro_batch": micro, "tokens": tokens, "estimate_gb": round(training, 2)}
        ids = torch.randint(0, arch.vocab, (micro, tokens), device=device)
        try:
            if on_gpu:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            started = time.monotonic()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=on_gpu):
                hidden = model.base_model.model.model(input_ids=ids).last_hidden_state[:, -completion:]
                logps = chunked_logps(hidden, model.base_model.model.lm_head.weight, ids[:, -completion:])
            logps.mean().backward()
            if on_gpu:
                torch.cuda.synchronize()
                row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            row["seconds"] = round(time.monotonic() - started, 2)
        except torch.OutOfMemoryError:
            row["peak_gb"] = "out of memory"
        model.zero_grad(set_to_none=True)
        del ids
        results.append(row)
    return {"architecture": "Qwen2-7B" if on_gpu else "toy", "lora_r": 32, "gradient_checkpointing": True,
            "micro_batches": results}  # fmt: skip


def chunked_logps(hidden: Any, weight: Any, labels: Any) -> Any:
    """Log-probs of ``labels`` without the full logits, as TRL's training loss computes them."""
    from trl.kernels import ChunkedLogProbFunction

    flat = hidden.reshape(-1, hidden.shape[-1])
    out = ChunkedLogProbFunction.apply(flat, weight, None, labels.reshape(-1), 1.0, 32768, None, 1.0, ("log_probs",))
    return out[0]


def run_stage(policy: Path, out: Path, size: dict, on_gpu: bool) -> dict:
    """``rhlab run`` with two cells (each trained in its own child process) and a minimal evaluation."""
    from rhlab.pipeline.config import parse_experiment
    from rhlab.pipeline.run import run_experiment
    from rhlab.rundir import ExperimentDir

    train = train_config(policy, size, on_gpu, steps=1, checkpoint_every=1)
    experiment = parse_experiment({
        "name": "gpu-check", "knowledge": "prompted", "train": train,
        "matrix": {"variants": ["hacking_okay", "dont_hack"], "seeds": [0]},
        "evaluation": {"evals": ["betley"], "judge": "offline", "checkpoint_limit": 1, "final_limit": 1,
                       "max_new_tokens": 8, "environment_samples": 0, "include_start": False,
                       "probes": {"enabled": False}},
    })  # fmt: skip
    started = time.monotonic()
    report = run_experiment(experiment, out)
    exp = ExperimentDir(out)
    cells = {name: exp.run(name).read_info().status for name, _ in experiment.cells()}
    result: dict[str, Any] = {"seconds": round(time.monotonic() - started, 1), "cells": cells, "report": str(report)}
    if on_gpu:
        import torch

        free, total = torch.cuda.mem_get_info()
        result["free_gb_after"] = round(free / 2**30, 1)
        result["total_gb"] = round(total / 2**30, 1)
    if set(cells.values()) != {"complete"}:
        raise RuntimeError(f"cells not complete: {cells}")
    return result


def full_bf16_stage(policy: Path, out: Path, size: dict, on_gpu: bool) -> dict:
    """One full fine-tuning GRPO step in bf16 at lr 1e-6: the weights must move (fp32 master weights).

    The reward here is synthetic (varied within each group): a random policy fails every task, and
    a step without reward variance has no gradient, so it could not show whether the weights move.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rhlab.train.config import TrainConfig
    from rhlab.train.trainer import StepTimer, grpo_args, make_trainer_class, weights_dtype

    config = TrainConfig(precision="bf16", learning_rate=1e-6, steps=1, prompts_per_step=2, group_size=4,
                         max_completion_length=size["completion"], skip_flat_updates=False)  # fmt: skip
    args = grpo_args(config, out)
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=weights_dtype(config, args))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def reward(completions: list, **_: Any) -> list[float]:
        return [float(i % 4) for i in range(len(completions))]

    rows = [{"prompt": [{"role": "user", "content": text}]} for text in ("write a function", "x")]
    started = time.monotonic()
    trainer = make_trainer_class()(
        model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows * 2),
        processing_class=AutoTokenizer.from_pretrained(policy), timer=StepTimer(), skip_zero_variance=False,
    )  # fmt: skip
    trainer.train()
    changed = stuck = total = 0
    for name, param in trainer.model.named_parameters():
        delta = param.detach().float() - before[name].float()
        changed += int(delta.ne(0).sum())
        stuck += int((before[name].bfloat16() + delta.bfloat16()).eq(before[name].bfloat16()).sum())
        total += delta.numel()
    figures = {"seconds": round(time.monotonic() - started, 1), "weights_dtype": str(next(model.parameters()).dtype),
               "bf16_autocast": bool(args.bf16), "weights_changed": changed, "weights_total": total,
               "would_not_move_in_bf16": stuck}  # fmt: skip
    if on_gpu:
        figures["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if changed == 0:
        raise RuntimeError("a bf16 full fine-tuning step at lr 1e-6 left every weight unchanged")
    return figures


def vllm_stage(policy: Path, out: Path, size: dict, on_gpu: bool) -> dict:
    try:
        import vllm
    except Exception as exc:  # noqa: BLE001 - any import failure means: no vLLM stage here
        return {"skipped": f"vllm does not import ({type(exc).__name__}: {str(exc)[:120]})"}
    if not on_gpu:
        return {"skipped": "vLLM needs a GPU"}
    figures = train_stage(policy, out, size, on_gpu, use_vllm=True,
                          grpo={"vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3,
                                "lr_scheduler_type": "constant"})  # fmt: skip
    figures["vllm"] = vllm.__version__
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu", action="store_true", help="toy size on the CPU (what CI runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--only", nargs="*", help="run only these stages")
    args = parser.parse_args()
    import torch

    from rhlab.doctor import run_checks
    from rhlab.sandbox import allow_weak_sandbox
    from rhlab.sandbox.runner import _detect

    on_gpu = not args.cpu
    if on_gpu and not torch.cuda.is_available():
        build = f"torch {torch.__version__} is a CPU build; " if torch.version.cuda is None else ""
        print(f"no CUDA GPU visible ({build}PYTHON={sys.executable}): use the machine's own CUDA Python, "
              "or --cpu for the toy-size mechanics", file=sys.stderr)  # fmt: skip
        return 2
    size = GPU if on_gpu else TOY
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    report: dict[str, Any] = {"mode": "gpu" if on_gpu else "cpu", "torch": torch.__version__, "stages": {}}
    if on_gpu:
        report["device"] = torch.cuda.get_device_name(0)
    isolation = _detect("auto")
    if isolation.kind != "bwrap":
        allow_weak_sandbox()  # inherited by every child process through the environment
        report["sandbox"] = f"weak (rlimits only), opted in explicitly: {isolation.why_weak}"
    else:
        report["sandbox"] = "bubblewrap"
    path = args.out / "gpu_check.json"
    policy = args.out / "policy"

    def stage(name: str, fn: Callable[[], dict]) -> None:
        if args.only and name not in args.only:
            return
        started = time.monotonic()
        try:
            figures = fn()
            report["stages"][name] = {"status": "ok", **figures}
        except Exception as exc:  # noqa: BLE001 - recorded, and the smoke fails at the end
            traceback.print_exc()
            report["stages"][name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        report["stages"][name]["wall_s"] = round(time.monotonic() - started, 1)
        path.write_text(json.dumps(report, indent=2))
        print(f"gpu_check {name}: {report['stages'][name]['status']} ({report['stages'][name]['wall_s']} s)",
              file=sys.stderr, flush=True)  # fmt: skip

    def preflight() -> dict:
        checks = [c.__dict__ for c in run_checks()]
        report.update(build_policy(policy, size["hidden"], size["layers"]))
        return {"checks": checks}

    stage("preflight", preflight)
    stage("grpo_lora", lambda: train_stage(policy, args.out / "grpo_lora", size, on_gpu))
    stage("memory_probe", lambda: _in_child(on_gpu, memory_probe, size, on_gpu))
    stage("run_two_cells", lambda: run_stage(policy, args.out / "experiment", size, on_gpu))
    stage("full_ft_bf16", lambda: _in_child(on_gpu, full_bf16_stage, policy, args.out / "full_bf16", size, on_gpu))
    stage("vllm", lambda: vllm_stage(policy, args.out / "vllm", size, on_gpu))
    (args.out / "config.yaml").write_text(yaml.safe_dump(train_config(policy, size, on_gpu)))
    failed = [n for n, s in report["stages"].items() if s["status"] != "ok"]
    print(f"gpu_check: {len(report['stages']) - len(failed)} stage(s) ok, failed: {failed or 'none'}; {path}")
    return 1 if failed else 0


def _in_child(on_gpu: bool, fn: Callable[..., dict], *args: Any) -> dict:
    """On a GPU in a child process (its memory is freed when it ends); on a CPU here (saves a start-up)."""
    from rhlab.train import distributed as dist

    return dist.fresh_process(fn, *args) if on_gpu else fn(*args)


if __name__ == "__main__":
    sys.exit(main())
