"""`trim_substrate`: a substrate cut down to the tokens a corpus uses, still lossless (docs/trimming.md).

A model's output head computes one logit per vocabulary id at every position; on a corpus
that uses a few thousand of a 65,792-id vocabulary, almost all of that work goes to ids the
corpus never contains. A trimmed substrate keeps

  - every id the corpus encodes to with the parent's tokenizer,
  - every token the parent's BPE merges build those from (their halves, recursively),
  - the named special tokens (the `<special_token_N>` placeholders go), and
  - the 256 byte-fallback tokens,

in the parent's id order, with the parent's embedding rows bit for bit (no new PCA). Its
merges are the parent's merges among kept tokens, in the parent's order, so the corpus
encodes to exactly the parent's token strings (a kept merge is applied wherever the parent
applies it, and no merge the parent would not apply exists) and any other text falls back
to byte tokens, losslessly. `trim.json` (`TrimRecord`) names the parent's fingerprint and
holds the id map; `substrate.json` names the parent too (`parent_fingerprint`), so every
model directory's copy of it says which full-vocabulary substrate the model stands on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pgt.corpus.sources import resolve_sources
from pgt.errors import PgtError
from pgt.io import atomic_dir, output_lock, refuse_existing, refuse_overlap
from pgt.records import Record
from pgt.substrate.layout import BYTE_FALLBACK_COUNT, SPECIAL_TOKENS, byte_token
from pgt.substrate.store import SUBSTRATE_FILE, Substrate, save_substrate

TRIM_FILE = "trim.json"
PLACEHOLDER_SPECIAL = re.compile(r"^<special_token_\d+>$")
ENCODE_BATCH_CHARS = 1 << 20  # characters of corpus text per encode_batch call


@dataclass
class TrimRecord(Record):
    """`trim.json`: where a trimmed substrate comes from. Trimmed id i is the parent's id `parent_ids[i]`."""

    WHAT = "trim record"

    parent_fingerprint: str
    parent_vocab_size: int
    parent_path: str  # where the parent was when trimmed (informational; the fingerprint identifies it)
    sources: list[str]  # the token data directory or corpus sources the kept ids were counted on
    corpus_tokens: int  # tokens of that corpus (with the parent's tokenizer)
    corpus_ids: int  # distinct ids among them
    merge_ids: int  # ids kept only because a merge builds a corpus token from them
    special_ids: int  # named special tokens kept
    byte_ids: int  # byte-fallback tokens kept
    parent_ids: list[int]
    recentred: bool = False  # rows re-centred on their own mean and renormalised (beyond the reference)

    @property
    def vocab_size(self) -> int:
        return len(self.parent_ids)


def load_trim_record(substrate_dir: str | os.PathLike) -> TrimRecord | None:
    """The trim record of a substrate directory, or None when it is a full substrate."""
    path = Path(substrate_dir) / TRIM_FILE
    return TrimRecord.load(path) if path.is_file() else None


# ---------------------------------------------------------------- the ids a corpus uses


class TokenIds(Protocol):
    """Token data as this layer sees it (`pgt.data.loader.TokenData` is one): where it is and how often each id
    occurs in it, so the substrate layer never reads the data layer's files itself."""

    path: Path

    def id_counts(self, fingerprint: str, vocab_size: int) -> np.ndarray: ...


def _text_batches(sources: Sequence[str]) -> Iterator[list[str]]:
    """The corpus's documents as `pgt data prepare` reads them (pieces), in batches of about ENCODE_BATCH_CHARS."""
    batch: list[str] = []
    size = 0
    for source in resolve_sources(list(sources)):
        for text, _ in source.pieces():
            batch.append(text)
            size += len(text)
            if size >= ENCODE_BATCH_CHARS:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def ids_in_corpus(sources: Sequence[str], parent: Substrate) -> tuple[np.ndarray, int]:
    """Distinct ids (sorted) and the token count of the corpus `sources` encoded with the parent's tokenizer."""
    backend = parent.tokenizer.backend_tokenizer
    counts = np.zeros(parent.vocab_size, dtype=np.int64)
    for batch in _text_batches(sources):
        for encoding in backend.encode_batch_fast(batch, add_special_tokens=False):
            counts += np.bincount(np.asarray(encoding.ids, dtype=np.int64), minlength=parent.vocab_size)
    return np.flatnonzero(counts), int(counts.sum())


