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
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

from pgt.data.manifest import (
    DTYPE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    SPLITS,
    Manifest,
    ShardRecord,
    SourceRecord,
    SplitRecord,
    SplitRule,
    TokenizerRecord,
)
from pgt.corpus.sources import ReadStats, Source, local_inputs, resolve_sources
from pgt.errors import PgtError, one_line
from pgt.io import (
    atomic_dir,
    file_sha256,
    output_lock,
    refuse_existing,
    refuse_overlap,
    remove_stale_temporaries,
)
from pgt.records import Record

__all__ = ["DTYPE", "FORMAT", "FORMAT_VERSION", "MANIFEST_FILE", "SPLITS", "prepare_token_data", "split_documents"]

PROGRESS_FILE = "progress.json"

DEFAULT_VAL_FRACTION = 0.01
# Small corpora get at least this much validation text (capped at MAX_VAL_FRACTION of the corpus).
DEFAULT_MIN_VAL_BYTES = 100_000
MAX_VAL_FRACTION = 0.2
DEFAULT_SHARD_TOKENS = 1 << 26  # 256 MiB of uint32
CHUNK_CHARS = 1 << 20
# Progress is recorded (shards synced, progress.json written) at most this often: syncing costs.
PROGRESS_INTERVAL_S = 1.0


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class TokenizerInfo:
    """What the pipeline needs from the tokenizer directory."""

    path: str
    fingerprint: str
    eos_id: int
    vocab_size: int
    backend_json: str  # the fast tokenizer as transformers configured it; workers rebuild it from this
    chat_tokens: bool  # it has the chat template's special tokens (pgt.corpus.chat)


