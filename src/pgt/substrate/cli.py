"""`pgt substrate build|show|trim` and `pgt tokenize`."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from pgt import options
from pgt.errors import PgtError
from pgt.io import atomic_file
from pgt.substrate.layout import DEFAULT_LAYOUT_ENGINE, FAMILIES, LAYOUT_ENGINES
from pgt.substrate.store import SUBSTRATE_FILE, Substrate, SubstrateMeta
from pgt.substrate.tokenizer import load_tokenizer, token_texts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BUILD_EXAMPLES = [
    "# the reference's bvv241-abs tokenizer and 131,072 x 4,096 matrix from its published lists",
    "pgt substrate build --family bvv241-abs --ngrams ngrams-2-3-4-5.txt \\",
    "    --extra-tokens ngrams-intersection.txt --out substrates/abs",
    "",
    "# a bvv241-2-3 substrate with n-grams mined from your own text (LANG=PATH labels a language)",
    "pgt substrate build --family bvv241-2-3 --corpus en=corpus/en ru=corpus/ru.txt --dim 256 --out substrates/small",
    "",
    "# glyph embeddings for an existing Hugging Face tokenizer's vocabulary (as the reference's bvv241-nemo)",
    "pgt substrate build --from-tokenizer path/to/tokenizer_dir --out substrates/nemo",
    "",
    "The font is --font, else $PGT_FONT, else Debian's GNU Unifont (apt-get install fonts-unifont unifont).",
    "--layout-engine basic (default) or raqm picks Pillow's text layout engine; it is recorded and fingerprinted.",
]

SHOW_EXAMPLES = [
    "pgt substrate show A --substrate substrates/abs --png A.png",
    'pgt substrate show "the" --substrate substrates/abs -k 20',
    "",
    "TEXT should be one token; otherwise its tokenization is printed and the first token is shown.",
]

TOKENIZE_EXAMPLES = [
    'pgt tokenize "the nation" --substrate substrates/abs',
    'pgt tokenize "emoji 😀 too" --substrate substrates/abs     # byte-fallback tokens <0xF0> ...',
]


def register(subparsers: argparse._SubParsersAction) -> None:
    substrate = options.add_command(
        subparsers,
        "substrate",
        help="build and inspect bvv241 tokenizers with frozen glyph embeddings",
        description="Build a substrate (tokenizer + frozen glyph-embedding matrix) or look inside one.",
        examples=[
            "pgt substrate build --family bvv241-2-3 --corpus en=corpus/en --dim 256 --out substrates/s",
            "pgt substrate show A --substrate substrates/s --png A.png",
            "pgt substrate trim substrates/s --corpus default --out substrates/t",
        ],
        handler=run_substrate,
    )
    commands = substrate.add_subparsers(dest="substrate_command", metavar="COMMAND")

    build = options.add_command(
        commands,
        "build",
        help="build a substrate directory",
        description="Build a bvv241 tokenizer (or take an existing one) and its frozen glyph embeddings, "
        "written atomically to --out.",
        examples=BUILD_EXAMPLES,
        handler=run_substrate_build,
    )
    build.add_argument(
        "--family", choices=list(FAMILIES), help="tokenizer family (default with --from-tokenizer: bvv241-nemo)"
    )
    build.add_argument(
        "--ngrams",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="n-gram lists in the reference's format (ngrams-2-3-4-5.txt)",
    )
    build.add_argument(
        "--extra-tokens",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="extra token strings, one per line (ngrams-intersection.txt)",
    )
    build.add_argument(
        "--corpus",
        nargs="+",
        action="extend",
        default=[],
        metavar="[LANG=]SOURCE",
        help="corpora to mine n-grams from: any SOURCE of `pgt data prepare` (text, fortune, JSONL, "
        "parquet files, directories, hf:NAME, default; untagged: language xx)",
    )
    options.add_strict(build)
    build.add_argument("--from-tokenizer", metavar="DIR", help="keep this Hugging Face tokenizer's vocabulary")
    build.add_argument(
        "--dim", type=options.positive_int, metavar="D", help="embedding dimension (default: the family's)"
    )
    build.add_argument("--font", metavar="PATH", help="glyph font file (default: $PGT_FONT, else GNU Unifont)")
    build.add_argument(
        "--layout-engine",
        choices=list(LAYOUT_ENGINES),
        default=DEFAULT_LAYOUT_ENGINE,
        help=f"Pillow's text layout engine (default: {DEFAULT_LAYOUT_ENGINE}; recorded in substrate.json)",
    )
    build.add_argument(
        "--visible-blanks",
        action="store_true",
        help="beyond the reference: draw invisible characters (space, tab, newline, no-break space, "
        "other control, format and blank characters) as Control Pictures or boxed hex code "
        "points, so they get distinct vectors (off by default; in the fingerprint)",
    )
    options.add_workers(build, "glyph-rendering processes")
    options.add_progress(build)
    options.add_out(build, "substrate directory to create")

    show = options.add_command(
        commands,
        "show",
        help="render a token's glyph and list its nearest tokens",
        description="Print a token's nearest neighbours by cosine in the frozen embedding and write its glyph as PNG.",
        examples=SHOW_EXAMPLES,
        handler=run_substrate_show,
    )
    show.add_argument("text", type=options.text, metavar="TEXT", help="a token's text")
    options.add_substrate(show)
    show.add_argument("--png", metavar="FILE", help="write the token's rendered bitmap here")
    show.add_argument("-k", type=options.positive_int, default=10, metavar="K", help="how many neighbours (default 10)")
    show.add_argument("--font", metavar="PATH", help="glyph font for --png (default: $PGT_FONT, else GNU Unifont)")

    tokenize = options.add_command(
        subparsers,
        "tokenize",
        help="print the token ids and strings of a text",
        description="Encode TEXT with a substrate's tokenizer and print each id with its token string.",
        examples=TOKENIZE_EXAMPLES,
        handler=run_tokenize,
    )
    tokenize.add_argument("text", type=options.text, metavar="TEXT", help="text to encode")
    options.add_substrate(tokenize, help="substrate (or any Hugging Face tokenizer) directory")


def substrate_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommands of `pgt substrate` (made by `register`), for the ones the data layer adds: `trim` and
    `inspect` take token data (`--data DIR`), which this layer does not read (pgt.data.substrate_cli)."""
    group = subparsers.choices["substrate"]
    return next(action for action in group._actions if isinstance(action, argparse._SubParsersAction))


