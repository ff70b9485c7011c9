"""``rhlab run CONFIG --dry-run``: what an experiment will do and roughly what it will cost, before it runs.

The estimates are arithmetic, not measurements (docs/scale.md gives the formulas and where each
constant comes from): parameters from the model's ``config.json``; training memory from bytes per
parameter; generation and update time from a throughput model of the detected hardware. They are
there to catch a run that cannot fit or would take a week, not to predict a run to the minute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rhlab.pipeline.config import ExperimentConfig
from rhlab.train.config import TrainConfig

GIB = 1024**3
PROMPT_TOKENS = 400
"""Typical prompt length of the environment (instructions + task + hack description), in tokens."""
CPU_GEN_TOKENS_S_135M = 110.0
"""Batched generation of SmolLM2-135M on 2 CPU cores (measured, MISSION.md), scaled by 135M / params."""
CPU_TRAIN_FLOPS = 0.18e12
"""Effective forward+backward FLOP/s of a 2-core CPU (measured quickstart update: ~3.6 TFLOP in ~20 s)."""
GPU_MFU = 0.35
"""Assumed model-FLOP utilisation for training on a GPU."""
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12, "4090": 165e12}
GPU_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40": 0.86e12, "A10": 0.6e12, "4090": 1.0e12}


@dataclass
class Hardware:
    kind: str  # "cpu" | "gpu"
    name: str
    count: int
    memory_gib: float
    peak_flops: float
    bandwidth: float


def detect_hardware() -> Hardware:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        key = next((k for k in GPU_PEAK_BF16 if k in props.name), None)
        return Hardware("gpu", props.name, torch.cuda.device_count(), props.total_memory / GIB,
                        GPU_PEAK_BF16.get(key, 300e12), GPU_BANDWIDTH.get(key, 1.5e12))
    cores = os.cpu_count() or 1
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return Hardware("cpu", f"{cores}-core CPU", 1, mem, CPU_TRAIN_FLOPS * cores / 2, 0.0)


def model_parameters(spec: str) -> int | None:
    """Parameter count from the model's config.json (None when the folder is not here yet)."""
    kind, _, target = spec.partition(":")
    if kind == "embedded":
        from rhlab.models.embedded import converted_dir, resolve_embedded

        folder = converted_dir(resolve_embedded(target or None))
        if not (folder / "config.json").is_file():
            return 135_000_000 if not target else None
    else:
        folder = Path(target).expanduser()
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    cfg = cfg.get("text_config", cfg)
    h, layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
    inter, vocab = cfg.get("intermediate_size"), cfg.get("vocab_size")
    if not all(isinstance(v, int) for v in (h, layers, inter, vocab)):
        return None
    heads = cfg.get("num_attention_heads") or 1
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    attn = h * head_dim * heads * 2 + h * head_dim * kv * 2
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings", False) else 2)
    return embed + layers * (attn + 3 * h * inter)


@dataclass
class CellEstimate:
    params: int | None
    episodes: int
    tokens_per_step: int
    memory_gib: float | None
    step_s: float | None
    total_h: float | None


REFERENCE_SIZES = {"7B": 7_600_000_000, "32B": 32_800_000_000}
"""Sizes the plan falls back to when the model folder is not on this machine (e.g. planning on a laptop)."""


def estimate(cell: TrainConfig, hw: Hardware, params: int | None = None) -> CellEstimate:
    params = params if params is not None else model_parameters(cell.model)
    episodes = cell.episodes_per_step
    gen_tokens = episodes * cell.max_completion_length
    tokens = episodes * (PROMPT_TOKENS + cell.max_completion_length)
    if params is None:
        return CellEstimate(None, episodes, tokens, None, None, None)
    trainable = params if cell.lora is None else params * 0.01
    bytes_weights = 2 if cell.bf16 else 4
    # weights + grads + Adam (two fp32 moments) for trainable parameters; frozen ones only stored
    memory = params * bytes_weights + trainable * (bytes_weights + 8)
    if cell.use_vllm:  # colocated vLLM keeps its own copy plus KV cache in its memory share
        share = float(cell.grpo.get("vllm_gpu_memory_utilization", 0.3))
        memory += share * hw.memory_gib * GIB
    if hw.kind == "cpu":
        gen_s = gen_tokens / (CPU_GEN_TOKENS_S_135M * 135e6 / params)
        train_s = 6 * params * tokens / hw.peak_flops
    else:
        flops = hw.peak_flops * GPU_MFU * hw.count
        gen_rate = min(hw.bandwidth / (2 * params) * min(episodes, 256), flops / (2 * params)) * hw.count
        gen_s = gen_tokens / gen_rate
        train_s = 6 * params * tokens / flops
    step_s = gen_s + train_s
    return CellEstimate(params, episodes, tokens, memory / GIB, step_s, step_s * cell.steps / 3600)


def _duration(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


def plan_text(config: ExperimentConfig, hw: Hardware | None = None) -> str:
    """The human-readable plan printed by ``--dry-run``."""
    hw = hw or detect_hardware()
    cells = config.cells()
    lines = [
        f"experiment {config.name}: knowledge {config.knowledge}, {len(cells)} RL run(s)",
        f"hardware: {hw.count} x {hw.name}, {hw.memory_gib:.0f} GiB" + (" each" if hw.kind == "gpu" else ""),
        "stages: knowledge -> RL per cell -> checkpoint evals (" + ", ".join(config.evaluation.evals) + ") -> report",
    ]
    total_h = 0.0
    known = True
    for name, cell in cells:
        est = estimate(cell, hw)
        lines.append(
            f"  {name}: {cell.steps} steps x {est.episodes} episodes ({cell.prompts_per_step} prompts x "
            f"{cell.group_size}), <= {est.tokens_per_step:,} tokens/step, model {cell.model}"
        )
        if est.params is None:
            known = False
            lines.append("    size unknown (no config.json at the model path here); if the model were")
            for label, size in REFERENCE_SIZES.items():
                ref = estimate(cell, hw, size)
                cost = f"~{ref.step_s:.0f} s/step, ~{_duration(ref.total_h)}"
                lines.append(f"      {label}: memory ~{ref.memory_gib:.0f} GiB, {cost}")
            continue
        fits = "" if est.memory_gib <= hw.memory_gib else f"  EXCEEDS the {hw.memory_gib:.0f} GiB available"
        lines.append(
            f"    ~{est.params / 1e9:.2f}B parameters; training memory ~{est.memory_gib:.1f} GiB "
            f"(weights, grads, optimizer{', vLLM share' if cell.use_vllm else ''}; activations extra){fits}"
        )
        cost = f"~{est.step_s:.0f} s/step, ~{_duration(est.total_h)} for RL"
        lines.append(f"    {cost} (rough arithmetic, see docs/scale.md)")
        total_h += est.total_h
    if known:
        lines.append(f"total RL time ~{_duration(total_h)}, evals extra")
    return "\n".join(lines)
