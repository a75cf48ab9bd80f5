"""Weighted mixtures of token data directories: `--data NAME=DIR:WEIGHT`, repeated (docs/data.md, "Mixtures").

`pgt grow` and `pgt tune` take either one token data directory (`--data DIR`, exactly as
before) or several named, weighted ones, e.g. `--data wiki=runs/wiki:0.9 --data sft=runs/sft:0.1`.
Weights are relative (normalised to sum to 1) and must be positive numbers. Every source must
have been prepared with the same tokenizer: the substrate's fingerprint.

Which source a training row comes from is a pure function of the seed and the row's global
index g (over all steps and ranks): the point frac(u + g·α) of a golden-ratio (Weyl)
sequence, u drawn from the seed, falls into one source's share of [0, 1). Such a sequence
fills every share in proportion to its length with an error of a few rows over any run, so
a 0.9/0.1 mixture draws 90 % / 10 % of its rows at every length, and a resumed run, or
the same run on another number of processes, draws exactly the same rows. The windows
within a source are drawn as `TokenData.train_batch` draws them, from `[seed, step, source]`.
A source smaller than its share of the budget is simply drawn from again (more epochs);
the trainer counts the tokens drawn from each source (`rows_per_source`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pgt.data.loader import TokenData
from pgt.data.manifest import DataFingerprint
from pgt.errors import PgtError
from pgt.records import Record

if TYPE_CHECKING:
    import torch

DATA_SPEC = "NAME=DIR:WEIGHT"
BARE_NAME = "data"  # the one source of a plain `--data DIR`
_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]{0,63})=(.+)$")
_ALPHA = (math.sqrt(5) - 1) / 2  # the golden ratio's fractional part: the most evenly spread Weyl sequence
_OFFSET_STREAM = 0x6D6978  # separates the offset's draw from the window draws of the same seed


@dataclass
class MixtureSource(Record):
    """One source of a mixture: its name, token data directory and share of the training rows."""

    WHAT = "mixture source"
    name: str
    path: str
    weight: float  # normalised: the weights of a mixture sum to 1


def is_bare(specs: str | Sequence[str] | None) -> bool:
    """Whether `specs` is one plain token data directory (no name, no weight)."""
    return isinstance(specs, str)


def normalize_specs(specs: str | Sequence[str] | None) -> str | list[str] | None:
    """The config value of `--data`: one plain directory as a string (as before mixtures), else the list."""
    if specs is None or isinstance(specs, str):
        return specs
    specs = [str(spec) for spec in specs]
    if len(specs) == 1 and not _is_named(specs[0]):
        return specs[0]
    return specs


def _is_named(spec: str) -> bool:
    return bool(_NAMED.match(spec)) and not os.path.exists(spec)


def parse_mixture(specs: str | Sequence[str]) -> list[MixtureSource]:
    """`DIR`, or one or more `NAME=DIR:WEIGHT`, as sources with normalised weights; PgtError on bad input."""
    specs = normalize_specs(specs)
    if not specs:
        raise PgtError("--data is required (on the command line or in the config file)")
    if isinstance(specs, str):
        return [MixtureSource(BARE_NAME, specs, 1.0)]
    named: list[tuple[str, str, float]] = []
    for spec in specs:
        match = _NAMED.match(spec)
        if not match or os.path.exists(spec):
            raise PgtError(
                f"--data {spec}: several --data sources need {DATA_SPEC} each "
                "(e.g. --data wiki=runs/wiki:0.9 --data sft=runs/sft:0.1)"
            )
        name, rest = match.groups()
        path, colon, text = rest.rpartition(":")
        if not colon or not path:
            raise PgtError(f"--data {spec}: expected {DATA_SPEC} (a weight after the last ':')")
        try:
            weight = float(text)
        except ValueError:
            raise PgtError(f"--data {spec}: the weight {text!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise PgtError(f"--data {spec}: the weight must be a positive number (got {text})")
        if name in {n for n, _, _ in named}:
            raise PgtError(f"--data {spec}: the name {name!r} is given twice")
        named.append((name, path, weight))
    total = sum(weight for _, _, weight in named)
    return [MixtureSource(name, path, weight / total) for name, path, weight in named]


class TokenMixture:
    """Training batches drawn from one or more token data directories by weight (see the module docstring)."""

    def __init__(self, specs: str | Sequence[str], *, verify: bool = False) -> None:
        self.sources = parse_mixture(specs)
        self.bare = is_bare(normalize_specs(specs))
        self.data = [TokenData(source.path, verify=verify) for source in self.sources]
        first = self.data[0]
        for source, data in zip(self.sources[1:], self.data[1:], strict=True):
            if data.tokenizer_fingerprint != first.tokenizer_fingerprint or data.eos_id != first.eos_id:
                raise PgtError(
                    f"--data {source.name}: {data.path} was prepared with tokenizer "
                    f"{data.tokenizer_fingerprint[:19]}…, "
                    f"but {self.sources[0].name} ({first.path}) with {first.tokenizer_fingerprint[:19]}…; every source "
                    "of a mixture must be prepared with the same substrate"
                )
        self._bounds = np.cumsum([source.weight for source in self.sources])
        self._bounds[-1] = 1.0  # rounding must not leave a gap at the top

    @property
    def names(self) -> list[str]:
        return [source.name for source in self.sources]

    @property
    def paths(self) -> list[str]:
        return [source.path for source in self.sources]

    @property
    def eos_id(self) -> int:
        return self.data[0].eos_id

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.data[0].tokenizer_fingerprint

    def check_tokenizer(self, fingerprint: str) -> None:
        """PgtError unless every source was prepared with the tokenizer of this fingerprint (the substrate's)."""
        for source, data in zip(self.sources, self.data, strict=True):
            try:
                data.check_tokenizer(fingerprint)
            except PgtError as exc:
                raise PgtError(str(exc) if self.bare else f"--data {source.name}: {exc}") from None

    def fingerprint(self) -> DataFingerprint:
        """`TokenData.fingerprint` over every source: one source's own, unchanged (as before mixtures);
        several under their names, shards as `NAME/SHARD` and the digest over each name and its digest."""
        if len(self.data) == 1:
            return self.data[0].fingerprint()
        digest = hashlib.sha256()
        shards: dict[str, list[int]] = {}
        for source, data in zip(self.sources, self.data, strict=True):
            own = data.fingerprint()
            digest.update(f"{source.name}\t{own.sha256}\n".encode())
            shards.update({f"{source.name}/{file}": stat for file, stat in own.shards.items()})
        return DataFingerprint(sha256=digest.hexdigest(), shards=shards)

    def changed_shards(self, recorded: DataFingerprint) -> list[str]:
        """`TokenData.changed_shards` over every source, against the `recorded` fingerprint of this mixture."""
        if len(self.data) == 1:
            return self.data[0].changed_shards(recorded)
        changed = []
        for source, data in zip(self.sources, self.data, strict=True):
            prefix = f"{source.name}/"
            own = DataFingerprint(
                sha256="",
                shards={
                    file.removeprefix(prefix): stat for file, stat in recorded.shards.items() if file.startswith(prefix)
                },
            )
            changed += [prefix + file for file in data.changed_shards(own)]
        return changed

    def assign(self, step: int, total: int, *, seed: int) -> np.ndarray:
        """The source index of each of the `total` global rows of micro-batch `step`."""
        offset = float(np.random.default_rng([seed, _OFFSET_STREAM]).random())
        rows = np.arange(step * total, (step + 1) * total, dtype=np.float64)
        return np.searchsorted(self._bounds, np.mod(offset + rows * _ALPHA, 1.0), side="right")

    def rows_per_source(self, step: int, total: int, *, seed: int) -> list[int]:
        """How many of micro-batch `step`'s `total` global rows each source gives."""
        return np.bincount(self.assign(step, total, seed=seed), minlength=len(self.sources)).tolist()

    def train_batch(
        self, step: int, batch_size: int, seq_len: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> torch.Tensor:
        """Like `TokenData.train_batch` (the same for one source): LongTensor [batch_size, seq_len + 1]."""
        import torch

        if len(self.data) == 1:
            return self.data[0].train_batch(step, batch_size, seq_len, seed=seed, rank=rank, world_size=world_size)
        if not 0 <= rank < world_size or batch_size < 1 or step < 0:
            raise PgtError(f"bad batch request: step {step}, batch_size {batch_size}, rank {rank} of {world_size}")
        total = batch_size * world_size
        which = self.assign(step, total, seed=seed)
        rows = np.empty((total, seq_len + 1), dtype=np.int64)
        for index, (source, data) in enumerate(zip(self.sources, self.data, strict=True)):
            chosen = np.flatnonzero(which == index)
            split = data.splits["train"]
            starts = split.tokens - seq_len
            if seq_len < 1 or starts < 1:
                raise PgtError(
                    f"--data {source.name}: the train split of {data.path} has {split.tokens} tokens, too "
                    f"few for sequences of {seq_len} (+1) tokens"
                )
            if not len(chosen):
                continue
            rng = np.random.default_rng([seed, step, index])
            for row, start in zip(
                chosen, rng.choice(starts, size=len(chosen), replace=starts < len(chosen)), strict=True
            ):
                rows[row] = split.read(int(start), seq_len + 1)
        return torch.from_numpy(rows[rank * batch_size : (rank + 1) * batch_size])

    def epochs(self, tokens: dict[str, int]) -> dict[str, float]:
        """Passes over each source's training split that `tokens` (drawn per source name) make."""
        return {
            source.name: tokens.get(source.name, 0) / data.train_tokens
            for source, data in zip(self.sources, self.data, strict=True)
        }


__all__ = ["BARE_NAME", "DATA_SPEC", "MixtureSource", "TokenMixture", "is_bare", "normalize_specs", "parse_mixture"]
