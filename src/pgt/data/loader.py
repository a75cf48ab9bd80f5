"""Reading a token data directory for training and evaluation.

`TokenData(path)` checks the manifest against the shards and memory-maps them, so a corpus of
any size costs no memory. Training batches are a pure function of (step, seed, rank,
world_size): a resumed run, or the same run on another number of processes, sees exactly the
same windows. Validation batches are fixed contiguous windows. Every window read is checked
against the tokenizer's vocabulary, so damaged or foreign shards stop with a one-line error
instead of an index error deep inside the model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pgt.data.manifest import (
    DTYPE,
    MANIFEST_FILE,
    SPLITS,
    DataFingerprint,
    Manifest,
    SplitRecord,
)
from pgt.errors import PgtError
from pgt.io import file_sha256

if TYPE_CHECKING:
    import torch

COUNT_CHUNK = 1 << 24  # tokens counted at a time by `id_counts`


class TokenSplit:
    """One split's shards as a single virtual array of token ids."""

    def __init__(self, directory: Path, name: str, description: SplitRecord, vocab_size: int, *, verify: bool) -> None:
        self.name, self.directory, self.vocab_size = name, directory, vocab_size
        self.bytes = description.bytes
        self.documents = description.documents
        self._shards: list[np.ndarray] = []
        for shard in description.shards:
            path = directory / shard.file
            expected = shard.tokens * DTYPE.itemsize
            if not path.is_file():
                raise PgtError(f"token data {directory}: shard {shard.file} is missing")
            if path.stat().st_size != expected:
                raise PgtError(
                    f"token data {directory}: shard {shard.file} has {path.stat().st_size} bytes, "
                    f"the manifest says {expected}; it was truncated or altered"
                )
            if verify and file_sha256(path) != shard.sha256:
                raise PgtError(f"token data {directory}: shard {shard.file} does not match its sha256")
            self._shards.append(np.memmap(path, dtype=DTYPE, mode="r") if expected else np.empty(0, DTYPE))
            if verify and expected:
                self._check_ids(self._shards[-1], shard.file)
        self._offsets = np.cumsum([0] + [len(shard) for shard in self._shards])
        self.tokens = int(self._offsets[-1])
        if self.tokens != description.tokens:
            raise PgtError(
                f"token data {directory}: {name} shards hold {self.tokens} tokens, "
                f"the manifest says {description.tokens}"
            )

    def _check_ids(self, ids: np.ndarray, where: str, start: int = 0) -> None:
        """Every id below the vocabulary size; the error names the first bad one and its position."""
        if ids.size and int(ids.max()) >= self.vocab_size:
            first = int(np.argmax(ids >= self.vocab_size))
            raise PgtError(
                f"token data {self.directory}: {where} holds token id {int(ids[first])} at token {start + first}, "
                f"beyond the tokenizer's {self.vocab_size} ids; the shards were altered or written with another "
                "tokenizer (prepare again)"
            )

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) across shard boundaries, as int64."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard = int(np.searchsorted(self._offsets, start, side="right")) - 1
        while filled < length:
            local = start + filled - int(self._offsets[shard])
            take = min(length - filled, len(self._shards[shard]) - local)
            out[filled : filled + take] = self._shards[shard][local : local + take]
            filled += take
            shard += 1
        self._check_ids(out, f"the {self.name} split", start)
        return out


