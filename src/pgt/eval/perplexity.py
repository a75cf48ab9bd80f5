"""Perplexity and bits per byte of held-out text, in sliding windows no longer than the context.

Each document is tokenized on its own, with the tokenizer's beginning-of-sequence
token in front (added here if the tokenizer does not add it), so every token of
the text is predicted. A document longer than the context is scored in windows
of the context's length that advance by `stride` tokens: each token is scored
once, seeing at least `context - stride` tokens before it. Bits per byte divide
the summed negative log-likelihood (nats / ln 2) by the text's UTF-8 bytes, so
models with different tokenizers compare fairly. Each document's own figures are kept
too (`DocumentScore`, written by `pgt eval --log-samples`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from typing import TYPE_CHECKING

from pgt.errors import PgtError
from pgt.eval.batching import context_length, encode, pad_token_id
from pgt.eval.loglik import tail_logprobs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class DocumentScore:
    """One document's negative log-likelihood: a --log-samples line of a perplexity or bpb task."""

    index: int  # position among the texts given to score_texts (blank ones are skipped, not renumbered)
    n_tokens: int
    n_bytes: int
    nats: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextScore:
    """Summed negative log-likelihood of some text, with its token and byte counts."""

    nats: float
    n_tokens: int  # tokens predicted
    n_bytes: int  # UTF-8 bytes of the text
    n_documents: int
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


def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int = 4,
    stride: int | None = None,
) -> TextScore:
    """Negative log-likelihood of `texts` under the model (see the module docstring for the windows)."""
    length = context_length(model)
    stride = stride or max(1, length // 2)
    if not 0 < stride < length:
        raise PgtError(f"stride must be between 1 and the context length {length} minus 1, got {stride}")
    indices = [index for index, text in enumerate(texts) if text.strip()]
    if not indices:
        raise PgtError("no text to score: the held-out data is empty")
    bos = tokenizer.bos_token_id
    rows: list[list[int]] = []
    tails: list[int] = []
    owners: list[int] = []  # the document of each window
    counts: list[int] = []  # tokens predicted per document
    for document, ids in enumerate(encode(tokenizer, [texts[i] for i in indices])):
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        for begin, end, first in windows(len(ids), length, stride):
            rows.append(ids[begin:end])
            tails.append(end - first)
            owners.append(document)
        counts.append(len(ids) - 1)
    if sum(counts) == 0:
        raise PgtError("no tokens to score: each text is a single token and the tokenizer adds no beginning token")
    nats = [0.0] * len(indices)
    logprobs = tail_logprobs(model, rows, tails, pad_token_id(tokenizer), batch_size)
    for owner, logprob in zip(owners, logprobs, strict=True):
        nats[owner] -= logprob
    documents = tuple(
        DocumentScore(index, n_tokens, len(texts[index].encode("utf-8")), document_nats)
        for index, n_tokens, document_nats in zip(indices, counts, nats, strict=True)
    )
    return TextScore(
        nats=sum(nats),
        n_tokens=sum(counts),
        n_bytes=sum(d.n_bytes for d in documents),
        n_documents=len(documents),
        documents=documents,
    )
