"""`pgt data prepare` and `pgt data show`."""

from __future__ import annotations

import argparse
import time

from pgt.data.prepare import (
    DEFAULT_MIN_VAL_BYTES,
    DEFAULT_SHARD_TOKENS,
    DEFAULT_VAL_FRACTION,
    MAX_VAL_FRACTION,
)
from pgt.data.sources import TEXT_FORMATS

PREPARE_EXAMPLES = f"""\
sources:
  default                 the embedded corpus: Debian fortunes in English, Russian and German
  FILE.txt, FILE          plain text; a file with `%` lines is read as fortunes (one quotation per
                          document), any other as one document (see --format)
  FILE.jsonl              one JSON object per line, text in --text-field
  FILE.parquet            text in the --text-field column
  DIR                     every such file below DIR (sorted; hidden, symlinked and binary files skipped),
                          or a dataset saved with datasets' save_to_disk (--split picks a split)
  hf:NAME[:CONFIG]        datasets.load_dataset(NAME, CONFIG, split=--split, streaming=True): a hub
                          dataset (needs the network) or a local dataset directory

Documents go to the validation split when a hash of their text falls below a threshold:
--val-fraction, raised for small corpora so validation holds about --min-val-bytes of text
(at most {MAX_VAL_FRACTION:.0%} of the corpus). For a given threshold a document's split depends only
on its text, so adding sources to a large corpus never moves a document between splits.

Interrupted? Run the same command again: it resumes and ends with the same bytes.

examples:
  pgt data prepare default --tokenizer runs/substrate --out runs/data
  pgt data prepare books/ notes.jsonl --tokenizer runs/substrate --out runs/data --workers 4
  pgt data prepare hf:wikimedia/wikipedia:20231101.en --tokenizer runs/substrate --out runs/wiki
  pgt data show runs/data
"""

SHOW_EXAMPLES = """\
examples:
  pgt data show runs/data
  pgt data show runs/data --verify      # also check every shard's sha256
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="prepare token data for training (data prepare | show)",
        description="Turn corpora into uint32 token shards with a manifest, and inspect them.",
        epilog=PREPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    prepare = commands.add_parser(
        "prepare",
        help="tokenize sources into train/validation shards",
        description="Tokenize text, fortune, JSONL, parquet or Hugging Face sources into uint32 token shards "
        "(each document followed by eos) plus manifest.json, split into train and validation.",
        epilog=PREPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="files, directories, hf:NAME[:CONFIG] or `default`"
    )
    prepare.add_argument(
        "--tokenizer", required=True, metavar="DIR", help="tokenizer directory (a substrate or any fast tokenizer)"
    )
    prepare.add_argument("--out", required=True, metavar="DIR", help="output token data directory")
    prepare.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        metavar="F",
        help="share of documents for validation (default %(default)s; 0 = none)",
    )
    prepare.add_argument(
        "--min-val-bytes",
        type=int,
        default=DEFAULT_MIN_VAL_BYTES,
        metavar="N",
        help="raise the validation share of small corpora to about N bytes of text (default %(default)s)",
    )
    prepare.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="tokenizer processes (default 1, which already uses the tokenizer's threads)",
    )
    prepare.add_argument(
        "--shard-tokens",
        type=int,
        default=DEFAULT_SHARD_TOKENS,
        metavar="N",
        help="tokens per shard file (default %(default)s = 256 MiB)",
    )
    prepare.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSONL field / column holding the text (default: text)"
    )
    prepare.add_argument(
        "--split", default="train", metavar="NAME", help="split of a Hugging Face dataset to read (default: train)"
    )
    prepare.add_argument(
        "--format",
        dest="text_format",
        choices=TEXT_FORMATS,
        default="auto",
        help="how to read text files: auto (fortunes if they have %% lines, else text), fortunes, "
        "text (a file is one document), lines (a line is one document)",
    )
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")
    prepare.set_defaults(handler=run_prepare)

    show = commands.add_parser(
        "show",
        help="summarise a token data directory",
        description="Check a token data directory against its manifest and print its sources and splits.",
        epilog=SHOW_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("data_dir", metavar="DIR")
    show.add_argument("--verify", action="store_true", help="check every shard's sha256")
    show.set_defaults(handler=run_show)


def run_prepare(args: argparse.Namespace) -> int:
    from pgt.data.prepare import prepare_token_data

    started = time.monotonic()
    manifest = prepare_token_data(
        args.sources,
        args.tokenizer,
        args.out,
        val_fraction=args.val_fraction,
        min_val_bytes=args.min_val_bytes,
        workers=args.workers,
        shard_tokens=args.shard_tokens,
        text_field=args.text_field,
        split=args.split,
        text_format=args.text_format,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    seconds = time.monotonic() - started
    tokens = sum(split["tokens"] for split in manifest["splits"].values())
    print(
        f"wrote {args.out}: {tokens:,} tokens from {len(manifest['sources'])} source(s) in {seconds:.1f} s "
        f"({tokens / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    _print_splits(manifest)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from pgt.data.loader import TokenData

    data = TokenData(args.data_dir, verify=args.verify)
    manifest = data.manifest
    print(f"{data.path}: tokenizer {data.tokenizer_fingerprint}, eos id {data.eos_id}, {manifest['dtype']}")
    print(f"sources: {len(manifest['sources'])}")
    for source in manifest["sources"][:10]:
        print(f"  {source['path']} ({source['format']}, {source['documents']:,} documents, {source['bytes']:,} bytes)")
    if len(manifest["sources"]) > 10:
        print(f"  … and {len(manifest['sources']) - 10} more")
    _print_splits(manifest)
    if args.verify:
        print("all shards match their sha256")
    return 0


def _print_splits(manifest: dict) -> None:
    for name, split in manifest["splits"].items():
        per_token = split["bytes"] / split["tokens"] if split["tokens"] else 0.0
        print(
            f"  {name}: {split['tokens']:,} tokens, {split['documents']:,} documents, {split['bytes']:,} bytes "
            f"({per_token:.2f} bytes/token), {len(split['shards'])} shard(s)"
        )