# ---------------------------------------------------------------- what stays


def _bpe_model(backend_json: dict[str, Any], where: Path) -> dict[str, Any]:
    model = backend_json["model"]
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        kind = f"{model.get('type')}" + ("" if model.get("byte_fallback") else " without byte fallback")
        raise PgtError(
            f"substrate {where}: trimming needs a BPE tokenizer with byte fallback (the bvv241 families); "
            f"this one is {kind}"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise PgtError(f"substrate {where}: trimming does not support BPE subword prefixes or suffixes")
    return model


def _merge_pairs(merges: Iterable[Any]) -> list[tuple[str, str]]:
    """tokenizers writes merges as [left, right] lists (older files: "left right" strings)."""
    return [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in merges]


def merge_closure(tokens: Iterable[str], merges: Sequence[tuple[str, str]]) -> set[str]:
    """`tokens` plus both halves of every merge that builds one of them, recursively."""
    halves: dict[str, list[tuple[str, str]]] = {}
    for left, right in merges:
        halves.setdefault(left + right, []).append((left, right))
    kept, todo = set(tokens), list(tokens)
    while todo:
        for pair in halves.get(todo.pop(), ()):
            for half in pair:
                if half not in kept:
                    kept.add(half)
                    todo.append(half)
    return kept


def _trimmed_backend_json(backend: dict[str, Any], kept: Sequence[int], id_to_token: dict[int, str]) -> dict[str, Any]:
    """The parent's tokenizer.json restricted to `kept` (parent ids, sorted), renumbered 0..len(kept)-1."""
    new_id = {parent_id: index for index, parent_id in enumerate(kept)}
    vocab = {id_to_token[parent_id]: index for index, parent_id in enumerate(kept)}
    trimmed = json.loads(json.dumps(backend))  # a deep copy: normaliser, decoder etc. stay the parent's
    trimmed["model"]["vocab"] = vocab
    trimmed["model"]["merges"] = [
        [left, right]
        for left, right in _merge_pairs(backend["model"]["merges"])
        if left in vocab and right in vocab and left + right in vocab
    ]
    trimmed["added_tokens"] = [
        {**added, "id": new_id[added["id"]]} for added in backend["added_tokens"] if added["id"] in new_id
    ]
    return trimmed


def _build_tokenizer(parent: Substrate, backend_json: dict[str, Any]):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    source = parent.tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(backend_json, ensure_ascii=False)),
        bos_token=source.bos_token,
        eos_token=source.eos_token,
        unk_token=source.unk_token,
        pad_token=source.pad_token,
        clean_up_tokenization_spaces=False,
    )


