"""`pgt substrate inspect`: how distinct a substrate's frozen rows are, beside random unit rows.

Reported for the rows in scope (every id, or with token data the ids that data uses):
  - groups of ids whose vectors are bit-identical (with their token texts) and, with token
    data, the share of the data's tokens those ids carry: a model cannot tell them apart;
  - each row's nearest-neighbour cosine (its distribution; over a seeded sample of query rows
    when there are more than `NEAREST_QUERIES`);
  - the mean pairwise cosine, (|Σ x̂|² − n) / (n (n − 1)) over unit rows x̂: 0 for random rows,
    large when the rows share an offset;
  - the participation ratio (Σ σ²)² / Σ σ⁴ of the rows' singular values: the effective
    number of dimensions they use (≈ d for random rows, near 1 for rows along one direction);
and the same figures for random unit rows of the same shape (seed 0), the reference point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pgt.records import Record
from pgt.substrate.store import Substrate
from pgt.substrate.trim import TokenIds

NEAREST_QUERIES = 4096  # rows whose nearest neighbour is searched (a seeded sample beyond this)
QUANTILES = {"min": 0.0, "p10": 0.1, "median": 0.5, "p90": 0.9, "max": 1.0}


@dataclass
class IdenticalGroup(Record):
    """Ids (in scope) whose rows are bit-identical."""

    WHAT = "identical group"
    ids: list[int]
    texts: list[str]
    data_tokens: int | None  # tokens of the data these ids carry (None without data)


@dataclass
class Geometry(Record):
    WHAT = "row geometry"
    rows: int
    mean_pairwise_cosine: float
    participation_ratio: float
    nearest_cosine: dict[str, float]  # QUANTILES of each row's highest cosine to another row
    nearest_queries: int  # rows whose nearest neighbour was searched


@dataclass
class SubstrateHealth(Record):
    """What `pgt substrate inspect` measures (also printed by `pgt study` and `pgt report`)."""

    WHAT = "substrate health"
    substrate: str
    fingerprint: str
    vocab_size: int
    dim: int
    scope: str  # which rows were measured
    data_tokens: int | None  # tokens of the data that chose the scope (None: every id)
    groups: list[IdenticalGroup]  # largest first (by data tokens, else by size)
    ids_in_groups: int
    data_share_in_groups: float | None  # share of the data's tokens on ids that share their vector
    glyph: Geometry
    random: Geometry  # random unit rows of the same shape

    def summary(self, groups: int = 8) -> list[str]:
        """Plain-text lines: the figures beside random rows, then the largest identical groups."""
        share = "" if self.data_share_in_groups is None else f", carrying {self.data_share_in_groups:.1%} of its tokens"
        lines = [
            f"{self.substrate} ({self.fingerprint[:19]}…): {self.vocab_size:,} ids at d = {self.dim}; "
            f"measured on {self.scope}",
            f"identical vectors: {len(self.groups):,} groups, {self.ids_in_groups:,} ids{share}",
            f"{'':26}{'these rows':>14}{'random rows':>14}",
        ]
        for label, ours, theirs in self.rows():
            lines.append(f"{label:<26}{ours:>14}{theirs:>14}")
        for group in self.groups[:groups]:
            carried = "" if group.data_tokens is None else f"  ({group.data_tokens:,} tokens)"
            lines.append(
                "  "
                + " ≡ ".join(repr(text) for text in group.texts[:6])
                + (f" … (+{len(group.texts) - 6})" if len(group.texts) > 6 else "")
                + carried
            )
        return lines

    def largest_groups(self, groups: int = 6) -> str:
        """The largest identical groups as one line of text: `'\\n' ≡ ' ' (382,819 tokens); …`."""
        return "; ".join(
            " ≡ ".join(repr(t) for t in g.texts[:4]) + ("" if g.data_tokens is None else f" ({g.data_tokens:,} tokens)")
            for g in self.groups[:groups]
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(figure, these rows, random rows) as text, for tables."""
        figures = [
            ("mean pairwise cosine", "mean_pairwise_cosine", "{:+.3f}"),
            ("participation ratio", "participation_ratio", "{:.1f}"),
        ]
        table = [
            (label, fmt.format(getattr(self.glyph, key)), fmt.format(getattr(self.random, key)))
            for label, key, fmt in figures
        ]
        table += [
            (
                f"nearest cosine {name}",
                f"{self.glyph.nearest_cosine[name]:+.3f}",
                f"{self.random.nearest_cosine[name]:+.3f}",
            )
            for name in QUANTILES
        ]
        return table


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def geometry(matrix: np.ndarray, seed: int = 0) -> Geometry:
    """The figures of the module docstring for the rows of `matrix`."""
    rows = unit_rows(matrix)
    n = len(rows)
    total = rows.sum(axis=0)
    squared = float((rows * rows).sum())
    mean_cosine = (float(total @ total) - squared) / (n * (n - 1)) if n > 1 else 0.0
    singular = np.linalg.svd(rows, compute_uv=False) ** 2
    ratio = float(singular.sum() ** 2 / (singular**2).sum()) if singular.any() else 0.0
    queries = (
        np.arange(n)
        if n <= NEAREST_QUERIES
        else np.sort(np.random.default_rng(seed).choice(n, NEAREST_QUERIES, replace=False))
    )
    nearest = np.empty(len(queries))
    for start in range(0, len(queries), 1024):
        chunk = queries[start : start + 1024]
        cosine = rows[chunk] @ rows.T
        cosine[np.arange(len(chunk)), chunk] = -np.inf  # not itself
        nearest[start : start + 1024] = cosine.max(axis=1) if n > 1 else 0.0
    quantiles = {name: float(np.quantile(nearest, q)) for name, q in QUANTILES.items()}
    return Geometry(n, mean_cosine, ratio, quantiles, len(queries))


