"""A PGT model (transformers' ArceeForCausalLM, as pgt builds it) and a transformers Llama of the
same shape, for side-by-side benchmarks.

Same depth, width, heads and vocabulary; Llama's gated MLP (three d x i matrices) gets
i = 8d/3 so that it costs the FLOPs of PGT's non-gated 4d MLP (two d x 4d matrices).
Both use SDPA attention, untied heads and random weights (speed does not depend on them).
`growth_config` is the one-stage `pgt grow` configuration the growth and mixture benchmarks time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from pgt.model.architecture import build_model, pgt_config


def add_shape_arguments(parser: argparse.ArgumentParser, *, layers: int, width: int, heads: int) -> None:
    parser.add_argument("--layers", type=int, default=layers)
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--heads", type=int, default=heads)
    parser.add_argument("--vocab", type=int, default=65_792, help="default: bvv241-2-3 with byte fallback")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: quieter on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model; the median is reported")


def build_pair(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """{"pgt": pgt's ArceeForCausalLM, "llama": LlamaForCausalLM} of the shape in `args`, in eval mode."""
    torch.manual_seed(0)
    pgt = build_model(
        pgt_config(
            vocab_size=args.vocab,
            hidden_size=args.width,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=args.vocab,
            hidden_size=args.width,
            intermediate_size=round(8 * args.width / 3),
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.heads,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="sdpa",
        )
    )
    return {"pgt": pgt.eval(), "llama": llama.eval()}


def block_parameters(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: everything but the token embedding."""
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def median_seconds(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median CPU time of each callable, interleaving the models.

    CPU time of this process (not wall time) keeps other jobs on a shared machine out of
    the figures; with one thread it equals wall time on an idle machine.
    """
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.process_time()
            run()
            times[name].append(time.process_time() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def growth_config(args: argparse.Namespace, substrate: str, data: str, *, tokens_per_stage: int, device: str) -> Any:
    """A one-stage `pgt grow` configuration of `args.batch` x `args.seq`, `args.dim // 64` heads, no periodic
    evaluation or checkpoint, into a fresh temporary run directory."""
    from pgt.growth import GrowthConfig

    return GrowthConfig(
        substrate=substrate,
        data=data,
        out=tempfile.mkdtemp(prefix="bench-growth-"),
        stages=1,
        tokens_per_stage=tokens_per_stage,
        batch_size=args.batch,
        seq_len=args.seq,
        context=args.seq,
        heads=max(1, args.dim // 64),
        eval_every=0,
        eval_tokens=1024,
        checkpoint_every=0,
        progress=False,
        device=device,
    )
