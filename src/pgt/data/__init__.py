"""Corpora -> uint32 token shards with a manifest (`pgt data prepare`), and batches from them (docs/data.md).

Text is read by pgt.corpus (resolve_sources), the one corpus reader.

prepare_token_data(sources, substrate_dir, out)    build a token data directory; returns its Manifest
held_out_documents(language)                       the validation documents of the default corpus in a language
TokenData(out).train_batch(step, batch, seq, seed=...)   pure, rank-aware training windows
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.data.loader import TokenData
    from pgt.data.manifest import Manifest
    from pgt.data.prepare import prepare_token_data
    from pgt.data.splits import held_out_documents, split_documents

_EXPORTS = {
    "Manifest": "manifest",
    "TokenData": "loader",
    "held_out_documents": "splits",
    "prepare_token_data": "prepare",
    "split_documents": "splits",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
