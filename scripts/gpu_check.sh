#!/usr/bin/env bash
# The device smoke: rhlab's GPU path in at most ~10 minutes on one H100/H200, offline, with the machine's own
# torch (no venv, no torch install). Stages, each writing its figures to $OUT/gpu_check.json:
#   preflight (rhlab doctor) -> 3 GRPO steps (LoRA, gradient checkpointing, real grading) -> a Qwen2-7B-shaped
#   memory probe without weights (fwd+bwd at ~1.7k tokens, micro-batches 8/32/128, vs the dry run's estimate)
#   -> rhlab run with two cells -> one full fine-tuning step in bf16 that must move the weights -> vLLM (only
#   where vllm imports).
# The policy is a small random-weight model, so no model files are needed; where bubblewrap is absent the
# weak sandbox is opted into explicitly, and the JSON says so.
#
#   bash scripts/gpu_check.sh --print-wheels          # the pure-Python wheels to carry (pip download these)
#   bash scripts/gpu_check.sh --wheels DIR            # install them with --no-deps (offline), then run
#   bash scripts/gpu_check.sh                         # run (dependencies already importable)
#   bash scripts/gpu_check.sh --cpu                   # the same stages' mechanics at toy size on a CPU (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
# On a GPU, the machine's own Python and torch: a CPU venv's torch (+cpu) satisfies rhlab's pin but has no
# CUDA. --cpu uses the project venv when there is one.
case " $* " in
  *" --cpu "*) PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)} ;;
  *) PYTHON=${PYTHON:-python3} ;;
esac
OUT=${OUT:-runs/gpu_check}
WHEELS=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --print-wheels)
      # rhlab's runtime requirements, recursively, minus what a GPU machine's own Python brings
      # (torch and its CUDA libraries, transformers, peft, accelerate and their dependencies).
      exec "$PYTHON" - <<'PY'
import re
from importlib.metadata import PackageNotFoundError, distribution

BROUGHT = {"torch", "triton", "transformers", "peft", "accelerate", "numpy", "safetensors", "tokenizers",
           "huggingface-hub", "hf-xet", "filelock", "fsspec", "packaging", "pyyaml", "regex", "requests",
           "tqdm", "typing-extensions", "jinja2", "markupsafe", "networkx", "sympy", "mpmath", "psutil",
           "setuptools", "certifi", "charset-normalizer", "idna", "urllib3"}
name = lambda req: re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
seen, todo = set(), ["rhlab"]
while todo:
    pkg = todo.pop()
    try:
        dist = distribution(pkg)
    except PackageNotFoundError:
        continue
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        dep = name(req)
        if dep not in seen and dep not in BROUGHT and not dep.startswith("nvidia-"):
            seen.add(dep)
            todo.append(dep)
for dep in sorted(seen):
    try:
        print(f"{dep}=={distribution(dep).version}")
    except PackageNotFoundError:
        print(dep)
print("# pip download --no-deps -d wheels/ $(bash scripts/gpu_check.sh --print-wheels | grep -v '^#')", flush=True)
print("# rhlab itself runs from this checkout (PYTHONPATH=src); no wheel needed")
PY
      ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if [ -n "$WHEELS" ]; then
  # --no-deps: keep the machine's own torch (a CPU venv's torch would satisfy the pin and break CUDA).
  "$PYTHON" -m pip install -q --no-deps --no-index "$WHEELS"/*.whl
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py --out "$OUT" "${ARGS[@]}"
