"""Deterministic PCA of 0/1 bit rows (docs/substrate.md, "Rendering", step 6), memory- and order-safe.

The fit (mean and axes) may cover only the first rows: the reference fits over its own
V rows, so rows pgt adds after them (byte fallback) are projected with that fit and
leave every reference row where the reference has it.

Why the result is the same bytes on every run, whatever the thread count:
- the bits are 0/1, so their Gram matrix XᵀX is accumulated exactly (float32 products of
  chunks of at most 2²⁴ rows are exact integers, summed in float64);
- centring (G − n·μμᵀ) and the eigendecomposition run in float64 on that exact input, on
  one BLAS thread (LAPACK's eigenvectors change with the thread count);
- each eigenvector's sign is fixed as scikit-learn's `svd_flip` does (its largest-magnitude
  entry positive);
- the projection runs in fixed row chunks on one BLAS thread: OpenBLAS picks its blocking,
  and so the order of the float32 sums, by the thread count (a test checks 1 against 2 threads).
"""

from __future__ import annotations

import numpy as np

GRAM_CHUNK_ROWS = 8192  # well below 2**24: float32 sums of 0/1 products stay exact
PROJECT_CHUNK_ROWS = 8192


def _chunks(rows: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def principal_components(bits: np.ndarray, dim: int, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean (float64 [D]) and the top `dim` principal axes (float64 [D, dim], sign-fixed columns)."""
    from tqdm.auto import tqdm

    count, columns = bits.shape
    gram = np.zeros((columns, columns), dtype=np.float64)
    for rows in tqdm(_chunks(count, GRAM_CHUNK_ROWS), desc="pca: gram", disable=not progress):
        chunk = bits[rows].astype(np.float32)
        gram += chunk.T @ chunk  # exact: integers below 2**24
    mean = bits.sum(axis=0, dtype=np.int64) / count
    gram -= count * np.outer(mean, mean)  # the scatter matrix of the centred rows
    from threadpoolctl import (
        threadpool_limits,  # only where substrates are built (not on a GPU image)
    )

    # One BLAS thread: LAPACK's eigenvectors depend on the thread count (so would the bytes),
    # and its threaded reduction only slows down when the cores are shared.
    with (
        threadpool_limits(limits=1, user_api="blas"),
        tqdm(total=1, desc=f"pca: eigh {columns}x{columns}", disable=not progress) as bar,
    ):
        _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
        bar.update()
    components = vectors[:, ::-1][:, :dim]
    pivots = np.abs(components).argmax(axis=0)
    components *= np.sign(components[pivots, np.arange(dim)])
    return mean, components


def pca_unit_rows(bits: np.ndarray, dim: int, *, fit_rows: int | None = None, progress: bool = False) -> np.ndarray:
    """Project mean-centred 0/1 rows onto the top `dim` principal axes of the first `fit_rows`
    rows (default: all); L2-normalise each row.

    A row whose projection is exactly zero (it equals the mean in every kept direction,
    e.g. when all rows are identical) stays the zero vector rather than becoming NaN.
    Returns float32 [len(bits), dim].
    """
    from tqdm.auto import tqdm

    fit_rows = len(bits) if fit_rows is None else fit_rows
    if not 1 <= fit_rows <= len(bits):
        raise ValueError(f"fit_rows {fit_rows} outside 1..{len(bits)}")
    mean, components = principal_components(bits[:fit_rows], dim, progress=progress)
    mean32 = mean.astype(np.float32)
    axes32 = np.ascontiguousarray(components, dtype=np.float32)
    out = np.empty((len(bits), dim), dtype=np.float32)
    from threadpoolctl import threadpool_limits

    # One BLAS thread here too: OpenBLAS's blocking (hence the float32 sums' order) follows the thread count.
    with threadpool_limits(limits=1, user_api="blas"):
        # The fitted rows are chunked on their own, so rows added after them change no fitted row's bytes.
        chunks = _chunks(fit_rows, PROJECT_CHUNK_ROWS) + [
            slice(rows.start + fit_rows, rows.stop + fit_rows)
            for rows in _chunks(len(bits) - fit_rows, PROJECT_CHUNK_ROWS)
        ]
        for rows in tqdm(chunks, desc="pca: project", disable=not progress):
            projected = (bits[rows].astype(np.float32) - mean32) @ axes32
            norms = np.sqrt(np.einsum("ij,ij->i", projected, projected, dtype=np.float64))
            out[rows] = projected / np.where(norms > 0, norms, 1.0)[:, None]
    return out
