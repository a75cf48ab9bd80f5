"""`pgt data prepare` and `pgt data show`."""

from __future__ import annotations

import argparse
import time

from pgt import options
from pgt.corpus.chat import RECORD_FORMATS
from pgt.corpus.sources import TEXT_FORMATS
from pgt.data import substrate_cli
from pgt.data.loader import TokenData
from pgt.data.manifest import Manifest
from pgt.data.prepare import DEFAULT_SHARD_TOKENS, prepare_token_data
from pgt.data.splits import (
    DEFAULT_MIN_VAL_BYTES,
    DEFAULT_VAL_FRACTION,
    MAX_VAL_FRACTION,
)

SOURCES_HELP = f"""\
sources (docs/data.md):
  default                 the embedded corpus: Debian fortunes in English, Russian and German
  FILE.txt, FILE          plain text: by default one document per paragraph (blank lines separate
                          documents); a file with `%` lines is read as fortunes; see --format
  FILE.jsonl              one JSON object per line, text in --text-field, or a chat record (--record-format)
  FILE.parquet            text in the --text-field column, or chat records
  DIR                     every such file below DIR (sorted; hidden, symlinked and binary files skipped),
                          or a dataset saved with datasets' save_to_disk (--hub-split picks a split)
  hf:NAME[:CONFIG]        datasets.load_dataset(NAME, CONFIG, split=--hub-split, streaming=True): a hub
                          dataset (needs the network) or a local dataset directory
  LANG=SOURCE             any of these, tagged with a language (recorded in the manifest)

Lossless: a document keeps its text exactly; only separators (blank lines, line ends between
documents, `%` lines, JSON syntax) are dropped. Invalid UTF-8 is replaced by U+FFFD with a
warning that counts the bytes (--strict refuses it).

Chat and instruction records (messages with role/content, Alpaca's instruction/input/output,
ShareGPT's conversations with from/value) are rendered with the chat template, which the
substrate's tokenizer also carries as its chat_template: system [INST]…[/INST], user
[USER]…[EOT], assistant [ASSISTANT]…[EOT]. --record-format auto (the default) decides per
record from its fields: the --text-field first, then messages, conversations, instruction.

Documents go to the validation split when a hash of their text falls below a threshold:
--val-fraction, raised for small corpora so validation holds about --min-val-bytes of text
(at most {MAX_VAL_FRACTION:.0%} of the corpus). For a given threshold a document's split depends only
on its text, so adding sources to a large corpus never moves a document between splits.

Interrupted? Run the same command again: it resumes and ends with the same bytes.
"""

