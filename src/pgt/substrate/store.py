"""The on-disk substrate: a tokenizer plus its frozen glyph-embedding matrix.

A substrate directory holds
  tokenizer.json, tokenizer_config.json, ...   a transformers fast tokenizer
  glyph_embeddings.safetensors                 tensor "weight" [V, d] float32
  substrate.json                               family, sizes, build parameters, fingerprint

`substrate.json` is one typed record, `SubstrateMeta`, that every reader and writer uses.
The fingerprint hashes the matrix bytes together with the build parameters (`BuildParams`,
which include the rendering recipe's version and the text layout engine); models record
it and refuse a tokenizer/substrate whose fingerprint differs. A `substrate.json` of an
older format (whose glyphs were not the reference's) is refused with a rebuild hint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from pgt.corpus.chat import save_tokenizer
from pgt.errors import PgtError, one_line
from pgt.io import atomic_dir
from pgt.records import Record
from pgt.substrate.layout import AugmentParams, LayoutEngine

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

SUBSTRATE_FILE = "substrate.json"
EMBEDDINGS_FILE = "glyph_embeddings.safetensors"
EMBEDDINGS_KEY = "weight"
# 2: the reference's own rendering (nearest-neighbour rotate and 1-bit resize, placeholder
# glyphs, PCA fitted on the reference rows, only the named specials special).
FORMAT_VERSION = 2
RECIPE_VERSION = 2


@dataclass
class FontRecord(Record):
    """The glyph font by file name and content hash (paths do not enter the fingerprint)."""

    WHAT = "font"
    name: str
    sha256: str


@dataclass
class BuildParams(Record):
    """Everything that determines the matrix: the fingerprint hashes these with its bytes.

    `pca_fit_rows` rows (the reference layout's) fit the PCA; `sources` names each n-gram
    source (or the tokenizer) with its sha256.
    """

    WHAT = "substrate build parameters"
    recipe: int
    family: str
    cell: int
    dim: int
    augment: AugmentParams
    layout_engine: LayoutEngine
    font: FontRecord
    token_texts_sha256: str
    pca_fit_rows: int
    sources: list[dict[str, Any]]
    # Beyond the reference, both off by default (docs/substrate.md, "Beyond the reference"):
    visible_blanks: bool = False  # invisible characters drawn as Control Pictures / hex boxes
    recentred: bool = False  # a trimmed substrate's rows re-centred on their own mean, renormalised

    def fingerprint_json(self) -> dict[str, Any]:
        """The parameters as the fingerprint hashes them: options left off are omitted, so every
        substrate built without them keeps the fingerprint it had before they existed."""
        data = self.to_json()
        for option in BEYOND_OPTIONS:
            if not data[option]:
                del data[option]
        return data


BEYOND_OPTIONS = ("visible_blanks", "recentred")


@dataclass
class SubstrateMeta(Record):
    """`substrate.json`: sizes, build parameters, fingerprint and what the build found.

    `embedding_trained`/`derived_from` mark a model directory whose embedding was trained
    (the trainable-embedding baseline): its fingerprint is its own matrix's.
    """

    WHAT = "substrate description"
    format_version: int
    vocab_size: int
    dim: int
    fingerprint: str
    params: BuildParams
    reference_vocab_size: int | None = None
    byte_fallback_tokens: int = 0
    ngrams: int | None = None
    ngrams_dropped: int | None = None
    from_tokenizer: str | None = None
    derived_from: str | None = None
    embedding_trained: bool = False
    parent_fingerprint: str | None = None  # a trimmed substrate's full parent (docs/trimming.md; id map: trim.json)

    @property
    def family(self) -> str:
        return self.params.family

    @property
    def cell(self) -> int:
        return self.params.cell

    @property
    def augment(self) -> AugmentParams:
        return self.params.augment

    @property
    def layout_engine(self) -> str:
        return self.params.layout_engine

    @classmethod
    def from_json(cls, data: Any, source: str | os.PathLike = "") -> Self:
        if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
            raise PgtError(
                f"{cls.WHAT} {source} has format {data.get('format_version')}, expected {FORMAT_VERSION}: it was built "
                "by an older pgt whose glyph matrix differs from the reference's; rebuild it with "
                "`pgt substrate build` (models trained on it must be retrained)"
            )
        return super().from_json(data, source)


def fingerprint(matrix: np.ndarray, params: BuildParams) -> str:
    """sha256 over the float32 matrix bytes (with its shape) and the canonical JSON of `params`."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    digest = hashlib.sha256()
    digest.update(json.dumps(list(matrix.shape)).encode())
    digest.update(memoryview(matrix).cast("B"))
    digest.update(json.dumps(params.fingerprint_json(), sort_keys=True, ensure_ascii=False).encode())
    return "sha256:" + digest.hexdigest()


@dataclass
class Substrate:
    """A loaded substrate. `embeddings` is float32 [vocab_size, dim] and must never be modified."""

    path: Path
    tokenizer: PreTrainedTokenizerFast
    embeddings: torch.Tensor
    fingerprint: str
    meta: SubstrateMeta

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
        meta = SubstrateMeta.load(path / SUBSTRATE_FILE)
        weights_path = path / EMBEDDINGS_FILE
        if not weights_path.is_file():
            raise PgtError(f"substrate {path} has no {EMBEDDINGS_FILE}")
        try:
            embeddings = load_file(str(weights_path))[EMBEDDINGS_KEY]
        except (SafetensorError, KeyError, OSError) as exc:
            raise PgtError(f"substrate embeddings {weights_path} are corrupt: {one_line(exc)}") from None
        if verify:
            actual = fingerprint(embeddings.numpy(), meta.params)
            if actual != meta.fingerprint:
                raise PgtError(
                    f"substrate {path}: embeddings do not match the recorded fingerprint "
                    f"({actual[:19]}… != {meta.fingerprint[:19]}…); the files were altered or corrupted"
                )
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise PgtError(f"substrate {path}: cannot load its tokenizer: {one_line(exc)}") from None
        if len(tokenizer) > embeddings.shape[0]:
            raise PgtError(
                f"substrate {path}: tokenizer has {len(tokenizer)} ids but the matrix only {embeddings.shape[0]} rows"
            )
        return cls(path, tokenizer, embeddings, meta.fingerprint, meta)


def is_substrate(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a finished substrate: it is published atomically, so its `substrate.json` present
    means complete (it may still be damaged; `Substrate.load` checks)."""
    return (Path(directory) / SUBSTRATE_FILE).is_file()


def save_substrate(
    out: str | os.PathLike,
    tokenizer: PreTrainedTokenizerFast,
    matrix: np.ndarray,
    params: BuildParams,
    *,
    overwrite: bool = False,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Write a substrate directory atomically and return its path; `extra_meta` sets further
    `SubstrateMeta` fields (n-gram counts, `from_tokenizer`)."""
    import torch
    from safetensors.torch import save_file

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    fp = fingerprint(matrix, params)
    with atomic_dir(out, overwrite=overwrite, marker=SUBSTRATE_FILE) as tmp:
        save_tokenizer(tokenizer, tmp)  # with the chat template (pgt.corpus.chat)
        save_file(
            {EMBEDDINGS_KEY: torch.from_numpy(matrix)},
            str(tmp / EMBEDDINGS_FILE),
            # One key only: safetensors writes several metadata keys in random order,
            # which would make two identical builds differ in their bytes.
            metadata={"fingerprint": fp},
        )
        meta = SubstrateMeta(
            format_version=FORMAT_VERSION,
            vocab_size=int(matrix.shape[0]),
            dim=int(matrix.shape[1]),
            fingerprint=fp,
            params=params,
            **(extra_meta or {}),
        )
        meta.save(tmp / SUBSTRATE_FILE)
    return Path(out)
