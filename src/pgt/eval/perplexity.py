"""Perplexity and bits per byte of held-out text (the computation is pgt.growth.validation's).

Each document is tokenized on its own and scored by `pgt.growth.validation.score_documents`,
the same function the growth trainer's validation uses, so the same model and documents
get the same bits per byte in the training log, the stage record and `pgt eval`
(docs/growth.md, "Bits per byte"). The result carries `bzip2 -9` and `xz -9e` on the
same bytes, and each document's own figures (`DocumentScore`, written by
`pgt eval --log-samples`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgt.errors import PgtError
from pgt.eval.batching import context_length, encode, pad_token_id
from pgt.growth.validation import (
    DocumentScore,
    TextScore,
    decoder,
    default_forward,
    score_documents,
    windows,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int = 4,
    stride: int | None = None,
) -> TextScore:
    """Negative log-likelihood of `texts` under the model (see pgt.growth.validation for the windows).
    A blank text is skipped; the documents' `index` is their position in `texts`."""
    indices = [index for index, text in enumerate(texts) if text.strip()]
    if not indices:
        raise PgtError("no text to score: the held-out data is empty")
    documents = encode(tokenizer, [texts[i] for i in indices])
    if tokenizer.bos_token_id is None and all(len(ids) < 2 for ids in documents):
        raise PgtError("no tokens to score: each text is a single token and the tokenizer adds no beginning token")
    score = score_documents(
        default_forward(model),
        documents,
        decoder(tokenizer),
        context=context_length(model),
        bos_id=tokenizer.bos_token_id,
        pad_id=pad_token_id(tokenizer),
        device=next(model.parameters()).device,
        batch_size=batch_size,
        stride=stride,
    )
    return dataclasses.replace(
        score, documents=tuple(dataclasses.replace(d, index=indices[d.index]) for d in score.documents)
    )


__all__ = ["DocumentScore", "TextScore", "score_texts", "windows"]
