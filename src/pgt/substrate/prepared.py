"""A substrate ready to train on: built if missing, then trimmed to the training text, each step reused.

`pgt demo` and `pgt study` both start from here (docs/trimming.md): a full bvv241-2-3 substrate
with n-grams mined from a corpus, cut to the ids the training text encodes to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pgt.substrate.layout import SMALL_FAMILY
from pgt.substrate.store import is_substrate


def ensure_trimmed(
    out: Path,
    full: Path,
    *,
    ngram_corpus: Sequence[str | Path],
    train_corpus: Sequence[str],
    dim: int,
    progress: bool,
    recentre: bool = False,
    trim: bool = True,
    log: Callable[[str], None] | None = None,
    corpus_name: str = "the training text",
) -> Path:
    """`out` when a previous call finished it (`full` may be gone by then); else `full` trimmed to
    `train_corpus` into `out` (rows `recentre`d if asked), after building `full` when it is missing
    (bvv241-2-3 at `dim`, n-grams mined from `ngram_corpus`). `full` itself when it is already
    trimmed or `trim` is off. `log` hears how long the build took and what the trim kept."""
    # Lazy: rendering needs Pillow and the trim torch; `pgt --help` imports this module through the demo.
    from pgt.substrate.build import build_substrate
    from pgt.substrate.trim import load_trim_record, trim_substrate

    say = log or (lambda _: None)
    if is_substrate(out):
        return out
    if not is_substrate(full):
        start = time.perf_counter()
        build_substrate(full, family=SMALL_FAMILY, corpus=[Path(p) for p in ngram_corpus], dim=dim, progress=progress)
        say(f"built {full} in {time.perf_counter() - start:.0f} s")
    if not trim or load_trim_record(full) is not None:
        return full
    start = time.perf_counter()
    record = trim_substrate(full, out, corpus=list(train_corpus), recentre=recentre)
    say(
        f"trimmed it to {corpus_name} in {time.perf_counter() - start:.0f} s: {record.vocab_size:,} of "
        f"{record.parent_vocab_size:,} ids ({record.corpus_ids:,} used by its {record.corpus_tokens:,} tokens, "
        f"{record.special_ids} named specials, {record.byte_ids} byte tokens for any other text) -> {out}"
    )
    return out
