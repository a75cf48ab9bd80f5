"""`pgt substrate build|show` and `pgt tokenize` (`trim` and `inspect` are added by pgt.data.substrate_cli)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgt import options
from pgt.errors import PgtError
from pgt.io import atomic_file
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
from pgt.substrate.layout import DEFAULT_LAYOUT_ENGINE, FAMILIES, LayoutEngine
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


def _font_setting(what: str) -> Any:
    return setting(None, what, metavar="PATH", default_text="$PGT_FONT, else GNU Unifont")


def _text_setting(help: str) -> Any:
    return setting(help=help, positional=True, required=True, parse=options.text, metavar="TEXT")


@dataclass
class BuildSettings:
    """`pgt substrate build`; each field's help is its option's help (pgt.settings.setting)."""

    family: str | None = setting(
        None, "tokenizer family (default with --from-tokenizer: bvv241-nemo)", choices=tuple(FAMILIES)
    )
    ngrams: list[str] | None = setting(
        None, "n-gram lists in the reference's format (ngrams-2-3-4-5.txt)", nargs="+", metavar="FILE"
    )
    extra_tokens: list[str] | None = setting(
        None, "extra token strings, one per line (ngrams-intersection.txt)", nargs="+", metavar="FILE"
    )
    corpus: list[str] | None = setting(
        None,
        "corpora to mine n-grams from: any SOURCE of `pgt data prepare` (text, fortune, JSONL, "
        "parquet files, directories, hf:NAME, default; untagged: language xx)",
        nargs="+",
        metavar="[LANG=]SOURCE",
    )
    strict: bool = strict_setting()
    from_tokenizer: str | None = setting(None, "keep this Hugging Face tokenizer's vocabulary", metavar="DIR")
    dim: int | None = setting(None, "embedding dimension", metavar="D", default_text="the family's")
    font: str | None = _font_setting("glyph font file")
    layout_engine: LayoutEngine = setting(
        DEFAULT_LAYOUT_ENGINE,
        "Pillow's text layout engine",
        default_text=f"{DEFAULT_LAYOUT_ENGINE}; recorded in substrate.json",
    )
    visible_blanks: bool = setting(
        False,
        "beyond the reference: draw invisible characters (space, tab, newline, no-break space, "
        "other control, format and blank characters) as Control Pictures or boxed hex code "
        "points, so they get distinct vectors (off by default; in the fingerprint)",
        switch=True,
    )
    workers: int | None = workers_setting("glyph-rendering processes")
    progress: bool | None = progress_setting()
    out: str | None = out_setting("substrate directory to create")
    overwrite: bool = overwrite_setting()


@dataclass
class ShowSettings:
    """`pgt substrate show`."""

    text: str = _text_setting("a token's text")
    substrate: str | None = substrate_setting()
    png: str | None = setting(None, "write the token's rendered bitmap here", metavar="FILE")
    k: int = setting(10, "how many neighbours", flags=("-k",), metavar="K")
    font: str | None = _font_setting("glyph font for --png")


@dataclass
class TokenizeSettings:
    """`pgt tokenize`."""

    text: str = _text_setting("text to encode")
    substrate: str | None = substrate_setting("substrate (or any Hugging Face tokenizer) directory")


def register(subparsers: argparse._SubParsersAction) -> None:
    substrate = add_command(
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

    add_command(
        commands,
        "build",
        help="build a substrate directory",
        description="Build a bvv241 tokenizer (or take an existing one) and its frozen glyph embeddings, "
        "written atomically to --out.",
        examples=BUILD_EXAMPLES,
        handler=run_substrate_build,
        settings=BuildSettings,
    )

    add_command(
        commands,
        "show",
        help="render a token's glyph and list its nearest tokens",
        description="Print a token's nearest neighbours by cosine in the frozen embedding and write its glyph as PNG.",
        examples=SHOW_EXAMPLES,
        handler=run_substrate_show,
        settings=ShowSettings,
    )

    add_command(
        subparsers,
        "tokenize",
        help="print the token ids and strings of a text",
        description="Encode TEXT with a substrate's tokenizer and print each id with its token string.",
        examples=TOKENIZE_EXAMPLES,
        handler=run_tokenize,
        settings=TokenizeSettings,
    )


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

    settings = settings_from(BuildSettings, args)
    family = settings.family or (ANY_TOKENIZER_FAMILY if settings.from_tokenizer else None)
    if family is None:
        raise PgtError("--family is required (or give --from-tokenizer DIR)")
    started = time.perf_counter()
    out = build_substrate(
        settings.out,
        family=family,
        ngram_files=settings.ngrams or (),
        extra_token_files=settings.extra_tokens or (),
        corpus=settings.corpus or (),
        strict=settings.strict,
        from_tokenizer=settings.from_tokenizer,
        dim=settings.dim,
        font=settings.font,
        layout_engine=settings.layout_engine,
        visible_blanks=settings.visible_blanks,
        workers=options.workers(settings),
        overwrite=settings.overwrite,
        progress=options.show_progress(settings),
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
    settings = settings_from(TokenizeSettings, args)
    tokenizer = load_tokenizer(settings.substrate)
    _print_tokens(tokenizer, tokenizer.encode(settings.text, add_special_tokens=False))
    return 0


def run_substrate_show(args: argparse.Namespace) -> int:
    from pgt.substrate.glyphs import (  # imports PIL: kept off `pgt --help`
        nearest_tokens,
        render_bitmap,
    )

    settings = settings_from(ShowSettings, args)
    substrate = Substrate.load(settings.substrate)
    tokenizer = substrate.tokenizer
    ids = tokenizer.encode(settings.text, add_special_tokens=False)
    if not ids:
        raise PgtError(f"{settings.text!r} encodes to no token: give the text of a token")
    if len(ids) > 1:
        print(f"{settings.text!r} is not one token but {len(ids)}; showing the first:")
        _print_tokens(tokenizer, ids)
    token_id = ids[0]
    # The text that was rendered: the token string itself in a bvv241 layout, its decoded text otherwise.
    if substrate.meta.from_tokenizer is not None:
        text = token_texts(tokenizer, [token_id])[0]
    else:
        text = tokenizer.convert_ids_to_tokens(token_id)
    print(f"token {token_id} {text!r}; nearest by cosine:")
    for neighbour, cosine in nearest_tokens(substrate.embeddings.numpy(), token_id, settings.k):
        print(f"{neighbour:>8}  {cosine:+.4f}  {tokenizer.convert_ids_to_tokens(neighbour)!r}")
    if settings.png:
        from PIL import Image

        meta = substrate.meta
        bitmap = render_bitmap(
            text, meta.cell, settings.font, meta.augment, meta.layout_engine, meta.params.visible_blanks
        )
        with atomic_file(settings.png, "wb") as handle:
            Image.fromarray(((~bitmap) * 255).astype("uint8")).save(handle, format="PNG")
        print(f"wrote {settings.png}")
    return 0
