"""Training speed on a full and on a trimmed substrate: the same model shape, side by side, in one run.

    python benchmarks/bench_trim.py [--substrate FULL_DIR] [--dim 128] [--stages 3] [--threads 1]

Without --substrate, a bvv241-2-3 substrate of the default corpus is built at --dim (as
`pgt demo` builds it) in a temporary directory. It is trimmed to the default corpus (`pgt
substrate trim --corpus default`), and `pgt demo`'s own measurement times real growth
steps (AdamW on the new top block and the head, older blocks frozen) of every stage's shape
on both, in CPU time of this process (the machine may be shared). Prints training tokens
per CPU-second per stage on each substrate and the ratio trimmed / full (target at the
demo's shape: >= 10).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pgt.demo import DEFAULT_DIM
from pgt.demo.plan import HEADS, measure_speeds
from pgt.substrate.layout import SMALL_FAMILY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--substrate", type=Path, help="a full substrate (default: build one at --dim)")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM, help=f"width of the built substrate ({DEFAULT_DIM})")
    parser.add_argument("--stages", type=int, default=3, help="stages of the demo's shape (3)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine a second thread adds more noise than "
        "speed to a model this small; `pgt demo` measures which is faster)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pgt.corpus.fortunes import default_corpus_files
    from pgt.substrate.build import build_substrate
    from pgt.substrate.trim import trim_substrate

    with tempfile.TemporaryDirectory(prefix="bench-trim-") as work:
        full = args.substrate
        if full is None:
            full = Path(work) / "full"
            build_substrate(full, family=SMALL_FAMILY, corpus=default_corpus_files(), dim=args.dim, progress=False)
        started = time.perf_counter()
        record = trim_substrate(full, Path(work) / "trimmed", corpus=["default"])
        print(
            f"trimmed {record.parent_vocab_size:,} ids to {record.vocab_size:,} in "
            f"{time.perf_counter() - started:.1f} s ({record.corpus_tokens:,} corpus tokens)"
        )
        speeds = {
            name: measure_speeds(path, args.stages, args.seq_len, args.batch_size, HEADS, time.process_time)
            for name, path in (("full", full), ("trimmed", Path(work) / "trimmed"))
        }

    print(
        f"shape: d from the substrate, {HEADS} heads, batch {args.batch_size} x {args.seq_len} tokens, "
        f"{args.threads} thread(s), float32; training tokens per CPU-second per stage (k blocks, k-1 frozen)"
    )
    print(f"{'stage':>5}  {'full':>10}  {'trimmed':>10}  {'trimmed/full':>12}")
    for stage, (full_rate, trimmed_rate) in enumerate(
        zip(speeds["full"].train_tokens_per_s, speeds["trimmed"].train_tokens_per_s, strict=True), start=1
    ):
        print(f"{stage:>5}  {full_rate:>10,.0f}  {trimmed_rate:>10,.0f}  {trimmed_rate / full_rate:>12.1f}")
    big, small = speeds["full"], speeds["trimmed"]
    print(
        f"scoring: full {big.score_tokens_per_s:,.0f} tokens/s, trimmed {small.score_tokens_per_s:,.0f} "
        f"({small.score_tokens_per_s / big.score_tokens_per_s:.1f}x); sampling: full "
        f"{big.s_per_sampled_token * 1e3:.1f} ms/token, trimmed {small.s_per_sampled_token * 1e3:.1f} ms/token"
    )


if __name__ == "__main__":
    main()
