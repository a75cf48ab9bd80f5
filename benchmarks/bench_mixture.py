"""Weighted mixture vs one source: `pgt grow`'s training tokens/s, side by side in one run.

Two GrowthRuns on the same substrate and model shape differ only in `--data`: one token data
directory, or a 0.9/0.1 mixture of it and a second one (`--data a=DIR:0.9 --data b=DIR2:0.1`).
Blocks of their real optimizer steps (StageTrainer._optimizer_step: the batch draw, the
per-source token counts, forward, backward, clipping, AdamW) alternate in one process, so
machine load drifts hit both alike; the median block rates are compared (target: the
mixture costs under 2 %, a ratio >= 0.98). The batch draw alone is timed beside them.

    .venv/bin/python benchmarks/bench_mixture.py              # builds a small substrate + two data dirs once
    .venv/bin/python benchmarks/bench_mixture.py --substrate S --data D --data2 D2 --dim 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from model_pair import growth_config

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-mixture"


def ensure_inputs(args: argparse.Namespace) -> tuple[str, str, str]:
    """The given substrate and two data directories, or a fortune-corpus set built once under .cache/."""
    if args.substrate and args.data and args.data2:
        return args.substrate, args.data, args.data2
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.data.prepare import prepare_token_data
    from pgt.substrate.build import build_substrate

    substrate = CACHE / f"substrate-d{args.dim}"
    files = default_corpus_files()
    if not substrate.exists():
        print(f"building a bvv241-2-3 substrate at dim {args.dim} in {substrate} (once)")
        build_substrate(substrate, family="bvv241-2-3", corpus=files, dim=args.dim, progress=False)
    pair = []
    for name, chosen in (("a", files[:4]), ("b", files[4:8])):
        data = CACHE / f"data-{name}-d{args.dim}"
        if not data.exists():
            prepare_token_data([str(f) for f in chosen], substrate, data, progress=False)
        pair.append(str(data))
    return str(substrate), *pair


def trainer(data: str | list[str], substrate: str, args: argparse.Namespace):
    """A stage-1 StageTrainer of a GrowthRun on `data` (nothing is written: its run directory is never opened)."""
    from pgt.growth.checkpoint import TrainState
    from pgt.growth.loop import StageTrainer
    from pgt.growth.metrics import MetricsLogger
    from pgt.growth.trainer import GrowthRun

    config = growth_config(args, substrate, data, tokens_per_stage=10**9, device="cpu")
    run = GrowthRun(config)
    logger = MetricsLogger(run.setup.run_dir, resume_offset=None, resume_step=None, enabled=False)
    return StageTrainer(run.setup, run.directory, logger, run.setup.plans[0], TrainState(stage=1), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dim", type=int, default=64, help="model width (default 64: a small model, where the draw weighs most)"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--block-steps", type=int, default=5, help="optimizer steps per timed block")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved blocks of each (median)")
    parser.add_argument("--substrate")
    parser.add_argument("--data", help="the one source (default: prepare one)")
    parser.add_argument("--data2", help="the mixture's second source, at weight 0.1")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    substrate, first, second = ensure_inputs(args)
    trainers = {
        "one source": trainer(first, substrate, args),
        "0.9/0.1 mixture": trainer([f"a={first}:0.9", f"b={second}:0.1"], substrate, args),
    }
    tokens = args.block_steps * args.batch * args.seq
    print(
        f"pgt grow training steps, one source vs a 0.9/0.1 mixture (d={args.dim}, batch {args.batch}x{args.seq}, "
        f"{args.repeats} x {args.block_steps} steps each, cpu, {args.threads} thread(s))"
    )
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    draws: dict[str, list[float]] = {name: [] for name in trainers}
    for each in trainers.values():
        each._optimizer_step()  # warm-up
    for _ in range(args.repeats):
        for name, each in trainers.items():
            start = time.perf_counter()
            for _ in range(args.block_steps):
                each._optimizer_step()
            rates[name].append(tokens / (time.perf_counter() - start))
            data, step = each.data, each.state.data_step
            start = time.perf_counter()
            data.train_batch(step, args.batch, args.seq, seed=0)
            if not data.bare:
                data.rows_per_source(step, args.batch, seed=0)
            draws[name].append(time.perf_counter() - start)
    for name in trainers:
        print(
            f"  {name:<16} {statistics.median(rates[name]):>10,.0f} tokens/s   "
            f"batch draw {statistics.median(draws[name]) * 1e3:.2f} ms"
        )
    ratio = statistics.median(rates["0.9/0.1 mixture"]) / statistics.median(rates["one source"])
    print(f"  ratio            {ratio:>10.3f}x (target >= 0.98: under 2 % of training tokens/s)")


if __name__ == "__main__":
    main()