def recentre_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows minus their mean, L2-normalised (a row equal to the mean stays zero).

    The PCA is centred on every glyph of the full layout (mostly CJK), so the few thousand rows
    a corpus keeps share one direction; centring them on their own mean removes it.
    """
    centred = matrix.astype(np.float64) - matrix.astype(np.float64).mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return (centred / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def trim_substrate(
    substrate_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data: TokenIds | None = None,
    corpus: Sequence[str] = (),
    recentre: bool = False,
    overwrite: bool = False,
) -> TrimRecord:
    """Write the substrate of `substrate_dir` trimmed to the ids of `data` (token data) or `corpus` (sources) to `out`.

    Exactly one of `data` (a `pgt data prepare` directory made with this substrate, as `TokenData`) and `corpus`
    (sources as `pgt data prepare` takes them) says which tokens stay. With `recentre` (beyond
    the reference) the kept rows are re-centred on their own mean and renormalised
    (`recentre_rows`). Returns the trim record.
    """
    if (data is None) == (not corpus):
        raise PgtError("give exactly one of --data DIR (token data) and --corpus SOURCE ... to trim to")
    out = Path(out)
    data_paths = [data.path] if data is not None else []
    refuse_overlap(out, [substrate_dir, *data_paths, *(c for c in corpus if Path(c).exists())])
    refuse_existing(out, overwrite=overwrite, marker=SUBSTRATE_FILE)
    parent = Substrate.load(substrate_dir)
    if parent.meta.parent_fingerprint is not None:
        raise PgtError(
            f"{substrate_dir} is already trimmed (from {parent.meta.parent_fingerprint[:19]}…): "
            "trim its full parent substrate instead, so the id map stays one step"
        )
    backend = json.loads(parent.tokenizer.backend_tokenizer.to_str())
    model = _bpe_model(backend, Path(substrate_dir))
    id_to_token = {token_id: token for token, token_id in model["vocab"].items()}
    id_to_token |= {added["id"]: added["content"] for added in backend["added_tokens"]}

    if data is not None:
        counts = data.id_counts(parent.fingerprint, parent.vocab_size)
        used, corpus_tokens = np.flatnonzero(counts), int(counts.sum())
    else:
        used, corpus_tokens = ids_in_corpus(corpus, parent)
    used_tokens = {id_to_token[int(i)] for i in used}
    with_merges = merge_closure(used_tokens, _merge_pairs(model["merges"]))
    specials = {
        added["content"] for added in backend["added_tokens"] if not PLACEHOLDER_SPECIAL.match(added["content"])
    } | set(SPECIAL_TOKENS).intersection(model["vocab"])
    bytes_ = {byte_token(value) for value in range(BYTE_FALLBACK_COUNT)}
    missing = sorted(bytes_ - set(model["vocab"]))
    if missing:
        raise PgtError(f"substrate {substrate_dir} lacks the byte-fallback token {missing[0]}; it cannot be trimmed")
    token_to_id = {token: token_id for token_id, token in id_to_token.items()}
    kept = sorted(token_to_id[token] for token in with_merges | specials | bytes_)

    record = TrimRecord(
        parent_fingerprint=parent.fingerprint,
        parent_vocab_size=parent.vocab_size,
        parent_path=str(Path(substrate_dir).resolve()),
        sources=[str(data.path.resolve())] if data is not None else list(corpus),
        corpus_tokens=corpus_tokens,
        corpus_ids=len(used),
        merge_ids=len(with_merges - used_tokens),
        special_ids=len(specials - with_merges),
        byte_ids=len(bytes_ - with_merges - specials),
        parent_ids=kept,
        recentred=recentre,
    )
    tokenizer = _build_tokenizer(parent, _trimmed_backend_json(backend, kept, id_to_token))
    matrix = parent.embeddings.numpy()[np.asarray(kept)]
    if recentre:
        matrix = recentre_rows(matrix)
    # The fingerprinted params are the parent's with the trimmed token texts, so two trims differ in their
    # fingerprints whenever their vocabularies differ (identical glyphs would give identical rows).
    texts = [id_to_token[parent_id] for parent_id in kept]
    params = replace(
        parent.meta.params,
        recentred=recentre,
        token_texts_sha256=hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest(),
    )
    extra = {
        "parent_fingerprint": parent.fingerprint,
        "byte_fallback_tokens": parent.meta.byte_fallback_tokens,
        "from_tokenizer": parent.meta.from_tokenizer,
    }
    with output_lock(out), atomic_dir(out, overwrite=overwrite, marker=SUBSTRATE_FILE) as tmp:
        save_substrate(tmp, tokenizer, matrix, params, overwrite=True, extra_meta=extra)
        record.save(tmp / TRIM_FILE)
    return record
