"""The on-disk substrate: a tokenizer plus its frozen glyph-embedding matrix.

A substrate directory holds
  tokenizer.json, tokenizer_config.json, ...   a transformers fast tokenizer
  glyph_embeddings.safetensors                 tensor "weight" [V, d] float32
  substrate.json                               family, sizes, build parameters, fingerprint

The fingerprint hashes the matrix bytes together with the build parameters; models
record it and refuse a tokenizer/substrate whose fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pgt.errors import PgtError
from pgt.io import atomic_dir, read_json, write_json

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

SUBSTRATE_FILE = "substrate.json"
EMBEDDINGS_FILE = "glyph_embeddings.safetensors"
EMBEDDINGS_KEY = "weight"
FORMAT_VERSION = 1


def fingerprint(matrix: np.ndarray, params: dict[str, Any]) -> str:
    """sha256 over the float32 matrix bytes (with its shape) and the canonical JSON of `params`."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(json.dumps(list(matrix.shape)).encode())
    digest.update(memoryview(matrix).cast("B"))
    digest.update(json.dumps(params, sort_keys=True, ensure_ascii=False).encode())
    return "sha256:" + digest.hexdigest()


@dataclass
class Substrate:
    """A loaded substrate. `embeddings` is float32 [vocab_size, dim] and must never be modified."""

    path: Path
    tokenizer: PreTrainedTokenizerFast
    embeddings: torch.Tensor
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> Substrate:
        """Load a substrate directory; with `verify`, recompute and check the fingerprint."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import PreTrainedTokenizerFast

        path = Path(path)
        if not path.is_dir():
            raise PgtError(f"substrate directory not found: {path}")
        meta = read_json(path / SUBSTRATE_FILE, "substrate description")
        weights_path = path / EMBEDDINGS_FILE
        if not weights_path.is_file():
            raise PgtError(f"substrate {path} has no {EMBEDDINGS_FILE}")
        try:
            embeddings = load_file(str(weights_path))[EMBEDDINGS_KEY]
        except (SafetensorError, KeyError, OSError) as exc:
            raise PgtError(f"substrate embeddings {weights_path} are corrupt: {exc}") from None
        if verify:
            actual = fingerprint(embeddings.numpy(), meta["params"])
            if actual != meta["fingerprint"]:
                raise PgtError(
                    f"substrate {path}: embeddings do not match the recorded fingerprint "
                    f"({actual[:19]}… != {meta['fingerprint'][:19]}…); the files were altered or corrupted"
                )
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise PgtError(f"substrate {path}: cannot load its tokenizer: {exc}") from None
        if len(tokenizer) > embeddings.shape[0]:
            raise PgtError(
                f"substrate {path}: tokenizer has {len(tokenizer)} ids but the matrix only {embeddings.shape[0]} rows"
            )
        return cls(path, tokenizer, embeddings, meta["fingerprint"], meta)


def save_substrate(
    out: str | os.PathLike,
    tokenizer: PreTrainedTokenizerFast,
    matrix: np.ndarray,
    params: dict[str, Any],
    *,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write a substrate directory atomically and return its path."""
    import torch
    from safetensors.torch import save_file

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    fp = fingerprint(matrix, params)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(str(tmp))
        save_file(
            {EMBEDDINGS_KEY: torch.from_numpy(matrix)},
            str(tmp / EMBEDDINGS_FILE),
            # One key only: safetensors writes several metadata keys in random order,
            # which would make two identical builds differ in their bytes.
            metadata={"fingerprint": fp},
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "vocab_size": int(matrix.shape[0]),
            "dim": int(matrix.shape[1]),
            "fingerprint": fp,
            "params": params,
            **(extra_meta or {}),
        }
        write_json(tmp / SUBSTRATE_FILE, meta)
    return Path(out)
