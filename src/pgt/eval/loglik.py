"""Log-likelihood scoring: how probable the model finds each option's continuation of a prompt.

Long inputs are windowed as lm-evaluation-harness 0.4 does (`HFLM._loglikelihood_tokens`):
keep the last `context + 1` ids of context + continuation and feed all but the last, so
the model sees `context` ids and every continuation token is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgt.errors import PgtError
from pgt.eval.batching import (
    context_length,
    encode,
    forward_logits,
    left_truncate,
    length_sorted_batches,
    pad_left,
    pad_token_id,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ContinuationScore:
    """Summed natural-log probability of a continuation and its size in tokens."""

    logprob: float
    n_tokens: int


def continuation_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, str]],
    batch_size: int = 8,
) -> tuple[list[ContinuationScore], int]:
    """Score each `(context, continuation)` pair; also return how many were left-truncated.

    Context and continuation are tokenized separately (the continuation without
    special tokens) and concatenated, so every option of a question is scored
    after exactly the same context ids.
    """
    limit = context_length(model)
    pad_id = pad_token_id(tokenizer)
    contexts = encode(tokenizer, [context for context, _ in requests])
    continuations = encode(tokenizer, [continuation for _, continuation in requests], special_tokens=False)
    rows, n_truncated = [], 0
    for context_ids, continuation_ids, (_, text) in zip(contexts, continuations, requests, strict=True):
        if not continuation_ids or len(continuation_ids) >= limit:
            raise PgtError(
                f"cannot score continuation {text!r}: it has {len(continuation_ids)} tokens (context {limit})"
            )
        ids, cut = left_truncate(context_ids + continuation_ids, limit + 1)  # lm-eval's window
        rows.append(ids)
        n_truncated += cut
    totals = tail_logprobs(model, rows, [len(ids) for ids in continuations], pad_id, batch_size)
    scores = [ContinuationScore(total, len(ids)) for total, ids in zip(totals, continuations, strict=True)]
    return scores, n_truncated


def tail_logprobs(
    model: PreTrainedModel, rows: Sequence[list[int]], tails: Sequence[int], pad_id: int, batch_size: int
) -> list[float]:
    """Summed log-probability of the last `tails[i]` tokens of each row given the ids before them.

    The model is fed each row without its last id (which predicts nothing), so a row may be
    one id longer than the context.
    """
    import torch

    totals = [0.0] * len(rows)
    device = next(model.parameters()).device
    for batch in length_sorted_batches([len(ids) for ids in rows], batch_size, "scoring"):
        input_ids, attention_mask = pad_left([rows[i][:-1] for i in batch], pad_id, device)
        span = max(tails[i] for i in batch)
        # Logits at position t predict id t+1: the last `span` positions predict every tail.
        logprobs = torch.log_softmax(forward_logits(model, input_ids, attention_mask, keep_last=span), dim=-1)
        for row, i in enumerate(batch):
            targets = torch.tensor(rows[i][-tails[i] :], device=device)
            predicting = logprobs[row, logprobs.shape[1] - tails[i] :]
            totals[i] = predicting.gather(-1, targets[:, None]).sum().item()
    return totals
