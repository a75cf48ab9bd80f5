"""`pgt data prepare`: a corpus -> uint32 token shards plus `manifest.json` (docs/data.md).

The pipeline streams documents from the sources in order, assigns each document to `train`
or `validation` by a hash of its text, tokenizes chunks of documents in worker processes
(results are written in submission order, so the output does not depend on `workers`) and
appends every document's ids followed by the eos id to the split's current shard.

Resumption: shards grow in a work directory beside the output. About once a second, between
chunks, the shards are synced and `progress.json` records how far the sources have been read
and how long each open shard is; a rerun of the same command truncates the shards to that point and carries on,
so its output is byte-identical to an uninterrupted run. The finished directory appears
atomically and the work directory is removed. The whole run holds the output's lock
(a second `prepare` of the same --out stops at once).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pgt.corpus.sources import local_inputs, resolve_sources
from pgt.data.encode import TokenizerInfo, load_tokenizer_info, tokenized
from pgt.data.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    SPLITS,
    Manifest,
    SplitRecord,
    SplitRule,
    TokenizerRecord,
)
from pgt.data.shards import Progress, ShardWriter
from pgt.data.splits import (
    DEFAULT_MIN_VAL_BYTES,
    DEFAULT_VAL_FRACTION,
    Chunk,
    iter_chunks,
    validation_threshold,
)
from pgt.errors import PgtError, SettingError
from pgt.io import (
    atomic_dir,
    output_lock,
    refuse_existing,
    refuse_overlap,
    remove_stale_temporaries,
)

PROGRESS_FILE = "progress.json"

DEFAULT_SHARD_TOKENS = 1 << 26  # 256 MiB of uint32
CHUNK_CHARS = 1 << 20
# Progress is recorded (shards synced, progress.json written) at most this often: syncing costs.
PROGRESS_INTERVAL_S = 1.0


# --------------------------------------------------------------------------- the pipeline


def prepare_token_data(
    sources: Sequence[str],
    tokenizer_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    min_val_bytes: int = DEFAULT_MIN_VAL_BYTES,
    workers: int = 1,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    text_field: str = "text",
    hub_split: str = "train",
    text_format: str = "auto",
    record_format: str = "auto",
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    chunk_chars: int = CHUNK_CHARS,
) -> Manifest:
    """Tokenize `sources` into the token data directory `out` and return its manifest.

    Rerunning an interrupted call with the same arguments resumes it; the result is identical
    to an uninterrupted run whatever `workers` is. `strict` makes invalid UTF-8 an error.
    `record_format` says how records become documents (pgt.corpus.chat: a text field, or a
    conversation rendered with the chat template).
    """
    out = Path(out)
    if not 0 <= val_fraction < 1:
        raise SettingError("val_fraction", f"must be in [0, 1), got {val_fraction}")
    if workers < 1 or shard_tokens < 1 or min_val_bytes < 0 or chunk_chars < 1:
        raise PgtError("workers, shard_tokens and chunk_chars must be positive and min_val_bytes not negative")
    refuse_overlap(out, [tokenizer_dir, *local_inputs(sources)])
    refuse_existing(out, overwrite=overwrite, marker=MANIFEST_FILE)
    with output_lock(out):
        remove_stale_temporaries(out.parent, out.name)
        return _prepare(
            sources,
            tokenizer_dir,
            out,
            val_fraction=val_fraction,
            min_val_bytes=min_val_bytes,
            workers=workers,
            shard_tokens=shard_tokens,
            overwrite=overwrite,
            progress=progress,
            chunk_chars=chunk_chars,
            resolve=dict(
                text_format=text_format,
                text_field=text_field,
                hub_split=hub_split,
                strict=strict,
                record_format=record_format,
            ),
        )


def _prepare(
    sources: Sequence[str],
    tokenizer_dir: str | os.PathLike,
    out: Path,
    *,
    val_fraction: float,
    min_val_bytes: int,
    workers: int,
    shard_tokens: int,
    overwrite: bool,
    progress: bool,
    chunk_chars: int,
    resolve: dict[str, Any],
) -> Manifest:
    """`prepare_token_data` under the output's lock."""
    tokenizer = load_tokenizer_info(tokenizer_dir)
    resolved = resolve_sources(list(sources), **resolve, chat_tokens=tokenizer.chat_tokens)
    identities = [source.identity() for source in resolved]
    known_bytes = sum(identity["bytes"] or 0 for identity in identities)
    threshold = validation_threshold(val_fraction, min_val_bytes, known_bytes)
    if all(identity["bytes"] is not None for identity in identities):  # a pool for one chunk only costs start-up
        workers = max(1, min(workers, math.ceil(known_bytes / chunk_chars)))
    settings = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "eos_id": tokenizer.eos_id,
        "shard_tokens": shard_tokens,
        "split": {"val_fraction": val_fraction, "min_val_bytes": min_val_bytes, "validation_threshold": threshold},
        "sources": identities,
    }
    work = out.parent / f".{out.name}.prepare-work"
    remove_stale_temporaries(work)  # progress.json's temporaries from a killed write
    state = _start_or_resume(work, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest())
    writers = {name: ShardWriter(work, name, shard_tokens, state.splits.get(name)) for name in SPLITS}
    try:
        chunks = iter_chunks(resolved, identities, (state.source, state.piece), threshold, chunk_chars)
        _run(chunks, tokenizer, writers, state, work, workers=workers, progress=progress, total_bytes=known_bytes)
        descriptions = {name: writer.close() for name, writer in writers.items()}
        _check_not_empty(descriptions, val_fraction, sources)
    except PgtError:
        # Bad input: nothing half-written may stay behind (an interruption, by contrast, keeps the work to resume).
        for writer in writers.values():
            writer.abandon()
        shutil.rmtree(work, ignore_errors=True)
        raise
    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        tokenizer=TokenizerRecord(tokenizer.path, tokenizer.fingerprint, tokenizer.vocab_size),
        eos_id=tokenizer.eos_id,
        shard_tokens=shard_tokens,
        split=SplitRule(**settings["split"]),
        sources=state.sources,
        splits=descriptions,
    )
    with atomic_dir(out, overwrite=overwrite, marker=MANIFEST_FILE) as tmp:
        for description in manifest.splits.values():
            for shard in description.shards:
                _link_or_copy(work / shard.file, tmp / shard.file)
        manifest.save(tmp / MANIFEST_FILE)
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (instant, same file system) where the file system allows it, else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _start_or_resume(work: Path, key: str) -> Progress:
    """The recorded progress of an interrupted run of the same command, or a fresh start."""
    progress_path = work / PROGRESS_FILE
    if progress_path.is_file():
        try:
            state = Progress.load(progress_path)
        except PgtError as exc:  # written by another pgt version: its work cannot be trusted
            print(f"note: {exc}; starting over", file=sys.stderr)
        else:
            if state.key == key:
                return state
            print(f"note: {work} belongs to a different command; starting over", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return Progress(key)


def _run(
    chunks: Iterator[Chunk],
    tokenizer: TokenizerInfo,
    writers: dict[str, ShardWriter],
    state: Progress,
    work: Path,
    *,
    workers: int,
    progress: bool,
    total_bytes: int,
) -> None:
    """Tokenize and write the chunks in order, recording progress about every PROGRESS_INTERVAL_S."""
    from tqdm import tqdm

    done_bytes = sum(writer.bytes for writer in writers.values())
    done_tokens = sum(writer.tokens for writer in writers.values())  # before a resumption
    started = saved = time.monotonic()
    with tqdm(
        total=total_bytes or None,
        initial=done_bytes,
        unit="B",
        unit_scale=True,
        desc="tokenizing",
        disable=None if progress else True,
    ) as bar:
        for chunk, encoded in tokenized(chunks, tokenizer, workers):
            for name, (ids, nbytes) in encoded.items():
                writers[name].write(ids)
                writers[name].bytes += nbytes
                bar.update(nbytes)
            for ends_document, name in zip(chunk.ends, chunk.splits, strict=True):
                writers[name].documents += ends_document
            state.sources.extend(chunk.finished_sources)
            state.source, state.piece = chunk.position
            if time.monotonic() - saved >= PROGRESS_INTERVAL_S:
                _save_progress(writers, state, work)
                saved = time.monotonic()
            tokens = sum(writer.tokens for writer in writers.values())
            rate = (tokens - done_tokens) / max(time.monotonic() - started, 1e-9)
            bar.set_postfix(tokens=f"{tokens:,}", tok_s=f"{rate:,.0f}", refresh=False)


def _save_progress(writers: dict[str, ShardWriter], state: Progress, work: Path) -> None:
    """Make everything written so far durable, then record how far that is."""
    for writer in writers.values():
        writer.sync()
    state.splits = {name: writer.state() for name, writer in writers.items()}
    state.save(work / PROGRESS_FILE)


def _check_not_empty(descriptions: dict[str, SplitRecord], val_fraction: float, sources: Sequence[str]) -> None:
    documents = sum(d.documents for d in descriptions.values())
    if documents == 0 or sum(d.tokens for d in descriptions.values()) == 0:
        raise PgtError(f"empty corpus: no documents in {' '.join(map(str, sources))} (empty files or empty texts)")
    advice = "use more documents, another --val-fraction, or --format lines to make every line a document"
    if descriptions["train"].tokens == 0:
        raise PgtError(f"all {documents} document(s) fell into the validation split; {advice}")
    if val_fraction > 0 and descriptions["validation"].tokens == 0:
        raise PgtError(f"the validation split is empty ({documents} document(s), all in train); {advice}")
