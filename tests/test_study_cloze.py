"""The study's cloze task builder on real held-out text: deterministic, answers never in the prompt."""

from __future__ import annotations

from pathlib import Path

from pgt.corpus.sources import iter_fortunes
from pgt.study.cloze import CHANCE, OPTIONS, build_cloze, split_half


def _quotations(corpus_files: list[Path], folder: str, count: int = 200) -> list[str]:
    files = [f for f in corpus_files if f.parent.name == folder]
    texts = []
    for path in files:
        texts += list(iter_fortunes(path))
        if len(texts) >= count:
            break
    return texts[:count]


def test_cloze_items_from_real_text(corpus_files: list[Path]) -> None:
    for folder in ("fortunes", "ru", "de"):
        texts = _quotations(corpus_files, folder)
        items = build_cloze(texts, 30, seed=0)
        assert len(items) == 30
        assert build_cloze(texts, 30, seed=0) == items  # deterministic
        stripped = {t.strip() for t in texts}
        for item in items:
            assert len(item.options) == OPTIONS and len(set(item.options)) == OPTIONS
            answer = item.options[item.answer]
            assert item.prompt + answer in stripped  # the true second half of a real quotation
            for option in item.options:
                assert option.strip() not in item.prompt  # no option, the answer included, leaks into the prompt
        positions = {item.answer for item in items}
        assert len(positions) > 1  # the answer is not always in one place
    assert CHANCE == 1 / OPTIONS


def test_split_half_cuts_at_whitespace_near_the_middle() -> None:
    first, second = split_half("one two three four")
    assert first + second == "one two three four"
    assert second.startswith(" ") and abs(len(first) - 9) <= 4
    assert split_half("unsplittable") is None


def test_a_quotation_repeating_its_half_is_skipped() -> None:
    echo = "ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha"
    others = [f"quotation number {i} says something different about topic {i * 7}" for i in range(6)]
    items = build_cloze([echo, *others], 10)
    assert all(not item.prompt.startswith("ha ha") for item in items)
    assert len(items) == len(others)
