"""The bvv241 id layout (docs/substrate.md, "Id layout") and the family presets.

Ids follow the Unicode code space:

    0x0000-0xD7FF    one-character tokens, id = code point
    0xD800-0xDFFF    n-gram tokens (the surrogate block is never a character)
    0xE000-0xE0FF    the 23 named special tokens, then <special_token_N>
    0xE100-0xF8FF    n-gram tokens
    0xF900-0xFFFE    one-character tokens again, id = code point
    0x10000-0x1FFFE  n-gram tokens (131,072-id families only)
    free ids         <unused_N>, N = the id in decimal

Beyond the reference: 256 byte-fallback tokens <0x00>...<0xFF> follow the reference
layout (ids 65,536... or 131,072...), so that every character outside the layout
(anything above U+FFFF, and U+FFFF itself) encodes losslessly as its UTF-8 bytes
instead of <unk>. Every reference id keeps its meaning; the vocabulary size is the
reference size + 256 (65,792 or 131,328).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pgt.errors import PgtError
from pgt.records import Record

SPECIAL_TOKENS = (
    "<pad>",
    "<s>",
    "</s>",
    "<unk>",
    "<think>",
    "</think>",
    "<emotions>",
    "</emotions>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "[INST]",
    "[/INST]",
    "[EOT]",
    "[USER]",
    "[ASSISTANT]",
    "[FIM_PREFIX]",
    "[FIM_MIDDLE]",
    "[FIM_SUFFIX]",
    "[FIM_PAD]",
    "[REPO_NAME]",
    "[FILE_SEP]",
)
PAD, BOS, EOS, UNK = SPECIAL_TOKENS[:4]

# Half-open id ranges [start, stop).
CHAR_RANGES = ((0x0000, 0xD800), (0xF900, 0xFFFF))
SPECIAL_RANGE = (0xE000, 0xE100)
NGRAM_RANGES_64K = ((0xD800, 0xE000), (0xE100, 0xF900))
NGRAM_RANGES_128K = (*NGRAM_RANGES_64K, (0x10000, 0x1FFFF))
BYTE_FALLBACK_COUNT = 256


def byte_token(value: int) -> str:
    """The byte-fallback token of one byte, in the spelling `tokenizers` expects (`<0x41>`)."""
    return f"<0x{value:02X}>"


def unused_token(token_id: int) -> str:
    return f"<unused_{token_id}>"


def special_token(token_id: int) -> str:
    """The token at `token_id` in the special block: a named special or `<special_token_N>`."""
    offset = token_id - SPECIAL_RANGE[0]
    return SPECIAL_TOKENS[offset] if offset < len(SPECIAL_TOKENS) else f"<special_token_{token_id}>"


@dataclass
class AugmentParams(Record):
    """Augmentation of "easy" texts: rotation in ±`rotate_deg` degrees, shift in ±`shift_px`
    pixels, a fraction `noise_fraction` of pixels set black, then a Gaussian blur of
    `blur_radius` (docs/substrate.md, "Rendering", step 3). Recorded in `substrate.json`.
    """

    WHAT = "augmentation"
    rotate_deg: float
    shift_px: int
    noise_fraction: float
    blur_radius: float = 0.5


# Pillow's text layout engine draws the glyphs; which one the reference's run had is unknown.
LayoutEngine = Literal["basic", "raqm"]
LAYOUT_ENGINES: tuple[str, ...] = typing.get_args(LayoutEngine)
DEFAULT_LAYOUT_ENGINE: LayoutEngine = "basic"

AUGMENT_CELL_64 = AugmentParams(rotate_deg=7.0, shift_px=3, noise_fraction=0.03)
AUGMENT_CELL_32 = AugmentParams(rotate_deg=4.0, shift_px=2, noise_fraction=0.01)


@dataclass(frozen=True, kw_only=True)
class Family:
    """One tokenizer family: its id layout, n-gram recipe and glyph-rendering settings.

    `layout_size` is the reference vocabulary (65,536 or 131,072) and `ngram_ranges`
    the id ranges that n-grams fill; both are None for a family that takes another
    tokenizer's vocabulary as it is (`bvv241-nemo`). `top_k` n-grams are kept per
    language and n for each n in `ngram_orders`; `extra_token_limit` caps how many of
    the shortest multi-character extra tokens (the intersection list) join them (None:
    no cap). `augment` is the augmentation of "easy" texts.
    """

    name: str
    cell: int
    dim: int
    augment: AugmentParams
    layout_size: int | None = None
    ngram_ranges: tuple[tuple[int, int], ...] | None = None
    ngram_orders: tuple[int, ...] = ()
    top_k: int = 0
    extra_token_limit: int | None = None

    @property
    def uses_layout(self) -> bool:
        return self.layout_size is not None

    @property
    def vocab_size(self) -> int:
        """Ids in a built tokenizer: the reference layout plus the byte-fallback block."""
        if self.layout_size is None:
            raise PgtError(f"family {self.name} takes its vocabulary from another tokenizer")
        return self.layout_size + BYTE_FALLBACK_COUNT

    @property
    def ngram_capacity(self) -> int:
        return sum(stop - start for start, stop in self.ngram_ranges or ())


_NGRAMS_MAX = dict(
    layout_size=131_072, ngram_ranges=NGRAM_RANGES_128K, ngram_orders=(2, 3, 4, 5), top_k=906, extra_token_limit=65_536
)
FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="bvv241-2-3",
            cell=32,
            dim=1024,
            augment=AUGMENT_CELL_32,
            layout_size=65_536,
            ngram_ranges=NGRAM_RANGES_64K,
            ngram_orders=(2, 3),
            top_k=338,
        ),
        # The reference's max and nemo builders used the 64-cell augmentation with a 32 cell.
        Family(name="bvv241-max", cell=32, dim=1024, augment=AUGMENT_CELL_64, **_NGRAMS_MAX),
        Family(name="bvv241-abs", cell=64, dim=4096, augment=AUGMENT_CELL_64, **_NGRAMS_MAX),
        Family(name="bvv241-nemo", cell=32, dim=1024, augment=AUGMENT_CELL_64),
    )
}
# The smallest family (65,792 ids, n-grams of orders 2 and 3): the one the demo and the study build.
SMALL_FAMILY = "bvv241-2-3"


def get_family(name: str) -> Family:
    """The preset called `name`, or a PgtError listing the known families."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise PgtError(f"unknown tokenizer family {name!r} (known: {', '.join(FAMILIES)})") from None


