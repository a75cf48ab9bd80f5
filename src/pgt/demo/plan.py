"""The demo's plan (OUT/demo.json): the growth configuration, with tokens per stage fitted to --minutes
from measured speeds of every stage's shape on this machine."""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt import options
from pgt.demo.showcase import PROMPTS, SAMPLE_TOKENS, say
from pgt.errors import PgtError
from pgt.model.architecture import SAMPLING
from pgt.records import Record

HEADS = 4  # attention heads of the demo's blocks (32 dims each at d = 128)
# `pgt grow`'s options that the demo has, and the demo's own defaults of them: shorter sequences (the
# corpus is short fortunes), and tokens per stage fitted to --minutes. Its learning rate is grow's:
# after 100,352 tokens of stage 1 (trimmed substrate, d = 128, batch 8 x 128), validation loss was
# 4.594 at lr 4e-3, 4.562 at 8e-3 and 4.615 at 1.6e-2.
GROWTH_OPTIONS = ("stages", "tokens_per_stage", "init", "seq_len", "batch_size", "lr", "seed")
GROWTH_DEFAULTS: dict[str, Any] = {"seq_len": 128, "tokens_per_stage": None}
# Seconds kept back from --minutes for the glyphs and the report, and per stage for loading and
# saving beside the measured cost of its evaluation and samples.
FIXED_RESERVE_S = 20.0
STAGE_OVERHEAD_S = 5.0
# Fraction of the training time that goes into tokens (the rest: periodic evaluation, checkpoints).
TRAIN_SHARE = 0.8
PLAN_FILE = "demo.json"


@dataclass
class DemoPlan(Record):
    """OUT/demo.json: the growth configuration the demo's run is made with, so a rerun resumes the same run."""

    WHAT = "demo plan"

    growth: dict[str, Any]  # GrowthConfig.to_dict() of the run
    threads: int  # torch CPU threads the run trains with
    measured_tokens_per_s: list[float] | None = None  # training tokens/s of each stage's shape, when fitted

    def growth_config(self, progress: bool):
        """The run's `GrowthConfig` (progress bars as this invocation wants them)."""
        from pgt.growth import GrowthConfig

        return GrowthConfig(**{**self.growth, "progress": progress})


