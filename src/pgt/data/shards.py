"""Token shards as `pgt data prepare` grows them: `ShardWriter` appends ids to `{split}-00000.bin`, …, and
`progress.json` (`Progress`) records how far they are written, so an interrupted run resumes byte-identically."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

import numpy as np

from pgt.data.manifest import DTYPE, ShardRecord, SourceRecord, SplitRecord
from pgt.records import Record


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
