"""Which split a document goes to (a hash of its text), and the sources read in chunks for the tokenizer.

`split_documents` gives back exactly the documents `pgt data prepare` puts into a split, so a model can
be scored on text it never trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgt.corpus.sources import ReadStats, Source, resolve_sources
from pgt.data.manifest import SPLITS, SourceRecord
from pgt.errors import PgtError

DEFAULT_VAL_FRACTION = 0.01
# Small corpora get at least this much validation text (capped at MAX_VAL_FRACTION of the corpus).
DEFAULT_MIN_VAL_BYTES = 100_000
MAX_VAL_FRACTION = 0.2


def split_of(text: str, threshold: float) -> str:
    """`validation` for documents whose text hash falls below `threshold`: stable when sources are added."""
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64
    return "validation" if value < threshold else "train"


def validation_threshold(val_fraction: float, min_val_bytes: int, known_bytes: int) -> float:
    """The hash threshold: `val_fraction`, raised for small corpora so validation gets ~`min_val_bytes`."""
    if val_fraction == 0 or known_bytes == 0:
        return val_fraction
    return max(val_fraction, min(MAX_VAL_FRACTION, min_val_bytes / known_bytes))


def source_record(identity: dict[str, Any], stats: ReadStats) -> SourceRecord:
    """The manifest entry of a source: its identity plus what reading it found."""
    record = {
        **identity,
        "documents": stats.documents,
        "text_bytes": stats.text_bytes,
        "replaced_bytes": stats.replaced_bytes,
        "conversations": stats.conversations,
    }
    if record["sha256"] is None:  # a dataset: hash and size of its documents' text
        record["sha256"], record["bytes"] = stats.hasher.hexdigest(), stats.text_bytes
    return SourceRecord.from_json(record)


@dataclass
class Chunk:
    """Consecutive pieces (of one or more sources), and where reading stands once they are written."""

    texts: list[str] = field(default_factory=list)
    ends: list[bool] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    # After this chunk: the source being read and how many of its pieces are done.
    position: tuple[int, int] = (0, 0)
    finished_sources: list[SourceRecord] = field(default_factory=list)


def assign_splits(source: Source, threshold: float, stats: ReadStats | None = None) -> Iterator[tuple[str, bool, str]]:
    """The source's pieces as `(text, ends_document, split)`; a document's split is that of its first piece."""
    split, at_document_start = "train", True
    for text, ends_document in source.pieces(stats):
        if at_document_start:
            split = split_of(text, threshold)
        at_document_start = ends_document
        yield text, ends_document, split


def iter_chunks(
    sources: Sequence[Source],
    identities: Sequence[dict[str, Any]],
    start: tuple[int, int],
    threshold: float,
    chunk_chars: int,
) -> Iterator[Chunk]:
    """Read the sources from `start` = (source, pieces done in it) on, in chunks of at most `chunk_chars`.

    Chunks run across source boundaries, so many small files still make large tokenizer batches.
    """
    chunk, size = Chunk(position=start), 0
    for index in range(start[0], len(sources)):
        stats = ReadStats()
        skip = start[1] if index == start[0] else 0
        for number, (text, ends_document, split) in enumerate(assign_splits(sources[index], threshold, stats), 1):
            if number <= skip:
                continue  # written before an interruption: read again only to rebuild the split and stats
            if chunk.texts and size + len(text) > chunk_chars:
                # A chunk holds at most chunk_chars (or one piece): tokenizer memory grows with the batch.
                chunk.position = (index, number - 1)
                yield chunk
                chunk, size = Chunk(position=chunk.position), 0
            chunk.texts.append(text)
            chunk.ends.append(ends_document)
            chunk.splits.append(split)
            size += len(text)
        chunk.finished_sources.append(source_record(identities[index], stats))
        chunk.position = (index + 1, 0)
    yield chunk


def split_documents(
    sources: Sequence[str],
    split: str,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    min_val_bytes: int = DEFAULT_MIN_VAL_BYTES,
    text_format: str = "auto",
    text_field: str = "text",
    hub_split: str = "train",
    language: str | None = None,
) -> Iterator[str]:
    """The whole documents that `prepare_token_data` with these arguments puts into `split`, in order.

    E.g. `split_documents(["default"], "validation")`: the held-out text of the default corpus,
    for scoring a model on documents it never trained on. With `language`, only the documents
    of sources tagged with it (`LANG=SOURCE`; the default corpus tags its own).
    """
    if split not in SPLITS:
        raise PgtError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    resolved = resolve_sources(list(sources), text_format=text_format, text_field=text_field, hub_split=hub_split)
    known_bytes = sum(source.size_on_disk() or 0 for source in resolved)
    threshold = validation_threshold(val_fraction, min_val_bytes, known_bytes)
    chosen = [source for source in resolved if language is None or source.language == language]
    if not chosen:
        have = sorted({source.language for source in resolved})
        raise PgtError(f"no source tagged with language {language!r} (have: {', '.join(have)}; tag one as LANG=SOURCE)")
    for source in chosen:
        parts: list[str] = []
        for text, ends_document, piece_split in assign_splits(source, threshold):
            if piece_split == split:
                parts.append(text)
                if ends_document:
                    yield "".join(parts)
                    parts = []


def held_out_documents(language: str | None = None, sources: Sequence[str] = ("default",)) -> Iterator[str]:
    """The validation documents of `sources` (the embedded corpus by default) in `language` (all if None).

    Exactly the text `pgt data prepare SOURCES` holds out with default settings, so a model
    trained on that token data is scored on documents it never saw.
    """
    return split_documents(sources, "validation", language=language)
