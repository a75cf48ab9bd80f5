"""`TokenData`: batches are real windows of the token stream, pure functions of their arguments,
split across ranks without overlap, and a damaged data directory is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pgt.data.loader import TokenData
from pgt.data.prepare import prepare_token_data
from pgt.errors import PgtError

SHARD_TOKENS = 4_000  # small, so windows cross shard boundaries


@pytest.fixture(scope="module")
def data_dir(
    corpus_files: list[Path], byte_level_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("token-data") / "data"
    sources = [str(p) for p in corpus_files if 10_000 < p.stat().st_size < 30_000][:6]
    prepare_token_data(
        sources, byte_level_tokenizer_dir, out, val_fraction=0.2, shard_tokens=SHARD_TOKENS, progress=False
    )
    return out


def stream(data_dir: Path, split: str) -> np.ndarray:
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u4") for s in manifest["splits"][split]["shards"]])


def is_window_of(row: torch.Tensor, tokens: np.ndarray) -> bool:
    """Whether `row` occurs as a contiguous slice of `tokens`."""
    needle = row.numpy().astype("<u4").tobytes()
    haystack = tokens.tobytes()
    position = haystack.find(needle)
    while position != -1 and position % 4:
        position = haystack.find(needle, position + 1)
    return position != -1


def test_manifest_facts(data_dir):
    data = TokenData(data_dir, verify=True)
    train = stream(data_dir, "train")
    assert data.train_tokens == len(train) > 5 * SHARD_TOKENS
    assert data.validation_tokens == len(stream(data_dir, "validation")) > 1_000
    assert data.eos_id == json.loads((data_dir / "manifest.json").read_text())["eos_id"]
    assert (train == data.eos_id).sum() == data.splits["train"].documents
    assert 1.0 < data.splits["validation"].bytes / data.validation_tokens < 4.0
    data.check_tokenizer(data.tokenizer_fingerprint)
    with pytest.raises(PgtError, match="prepared with tokenizer"):
        data.check_tokenizer("sha256:another")


def test_train_batch_is_a_pure_function_of_its_arguments(data_dir):
    data, again = TokenData(data_dir), TokenData(data_dir)
    batch = data.train_batch(7, 8, 64, seed=1)
    assert batch.dtype == torch.int64 and batch.shape == (8, 65)
    assert torch.equal(batch, again.train_batch(7, 8, 64, seed=1))
    assert not torch.equal(batch, data.train_batch(8, 8, 64, seed=1))
    assert not torch.equal(batch, data.train_batch(7, 8, 64, seed=2))
    train = stream(data_dir, "train")
    assert all(is_window_of(row, train) for row in batch)


def test_ranks_share_one_global_batch_without_overlap(data_dir):
    data = TokenData(data_dir)
    whole = data.train_batch(3, 12, 32, seed=0)
    ranks = [data.train_batch(3, 4, 32, seed=0, rank=r, world_size=3) for r in range(3)]
    assert torch.equal(torch.cat(ranks), whole)  # K processes see what one process sees with a K times larger batch
    rows = {tuple(row.tolist()) for batch in ranks for row in batch}
    assert len(rows) == 12


def test_windows_cross_shard_boundaries(data_dir):
    data = TokenData(data_dir)
    train = stream(data_dir, "train")
    split = data.splits["train"]
    assert np.array_equal(split.read(SHARD_TOKENS - 5, 10), train[SHARD_TOKENS - 5 : SHARD_TOKENS + 5])
    assert np.array_equal(split.read(0, 2 * SHARD_TOKENS + 3), train[: 2 * SHARD_TOKENS + 3])


def test_too_short_corpus_for_the_sequence_is_a_clear_error(data_dir):
    data = TokenData(data_dir)
    with pytest.raises(PgtError, match="too few for sequences of"):
        data.train_batch(0, 1, data.train_tokens, seed=0)


def test_damaged_data_directories_are_refused(data_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shard = copy / "train-00001.bin"
    content = bytearray(shard.read_bytes())
    content[10] ^= 0xFF
    shard.write_bytes(bytes(content))
    TokenData(copy)  # same size: only the checksum can tell
    with pytest.raises(PgtError, match=r"train-00001\.bin does not match its sha256"):
        TokenData(copy, verify=True)
    shard.write_bytes(bytes(content[:-4]))
    with pytest.raises(PgtError, match=r"train-00001\.bin has .* bytes, the manifest says"):
        TokenData(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(PgtError, match=r"manifest .* is corrupt"):
        TokenData(copy)
    with pytest.raises(PgtError, match="token data directory not found"):
        TokenData(tmp_path / "nowhere")
