"""Which precision a run computes in: ``precision: auto`` resolved for this machine.

One decision for every stage (RL, warm-up, SDF, the probe gates' SFT), so a run never trains in one
precision and evaluates in another by accident. It sits with the models, below ``knowledge`` and
``train``, because both train weights and both must keep the fp32-master rule (``load_dtype``).
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Any


@cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags (``/proc/cpuinfo``; empty flags where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return model, frozenset(flags)


def cpu_description() -> str:
    """The CPU model and its widest vector extensions (matmul kernels, and so rounding, follow them)."""
    model, flags = cpu_info()
    wide = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f == "avx2")
    return f"{model} ({' '.join(wide) or 'no avx2'})"


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX-BF16 or AVX512-BF16).

    Without them bf16 is emulated and slower than fp32, so ``precision: auto`` stays in fp32.
    """
    return bool({"amx_bf16", "avx512_bf16"} & cpu_info()[1])


def load_dtype(lora: bool, bf16: bool, on_gpu: bool) -> Any:
    """The torch dtype a policy is loaded in for training.

    Trainable weights stay in fp32 and bf16 comes from autocast: an AdamW update at lr 1e-6 is far
    below bf16's rounding step (2^-8 of the weight), so bf16 weights would not move and the run would
    look healthy while learning nothing. Only a LoRA run's frozen base is stored in bf16 on a GPU,
    which halves its memory and is never updated.
    """
    import torch

    return torch.bfloat16 if lora and bf16 and on_gpu else torch.float32


def resolve_precision(precision: str, on_gpu: bool, gpu_bf16: bool = True) -> str:
    """``fp32`` or ``bf16`` (autocast over fp32 master weights) for this machine.

    ``gpu_bf16``: whether the GPU computes in bf16 natively (``torch.cuda.is_bf16_supported()``).
    """
    if precision != "auto":
        return precision
    if on_gpu:
        return "bf16" if gpu_bf16 else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"