def load_tokenizer_info(tokenizer_dir: str | os.PathLike) -> TokenizerInfo:
    """Load DIR with `AutoTokenizer` and derive its fingerprint (substrate.json's, else sha256 of tokenizer.json)."""
    from transformers import AutoTokenizer

    from pgt.corpus.chat import has_chat_tokens
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    directory = Path(tokenizer_dir)
    if not directory.is_dir():
        raise PgtError(f"tokenizer directory not found: {directory}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise PgtError(f"cannot load a tokenizer from {directory}: {one_line(exc)}") from None
    if not tokenizer.is_fast:
        raise PgtError(f"tokenizer {directory} is not a fast (tokenizers-backed) tokenizer")
    if tokenizer.eos_token_id is None:
        raise PgtError(f"tokenizer {directory} has no eos token (documents are separated by it)")
    backend_json = tokenizer.backend_tokenizer.to_str()
    if (directory / SUBSTRATE_FILE).is_file():
        fingerprint = SubstrateMeta.load(directory / SUBSTRATE_FILE).fingerprint
    elif (directory / "tokenizer.json").is_file():
        fingerprint = "sha256:" + file_sha256(directory / "tokenizer.json")
    else:
        fingerprint = "sha256:" + hashlib.sha256(backend_json.encode()).hexdigest()
    return TokenizerInfo(
        str(directory.resolve()), fingerprint, int(tokenizer.eos_token_id), len(tokenizer), backend_json,
        has_chat_tokens(tokenizer),
    )


# Set in each worker process (and in the main process when workers == 1).
_ENCODER: Any = None
_EOS_ID: int = 0


def _init_encoder(backend_json: str, eos_id: int, parent_pid: int | None = None) -> None:
    """Build the encoder; in a worker process (`parent_pid` given) also tie the worker's life to the parent's."""
    global _ENCODER, _EOS_ID
    if parent_pid is not None:
        # One process per core already: the tokenizer's own threads would oversubscribe.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    from tokenizers import Tokenizer

    _ENCODER = Tokenizer.from_str(backend_json)
    _EOS_ID = eos_id


def _exit_with_parent(parent_pid: int) -> None:
    """A SIGKILLed main process cannot stop its workers, so each worker watches for its parent's death."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _encode_chunk(texts: list[str], ends: list[bool], splits: list[str]) -> dict[str, tuple[np.ndarray, int]]:
    """Tokenize one chunk: per split, the concatenated ids (eos after each finished document) and UTF-8 bytes."""
    encodings = _ENCODER.encode_batch_fast(texts, add_special_tokens=False)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    nbytes = dict.fromkeys(SPLITS, 0)
    eos = np.array([_EOS_ID], dtype=DTYPE)
    for text, ends_document, split, encoding in zip(texts, ends, splits, encodings, strict=True):
        parts[split].append(np.asarray(encoding.ids, dtype=DTYPE))
        if ends_document:
            parts[split].append(eos)
        nbytes[split] += len(text.encode("utf-8"))
    return {name: (np.concatenate(parts[name]) if parts[name] else np.empty(0, DTYPE), nbytes[name]) for name in SPLITS}


# --------------------------------------------------------------------------- shards


@dataclass
class WriterState(Record):
    """How far one split's shards are written: finished shards, and the open one's length."""

    WHAT: ClassVar[str] = "token data progress of a split"

    finished: list[ShardRecord] = field(default_factory=list)
    open_tokens: int = 0
    bytes: int = 0
    documents: int = 0


@dataclass
class Progress(Record):
    """`progress.json` in the work directory: where an interrupted run of the command `key` stands."""

    WHAT: ClassVar[str] = "token data progress file"

    key: str
    source: int = 0  # the source being read
    piece: int = 0  # pieces of it already written
    sources: list[SourceRecord] = field(default_factory=list)  # the sources read completely
    splits: dict[str, WriterState] = field(default_factory=dict)


class ShardWriter:
    """Appends uint32 ids to `{split}-00000.bin`, … of at most `shard_tokens` ids each."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, state: WriterState | None = None) -> None:
        self.directory, self.split, self.shard_tokens = directory, split, shard_tokens
        state = state or WriterState()
        self.finished = list(state.finished)
        self.open_tokens, self.bytes, self.documents = state.open_tokens, state.bytes, state.documents
        self._hash = hashlib.sha256()
        self._handle: BinaryIO | None = None
        self._reopen()

    def _name(self, index: int) -> str:
        return f"{self.split}-{index:05d}.bin"

    def _reopen(self) -> None:
        """Open the current shard, cut back to the recorded length; drop shards written after it."""
        index = len(self.finished)
        for stale in self.directory.glob(f"{self.split}-*.bin"):
            if int(stale.stem.rsplit("-", 1)[1]) > index:
                stale.unlink()
        path = self.directory / self._name(index)
        handle = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 (kept open across writes)
        handle.truncate(self.open_tokens * DTYPE.itemsize)
        # The kept prefix feeds the running hash: a resumed shard's sha256 equals an uninterrupted one's.
        handle.seek(0)
        self._hash = hashlib.file_digest(handle, "sha256")
        handle.seek(0, os.SEEK_END)
        self._handle = handle

    def write(self, ids: np.ndarray) -> None:
        while ids.size:
            take = ids[: self.shard_tokens - self.open_tokens]
            data = take.tobytes()
            self._handle.write(data)
            self._hash.update(data)
            self.open_tokens += take.size
            ids = ids[take.size :]
            if self.open_tokens == self.shard_tokens:
                self._finish_shard()
                self._reopen()

    def _finish_shard(self) -> None:
        self._handle.close()
        self.finished.append(ShardRecord(self._name(len(self.finished)), self.open_tokens, self._hash.hexdigest()))
        self.open_tokens = 0

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def abandon(self) -> None:
        """Close the open shard without finishing it (the work directory is about to be removed)."""
        self._handle.close()

    def state(self) -> WriterState:
        return WriterState(list(self.finished), self.open_tokens, self.bytes, self.documents)

    @property
    def tokens(self) -> int:
        return sum(shard.tokens for shard in self.finished) + self.open_tokens

    def close(self) -> SplitRecord:
        """Finish the last shard (dropping it if empty) and describe the split for the manifest."""
        if self.open_tokens:
            self._finish_shard()
        else:
            self._handle.close()
            (self.directory / self._name(len(self.finished))).unlink()
        return SplitRecord(self.finished, self.tokens, self.bytes, self.documents)


# --------------------------------------------------------------------------- split and chunks


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
    record = {**identity, "documents": stats.documents, "text_bytes": stats.text_bytes,
              "replaced_bytes": stats.replaced_bytes, "conversations": stats.conversations}  # fmt: skip
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


def assign_splits(
    source: Source, threshold: float, stats: ReadStats | None = None
) -> Iterator[tuple[str, bool, str]]:
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
        raise PgtError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if workers < 1 or shard_tokens < 1 or min_val_bytes < 0 or chunk_chars < 1:
        raise PgtError("--workers and --shard-tokens must be positive and --min-val-bytes not negative")
    refuse_overlap(out, [tokenizer_dir, *local_inputs(sources)])
    refuse_existing(out, overwrite=overwrite, marker=MANIFEST_FILE)
    with output_lock(out):
        remove_stale_temporaries(out.parent, out.name)
        return _prepare(
            sources, tokenizer_dir, out, val_fraction=val_fraction, min_val_bytes=min_val_bytes, workers=workers,
            shard_tokens=shard_tokens, overwrite=overwrite, progress=progress, chunk_chars=chunk_chars,
            resolve=dict(text_format=text_format, text_field=text_field, hub_split=hub_split, strict=strict,
                         record_format=record_format),
        )  # fmt: skip


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
        for chunk, encoded in _tokenized(chunks, tokenizer, workers):
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


def _tokenized(chunks: Iterator[Chunk], tokenizer: TokenizerInfo, workers: int) -> Iterator[tuple[Chunk, dict]]:
    """(chunk, its encoding) in chunk order; with several workers at most 2 chunks per worker are in flight."""
    if workers == 1:
        _init_encoder(tokenizer.backend_json, tokenizer.eos_id)
        for chunk in chunks:
            yield chunk, _encode_chunk(chunk.texts, chunk.ends, chunk.splits)
        return
    # spawn: a forked copy of a process whose tokenizer has started threads can deadlock.
    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_encoder,
        initargs=(tokenizer.backend_json, tokenizer.eos_id, os.getpid()),
    )
    pending: deque[tuple[Chunk, Future]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(_encode_chunk, chunk.texts, chunk.ends, chunk.splits)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_not_empty(descriptions: dict[str, SplitRecord], val_fraction: float, sources: Sequence[str]) -> None:
    documents = sum(d.documents for d in descriptions.values())
    if documents == 0 or sum(d.tokens for d in descriptions.values()) == 0:
        raise PgtError(f"empty corpus: no documents in {' '.join(map(str, sources))} (empty files or empty texts)")
    advice = "use more documents, another --val-fraction, or --format lines to make every line a document"
    if descriptions["train"].tokens == 0:
        raise PgtError(f"all {documents} document(s) fell into the validation split; {advice}")
    if val_fraction > 0 and descriptions["validation"].tokens == 0:
        raise PgtError(f"the validation split is empty ({documents} document(s), all in train); {advice}")