PREPARE_EXAMPLES = [
    "pgt data prepare default --substrate runs/substrate --out runs/data",
    "pgt data prepare book.txt --substrate runs/substrate --out runs/book      # one document per paragraph",
    "pgt data prepare books/ en=notes.jsonl --substrate runs/substrate --out runs/data --workers 4",
    "pgt data prepare hf:wikimedia/wikipedia:20231101.en --hub-split train --substrate runs/substrate --out runs/wiki",
    "pgt data prepare hf:HuggingFaceH4/ultrachat_200k --hub-split train_sft --substrate runs/substrate --out runs/sft",
    "pgt data prepare alpaca.jsonl --record-format alpaca --substrate runs/substrate --out runs/sft",
    "pgt data show runs/data",
]
SHOW_EXAMPLES = [
    "pgt data show runs/data",
    "pgt data show runs/data --verify      # also check every shard's sha256 and token ids",
]
FORMAT_HELP = (
    "how to cut plain text files into documents: auto (fortunes if the file has %% lines, else paragraphs), "
    "paragraphs (blank lines separate documents), text (a file is one document), lines (every non-blank "
    "line is a document), fortunes (%% lines separate documents)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    substrate_cli.register(subparsers)
    data = subparsers.add_parser(
        "data",
        help="prepare token data for training (data prepare | show)",
        description="Turn corpora into uint32 token shards with a manifest, and inspect them.",
        epilog=SOURCES_HELP + "\nexamples:\n" + "\n".join(f"  {line}" for line in PREPARE_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    prepare = options.add_command(
        commands,
        "prepare",
        help="tokenize sources into train/validation shards",
        description="Tokenize text, fortune, JSONL, parquet or Hugging Face sources into uint32 token shards "
        "(each document followed by eos) plus manifest.json, split into train and validation.\n\n" + SOURCES_HELP,
        examples=PREPARE_EXAMPLES,
        handler=run_data_prepare,
    )
    prepare.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="files, directories, hf:NAME[:CONFIG], `default`, LANG=SOURCE"
    )
    options.add_substrate(prepare, help="substrate directory, or any directory with a fast tokenizer")
    options.add_out(prepare, "output token data directory")
    prepare.add_argument(
        "--val-fraction",
        type=options.non_negative_float,
        default=DEFAULT_VAL_FRACTION,
        metavar="F",
        help="share of documents for validation, below 1 (default %(default)s; 0 = none)",
    )
    prepare.add_argument(
        "--min-val-bytes",
        type=options.non_negative_int,
        default=DEFAULT_MIN_VAL_BYTES,
        metavar="N",
        help="raise the validation share of small corpora to about N bytes of text (default %(default)s)",
    )
    options.add_workers(prepare, "tokenizer processes")
    prepare.add_argument(
        "--shard-tokens",
        type=options.positive_int,
        default=DEFAULT_SHARD_TOKENS,
        metavar="N",
        help="tokens per shard file (default %(default)s = 256 MiB)",
    )
    prepare.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSONL field / column holding the text (default: text)"
    )
    prepare.add_argument(
        "--hub-split", default="train", metavar="NAME", help="split of a Hugging Face dataset to read (default: train)"
    )
    prepare.add_argument("--format", dest="text_format", choices=TEXT_FORMATS, default="auto", help=FORMAT_HELP)
    prepare.add_argument(
        "--record-format",
        choices=RECORD_FORMATS,
        default="auto",
        help="how a JSONL/parquet/dataset record becomes a document: auto (from its fields), text (--text-field), "
        "messages, alpaca, sharegpt (rendered with the chat template)",
    )
    options.add_strict(prepare)
    options.add_progress(prepare)

    show = options.add_command(
        commands,
        "show",
        help="summarise a token data directory",
        description="Check a token data directory against its manifest and print its sources and splits.",
        examples=SHOW_EXAMPLES,
        handler=run_data_show,
    )
    show.add_argument("data_dir", metavar="DIR")
    show.add_argument("--verify", action="store_true", help="check every shard's sha256 and token ids")


def run_data_prepare(args: argparse.Namespace) -> int:
    started = time.monotonic()
    manifest = prepare_token_data(
        args.sources,
        args.substrate,
        args.out,
        val_fraction=args.val_fraction,
        min_val_bytes=args.min_val_bytes,
        workers=options.workers(args),
        shard_tokens=args.shard_tokens,
        text_field=args.text_field,
        hub_split=args.hub_split,
        text_format=args.text_format,
        record_format=args.record_format,
        strict=args.strict,
        overwrite=args.overwrite,
        progress=options.show_progress(args),
    )
    seconds = time.monotonic() - started
    print(
        f"wrote {args.out}: {manifest.tokens:,} tokens from {len(manifest.sources)} source(s) in {seconds:.1f} s "
        f"({manifest.tokens / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    _print_splits(manifest)
    return 0


def run_data_show(args: argparse.Namespace) -> int:
    data = TokenData(args.data_dir, verify=args.verify)
    manifest = data.manifest
    print(f"{data.path}: tokenizer {data.tokenizer_fingerprint}, eos id {data.eos_id}, {manifest.dtype}")
    print(f"sources: {len(manifest.sources)}")
    for source in manifest.sources[:10]:
        print(
            f"  {source.path} ({source.format}, {source.language}, {source.documents:,} documents"
            + (f" of which {source.conversations:,} chat records" if source.conversations else "")
            + f", {source.bytes:,} bytes)"
        )
    if len(manifest.sources) > 10:
        print(f"  … and {len(manifest.sources) - 10} more")
    _print_splits(manifest)
    if args.verify:
        print("all shards match their sha256 and hold only token ids of the tokenizer")
    return 0


def _print_splits(manifest: Manifest) -> None:
    for name, split in manifest.splits.items():
        per_token = split.bytes / split.tokens if split.tokens else 0.0
        print(
            f"  {name}: {split.tokens:,} tokens, {split.documents:,} documents, {split.bytes:,} bytes "
            f"({per_token:.2f} bytes/token), {len(split.shards)} shard(s)"
        )
