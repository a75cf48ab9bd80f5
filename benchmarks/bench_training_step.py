"""Training-step speed: PGT against a transformers Llama of the same shape, and PGT's
achieved FLOP/s as a fraction of a plain float32 matmul's, all measured in one run.

    python benchmarks/bench_training_step.py [--layers 6 --width 512 --heads 8 --batch 4 --seq 256]

One step = forward with labels + backward (no optimizer: its cost does not depend on the
architecture). Prints tokens/s (per CPU second of this process) of each model, the ratio
PGT / Llama (target >= 1.0), and model FLOP/s / matmul FLOP/s, where a step counts
3 x the forward FLOPs: 2 per weight per token for every matmul weight (blocks and head)
plus the causal attention's 2 * layers * tokens * seq * width.
"""

from __future__ import annotations

import argparse
import time

import torch
from model_pair import add_shape_arguments, block_parameters, build_pair, median_seconds


def matmul_flops_per_second(size: int, repeats: int) -> float:
    """FLOP/s of a square float32 matmul, the best of `repeats` (CPU time)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - started)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(parser, layers=6, width=512, heads=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = build_pair(args)
    tokens = torch.randint(3, args.vocab, (args.batch, args.seq))

    def step(model: torch.nn.Module) -> None:
        model.train()
        model(tokens, labels=tokens, use_cache=False).loss.backward()
        model.zero_grad(set_to_none=True)

    seconds = median_seconds({name: (lambda m=m: step(m)) for name, m in models.items()}, args.repeats)
    rates = {name: tokens.numel() / s for name, s in seconds.items()}
    print(
        f"shape: {args.layers} layers, width {args.width}, {args.heads} heads, vocab {args.vocab:,}; "
        f"batch {args.batch} x {args.seq} tokens, {args.threads} thread(s), float32"
    )
    print(
        f"forward+backward: pgt {rates['pgt']:8.1f} tok/s   llama {rates['llama']:8.1f} tok/s   "
        f"ratio pgt/llama {rates['pgt'] / rates['llama']:.3f}"
    )

    forward_flops_per_token = 2 * block_parameters(models["pgt"]) + 2 * args.layers * args.seq * args.width
    model_flops = 3 * forward_flops_per_token * rates["pgt"]
    peak = matmul_flops_per_second(args.matmul_size, args.repeats)
    print(
        f"pgt achieved {model_flops / 1e9:.2f} GFLOP/s; plain {args.matmul_size}^2 matmul {peak / 1e9:.2f} GFLOP/s; "
        f"fraction {model_flops / peak:.3f}"
    )


if __name__ == "__main__":
    main()
