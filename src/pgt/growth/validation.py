"""Held-out bits per byte, computed one way for the trainer and for `pgt eval` (docs/growth.md).

A document is scored on its own, with the beginning-of-sequence token in front, so every
token of it is predicted. A document longer than the model's context is scored in windows
of the context's length that advance by half of it: each token is scored once, seeing at
least half a context before it. Bits per byte divide the summed negative log-likelihood
(nats / ln 2) by the exact UTF-8 bytes of the tokens scored (their decoded text), so the
trainer's log, the stage records and `pgt eval` give the same figure for the same model and
documents, and models with different tokenizers compare fairly.

Beside every model figure stand two compressors on the same bytes, concatenated:
`bz2` at level 9 (`bzip2 -9`) and `lzma` at preset 9e (`xz -9e`).

The trainer's validation sample is a fixed set of whole documents spread evenly over the
validation split of the token data, chosen from the data and the sample size alone. For a
weighted mixture (pgt.data.mixture) each source gives its weight's share of the sample
(at least one document), so the overall figure weighs the sources about as training does,
and each source's documents are also scored on their own (`source_scores`).
"""

from __future__ import annotations

import bz2
import functools
import lzma
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pgt.errors import PgtError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pgt.data.loader import TokenData
    from pgt.data.mixture import TokenMixture

# Tokens read at once while looking for document ends in the validation split.
_SCAN_TOKENS = 1 << 22


# The figures' keys in records and the commands users would type for them.
COMPRESSOR_NAMES = {"bz2_bpb": "bzip2 -9", "xz_bpb": "xz -9e"}


def compressed_bits_per_byte(data: bytes) -> dict[str, float]:
    """Bits per byte of `bzip2 -9` and `xz -9e` on `data`: the figures a model should beat."""
    if not data:
        raise PgtError("no held-out bytes to compress")
    return dict(_compressed_bits_per_byte(data))


@functools.lru_cache(maxsize=16)
def _compressed_bits_per_byte(data: bytes) -> tuple[tuple[str, float], ...]:
    """Remembered: a run scores the same validation sample at every evaluation, and xz -9e is slow."""
    sizes = {"bz2_bpb": len(bz2.compress(data, 9)), "xz_bpb": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))}
    return tuple((name, 8 * size / len(data)) for name, size in sizes.items())


@dataclass(frozen=True)
class DocumentScore:
    """One document's negative log-likelihood (a `pgt eval --log-samples` line of a perplexity or bpb task)."""

    index: int  # position among the documents scored (an empty one is skipped, not renumbered)
    n_tokens: int
    n_bytes: int
    nats: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextScore:
    """Summed negative log-likelihood of some documents, with their token and byte counts and the compressors."""

    nats: float
    n_tokens: int  # tokens predicted
    n_bytes: int  # UTF-8 bytes of the tokens predicted
    n_documents: int
    bz2_bpb: float  # bzip2 -9 on the same bytes, concatenated
    xz_bpb: float  # xz -9e on the same bytes
    documents: tuple[DocumentScore, ...] = ()

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats / self.n_tokens)

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.n_bytes

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.n_tokens

    def describe(self) -> str:
        """`3.1234 bits/byte (bzip2 -9 2.88, xz -9e 3.10) on 12,345 bytes of 40 documents`."""
        return (
            f"{self.bits_per_byte:.4f} bits/byte (bzip2 -9 {self.bz2_bpb:.4f}, xz -9e {self.xz_bpb:.4f}) "
            f"on {self.n_bytes:,} bytes of {self.n_documents:,} documents"
        )


