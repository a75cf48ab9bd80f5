"""Growth benchmarks, measured side by side in one run (CPU by default; --device cuda on a GPU).

1. Step time of a stage-k update (k-1 frozen blocks run without autograd, one new block,
   final norm and head train) against full backprop through all k blocks of the same
   model and batch, for k = 2, 4, 8.
2. Training tokens/s of `pgt grow`'s optimizer step (StageTrainer: data loading, schedule,
   accumulation, loss, clipping, the per-step all-reduce and inf/NaN check) against a plain
   PyTorch step on the same model and batches: the trainer's overhead (target >= 0.95x).

    .venv/bin/python benchmarks/bench_growth.py                 # builds a small substrate + data once
    .venv/bin/python benchmarks/bench_growth.py --substrate S --data D --dim 256
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from model_pair import growth_config

from pgt.growth.expand import frozen_prefix, set_trainable
from pgt.growth.stage import causal_lm_loss

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-growth"


def timed_steps(model, layers, frozen: int, batch, steps: int) -> float:
    """Median seconds of one forward + backward + AdamW step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    times = []
    with frozen_prefix(layers, frozen):
        for _ in range(steps + 2):  # two warm-up steps
            start = time.perf_counter()
            causal_lm_loss(model, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if batch.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def bench_stage_update(args: argparse.Namespace) -> None:
    from pgt.model.architecture import build_model, pgt_config

    device = torch.device(args.device)
    print(
        f"\n1. stage-k update vs full backprop (d={args.dim}, vocab={args.vocab}, batch {args.batch}x{args.seq}, "
        f"{device.type})"
    )
    print(f"{'k':>3} {'stage-k step':>13} {'full step':>11} {'speed-up':>9}")
    for k in (2, 4, 8):
        torch.manual_seed(0)
        config = pgt_config(
            vocab_size=args.vocab,
            hidden_size=args.dim,
            num_hidden_layers=k,
            num_attention_heads=max(1, args.dim // 64),
            max_position_embeddings=args.seq,
        )
        model = build_model(config).to(device).train()
        layers = model.model.layers
        batch = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=device)
        results = {}
        for _ in range(args.repeats):  # interleaved, best of `repeats`, against machine noise
            set_trainable(model, [layers[-1], model.model.norm, model.lm_head])
            results.setdefault("stage", []).append(timed_steps(model, layers, k - 1, batch, args.steps))
            set_trainable(model, [*layers, model.model.norm, model.lm_head])
            results.setdefault("full", []).append(timed_steps(model, layers, 0, batch, args.steps))
        stage, full = min(results["stage"]), min(results["full"])
        print(f"{k:>3} {stage * 1e3:>10.1f} ms {full * 1e3:>8.1f} ms {full / stage:>8.2f}x")


def ensure_inputs(args: argparse.Namespace) -> tuple[str, str]:
    """The given substrate and data, or a small fortune-corpus pair built once under .cache/."""
    if args.substrate and args.data:
        return args.substrate, args.data
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.data.prepare import prepare_token_data
    from pgt.substrate.build import build_substrate

    substrate, data = CACHE / f"substrate-d{args.dim}", CACHE / f"data-d{args.dim}"
    files = default_corpus_files()
    if not substrate.exists():
        print(f"building a bvv241-2-3 substrate at dim {args.dim} in {substrate} (once)")
        build_substrate(substrate, family="bvv241-2-3", corpus=files, dim=args.dim, progress=False)
    if not data.exists():
        prepare_token_data([str(f) for f in files[:8]], substrate, data, progress=False)
    return str(substrate), str(data)


def bench_trainer_overhead(args: argparse.Namespace) -> None:
    """Blocks of trainer steps and plain steps alternate on the same model in one process, so
    machine load drifts hit both alike; the median block rate of each is compared."""
    from pgt.growth import grow
    from pgt.growth.checkpoint import TrainState
    from pgt.growth.loop import StageTrainer
    from pgt.growth.metrics import MetricsLogger
    from pgt.growth.schedule import lr_at
    from pgt.growth.trainer import GrowthRun

    substrate, data_dir = ensure_inputs(args)
    tokens_per_step, block = args.batch * args.seq, args.block_steps
    print(
        f"\n2. pgt grow inner loop vs plain PyTorch loop (stage 2 of a {args.dim}-wide model: 1 frozen + 1 new "
        f"block, batch {args.batch}x{args.seq}, {args.repeats} x {block} steps each, {args.device})"
    )
    config = growth_config(args, substrate, data_dir, tokens_per_stage=tokens_per_step, device=args.device)
    grow(config)  # stage 1, which stage 2 grows from
    config.stages = 2
    config.tokens_per_stage = 2 * args.repeats * block * tokens_per_step
    run = GrowthRun(config)
    logger = MetricsLogger(run.setup.run_dir, resume_offset=None, resume_step=None, enabled=False)
    trainer = StageTrainer(run.setup, run.directory, logger, run.setup.plans[1], TrainState(stage=2), None)
    model, params, data = trainer.stage.model, trainer.stage.trainable, run.setup.data
    plain_optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas)

    def plain_step(step: int) -> None:
        for group in plain_optimizer.param_groups:
            group["lr"] = lr_at(step, trainer.total_steps, config)
        batch = data.train_batch(step, args.batch, args.seq, seed=0).to(args.device)
        causal_lm_loss(model, batch).backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        plain_optimizer.step()
        plain_optimizer.zero_grad(set_to_none=True)

    def rate(step_fn, first_step: int) -> float:
        start = time.perf_counter()
        for step in range(first_step, first_step + block):
            step_fn(step)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return block * tokens_per_step / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"trainer": [], "plain": []}
    with frozen_prefix(model.model.layers, 1):
        plain_step(0), trainer._optimizer_step()  # warm-up
        for repeat in range(args.repeats):
            rates["trainer"].append(rate(lambda _: trainer._optimizer_step(), 0))
            rates["plain"].append(rate(plain_step, repeat * block))
    trainer_rate, plain_rate = statistics.median(rates["trainer"]), statistics.median(rates["plain"])
    print(f"  pgt grow step {trainer_rate:>10,.0f} tokens/s (median of {args.repeats} blocks)")
    print(f"  plain step    {plain_rate:>10,.0f} tokens/s")
    print(f"  ratio         {trainer_rate / plain_rate:>10.3f}x (target >= 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=256, help="model width (default 256)")
    parser.add_argument(
        "--vocab",
        type=int,
        help="vocabulary of part 1 (default: 32 x dim, abs-bvv's ratio "
        "131,072 / 4,096, so head and blocks weigh as in the published models)",
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement in part 1")
    parser.add_argument("--block-steps", type=int, default=5, help="steps per timed block in part 2")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved repetitions (part 1: best; part 2: median)")
    parser.add_argument("--substrate", help="substrate directory for part 2 (default: build one)")
    parser.add_argument("--data", help="token data directory for part 2 (default: prepare one)")
    parser.add_argument("--only", type=int, choices=(1, 2), help="run only part 1 or part 2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: a shared machine)")
    args = parser.parse_args()
    args.vocab = args.vocab or 32 * args.dim
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.only != 2:
        bench_stage_update(args)
    if args.only != 1:
        bench_trainer_overhead(args)


if __name__ == "__main__":
    main()
