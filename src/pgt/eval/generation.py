"""Batched greedy continuations with the KV cache (`model.generate`, left padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgt.eval.batching import context_length, encode, left_truncate, length_sorted_batches, pad_left, pad_token_id

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Continuations:
    """Decoded continuations, in prompt order, and how many prompts had to be shortened."""

    texts: list[str]
    n_truncated: int  # prompts left-truncated to fit the context
    n_capped: int  # examples whose new-token count was capped at half the context


def greedy_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    new_tokens: Sequence[int],
    batch_size: int = 8,
) -> Continuations:
    """Greedily generate `new_tokens[i]` tokens after `prompts[i]` and decode them.

    A batch generates as many tokens as its longest request; greedy decoding is
    prefix-consistent, so each row is then cut to its own count. A prompt that does
    not fit the context with its new tokens loses its beginning (the passage of a
    reading task) — never the question and `Answer:` at its end. New-token counts
    (SQuAD's and OPUS's depend on the answer) are capped at half the context.
    """
    from transformers import GenerationConfig

    limit = context_length(model)
    pad_id = pad_token_id(tokenizer)
    wanted = [min(max(n, 1), limit // 2) for n in new_tokens]
    encoded = encode(tokenizer, prompts)
    texts = [""] * len(prompts)
    n_truncated = 0
    device = next(model.parameters()).device
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size, "generating"):
        steps = max(wanted[i] for i in batch)
        rows = []
        for i in batch:
            ids, cut = left_truncate(encoded[i], limit - steps)
            rows.append(ids)
            n_truncated += cut
        input_ids, attention_mask = pad_left(rows, pad_id, device)
        config = GenerationConfig(
            max_new_tokens=steps, do_sample=False, pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id
        )
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        generated = output[:, input_ids.shape[1] :].tolist()
        for row, i in enumerate(batch):
            texts[i] = tokenizer.decode(generated[row][: wanted[i]], skip_special_tokens=True)
    n_capped = sum(w < n for w, n in zip(wanted, new_tokens, strict=True))
    return Continuations(texts, n_truncated, n_capped)