class TokenData:
    """A prepared token data directory (`pgt data prepare`): batches for training and validation."""

    def __init__(self, path: str | os.PathLike, *, verify: bool = False) -> None:
        """Load and check `path`; with `verify`, also check every shard's sha256 (reads all data)."""
        self.path = Path(path)
        if not self.path.is_dir():
            raise PgtError(f"token data directory not found: {self.path}")
        self.manifest = Manifest.read(self.path)
        missing = [name for name in SPLITS if name not in self.manifest.splits]
        if missing:
            raise PgtError(f"token data manifest {self.path / MANIFEST_FILE} lacks the split(s) {', '.join(missing)}")
        vocab_size = self.manifest.tokenizer.vocab_size
        self.splits = {
            name: TokenSplit(self.path, name, self.manifest.splits[name], vocab_size, verify=verify) for name in SPLITS
        }

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.manifest.tokenizer_fingerprint

    @property
    def eos_id(self) -> int:
        return self.manifest.eos_id

    @property
    def train_tokens(self) -> int:
        return self.splits["train"].tokens

    @property
    def validation_tokens(self) -> int:
        return self.splits["validation"].tokens

    def fingerprint(self) -> DataFingerprint:
        """The data's identity from its manifest (each shard's checksum included) and its shards' sizes and
        modification times, so that a resume can tell re-prepared or edited data from the data it trained on."""
        digest = hashlib.sha256(f"{self.tokenizer_fingerprint}\n{self.eos_id}\n".encode())
        shards = {}
        for name in SPLITS:
            for shard in self.manifest.splits[name].shards:
                digest.update(f"{name}\t{shard.file}\t{shard.tokens}\t{shard.sha256}\n".encode())
                stat = (self.path / shard.file).stat()
                shards[shard.file] = [stat.st_size, stat.st_mtime_ns]
        return DataFingerprint(sha256=digest.hexdigest(), shards=shards)

    def changed_shards(self, recorded: DataFingerprint) -> list[str]:
        """Shards of the same manifest whose bytes no longer match their checksum (only those whose size or
        modification time moved since `recorded` are read)."""
        now = self.fingerprint().shards
        checksums = {s.file: s.sha256 for name in SPLITS for s in self.manifest.splits[name].shards}
        return [
            file
            for file, stat in now.items()
            if recorded.shards.get(file) != stat and file_sha256(self.path / file) != checksums[file]
        ]

    def check_tokenizer(self, fingerprint: str) -> None:
        """Raise PgtError unless the data was tokenized with the tokenizer of this fingerprint."""
        if fingerprint != self.tokenizer_fingerprint:
            raise PgtError(
                f"token data {self.path} was prepared with tokenizer {self.tokenizer_fingerprint[:19]}…, "
                f"not {fingerprint[:19]}…; prepare it again with this substrate's tokenizer"
            )

    def id_counts(self, fingerprint: str, vocab_size: int) -> np.ndarray:
        """How often each id occurs in both splits, after checking the data was made with tokenizer `fingerprint`."""
        self.check_tokenizer(fingerprint)
        counts = np.zeros(vocab_size, dtype=np.int64)
        for split in self.splits.values():
            for start in range(0, split.tokens, COUNT_CHUNK):
                counts += np.bincount(split.read(start, min(COUNT_CHUNK, split.tokens - start)), minlength=vocab_size)
        return counts

    def train_batch(
        self, step: int, batch_size: int, seq_len: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> torch.Tensor:
        """Random windows of `seq_len + 1` training tokens: LongTensor [batch_size, seq_len + 1].

        The windows of all ranks are one draw from `default_rng([seed, step])` of
        `batch_size * world_size` distinct start positions; rank r takes rows
        [r * batch_size, (r + 1) * batch_size). So ranks never share a window and K processes
        together see exactly the batch one process sees with a K times larger batch.
        """
        import torch

        if not 0 <= rank < world_size or batch_size < 1 or step < 0:
            raise PgtError(f"bad batch request: step {step}, batch_size {batch_size}, rank {rank} of {world_size}")
        split = self.splits["train"]
        starts = split.tokens - seq_len  # number of possible window positions
        if seq_len < 1 or starts < 1:
            raise PgtError(
                f"token data {self.path}: the train split has {split.tokens} tokens, too few for "
                f"sequences of {seq_len} (+1) tokens; use a shorter sequence or a larger corpus"
            )
        total = batch_size * world_size
        rng = np.random.default_rng([seed, step])
        chosen = rng.choice(starts, size=total, replace=starts < total)
        mine = chosen[rank * batch_size : (rank + 1) * batch_size]
        return torch.from_numpy(np.stack([split.read(int(start), seq_len + 1) for start in mine]))
