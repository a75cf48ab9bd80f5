"""Throughput of `pgt data prepare` and of `TokenData` batches, and its memory on long lines.

    python benchmarks/bench_data.py --substrate runs/demo/substrate [--workers 2] [--megabytes 4] [--line-megabytes 10]

Prints tokens/s of
  raw        the fast tokenizer's encode_batch_fast over the same documents, in memory
  prepare/1  the whole pipeline (read, split, tokenize, shard, hash, manifest) with 1 worker
  prepare/N  the same with N worker processes
and the ratios prepare/1 : raw (pipeline overhead) and prepare/N : prepare/1 (parallel speed-up),
then training batches per second at batch 32 x 512 tokens, and the peak memory of
`pgt data prepare` on one file that is a single --line-megabytes line against the same text
with its line ends (long lines are read and tokenized in pieces, so the ratio should be ~1).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgt.corpus.fortunes import default_corpus_files
from pgt.corpus.sources import iter_fortunes
from pgt.data import TokenData, prepare_token_data
from pgt.data.encode import load_tokenizer_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--substrate", required=True, help="substrate (or tokenizer) directory")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--megabytes", type=float, default=4.0, help="how much of the default corpus to use")
    parser.add_argument("--line-megabytes", type=float, default=10.0, help="size of the one-line file")
    args = parser.parse_args()
    args.tokenizer = args.substrate

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
            rates[workers] = manifest.tokens / seconds

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
    lines = long_line_memory(documents, args.substrate, args.line_megabytes)
    print(f"peak memory, {args.line_megabytes:g} MB as one line   {lines['one line'] / 1e6:8,.0f} MB")
    print(
        f"peak memory, the same with newlines {lines['lines'] / 1e6:8,.0f} MB   "
        f"ratio one line : lines {lines['one line'] / lines['lines']:.2f}"
    )


MEASURE = (
    "import resource, sys\nfrom pgt.cli import main\n"
    "code = main(sys.argv[1:])\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)"
)


def long_line_memory(documents: list[str], substrate: str, megabytes: float) -> dict[str, int]:
    """Peak RSS (bytes) of `pgt data prepare` (1 worker, in a fresh process) on one line vs the same text in lines."""
    text, size = [], 0
    while size < megabytes * 1e6:
        for document in documents:
            line = " ".join(document.split())
            text.append(line)
            size += len(line.encode()) + 1
    peaks = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, separator in (("one line", " "), ("lines", "\n")):
            path = Path(scratch) / f"{name.replace(' ', '-')}.txt"
            path.write_text(separator.join(text) + "\n", encoding="utf-8")
            # A fresh process per case, reporting its own peak (RUSAGE_SELF, KiB on Linux).
            run = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MEASURE,
                    "data",
                    "prepare",
                    str(path),
                    "--substrate",
                    substrate,
                    "--out",
                    str(Path(scratch) / f"out-{path.stem}"),
                    "--workers",
                    "1",
                    "--val-fraction",
                    "0",
                    "--no-progress",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            peaks[name] = int(run.stdout.split()[-1]) * 1024
    return peaks


if __name__ == "__main__":
    main()
