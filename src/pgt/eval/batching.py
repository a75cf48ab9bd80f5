"""Shared plumbing for batched evaluation of any Hugging Face causal LM.

Prompts are tokenized one by one (so a prompt's ids never depend on its batch),
left-truncated to fit the model's context, sorted by length and padded into
batches. Left padding keeps every prompt's last token in the last column, which
is where generation continues and where log-likelihood mode reads its logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pgt.errors import PgtError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def context_length(model: PreTrainedModel) -> int:
    """The longest sequence (prompt plus new tokens) the model was built for."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise PgtError(f"cannot tell the context length of {type(model).__name__} (no max_position_embeddings in config)")


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id used for padding: the tokenizer's pad token, else its end-of-sequence token."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise PgtError("the tokenizer has neither a pad nor an end-of-sequence token to pad batches with")


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text, tokenized separately (the tokenizer's own special tokens included).

    Texts longer than the context are expected here (callers window or truncate them and count
    the truncations), so the tokenizer's "longer than the maximum" warning is turned off.
    """
    encoded = tokenizer(list(texts), add_special_tokens=special_tokens, verbose=False)
    return [list(ids) for ids in encoded["input_ids"]]


def left_truncate(ids: list[int], budget: int) -> tuple[list[int], bool]:
    """Keep the last `budget` ids (the question and `Answer:` end a prompt); report whether any were cut."""
    if len(ids) <= budget:
        return ids, False
    return ids[len(ids) - budget :], True


_progress: bool | None = None  # None: bars on a terminal only (tqdm's own test of stderr)


def set_progress(enabled: bool | None) -> None:
    """Turn evaluation progress bars on or off (`--progress/--no-progress`); None: on a terminal."""
    global _progress
    _progress = enabled


def length_sorted_batches(lengths: Sequence[int], batch_size: int, desc: str) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory peaks early).

    A progress bar named `desc` shows as `set_progress` says (by default on a terminal).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise PgtError(f"--batch-size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    starts = range(0, len(order), batch_size)
    for start in tqdm(
        starts, desc=desc, unit="batch", disable=None if _progress is None else not _progress, leave=False
    ):
        yield order[start : start + batch_size]


def pad_left(rows: Sequence[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and the matching attention mask."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def forward_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep_last: int | None = None
) -> torch.Tensor:
    """Logits of a left-padded batch, float32, for all positions or only the last `keep_last`.

    Position ids are derived from the mask so a padded row sees the same positions as
    the row alone; `logits_to_keep` spares the full [batch, length, vocab] tensor where
    the model supports it.
    """
    import torch

    parameters = inspect.signature(model.forward).parameters
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if "position_ids" in parameters:
        kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    if keep_last is not None and "logits_to_keep" in parameters:
        kwargs["logits_to_keep"] = keep_last
    with torch.inference_mode():
        logits = model(**kwargs).logits
    if keep_last is not None:
        logits = logits[:, -keep_last:]
    return logits.float()