def random_unit_matrix(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random unit rows (Gaussian directions) of `shape`: the frozen-random control's kind of matrix."""
    matrix = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def identical_groups(matrix: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """Groups (arrays of ids, ascending) of two or more `ids` whose rows are bit-identical."""
    contiguous = np.ascontiguousarray(matrix[ids])
    keys = contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * contiguous.shape[1]))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return [ids[np.flatnonzero(inverse == group)] for group in np.flatnonzero(counts > 1)]


def inspect_substrate(substrate_dir: str | os.PathLike, data: TokenIds | None = None) -> SubstrateHealth:
    """Measure the substrate at `substrate_dir` on every id, or on the ids token `data` (`TokenData`) uses."""
    substrate = Substrate.load(substrate_dir)
    matrix = substrate.embeddings.numpy()
    counts = data.id_counts(substrate.fingerprint, substrate.vocab_size) if data is not None else None
    if counts is None:
        ids, scope = np.arange(len(matrix)), "every id"
    else:
        ids, scope = np.flatnonzero(counts), f"the ids used by {data.path}"
    texts = substrate.tokenizer.convert_ids_to_tokens([int(i) for i in range(len(matrix))])
    groups = [
        IdenticalGroup(
            [int(i) for i in group],
            [texts[int(i)] for i in group],
            None if counts is None else int(counts[group].sum()),
        )
        for group in identical_groups(matrix, ids)
    ]
    groups.sort(key=lambda g: (-(g.data_tokens or 0), -len(g.ids), g.ids[0]))
    grouped = sum(len(g.ids) for g in groups)
    share = None if counts is None else sum(g.data_tokens or 0 for g in groups) / max(1, int(counts.sum()))
    rows = matrix[ids]
    return SubstrateHealth(
        str(substrate_dir),
        substrate.fingerprint,
        substrate.vocab_size,
        substrate.dim,
        scope,
        None if counts is None else int(counts.sum()),
        groups,
        grouped,
        share,
        geometry(rows),
        geometry(random_unit_matrix(rows.shape)),
    )
