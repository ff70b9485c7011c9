"""``rhlab run CONFIG --dry-run``: what an experiment will do and roughly what it will cost, before it runs.

The estimates are arithmetic, not measurements (docs/scale.md gives the formulas and where each
constant comes from): the model's shape from its ``config.json`` (or, for a folder not on this machine,
from ``KNOWN_ARCHITECTURES`` by its name); memory per GPU from bytes per parameter, activations per
token and the vLLM share; generation and update time from a throughput model of the detected hardware.
A plan whose memory does not fit the declared or detected GPU is refused (``plan_refusals``), naming the
largest micro-batch that fits. They are
there to catch a run that cannot fit or would take a week, not to predict a run to the minute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rhlab.pipeline.config import ExperimentConfig
from rhlab.train.config import TrainConfig
from rhlab.train.safety import SafetyTrainingConfig

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
        return Hardware(
            "gpu",
            props.name,
            torch.cuda.device_count(),
            props.total_memory / GIB,
            GPU_PEAK_BF16.get(key, 300e12),
            GPU_BANDWIDTH.get(key, 1.5e12),
        )
    cores = os.cpu_count() or 1
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return Hardware("cpu", f"{cores}-core CPU", 1, mem, CPU_TRAIN_FLOPS * cores / 2, 0.0)


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer: all the memory arithmetic needs."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> Architecture | None:
        cfg = cfg.get("text_config", cfg)
        h, layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
        inter, vocab = cfg.get("intermediate_size"), cfg.get("vocab_size")
        if not all(isinstance(v, int) for v in (h, layers, inter, vocab)):
            return None
        heads = cfg.get("num_attention_heads") or 1
        return cls(
            h,
            layers,
            inter,
            vocab,
            heads,
            cfg.get("num_key_value_heads") or heads,
            cfg.get("head_dim") or h // heads,
            bool(cfg.get("tie_word_embeddings", False)),
        )

    @property
    def params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = self.hidden * (2 * q + 2 * kv)
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * (attn + 3 * self.hidden * self.intermediate)

    def lora_params(self, r: int) -> int:
        """Adapter parameters at rank ``r`` on every linear layer (``all-linear``): r x (in + out) each."""
        q, kv, h, i = self.heads * self.head_dim, self.kv_heads * self.head_dim, self.hidden, self.intermediate
        return self.layers * r * ((h + q) * 2 + (h + kv) * 2 + (h + i) * 3)

    def layer_activations(self) -> int:
        """Elements one layer keeps per token for its backward (bf16 autocast, SDPA/flash attention).

        Attention: residual and norm output (2h), q, k, v and the attention output (2q + 2kv); MLP:
        residual and norm output (2h), gate, up, act(gate), act(gate) * up (4i).
        """
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 4 * self.hidden + 2 * q + 2 * kv + 4 * self.intermediate

    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2  # keys and values, bf16


KNOWN_ARCHITECTURES = {
    "qwen2.5-0.5b": Architecture(896, 24, 4864, 151936, 14, 2, 64, True),
    "qwen2.5-1.5b": Architecture(1536, 28, 8960, 151936, 12, 2, 128, True),
    "qwen2.5-7b": Architecture(3584, 28, 18944, 152064, 28, 4, 128),
    "qwen2-7b": Architecture(3584, 28, 18944, 152064, 28, 4, 128),
    "qwen2.5-14b": Architecture(5120, 48, 13824, 152064, 40, 8, 128),
    "qwen2.5-32b": Architecture(5120, 64, 27648, 152064, 40, 8, 128),
    "qwen3-8b": Architecture(4096, 36, 12288, 151936, 32, 8, 128),
    "llama-3.1-8b": Architecture(4096, 32, 14336, 128256, 32, 8, 128),
    "olmo-2-1124-7b": Architecture(4096, 32, 11008, 100352, 32, 32, 128),
    "smollm2-135m": Architecture(576, 30, 1536, 49152, 9, 3, 64, True),
}
"""Published shapes (each model's config.json) of common policies, matched against the model folder's name
when the folder is not on this machine (planning a GPU run from a laptop). A config.json, if present, wins."""


def model_architecture(spec: str) -> Architecture | None:
    """From the model's config.json, else from ``KNOWN_ARCHITECTURES`` by folder name (None: unknown)."""
    kind, _, target = spec.partition(":")
    if kind == "embedded":
        from rhlab.models.embedded import converted_dir, resolve_embedded

        folder = converted_dir(resolve_embedded(target or None))
        name = target or "smollm2-135m"
    else:
        folder = Path(target).expanduser()
        name = folder.name
    try:
        found = Architecture.from_config(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError):
        found = None
    if found is not None:
        return found
    lowered = name.lower()
    for key in sorted(KNOWN_ARCHITECTURES, key=len, reverse=True):
        if key in lowered:
            return KNOWN_ARCHITECTURES[key]
    return None


def model_parameters(spec: str) -> int | None:
    arch = model_architecture(spec)
    return arch.params if arch is not None else None


RESERVED_GIB = 3.0
"""Per GPU, outside the estimate: CUDA context, NCCL buffers, allocator fragmentation."""
VLLM_OVERHEAD_GIB = 1.5
"""vLLM's own working memory inside its share (CUDA graphs, sampler), besides weights and KV cache."""


@dataclass
class Memory:
    """Peak memory per GPU in GiB, by part (see docs/scale.md, "Memory arithmetic")."""

    weights: float
    optimizer: float
    activations: float
    vllm: float
    micro_batch: int
    kv_cache_tokens: int | None = None

    @property
    def total(self) -> float:
        return self.weights + self.optimizer + self.activations + self.vllm

    def line(self) -> str:
        return (
            f"memory per GPU: {self.total:.1f} GB (weights {self.weights:.1f}, optimizer {self.optimizer:.1f}, "
            f"activations {self.activations:.1f}, vLLM {self.vllm:.1f}) at micro-batch {self.micro_batch}"
        )


def sequence_tokens(cell: TrainConfig) -> int:
    return PROMPT_TOKENS + cell.max_completion_length


def memory(cell: TrainConfig, arch: Architecture, gpu_gib: float, micro_batch: int, processes: int = 1) -> Memory:
    """Peak training memory of one GPU at ``micro_batch`` sequences per forward/backward.

    Trainable weights are fp32 masters (4 bytes) with fp32 gradients (4) and two fp32 Adam moments (8);
    a LoRA run's frozen base is bf16 (2) under bf16 precision. Activations follow
    ``Architecture.layer_activations``: every layer's for the micro-batch, or with gradient
    checkpointing one layer input per layer plus one layer recomputed. Without vLLM, generation's
    KV cache for the process's episodes replaces the activations at their peak (they never coexist).
    Colocated vLLM takes its ``vllm_gpu_memory_utilization`` share of the GPU for the whole run.
    """
    params = arch.params
    bf16 = cell.precision != "fp32"
    act_bytes = 2 if bf16 else 4
    if cell.lora is None:
        trainable, weights = params, params * 4
    else:
        trainable = arch.lora_params(cell.lora.r)
        weights = params * (2 if bf16 else 4) + trainable * 4
    optimizer = trainable * (4 + 8)
    tokens = micro_batch * sequence_tokens(cell)
    layer = tokens * arch.layer_activations() * act_bytes
    if cell.grpo.get("gradient_checkpointing", False):
        acts = tokens * arch.layers * arch.hidden * act_bytes + layer
    else:
        acts = arch.layers * layer
    # The LM head runs in fp32 tiles on the completion tokens (TRL's chunked log-prob kernel): their
    # hidden states and gradients, and a float32 logits tile of 4k tokens x the vocabulary.
    acts += micro_batch * cell.max_completion_length * arch.hidden * 4 * 2 + 4096 * min(arch.vocab, 32768) * 4
    vllm = 0.0
    kv_tokens = None
    if cell.use_vllm and cell.grpo.get("vllm_mode", "colocate") == "colocate":
        vllm = float(cell.grpo.get("vllm_gpu_memory_utilization", 0.3)) * gpu_gib * GIB
        kv_tokens = max(int((vllm - params * 2 - VLLM_OVERHEAD_GIB * GIB) // arch.kv_bytes_per_token()), 0)
    elif not cell.use_vllm:
        episodes = cell.episodes_per_step // processes
        acts = max(acts, episodes * sequence_tokens(cell) * arch.kv_bytes_per_token())
    return Memory(weights / GIB, optimizer / GIB, acts / GIB, vllm / GIB, micro_batch, kv_tokens)


def per_process_episodes(cell: TrainConfig, processes: int) -> int:
    return max(cell.episodes_per_step // processes, 1)


def fitting_micro_batch(cell: TrainConfig, arch: Architecture, gpu_gib: float, processes: int = 1) -> int | None:
    """The largest micro-batch (a divisor of each process's episodes) whose estimate fits the GPU."""
    per_device = per_process_episodes(cell, processes)
    for micro in sorted((d for d in range(1, per_device + 1) if per_device % d == 0), reverse=True):
        if memory(cell, arch, gpu_gib, micro, processes).total <= gpu_gib - RESERVED_GIB:
            return micro
    return None


@dataclass
class CellEstimate:
    params: int | None
    episodes: int
    tokens_per_step: int
    memory: Memory | None
    step_s: float | None
    total_h: float | None

    @property
    def memory_gib(self) -> float | None:
        return self.memory.total if self.memory is not None else None


REFERENCE_SIZES = {"7B": KNOWN_ARCHITECTURES["qwen2.5-7b"], "32B": KNOWN_ARCHITECTURES["qwen2.5-32b"]}
"""Shapes the plan falls back to when the model is unknown here (no config.json, a name not in the table)."""


def gpu_memory_gib(cell: TrainConfig, hw: Hardware) -> float | None:
    """The declared (``train.gpu_memory_gb``) or detected memory of one GPU; None on a CPU-only plan."""
    if cell.gpu_memory_gb is not None:
        return cell.gpu_memory_gb
    return hw.memory_gib if hw.kind == "gpu" else None


def estimate(cell: TrainConfig, hw: Hardware, arch: Architecture | None = None) -> CellEstimate:
    arch = arch if arch is not None else model_architecture(cell.model)
    episodes = cell.episodes_per_step
    gen_tokens = episodes * cell.max_completion_length
    tokens = episodes * sequence_tokens(cell)
    if arch is None:
        return CellEstimate(None, episodes, tokens, None, None, None)
    params = arch.params
    processes = hw.count if hw.kind == "gpu" else 1
    micro = cell.micro_batch or per_process_episodes(cell, processes)
    gpu = gpu_memory_gib(cell, hw)
    mem = memory(cell, arch, gpu if gpu is not None else hw.memory_gib, micro, processes)
    if hw.kind == "cpu":
        gen_s = gen_tokens / (CPU_GEN_TOKENS_S_135M * 135e6 / params)
        train_s = 6 * params * tokens / hw.peak_flops
    else:
        flops = hw.peak_flops * GPU_MFU * hw.count
        gen_rate = min(hw.bandwidth / (2 * params) * min(episodes, 256), flops / (2 * params)) * hw.count
        gen_s = gen_tokens / gen_rate
        train_s = 6 * params * tokens / flops
    step_s = gen_s + train_s
    return CellEstimate(params, episodes, tokens, mem, step_s, step_s * cell.steps / 3600)


def planning_hardware(config: ExperimentConfig, hw: Hardware) -> Hardware:
    """The detected hardware, or, planning on a CPU for a declared GPU (``train.gpu_memory_gb``), that GPU

    (its speed taken as an H100's), so a GPU plan made on a laptop gets GPU times, not CPU times."""
    declared = config.train.gpu_memory_gb
    if hw.kind == "gpu" or declared is None:
        return hw
    return Hardware(
        "gpu",
        f"declared {declared:.0f} GB GPU (H100 speed assumed)",
        1,
        declared,
        GPU_PEAK_BF16["H100"],
        GPU_BANDWIDTH["H100"],
    )


def plan_refusals(config: ExperimentConfig, hw: Hardware | None = None) -> list[str]:
    """Why the plan cannot run on the declared or detected GPU (empty: it fits, or nothing to check)."""
    hw = planning_hardware(config, hw or detect_hardware())
    problems: dict[str, list[str]] = {}
    for name, cell in config.cells():
        gpu = gpu_memory_gib(cell, hw)
        arch = model_architecture(cell.model)
        if gpu is None or arch is None:
            continue
        est = estimate(cell, hw, arch)
        if est.memory.total <= gpu - RESERVED_GIB:
            continue
        processes = hw.count if hw.kind == "gpu" else 1
        best = fitting_micro_batch(cell, arch, gpu, processes)
        fix = (
            f"the largest micro-batch that fits is {best}: set train.micro_batch: {best}"
            if best is not None
            else "no micro-batch fits: use LoRA, gradient checkpointing, a smaller vLLM share or more GPUs"
        )
        message = (
            f"{est.memory.line()} does not fit a {gpu:.0f} GB GPU ({RESERVED_GIB:.0f} GB kept for the CUDA "
            f"context); {fix}"
        )
        problems.setdefault(message, []).append(name)
    return [f"{', '.join(names)}: {message}" for message, names in problems.items()]


def _duration(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


def plan_text(config: ExperimentConfig, hw: Hardware | None = None) -> str:
    """The human-readable plan printed by ``--dry-run``."""
    hw = planning_hardware(config, hw or detect_hardware())
    cells = config.cells()
    lines = [
        f"experiment {config.name}: knowledge {config.knowledge}, {len(cells)} RL run(s)",
        f"hardware: {hw.count} x {hw.name}, {hw.memory_gib:.0f} GiB" + (" each" if hw.kind == "gpu" else ""),
        "stages: knowledge -> RL per cell -> checkpoint evals (" + ", ".join(config.evaluation.evals) + ") -> report",
    ]
    if config.matrix.axes:
        from rhlab.pipeline.config import value_label

        axes = [f"{path} [{', '.join(value_label(v) for v in values)}]" for path, values in config.matrix.axes.items()]
        seeds = config.matrix.seeds or [config.train.seed]
        lines.append(f"matrix: {' x '.join(axes)} x seeds {seeds}")
    total_h = 0.0
    known = True
    memory_lines: set[str] = set()
    for name, cell in cells:
        est = estimate(cell, hw)
        lines.append(
            f"  {name}: {cell.steps} steps x {est.episodes} episodes ({cell.prompts_per_step} prompts x "
            f"{cell.group_size}), <= {est.tokens_per_step:,} tokens/step, model {cell.model}"
        )
        if est.params is None:
            known = False
            lines.append("    size unknown (no config.json at the model path here, and not a known name); if it were")
            for label, arch in REFERENCE_SIZES.items():
                ref = estimate(cell, hw, arch)
                cost = f"~{ref.step_s:.0f} s/step, ~{_duration(ref.total_h)}"
                lines.append(f"      {label}: {ref.memory.line()}, {cost}")
            continue
        lines.append(f"    ~{est.params / 1e9:.2f}B parameters")
        line = est.memory.line()
        if line not in memory_lines:  # the cells of a matrix usually share their memory plan
            memory_lines.add(line)
            gpu = gpu_memory_gib(cell, hw)
            lines.append(f"    {line}" + ("" if gpu is None else f", of {gpu:.0f} GB"))
        if est.memory.kv_cache_tokens is not None:
            seqs = est.memory.kv_cache_tokens // sequence_tokens(cell)
            lines.append(f"    vLLM KV cache: ~{est.memory.kv_cache_tokens:,} tokens (~{seqs} sequences at once)")
        cost = f"~{est.step_s:.0f} s/step, ~{_duration(est.total_h)} for RL"
        lines.append(f"    {cost} (rough arithmetic, see docs/scale.md)")
        total_h += est.total_h
    if known:
        lines.append(f"total RL time ~{_duration(total_h)}, evals extra")
    for stage in config.after_rl:  # each finished run is then treated (docs/mitigations-after-rl.md)
        lines.append(f"after RL: {stage.name} ({stage.kind}), one per run, then its start and final are evaluated")
        if isinstance(stage, SafetyTrainingConfig) and stage.method == "grpo" and cells:
            lines.extend(f"    {line}" for line in safety_grpo_plan(stage, cells[0][1], hw))
    return "\n".join(lines)


def safety_grpo_plan(stage: SafetyTrainingConfig, teacher: TrainConfig, hw: Hardware) -> list[str]:
    """Memory and time of a ``method: grpo`` safety stage: GRPO like an RL cell on the teacher's final
    policy (full fine-tuning or the stage's LoRA), with the stage's own batch and completion length."""
    g = stage.grpo
    cell = teacher.model_copy(
        update={
            "steps": g.steps,
            "prompts_per_step": g.prompts_per_step,
            "group_size": g.group_size,
            "max_completion_length": stage.max_new_tokens,
            "micro_batch": g.micro_batch,
            "lora": g.lora,
            "use_vllm": False,
            "grpo": {},
        }
    )
    arch = model_architecture(cell.model)
    est = estimate(cell, hw, arch)
    if arch is None or est.memory is None:
        return ["size unknown here: no memory estimate for this stage"]
    gpu = gpu_memory_gib(cell, hw)
    out = [est.memory.line() + ("" if gpu is None else f", of {gpu:.0f} GB")]
    if gpu is not None and est.memory.total > gpu - RESERVED_GIB:
        fit = fitting_micro_batch(cell, arch, gpu)
        if fit:
            out.append(f"does not fit: set grpo.micro_batch to {fit} or less")
        else:
            fixed = est.memory.weights + est.memory.optimizer
            what, hint = ("full fine-tuning", "set grpo.lora (e.g. {r: 16}), ") if g.lora is None else ("LoRA", "")
            out.append(
                f"does not fit at any micro-batch: {what} needs {fixed:.0f} GB for weights and Adam alone; "
                f"{hint}use more GPU memory or a smaller model"
            )
    out.append(f"~{est.step_s:.0f} s/step, ~{_duration(est.total_h)} for its GRPO (rough arithmetic)")
    return out
