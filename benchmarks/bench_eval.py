"""Batched evaluation against one prompt at a time, measured side by side in one run.

    python benchmarks/bench_eval.py MODEL_DIR [--task arc_easy --data tests/data/eval/arc.jsonl --batch-size 8]

Scores the task's prompts (repeated to at least --prompts) with greedy generation and
with log-likelihood mode, once at batch 1 and once at --batch-size, and prints prompts/s of
each and the ratio batched : one at a time (target > 1). Rates are per CPU second of this
process, so other load on the machine does not skew them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pgt.eval.datasets_io import load_task_data
from pgt.eval.generation import greedy_continuations
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.protocol import option_continuations
from pgt.eval.runner import load_for_eval
from pgt.eval.tasks import get_task

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval"


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--task", default="arc_easy")
    parser.add_argument("--data", default=str(DATA / "arc.jsonl"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model, tokenizer = load_for_eval(args.model_dir)
    task = get_task(args.task)
    examples = load_task_data(task, args.data).examples
    examples = (examples * (args.prompts // len(examples) + 1))[: args.prompts]
    prompts, counts = [e.prompt for e in examples], [e.new_tokens for e in examples]
    requests = [(e.prompt, text) for e in examples for texts in option_continuations(task, e).values() for text in texts]

    for name, run in (
        ("generate", lambda batch: greedy_continuations(model, tokenizer, prompts, counts, batch_size=batch)),
        ("loglik", lambda batch: continuation_logprobs(model, tokenizer, requests, batch_size=batch)),
    ):
        run(args.batch_size)  # warm-up
        single = cpu_seconds(lambda run=run: run(1))
        batched = cpu_seconds(lambda run=run: run(args.batch_size))
        print(f"{name:9s} batch 1: {len(prompts) / single:8.1f} prompts/s   batch {args.batch_size}: "
              f"{len(prompts) / batched:8.1f} prompts/s   ratio {single / batched:.2f}")


if __name__ == "__main__":
    main()
