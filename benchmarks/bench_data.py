"""Throughput of `pgt data prepare` and of `TokenData` batches, measured side by side in one run.

    python benchmarks/bench_data.py --tokenizer runs/demo/substrate [--workers 2] [--megabytes 4]

Prints tokens/s of
  raw        the fast tokenizer's encode_batch_fast over the same documents, in memory
  prepare/1  the whole pipeline (read, split, tokenize, shard, hash, manifest) with 1 worker
  prepare/N  the same with N worker processes
and the ratios prepare/1 : raw (pipeline overhead) and prepare/N : prepare/1 (parallel speed-up),
then training batches per second at batch 32 x 512 tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pgt.data import TokenData, prepare_token_data
from pgt.data.corpus import default_corpus_files, iter_fortunes
from pgt.data.prepare import load_tokenizer_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="tokenizer directory (a substrate)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--megabytes", type=float, default=4.0, help="how much of the default corpus to use")
    args = parser.parse_args()

    files, size = [], 0
    for path in default_corpus_files():
        if size >= args.megabytes * 1e6:
            break
        files.append(path)
        size += path.stat().st_size
    documents = [text for path in files for text in iter_fortunes(path)]

    from tokenizers import Tokenizer

    encoder = Tokenizer.from_str(load_tokenizer_info(args.tokenizer).backend_json)
    started = time.perf_counter()
    raw_tokens = sum(len(e.ids) for e in encoder.encode_batch_fast(documents, add_special_tokens=False))
    raw_rate = raw_tokens / (time.perf_counter() - started)

    rates = {}
    with tempfile.TemporaryDirectory() as scratch:
        for workers in (1, args.workers):
            out = Path(scratch) / f"data-{workers}"
            started = time.perf_counter()
            manifest = prepare_token_data(list(map(str, files)), args.tokenizer, out, workers=workers, progress=False)
            seconds = time.perf_counter() - started
            rates[workers] = sum(s["tokens"] for s in manifest["splits"].values()) / seconds

        data = TokenData(Path(scratch) / "data-1")
        steps = 50
        started = time.perf_counter()
        for step in range(steps):
            data.train_batch(step, 32, 512, seed=0)
        batch_rate = steps / (time.perf_counter() - started)

    print(f"corpus: {len(files)} files, {size / 1e6:.1f} MB, {len(documents):,} documents, {raw_tokens:,} tokens")
    print(f"raw encode_batch_fast   {raw_rate:12,.0f} tokens/s")
    print(f"prepare, 1 worker       {rates[1]:12,.0f} tokens/s   ratio to raw {rates[1] / raw_rate:.2f}")
    print(
        f"prepare, {args.workers} workers      {rates[args.workers]:12,.0f} tokens/s   "
        f"ratio to 1 worker {rates[args.workers] / rates[1]:.2f}"
    )
    print(f"train_batch 32 x 512    {batch_rate:12,.1f} batches/s ({batch_rate * 32 * 512:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
