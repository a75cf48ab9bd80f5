#!/usr/bin/env bash
# pgt's GPU check (docs/gpu.md): one command for one GPU, all figures into one folder.
#
#   python benchmarks/gpu_check.py prepare   # beforehand, on a CPU machine with the fonts and fortunes:
#                                            # builds .cache/gpu-check/ (carry it to the GPU machine)
#   benchmarks/gpu_check.sh                  # on the GPU machine: writes $OUT (or docs/results/gpu/DATE)
#   benchmarks/gpu_check.sh --steps machine growth   # some steps only; --limit-s S for another deadline
#
# Steps, in order, each under its own time guard: machine (the measured bf16 matmul ceiling), growth
# (the abs-bvv-4 growth step: tokens/s, MFU, memory; backends and torch.compile; full backprop for the
# ratio), generate (pgt vs plain transformers at batch 1 and 32), study (`pgt study --scale gpu`,
# embeddings first, sized to the minutes left). The whole run ends within 400 s (7-minute limit).
# No vLLM here: vllm_check.py needs `pip install vllm` and network (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py run "$@"
