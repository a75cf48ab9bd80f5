"""A multiple-choice cloze task built from held-out real text.

Item: the first half of a held-out quotation is the prompt; the options are its true second
half and `OPTIONS - 1` second halves of other held-out quotations of the same language. The
quotation is cut at the whitespace nearest its middle, so every option starts with that
whitespace. Deterministic (a seeded `random.Random` over the texts in the order given);
a quotation whose second half occurs in its own first half, or equals another option, is
skipped, so the answer never leaks into the prompt. Chance level is 1 / OPTIONS.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

OPTIONS = 4
# Quotations shorter than this have halves too short to tell apart; longer ones cost context.
MIN_CHARS = 40
MAX_CHARS = 320
CHANCE = 1.0 / OPTIONS


@dataclass(frozen=True)
class ClozeItem:
    """One question: score each option as the continuation of `prompt`; `answer` indexes the true one."""

    prompt: str
    options: tuple[str, ...]
    answer: int


def split_half(text: str) -> tuple[str, str] | None:
    """(first half, second half) cut at the whitespace nearest the middle; None without inner whitespace."""
    middle = len(text) / 2
    cuts = [m.start() for m in re.finditer(r"\s+", text) if 0 < m.start() < len(text) - 1]
    if not cuts:
        return None
    cut = min(cuts, key=lambda i: (abs(i - middle), i))
    return text[:cut], text[cut:]


def build_cloze(texts: Sequence[str], count: int, *, seed: int = 0) -> list[ClozeItem]:
    """Up to `count` items from `texts` (one language's held-out quotations), the same on every call."""
    halves = []
    for text in texts:
        text = text.strip()
        if MIN_CHARS <= len(text) <= MAX_CHARS and (pair := split_half(text)) and pair[1].strip() not in pair[0]:
            halves.append(pair)
    if len(halves) < OPTIONS:
        return []
    rng = random.Random(seed)
    items = []
    for index, (prompt, answer) in enumerate(halves):
        if len(items) == count:
            break
        others = [h[1] for i, h in enumerate(halves) if i != index and h[1] != answer and h[1].strip() not in prompt]
        distractors = sorted(set(others))
        if len(distractors) < OPTIONS - 1:
            continue
        options = rng.sample(distractors, OPTIONS - 1)
        position = rng.randrange(OPTIONS)
        options.insert(position, answer)
        items.append(ClozeItem(prompt, tuple(options), position))
    return items
