"""`manifest.json` of a token data directory: one typed record for its writer and every reader.

docs/data.md ("Token data directory") describes each field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from pgt.errors import PgtError
from pgt.records import Record

FORMAT = "pgt-token-data"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "validation")
DTYPE = np.dtype("<u4")
SPLIT_METHOD = "sha256(document text) < validation_threshold"


@dataclass
class ShardRecord(Record):
    WHAT: ClassVar[str] = "token data shard"

    file: str
    tokens: int
    sha256: str

    def check(self, where: str) -> None:
        """A shard is a file directly inside the data directory: no path may lead elsewhere."""
        if not self.file or self.file in (".", "..") or "/" in self.file or "\\" in self.file or "\0" in self.file:
            raise PgtError(f"{where}: file {self.file!r} is not a file name inside the token data directory")
        if self.tokens < 0:
            raise PgtError(f"{where}: tokens is {self.tokens}, a count cannot be negative")


@dataclass
class SplitRecord(Record):
    """One split: its shards in order, and the tokens, UTF-8 bytes of text and documents they hold."""

    WHAT: ClassVar[str] = "token data split"

    shards: list[ShardRecord]
    tokens: int
    bytes: int
    documents: int


@dataclass
class SourceRecord(Record):
    """One source as read: its identity (`Source.identity`) and what reading it found."""

    WHAT: ClassVar[str] = "token data source"

    path: str
    format: str
    bytes: int  # the file's size; for datasets the UTF-8 bytes of their documents
    sha256: str  # the file's bytes; for datasets the documents' text
    documents: int
    text_bytes: int = 0  # UTF-8 bytes in documents (bytes - text_bytes = separators dropped)
    replaced_bytes: int = 0  # invalid UTF-8 bytes read as U+FFFD
    language: str = "xx"
    config: str | None = None
    hub_split: str | None = None
    text_field: str | None = None
    record_format: str | None = None  # records: auto, text or a chat format (pgt.corpus.chat)
    conversations: int = 0  # documents rendered from chat or instruction records


@dataclass
class TokenizerRecord(Record):
    WHAT: ClassVar[str] = "token data tokenizer"

    path: str
    fingerprint: str
    vocab_size: int


@dataclass
class SplitRule(Record):
    """How documents were assigned to validation: a hash of their text below the threshold."""

    WHAT: ClassVar[str] = "token data split rule"

    val_fraction: float
    min_val_bytes: int
    validation_threshold: float
    method: str = SPLIT_METHOD


@dataclass
class Manifest(Record):
    WHAT: ClassVar[str] = "token data manifest"

    format: Literal["pgt-token-data"]
    format_version: Literal[1]
    tokenizer: TokenizerRecord
    eos_id: int
    shard_tokens: int
    split: SplitRule
    sources: list[SourceRecord]
    splits: dict[str, SplitRecord]
    dtype: Literal["uint32"] = "uint32"
    byte_order: Literal["little"] = "little"

    @property
    def tokenizer_fingerprint(self) -> str:
        """The tokenizer's fingerprint. Manifests before this one repeated it as a top-level key, ignored on load."""
        return self.tokenizer.fingerprint

    @property
    def tokens(self) -> int:
        return sum(split.tokens for split in self.splits.values())

    def check(self, where: str) -> None:
        if not 0 <= self.eos_id < self.tokenizer.vocab_size:
            raise PgtError(
                f"{where}: eos_id {self.eos_id} is not an id of the tokenizer's {self.tokenizer.vocab_size:,}"
            )

    @classmethod
    def read(cls, directory: str | os.PathLike) -> Manifest:
        """The manifest of the token data directory `directory` (one-line PgtError if missing or ill-typed)."""
        return cls.load(Path(directory) / MANIFEST_FILE)


@dataclass
class DataFingerprint(Record):
    """What a run trained on (`run.json`): the data's identity, and where its shards stood on disk."""

    WHAT: ClassVar[str] = "token data fingerprint"

    sha256: str  # over the tokenizer, eos id and every shard's name, tokens and sha256 (TokenData.fingerprint)
    shards: dict[str, list[int]]  # shard file -> [size, mtime_ns]: a changed one has its checksum read again


def is_token_data(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds finished token data: it is published atomically, so its manifest present means
    complete (it may still be damaged; `TokenData` checks)."""
    return (Path(directory) / MANIFEST_FILE).is_file()