def run_substrate(args: argparse.Namespace) -> int:
    raise PgtError("give a command: pgt substrate build|show|trim|inspect … (see pgt substrate --help)")


def run_substrate_build(args: argparse.Namespace) -> int:
    from pgt.substrate.build import (  # imports PIL: kept off `pgt --help`
        ANY_TOKENIZER_FAMILY,
        build_substrate,
    )

    family = args.family or (ANY_TOKENIZER_FAMILY if args.from_tokenizer else None)
    if family is None:
        raise PgtError("--family is required (or give --from-tokenizer DIR)")
    started = time.perf_counter()
    out = build_substrate(
        args.out,
        family=family,
        ngram_files=args.ngrams,
        extra_token_files=args.extra_tokens,
        corpus=args.corpus,
        strict=args.strict,
        from_tokenizer=args.from_tokenizer,
        dim=args.dim,
        font=args.font,
        layout_engine=args.layout_engine,
        visible_blanks=args.visible_blanks,
        workers=options.workers(args),
        overwrite=args.overwrite,
        progress=options.show_progress(args),
    )
    meta = SubstrateMeta.load(out / SUBSTRATE_FILE)
    print(
        f"built {out} in {time.perf_counter() - started:.1f} s: family {meta.family}, "
        f"vocabulary {meta.vocab_size:,}, dim {meta.dim}, fingerprint {meta.fingerprint}"
    )
    if meta.ngrams is not None:
        print(f"n-grams: {meta.ngrams:,} placed, {meta.ngrams_dropped:,} dropped (no free id left)")
    return 0


def _print_tokens(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> None:
    print(f"ids: {ids}")
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True):
        print(f"{token_id:>8}  {token!r}")


def run_tokenize(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.substrate)
    _print_tokens(tokenizer, tokenizer.encode(args.text, add_special_tokens=False))
    return 0


def run_substrate_show(args: argparse.Namespace) -> int:
    from pgt.substrate.glyphs import (  # imports PIL: kept off `pgt --help`
        nearest_tokens,
        render_bitmap,
    )

    substrate = Substrate.load(args.substrate)
    tokenizer = substrate.tokenizer
    ids = tokenizer.encode(args.text, add_special_tokens=False)
    if not ids:
        raise PgtError("TEXT is empty: give the text of a token")
    if len(ids) > 1:
        print(f"{args.text!r} is not one token but {len(ids)}; showing the first:")
        _print_tokens(tokenizer, ids)
    token_id = ids[0]
    # The text that was rendered: the token string itself in a bvv241 layout, its decoded text otherwise.
    if substrate.meta.from_tokenizer is not None:
        text = token_texts(tokenizer, [token_id])[0]
    else:
        text = tokenizer.convert_ids_to_tokens(token_id)
    print(f"token {token_id} {text!r}; nearest by cosine:")
    for neighbour, cosine in nearest_tokens(substrate.embeddings.numpy(), token_id, args.k):
        print(f"{neighbour:>8}  {cosine:+.4f}  {tokenizer.convert_ids_to_tokens(neighbour)!r}")
    if args.png:
        from PIL import Image

        meta = substrate.meta
        bitmap = render_bitmap(text, meta.cell, args.font, meta.augment, meta.layout_engine, meta.params.visible_blanks)
        with atomic_file(args.png, "wb") as handle:
            Image.fromarray(((~bitmap) * 255).astype("uint8")).save(handle, format="PNG")
        print(f"wrote {args.png}")
    return 0