def windows(n_ids: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """`(begin, end, first_target)` spans covering ids 1..n_ids-1 once each.

    Targets `first_target..end-1` are scored with `ids[begin:t]` as context; a window
    holds at most `length` ids and each after the first scores `stride` (< `length`) new targets.
    """
    spans: list[tuple[int, int, int]] = []
    scored_to = 1  # the first id has no context and is never a target
    while scored_to < n_ids:
        end = min(n_ids, scored_to + stride if spans else length)
        spans.append((max(0, end - length), end, scored_to))
        scored_to = end
    return spans


def default_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of a causal LM for a [B, T] id batch."""
    return lambda ids: model(input_ids=ids, use_cache=False).logits


def decoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[int]], str]:
    """The exact text of token ids (special tokens have none), for counting the bytes scored."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def score_documents(
    forward: Callable[[torch.Tensor], torch.Tensor],
    documents: Sequence[Sequence[int]],
    decode: Callable[[list[int]], str],
    *,
    context: int,
    bos_id: int | None,
    pad_id: int,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    stride: int | None = None,
) -> TextScore:
    """Score token-id documents (without a beginning token; `bos_id` is put in front when given).

    Windows are batched longest first and padded on the right, which a causal model never
    attends to, so no attention mask is needed. `decode` turns the ids of a document's scored
    tokens into text; its UTF-8 bytes are the bytes the bits per byte divide by.
    """
    import torch
    import torch.nn.functional as F

    stride = stride or max(1, context // 2)
    if not 0 < stride < context:
        raise PgtError(f"stride must be between 1 and the context length {context} minus 1, got {stride}")
    rows: list[tuple[list[int], int, int]] = []  # (window ids, targets at its end, its document)
    held_out = bytearray()
    kept: list[tuple[int, int, int]] = []  # (index, tokens predicted, bytes) of each scored document
    for index, doc in enumerate(documents):
        ids = [bos_id, *doc] if bos_id is not None and (not doc or doc[0] != bos_id) else list(doc)
        if len(ids) < 2:
            continue
        rows += [(ids[begin:end], end - first, len(kept)) for begin, end, first in windows(len(ids), context, stride)]
        text = decode(ids[1:]).encode("utf-8")
        held_out += text
        kept.append((index, len(ids) - 1, len(text)))
    if not kept or not held_out:
        raise PgtError("no text to score: the held-out documents are empty")
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    nats = [0.0] * len(kept)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start : start + batch_size]]
            width = len(batch[0][0])
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            for r, (window, _, _) in enumerate(batch):
                ids[r, : len(window)] = torch.tensor(window)
            logits = forward(ids.to(device)).float()
            for r, (window, tail, owner) in enumerate(batch):
                n = len(window)
                targets = ids[r, n - tail : n].to(logits.device)
                nats[owner] += float(F.cross_entropy(logits[r, n - tail - 1 : n - 1], targets, reduction="sum"))
    scores = tuple(
        DocumentScore(index, n_tokens, n_bytes, document_nats)
        for (index, n_tokens, n_bytes), document_nats in zip(kept, nats, strict=True)
    )
    return TextScore(
        sum(nats),
        sum(d.n_tokens for d in scores),
        len(held_out),
        len(scores),
        **compressed_bits_per_byte(bytes(held_out)),
        documents=scores,
    )


def score_sample(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sample: ValidationSample,
    *,
    context: int,
    pad_id: int,
    device: torch.device | str,
    batch_size: int,
) -> TextScore:
    """A training run's validation sample scored with `model` in eval mode, as `pgt eval` scores text
    (`score_documents`); the model is back in training mode after. The trainer and `pgt tune` both call it."""
    model.eval()
    try:
        return score_documents(
            default_forward(model),
            sample.documents,
            decoder(tokenizer),
            context=context,
            bos_id=tokenizer.bos_token_id,
            pad_id=pad_id,
            device=device,
            batch_size=batch_size,
        )
    finally:
        model.train()


@dataclass(frozen=True)
class SamplePart:
    """The documents [start, stop) of a mixture's validation sample that come from one source."""

    name: str
    start: int
    stop: int


