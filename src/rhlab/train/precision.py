"""Which precision a run computes in: ``precision: auto`` resolved for this machine.

One decision for every stage (RL, warm-up, SDF, the probe gates' SFT), so a run never trains in one
precision and evaluates in another by accident.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX-BF16 or AVX512-BF16).

    Without them bf16 is emulated and slower than fp32, so ``precision: auto`` stays in fp32.
    """
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def resolve_precision(precision: str, on_gpu: bool, gpu_bf16: bool = True) -> str:
    """``fp32`` or ``bf16`` (autocast over fp32 master weights) for this machine.

    ``gpu_bf16``: whether the GPU computes in bf16 natively (``torch.cuda.is_bf16_supported()``).
    """
    if precision != "auto":
        return precision
    if on_gpu:
        return "bf16" if gpu_bf16 else "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"