def reserved_tokens(family: Family) -> set[str]:
    """Token strings the layout itself uses besides characters: specials, `<unused_N>`, bytes."""
    specials = {special_token(i) for i in range(*SPECIAL_RANGE)}
    unused = {unused_token(i) for i in range(family.layout_size or 0)}
    return specials | unused | {byte_token(b) for b in range(BYTE_FALLBACK_COUNT)}


@dataclass(frozen=True)
class Layout:
    """The full id -> token-string table of one family for a given n-gram set.

    `ngrams` are the n-grams that received ids, in id order; `dropped` those that did
    not fit the family's n-gram ranges.
    """

    family: Family
    tokens: tuple[str, ...]
    ngrams: tuple[str, ...]
    dropped: tuple[str, ...]

    @property
    def vocab(self) -> dict[str, int]:
        return {token: token_id for token_id, token in enumerate(self.tokens)}


def sort_ngrams(ngrams: Iterable[str]) -> list[str]:
    """The reference's id order: descending length, then the string (code point order)."""
    return sorted(set(ngrams), key=lambda s: (-len(s), s))


def build_layout(family: Family, ngrams: Iterable[str]) -> Layout:
    """Lay out `ngrams` (multi-character strings) over the family's ids (docs/substrate.md, "Id layout").

    Strings that would collide with a layout token (a special, `<unused_N>`, a byte
    token) are rejected: they would make two ids share one string.
    """
    if not family.uses_layout:
        raise PgtError(f"family {family.name} has no bvv241 id layout")
    ordered = sort_ngrams(ngrams)
    short = [s for s in ordered if len(s) < 2]
    if short:
        raise PgtError(f"n-grams must have at least 2 characters, got {short[0]!r}")
    clashes = reserved_tokens(family).intersection(ordered)
    if clashes:
        raise PgtError(f"n-gram {sorted(clashes)[0]!r} collides with a reserved token of the layout")

    tokens: list[str | None] = [None] * family.vocab_size
    for start, stop in CHAR_RANGES:
        tokens[start:stop] = map(chr, range(start, stop))
    tokens[SPECIAL_RANGE[0] : SPECIAL_RANGE[1]] = map(special_token, range(*SPECIAL_RANGE))
    ngram_ids = [i for start, stop in family.ngram_ranges for i in range(start, stop)]
    placed = ordered[: len(ngram_ids)]
    for token_id, ngram in zip(ngram_ids, placed, strict=False):
        tokens[token_id] = ngram
    tokens[family.layout_size :] = map(byte_token, range(BYTE_FALLBACK_COUNT))
    filled = [token if token is not None else unused_token(i) for i, token in enumerate(tokens)]
    return Layout(family, tuple(filled), tuple(placed), tuple(ordered[len(ngram_ids) :]))
