"""`pgt substrate trim` and `pgt substrate inspect`: the substrate commands that take token data (`--data DIR`).

They live in the data layer because reading a token data directory is the data layer's job; the
substrate layer sees token data only through `pgt.substrate.trim.TokenIds` (which `TokenData` is).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from pgt.data.loader import TokenData
from pgt.settings import add_command, out_setting, overwrite_setting, setting, settings_from
from pgt.substrate.cli import substrate_commands
from pgt.substrate.health import inspect_substrate
from pgt.substrate.trim import trim_substrate


def _substrate_argument(help: str) -> Any:
    return setting(help=help, positional=True, required=True, metavar="SUBSTRATE")


@dataclass
class TrimSettings:
    """`pgt substrate trim`; each field's help is its option's help (pgt.settings.setting)."""

    substrate: str = _substrate_argument("the full substrate directory to trim")
    data: str | None = setting(
        None, "token data prepared with SUBSTRATE (`pgt data prepare`)", metavar="DIR", one_of="corpus", required=True
    )
    corpus: list[str] | None = setting(
        None,
        "text sources as `pgt data prepare` takes them (files, directories, default)",
        nargs="+",
        metavar="SOURCE",
        one_of="corpus",
        required=True,
    )
    recentre: bool = setting(
        False,
        "beyond the reference: subtract the kept rows' mean from every row and renormalise, "
        "removing the offset the kept rows share (off by default; in trim.json and the fingerprint)",
        switch=True,
    )
    out: str | None = out_setting("trimmed substrate directory to create")
    overwrite: bool = overwrite_setting()


@dataclass
class InspectSettings:
    """`pgt substrate inspect`."""

    substrate: str = _substrate_argument("the substrate directory to measure")
    data: str | None = setting(None, "token data prepared with SUBSTRATE: measure the ids it uses", metavar="DIR")
    groups: int = setting(10, "identical groups to list", metavar="N")
    json: str | None = setting(None, "also write every figure and group as JSON here", metavar="FILE")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `trim` and `inspect` to `pgt substrate` (registered by pgt.substrate.cli before this)."""
    commands = substrate_commands(subparsers)
    add_command(
        commands,
        "trim",
        help="cut a substrate down to the tokens a corpus uses (lossless; a far smaller output head)",
        description="Write a substrate whose vocabulary is the tokens the corpus uses, the tokens BPE merges build "
        "them from, the named special tokens and the 256 byte tokens, with the parent's embedding rows bit for bit. "
        "It encodes the corpus exactly as the parent does and any other text losslessly (byte fallback); trim.json "
        "records the parent's fingerprint and the id map. See docs/trimming.md.",
        examples=[
            "pgt substrate trim substrates/full --corpus default --out substrates/fortunes",
            "pgt substrate trim substrates/full --data runs/data --out substrates/trimmed  # ids from token data",
            "pgt substrate trim substrates/full --corpus default --recentre --out substrates/centred  # beyond",
            "# experts to merge: one trim on the union of their corpora",
            "pgt substrate trim substrates/full --corpus corpus/en corpus/ru.jsonl --out substrates/en-ru",
        ],
        handler=run_substrate_trim,
        settings=TrimSettings,
    )

    add_command(
        commands,
        "inspect",
        help="how distinct a substrate's rows are: identical vectors, nearest-neighbour cosines, effective dimension",
        description="Report groups of ids whose vectors are identical (with their texts and, with --data, the share "
        "of the data's tokens they carry), the distribution of each row's nearest-neighbour cosine, the mean pairwise "
        "cosine and the participation ratio (effective dimension), beside the same figures for random unit rows of "
        "the same shape. With --data only the ids the data uses are measured.",
        examples=[
            "pgt substrate inspect substrates/t --data runs/data",
            "pgt substrate inspect substrates/full --groups 20 --json health.json",
        ],
        handler=run_substrate_inspect,
        settings=InspectSettings,
    )


def run_substrate_trim(args: argparse.Namespace) -> int:
    settings = settings_from(TrimSettings, args)
    started = time.perf_counter()
    data = TokenData(settings.data) if settings.data is not None else None
    record = trim_substrate(
        settings.substrate,
        settings.out,
        data=data,
        corpus=settings.corpus or (),
        recentre=settings.recentre,
        overwrite=settings.overwrite,
    )
    print(
        f"trimmed {settings.substrate} to {settings.out} in {time.perf_counter() - started:.1f} s: "
        f"{record.vocab_size:,} of {record.parent_vocab_size:,} ids ({record.corpus_ids:,} used by "
        f"{record.corpus_tokens:,} corpus tokens, {record.merge_ids:,} merge halves, {record.special_ids} specials, "
        f"{record.byte_ids} byte tokens); parent {record.parent_fingerprint}"
    )
    return 0


def run_substrate_inspect(args: argparse.Namespace) -> int:
    settings = settings_from(InspectSettings, args)
    health = inspect_substrate(settings.substrate, TokenData(settings.data) if settings.data is not None else None)
    print("\n".join(health.summary(settings.groups)))
    if settings.json:
        health.save(settings.json)
        print(f"wrote {settings.json}")
    return 0
