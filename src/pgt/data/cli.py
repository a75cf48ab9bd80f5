"""`pgt data prepare` and `pgt data show`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from pgt import options
from pgt.corpus.chat import RecordFormat
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
from pgt.settings import (
    add_command,
    out_setting,
    overwrite_setting,
    progress_setting,
    setting,
    settings_from,
    strict_setting,
    substrate_setting,
    workers_setting,
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


@dataclass
class PrepareSettings:
    """`pgt data prepare`; each field's help is its option's help (pgt.settings.setting)."""

    sources: list[str] = setting(
        help="files, directories, hf:NAME[:CONFIG], `default`, LANG=SOURCE",
        positional=True,
        required=True,
        nargs="+",
        metavar="SOURCE",
    )
    substrate: str | None = substrate_setting("substrate directory, or any directory with a fast tokenizer")
    out: str | None = out_setting("output token data directory")
    overwrite: bool = overwrite_setting()
    val_fraction: float = setting(
        DEFAULT_VAL_FRACTION,
        "share of documents for validation, below 1",
        parse=options.non_negative_float,
        metavar="F",
        default_text=f"{DEFAULT_VAL_FRACTION}; 0 = none",
    )
    min_val_bytes: int = setting(
        DEFAULT_MIN_VAL_BYTES,
        "raise the validation share of small corpora to about N bytes of text",
        parse=options.non_negative_int,
        metavar="N",
    )
    workers: int | None = workers_setting("tokenizer processes")
    shard_tokens: int = setting(
        DEFAULT_SHARD_TOKENS,
        "tokens per shard file",
        metavar="N",
        default_text=f"{DEFAULT_SHARD_TOKENS} = 256 MiB",
    )
    text_field: str = setting("text", "JSONL field / column holding the text", metavar="NAME")
    hub_split: str = setting("train", "split of a Hugging Face dataset to read", metavar="NAME")
    format: str = setting(
        "auto",
        "how to cut plain text files into documents: auto (fortunes if the file has % lines, else paragraphs), "
        "paragraphs (blank lines separate documents), text (a file is one document), lines (every non-blank "
        "line is a document), fortunes (% lines separate documents)",
        choices=TEXT_FORMATS,
    )
    record_format: RecordFormat = setting(
        "auto",
        "how a JSONL/parquet/dataset record becomes a document: auto (from its fields), text (--text-field), "
        "messages, alpaca, sharegpt (rendered with the chat template)",
    )
    strict: bool = strict_setting()
    progress: bool | None = progress_setting()


@dataclass
class ShowSettings:
    """`pgt data show`."""

    data_dir: str = setting(
        help="token data directory (`pgt data prepare`)", positional=True, required=True, metavar="DIR"
    )
    verify: bool = setting(False, "check every shard's sha256 and token ids", switch=True)


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

    add_command(
        commands,
        "prepare",
        help="tokenize sources into train/validation shards",
        description="Tokenize text, fortune, JSONL, parquet or Hugging Face sources into uint32 token shards "
        "(each document followed by eos) plus manifest.json, split into train and validation.\n\n" + SOURCES_HELP,
        examples=PREPARE_EXAMPLES,
        handler=run_data_prepare,
        settings=PrepareSettings,
    )

    add_command(
        commands,
        "show",
        help="summarise a token data directory",
        description="Check a token data directory against its manifest and print its sources and splits.",
        examples=SHOW_EXAMPLES,
        handler=run_data_show,
        settings=ShowSettings,
    )


def run_data_prepare(args: argparse.Namespace) -> int:
    settings = settings_from(PrepareSettings, args)
    started = time.monotonic()
    manifest = prepare_token_data(
        settings.sources,
        settings.substrate,
        settings.out,
        val_fraction=settings.val_fraction,
        min_val_bytes=settings.min_val_bytes,
        workers=options.workers(settings),
        shard_tokens=settings.shard_tokens,
        text_field=settings.text_field,
        hub_split=settings.hub_split,
        text_format=settings.format,
        record_format=settings.record_format,
        strict=settings.strict,
        overwrite=settings.overwrite,
        progress=options.show_progress(settings),
    )
    seconds = time.monotonic() - started
    print(
        f"wrote {settings.out}: {manifest.tokens:,} tokens from {len(manifest.sources)} source(s) in {seconds:.1f} s "
        f"({manifest.tokens / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    _print_splits(manifest)
    return 0


def run_data_show(args: argparse.Namespace) -> int:
    settings = settings_from(ShowSettings, args)
    data = TokenData(settings.data_dir, verify=settings.verify)
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
    if settings.verify:
        print("all shards match their sha256 and hold only token ids of the tokenizer")
    return 0


def _print_splits(manifest: Manifest) -> None:
    for name, split in manifest.splits.items():
        per_token = split.bytes / split.tokens if split.tokens else 0.0
        print(
            f"  {name}: {split.tokens:,} tokens, {split.documents:,} documents, {split.bytes:,} bytes "
            f"({per_token:.2f} bytes/token), {len(split.shards)} shard(s)"
        )
