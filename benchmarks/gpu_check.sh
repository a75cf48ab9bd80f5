#!/usr/bin/env bash
# One growth step of the abs-bvv-4 preset on one GPU, in bfloat16 autocast: prints tokens/s and MFU;
# then a grown stage served by vLLM against transformers' greedy continuation (benchmarks/vllm_check.py).
#
# Stage 4 of abs-bvv: 3 frozen blocks (run without autograd) + 1 new block + final norm + head
# at d_model 4,096, 32 heads, vocabulary 131,328, sequence 1,024. The frozen embedding is a
# random 131,328 x 4,096 matrix with unit-norm rows standing in for the bvv241-abs substrate:
# building the real one renders and PCA-projects 131k glyph bitmaps, which alone would take
# most of the 8-minute budget and does not change the step's cost (the embedding is a lookup).
# It then times full backprop through all 4 blocks on the same batch, for the ratio.
#
#   benchmarks/gpu_check.sh                  # batch 8 (8,192 tokens per step)
#   BATCH=4 STEPS=5 benchmarks/gpu_check.sh  # smaller / shorter
#   PEAK_TFLOPS=989 benchmarks/gpu_check.sh  # the GPU's dense bf16 peak, if not recognised
#
#   VLLM=0 benchmarks/gpu_check.sh          # skip the vLLM check (it needs `pip install vllm`)
#
# Expected runtime: about 1-2 minutes on an H100/H200 for the step (under 8 minutes on any 40 GB+ GPU),
# plus 2-4 minutes for the vLLM check (a small substrate, two tiny growth stages, two engine starts).
# Without a CUDA device it says so and exits 0 without measuring anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export BATCH="${BATCH:-8}" SEQ="${SEQ:-1024}" STEPS="${STEPS:-10}" PRESET="${PRESET:-abs-bvv-4}"

timeout 480 "$PY" - <<'EOF'
import os, sys, time

import torch

if not torch.cuda.is_available():
    print("gpu_check: no CUDA device visible (torch %s): nothing measured. Run this on a GPU machine." % torch.__version__)
    sys.exit(0)

from pgt.growth.distributed import autocast
from pgt.growth.expand import count_parameters, frozen_prefix, set_trainable
from pgt.growth.trainer import causal_lm_loss
from pgt.model.architecture import build_model
from pgt.model.presets import get_preset

batch_size, seq, steps = int(os.environ["BATCH"]), int(os.environ["SEQ"]), int(os.environ["STEPS"])
preset = get_preset(os.environ["PRESET"])
device = torch.device("cuda")
name = torch.cuda.get_device_name(device)
peak_table = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}
peak = float(os.environ.get("PEAK_TFLOPS", 0)) * 1e12 or next((v for k, v in peak_table.items() if k in name), None)
print(f"gpu_check: {name}, torch {torch.__version__}, preset {preset.name}: {preset.num_hidden_layers} blocks, "
      f"d={preset.hidden_size}, heads={preset.num_attention_heads}, vocab={preset.vocab_size}; batch {batch_size} x {seq}")

t0 = time.perf_counter()
torch.manual_seed(0)
config = preset.config(max_position_embeddings=seq)
with device:
    model = build_model(config)
    stand_in = torch.randn(preset.vocab_size, preset.hidden_size)
    model.model.embed_tokens.weight.data.copy_(stand_in / stand_in.norm(dim=1, keepdim=True))
    del stand_in
model.train()
layers = model.model.layers
k = len(layers)
total, _ = count_parameters(model)
print(f"  model built on the GPU in {time.perf_counter() - t0:.1f} s: {total / 1e9:.2f} B parameters (fp32 master weights)")
batch = torch.randint(0, preset.vocab_size, (batch_size, seq + 1), device=device)
tokens = batch_size * seq


def measure(frozen: int) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), fused=True)
    times = []
    with frozen_prefix(layers, frozen):
        for step in range(steps + 3):  # 3 warm-up steps
            torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast(device, "bf16"):
                loss = causal_lm_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise SystemExit(f"gpu_check: non-finite loss {loss.item()}")
    del optimizer
    torch.cuda.empty_cache()
    return sorted(times[3:])[len(times[3:]) // 2]


def flops(frozen_blocks: int, trained_blocks: int) -> float:
    """Matmul FLOPs of one step: 2/param/token forward, x3 with backward; attention 4*T*d per token per layer."""
    d, v = preset.hidden_size, preset.vocab_size
    block = 12 * d * d
    attention = 4 * seq * d
    forward_only = frozen_blocks * (2 * block + attention)
    trained = trained_blocks * 3 * (2 * block + attention) + 3 * 2 * v * d  # + the head
    return tokens * (forward_only + trained)


def report(label: str, seconds: float, step_flops: float) -> None:
    mfu = f"{step_flops / seconds / peak * 100:.1f} % MFU (peak {peak / 1e12:.0f} TFLOPS)" if peak else \
        "MFU: unknown peak for this GPU (set PEAK_TFLOPS)"
    print(f"  {label}: {seconds * 1e3:8.1f} ms/step  {tokens / seconds:>10,.0f} tokens/s  "
          f"{step_flops / seconds / 1e12:6.1f} TFLOPS  {mfu}")


torch.cuda.reset_peak_memory_stats()
set_trainable(model, [layers[-1], model.model.norm, model.lm_head])
growth = measure(frozen=k - 1)
memory = torch.cuda.max_memory_allocated() / 2**30
report(f"growth step (stage {k}: {k - 1} frozen + 1 new block)", growth, flops(k - 1, 1))
print(f"  peak GPU memory {memory:.1f} GiB")
set_trainable(model, [*layers, model.model.norm, model.lm_head])
full = measure(frozen=0)
report(f"full backprop through {k} blocks (same model, batch)", full, flops(0, k))
print(f"  full-backprop step time / growth step time = {full / growth:.2f}; total {time.perf_counter() - t0:.0f} s")
EOF

if [ "${VLLM:-1}" != 0 ]; then
  timeout 600 "$PY" benchmarks/vllm_check.py
fi
