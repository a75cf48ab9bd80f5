"""Hugging Face fast tokenizers for the bvv241 layout, and token texts of any tokenizer.

A bvv241 tokenizer is a `tokenizers` BPE model over the layout's vocabulary with the
reference's merges (docs/substrate.md, "Encoding"): for each n-gram in id order, every split point whose
two halves are both in the vocabulary gives the merge (left, right), in that order.
There is no normaliser and no pre-tokeniser, so a space is its own token and encoding
is the reference's. Beyond the reference, `byte_fallback` spells every character outside
the vocabulary as `<0xXX>` byte tokens and the decoder fuses them back, so encode ->
decode is lossless for all of Unicode.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pgt.errors import PgtError, one_line
from pgt.substrate.layout import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, Layout

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SENTENCEPIECE_SPACE = "\u2581"


def reference_merges(ngrams: Iterable[str], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Merges in the reference's order: per n-gram (in id order), each split into two vocab halves."""
    return [
        (ngram[:i], ngram[i:])
        for ngram in ngrams
        for i in range(1, len(ngram))
        if ngram[:i] in vocab and ngram[i:] in vocab
    ]


def build_tokenizer(layout: Layout) -> PreTrainedTokenizerFast:
    """The fast tokenizer of a bvv241 layout (bos `<s>`, eos `</s>`, unk `<unk>`, pad `<pad>`).

    Only the 23 named special tokens are registered as special, as in the reference, so
    their literal text in the input encodes to their id; `<special_token_N>`, `<unused_N>`
    and byte tokens are plain vocabulary entries, and their literal text encodes as
    ordinary characters and n-grams, exactly as the reference encodes it.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = layout.vocab
    if len(vocab) != len(layout.tokens):
        raise PgtError(f"layout of {layout.family.name} gives two ids the same string")
    model = models.BPE(
        vocab=vocab,
        merges=reference_merges(layout.ngrams, vocab),
        unk_token=UNK,
        byte_fallback=True,
    )
    backend = Tokenizer(model)
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """An existing Hugging Face tokenizer directory, loaded offline; PgtError if it is not one."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise PgtError(f"tokenizer directory not found: {path}")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PgtError(f"cannot load a tokenizer from {path}: {one_line(exc)}") from None


def texts_sha256(texts: Sequence[str]) -> str:
    """The sha256 a substrate records of its token texts in id order (`params.token_texts_sha256`)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int] | None = None) -> list[str]:
    """The text each id (default: every id, in order) stands for, for rendering its glyph.

    Special tokens stay literal; a byte-fallback token `<0xXX>` becomes its byte's
    character when that byte is printable ASCII (else it stays literal); any other
    token is decoded on its own, so GPT-2 style byte-level `Ġthe` becomes " the" and
    SentencePiece `▁the` becomes " the" (its decoder drops a leading space; we keep
    it). A token that decodes to nothing or to an incomplete UTF-8 sequence (U+FFFD)
    keeps its raw string.
    """
    special = set(tokenizer.all_special_ids)
    ids = range(len(tokenizer)) if ids is None else ids
    texts: list[str] = []
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids)), strict=True):
        if token is None:
            raise PgtError(f"tokenizer has no token at id {token_id} (ids must be contiguous)")
        byte = BYTE_TOKEN.match(token)
        if token_id in special:
            texts.append(token)
        elif byte:
            value = int(byte.group(1), 16)
            texts.append(chr(value) if 0x20 <= value < 0x7F else token)
        else:
            text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            if token.startswith(SENTENCEPIECE_SPACE) and not text.startswith((" ", SENTENCEPIECE_SPACE)):
                text = " " + text
            texts.append(text if text and "\ufffd" not in text else token)
    return texts