@dataclass(frozen=True)
class ValidationSample:
    """Whole validation documents (token ids, no eos) picked evenly over the split (of each source)."""

    documents: list[list[int]]
    split_documents: int  # documents in the whole validation split
    split_tokens: int
    parts: tuple[SamplePart, ...] = ()  # a mixture's sources; empty for one plain --data DIR

    @property
    def tokens(self) -> int:
        return sum(len(doc) for doc in self.documents)


def validation_sample(data: TokenData, budget_tokens: int) -> ValidationSample:
    """About `budget_tokens` tokens of whole validation documents, evenly spread over the split.

    With n documents of mean length m, k = ceil(budget / m) documents are taken at the
    positions floor((i + 1/2) n / k): a function of the data and the budget only, so every
    run on the same data is scored on the same text; the whole split when it is smaller.
    """
    split = data.splits["validation"]
    ends: list[np.ndarray] = []
    for start in range(0, split.tokens, _SCAN_TOKENS):
        chunk = split.read(start, min(_SCAN_TOKENS, split.tokens - start))
        ends.append(np.flatnonzero(chunk == data.eos_id) + start)
    doc_ends = np.concatenate(ends) if ends else np.empty(0, np.int64)
    if not len(doc_ends):
        raise PgtError(
            f"token data {data.path}: the validation split holds no complete document (no token "
            f"{data.eos_id}, the manifest's eos_id, ends one; a wrong eos_id, or data that is not text)"
        )
    n = len(doc_ends)
    k = min(n, math.ceil(budget_tokens / (split.tokens / n)))
    picks = sorted({int((i + 0.5) * n / k) for i in range(k)})
    documents = []
    for index in picks:
        begin = int(doc_ends[index - 1]) + 1 if index else 0
        documents.append(split.read(begin, int(doc_ends[index]) - begin).tolist())
    return ValidationSample(documents, n, split.tokens)


def mixture_validation_sample(mixture: TokenMixture, budget_tokens: int) -> ValidationSample:
    """The validation sample of one token data directory, or of a mixture: each source's weight's share."""
    if mixture.bare:
        return validation_sample(mixture.data[0], budget_tokens)
    documents: list[list[int]] = []
    parts, split_documents, split_tokens = [], 0, 0
    for source, data in zip(mixture.sources, mixture.data, strict=True):
        sample = validation_sample(data, max(1, math.ceil(source.weight * budget_tokens)))
        parts.append(SamplePart(source.name, len(documents), len(documents) + len(sample.documents)))
        documents += sample.documents
        split_documents += sample.split_documents
        split_tokens += sample.split_tokens
    return ValidationSample(documents, split_documents, split_tokens, tuple(parts))


@dataclass(frozen=True)
class SourceScore:
    """A mixture source's part of a validation score."""

    val_loss: float  # nats per predicted token
    val_bpb: float  # bits per UTF-8 byte
    documents: int
    tokens: int
    bytes: int


def source_scores(score: TextScore, sample: ValidationSample) -> dict[str, SourceScore]:
    """Each mixture source's loss and bits per byte within `score` of `sample` (empty without a mixture)."""
    scores = {}
    for part in sample.parts:
        mine = [d for d in score.documents if part.start <= d.index < part.stop]
        nats, tokens, nbytes = sum(d.nats for d in mine), sum(d.n_tokens for d in mine), sum(d.n_bytes for d in mine)
        if tokens and nbytes:
            scores[part.name] = SourceScore(nats / tokens, nats / math.log(2) / nbytes, len(mine), tokens, nbytes)
    return scores


__all__ = [
    "COMPRESSOR_NAMES",
    "DocumentScore",
    "SamplePart",
    "SourceScore",
    "TextScore",
    "ValidationSample",
    "mixture_validation_sample",
    "source_scores",
    "compressed_bits_per_byte",
    "decoder",
    "default_forward",
    "score_documents",
    "score_sample",
    "validation_sample",
    "windows",
]