def growth_config(args: argparse.Namespace, substrate: Path, data: Path, run_dir: Path, tokens_per_stage: int):
    """The `pgt grow` configuration of the demo: its options, and evaluation and checkpoint intervals per stage."""
    from pgt.growth import GrowthConfig

    steps = max(1, tokens_per_stage // (args.batch_size * args.seq_len))
    given = {name: getattr(args, name) for name in GROWTH_OPTIONS}
    return GrowthConfig(
        **{**given, "tokens_per_stage": tokens_per_stage},
        substrate=str(substrate),
        data=str(data),
        out=str(run_dir),
        heads=HEADS,
        context=max(256, args.seq_len),
        eval_every=max(1, steps // 4),
        eval_tokens=8192,
        checkpoint_every=max(1, steps // 4),
        log_every=max(1, steps // 40),
        progress=options.show_progress(args),
    )


@dataclass(frozen=True)
class Speeds:
    """How fast this machine runs the demo's model: measured, not assumed."""

    train_tokens_per_s: list[float]  # per stage: AdamW steps of the new top block and head, older blocks frozen
    score_tokens_per_s: float  # forward passes without gradients (perplexity) of the deepest model
    s_per_sampled_token: float  # one step of `generate` with the reference's sampling, deepest model


def measure_speeds(
    substrate: Path,
    stages: int,
    seq_len: int,
    batch_size: int,
    heads: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Speeds:
    """Time real training steps of every stage's shape, and scoring passes and sampled tokens of the last.

    `clock` is wall time for the demo's plan; a benchmark on a shared machine passes `time.process_time`.
    """
    import torch

    from pgt.growth import GrowthConfig
    from pgt.growth.expand import frozen_prefix, set_trainable
    from pgt.model import from_substrate
    from pgt.substrate.store import Substrate

    loaded = Substrate.load(substrate, verify=False)
    ids = torch.randint(0, loaded.vocab_size, (batch_size, seq_len))  # any ids cost the same

    def timed(action, repeats: int = 5) -> float:
        """The median of `repeats` timed calls after a warm-up (allocations, kernel selection): robust to a
        neighbour's burst on a shared machine."""
        action()
        seconds = []
        for _ in range(repeats):
            start = clock()
            action()
            seconds.append(clock() - start)
        return statistics.median(seconds)

    train, model = [], None
    for stage in range(1, stages + 1):
        torch.manual_seed(0)
        model = from_substrate(
            loaded,
            num_hidden_layers=stage,
            num_attention_heads=heads,
            intermediate_size=GrowthConfig.intermediate_multiple * loaded.dim,
        )
        set_trainable(model, [model.model.layers[-1], model.model.norm, model.lm_head])  # as a growth stage
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def train_step(model: torch.nn.Module, frozen: int, optimizer: torch.optim.Optimizer) -> None:
            with frozen_prefix(model.model.layers, frozen):
                model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        train.append(batch_size * seq_len / timed(functools.partial(train_step, model, stage - 1, optimizer)))

    def score() -> None:
        with torch.inference_mode():
            model(input_ids=ids)

    def sample(new_tokens: int = 8) -> None:
        with torch.inference_mode():
            model.generate(
                ids[:1, :4],
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=model.config.pad_token_id,
                **SAMPLING,
            )

    return Speeds(train, batch_size * seq_len / timed(score), timed(sample) / 8)


def available_threads() -> int:
    """The demo's default torch threads: 2 cores' worth, or fewer where fewer are usable."""
    return min(2, options.available_cpus())


def fastest_threads(given: int | None, substrate: Path, args: argparse.Namespace) -> tuple[int, Speeds]:
    """`given` threads, else whichever of 1 and `available_threads()` trains faster here, with its speeds.

    A model this small runs small matrix products, where a second thread can cost more than it gives
    when the cores are shared (measured: 5x slower at 2 threads on a loaded 2-core machine), and gives
    ~1.5x when they are not."""
    import torch

    choices = [given] if given else sorted({1, available_threads()})
    measured = {}
    for threads in choices:
        torch.set_num_threads(threads)
        measured[threads] = measure_speeds(substrate, args.stages, args.seq_len, args.batch_size, HEADS)
    best = min(measured, key=lambda t: sum(1 / rate for rate in measured[t].train_tokens_per_s))
    torch.set_num_threads(best)
    return best, measured[best]


def make_plan(out: Path, args: argparse.Namespace, substrate: Path, data: Path, started: float) -> DemoPlan:
    """The run's plan: OUT/demo.json when a previous run saved it (checked against these options), else a new one
    fitted to --minutes.

    Fitting: the time left after the substrate and the data, less what evaluation and sampling of
    every stage will take at the measured speeds, goes into training tokens (TRAIN_SHARE of it:
    the trainer's own validation and checkpoints take the rest), the same number in every stage.
    """
    from pgt.growth.config import config_differences

    plan_path = out / PLAN_FILE
    run_dir = out / "run"
    if plan_path.is_file():
        plan = DemoPlan.load(plan_path)
        tokens = args.tokens_per_stage or int(plan.growth["tokens_per_stage"])
        requested = growth_config(args, substrate, data, run_dir, tokens)
        changed = config_differences(plan.growth, requested)
        if changed:
            now = requested.to_dict()
            detail = ", ".join(f"{key} {plan.growth.get(key)} -> {now.get(key)}" for key in changed)
            raise PgtError(
                f"{out} holds a demo made with other settings ({detail}): rerun with the same options "
                "or choose another --out"
            )
        say(f"resuming the plan in {plan_path}: {requested.stages} stages x {tokens:,} tokens")
        plan.growth = requested.to_dict()  # more --stages than before grows the finished run further
        plan.threads = args.threads or plan.threads
        plan.save(plan_path)
        return plan
    if args.tokens_per_stage:
        plan = DemoPlan(
            growth_config(args, substrate, data, run_dir, args.tokens_per_stage).to_dict(),
            args.threads or available_threads(),
        )
        plan.save(plan_path)
        return plan
    threads, speeds = fastest_threads(args.threads, substrate, args)
    from pgt.data import Manifest

    validation = Manifest.read(data).splits["validation"]
    eval_docs = validation.documents if args.eval_docs is None else min(args.eval_docs, validation.documents)
    eval_tokens = eval_docs * validation.tokens / max(1, validation.documents)
    per_stage_s = (
        eval_tokens / speeds.score_tokens_per_s
        + len(PROMPTS) * SAMPLE_TOKENS * speeds.s_per_sampled_token
        + STAGE_OVERHEAD_S
    )
    left = args.minutes * 60 - (time.perf_counter() - started) - FIXED_RESERVE_S - args.stages * per_stage_s
    if left <= 0:
        raise PgtError(
            f"--minutes {args.minutes} is used up before training starts; give more minutes, "
            "fewer --eval-docs or --tokens-per-stage"
        )
    seconds_per_token_of_each_stage = sum(1 / rate for rate in speeds.train_tokens_per_s)
    tokens = max(args.batch_size * args.seq_len, int(left * TRAIN_SHARE / seconds_per_token_of_each_stage))
    plan = DemoPlan(
        growth_config(args, substrate, data, run_dir, tokens).to_dict(),
        threads,
        [round(rate, 1) for rate in speeds.train_tokens_per_s],
    )
    rates = ", ".join(f"{rate:,.0f}" for rate in speeds.train_tokens_per_s)
    say(
        f"measured {rates} training tokens/s (stages 1..{args.stages}) on {threads} thread(s), "
        f"{speeds.score_tokens_per_s:,.0f} scored "
        f"tokens/s, {speeds.s_per_sampled_token:.3f} s per sampled token; {left:.0f} s of {args.minutes:g} min "
        f"left for training -> {tokens:,} tokens per stage"
    )
    plan.save(plan_path)
    return plan
