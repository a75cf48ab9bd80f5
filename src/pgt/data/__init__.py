"""Corpora -> uint32 token shards with a manifest (`pgt data prepare`), and batches from them.

prepare_token_data(sources, tokenizer_dir, out)   build a token data directory
TokenData(out).train_batch(step, batch, seq, seed=...)   pure, rank-aware training windows
TokenData(out).validation_batches(batch, seq)      fixed validation windows (bits per byte)
"""

from pgt.data.loader import TokenData
from pgt.data.prepare import prepare_token_data

__all__ = ["TokenData", "prepare_token_data"]
