"""Evaluation speed: batched against one prompt at a time, and the reference protocol's cost per model.

    python benchmarks/bench_eval.py batching MODEL_DIR [--task arc_easy --data tests/data/eval/arc.jsonl]
    python benchmarks/bench_eval.py protocol --tokenizer SUBSTRATE_DIR [--layers 6 --width 512 --heads 8]

`batching` scores a task's prompts (repeated to at least --prompts) with sampled generation
and with log-likelihood mode, once at batch 1 and once at --batch-size, and prints prompts/s
of each and the ratio batched : one at a time (target > 1).

`protocol` builds a random pgt model of the benchmark shape (benchmarks/model_pair.py), times
sampled generation per prompt for each reference task on its real-text test prompts
(tests/data/eval), and multiplies by the reference protocol's sizes (examples x 10 runs) to
estimate one model's full `pgt eval --protocol reference` time. Rates are per CPU second of
this process, so other load on the machine does not skew them; the real benchmarks' prompts
are longer than these test prompts, so the estimate is a lower bound.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from model_pair import add_shape_arguments, build_pair

from pgt.eval.datasets_io import load_task_data
from pgt.eval.generation import SAMPLERS, generate_continuations
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.protocol import REFERENCE_RUNS, option_continuations
from pgt.eval.tasks import get_task

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval"
# The reference's tasks with their test files and published sizes (examples per run).
PROTOCOL_TASKS = {
    "mmlu": ("mmlu.jsonl", 14_042),
    "arc_easy": ("arc.jsonl", 570),
    "arc_challenge": ("arc.jsonl", 299),
    "commonsense_qa": ("arc.jsonl", 1_221),
    "squad_v2": ("squad_v2.jsonl", 256),
    "opus100:en-ru": ("opus100_en_ru.jsonl", 128),
    "opus100:ru-en": ("opus100_en_ru.jsonl", 128),
}


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def repeated(task_name: str, data: str, prompts: int) -> list:
    examples = load_task_data(get_task(task_name), data).examples
    return (examples * (prompts // len(examples) + 1))[:prompts]


def sample(model, tokenizer, examples: list, batch_size: int) -> object:
    return generate_continuations(
        model,
        tokenizer,
        [e.prompt for e in examples],
        [e.new_tokens for e in examples],
        sampler=SAMPLERS["sample"],
        seeds=list(range(len(examples))),
        batch_size=batch_size,
    )


def batching(args: argparse.Namespace) -> None:
    from pgt.eval.runner import load_for_eval

    model, tokenizer = load_for_eval(args.model_dir, device="cpu")
    task = get_task(args.task)
    examples = repeated(args.task, args.data, args.prompts)
    requests = [
        (e.prompt, text) for e in examples for texts in option_continuations(task, e).values() for text in texts
    ]
    for name, run in (
        ("generate", lambda batch: sample(model, tokenizer, examples, batch)),
        ("loglik", lambda batch: continuation_logprobs(model, tokenizer, requests, batch_size=batch)),
    ):
        run(args.batch_size)  # warm-up
        single = cpu_seconds(lambda run=run: run(1))
        batched = cpu_seconds(lambda run=run: run(args.batch_size))
        print(
            f"{name:9s} batch 1: {len(examples) / single:8.1f} prompts/s   batch {args.batch_size}: "
            f"{len(examples) / batched:8.1f} prompts/s   ratio {single / batched:.2f}"
        )


def protocol(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = build_pair(args)["pgt"]
    print(
        f"shape: {args.layers} layers, width {args.width}, {args.heads} heads, vocab {args.vocab:,}; "
        f"{torch.get_num_threads()} thread(s), batch {args.batch_size}, {args.prompts} prompts per task"
    )
    total = 0.0
    for name, (file, size) in PROTOCOL_TASKS.items():
        examples = repeated(name, str(DATA / file), args.prompts)
        sample(model, tokenizer, examples[: args.batch_size], args.batch_size)  # warm-up
        per_prompt = cpu_seconds(lambda examples=examples: sample(model, tokenizer, examples, args.batch_size))
        per_prompt /= len(examples)
        seconds = per_prompt * size * REFERENCE_RUNS
        total += seconds
        print(
            f"{name:15s} {1 / per_prompt:8.1f} prompts/s   {size:6,} x {REFERENCE_RUNS} runs: {seconds / 60:7.1f} min"
        )
    print(f"reference protocol, one model: {total / 60:.1f} CPU-minutes ({total / 3600:.2f} h) at this shape")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    one = modes.add_parser("batching", help="batched against one prompt at a time")
    one.add_argument("model_dir")
    one.add_argument("--task", default="arc_easy")
    one.add_argument("--data", default=str(DATA / "arc.jsonl"))
    full = modes.add_parser("protocol", help="the reference protocol's time per model at the benchmark shape")
    full.add_argument("--tokenizer", required=True, help="a substrate directory of the bvv241-2-3 family")
    add_shape_arguments(full, layers=6, width=512, heads=8)
    for sub in (one, full):
        sub.add_argument("--prompts", type=int, default=32)
        sub.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", 1))
    batching(args) if args.mode == "batching" else protocol(args)


if __name__ == "__main__":
    main()
