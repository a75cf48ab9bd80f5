"""The tokenizer side of `pgt data prepare`: what it needs from a tokenizer directory, and chunks encoded
in worker processes, yielded in submission order so the output does not depend on the number of workers."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from pgt.corpus.chat import has_chat_tokens
from pgt.data.manifest import DTYPE, SPLITS
from pgt.data.splits import Chunk
from pgt.errors import PgtError, one_line
from pgt.io import file_sha256
from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta


@dataclass(frozen=True)
class TokenizerInfo:
    """What the pipeline needs from the tokenizer directory."""

    path: str
    fingerprint: str
    eos_id: int
    vocab_size: int
    backend_json: str  # the fast tokenizer as transformers configured it; workers rebuild it from this
    chat_tokens: bool  # it has the chat template's special tokens (pgt.corpus.chat)


def load_tokenizer_info(tokenizer_dir: str | os.PathLike) -> TokenizerInfo:
    """Load DIR with `AutoTokenizer` and derive its fingerprint (substrate.json's, else sha256 of tokenizer.json)."""
    from transformers import AutoTokenizer

    directory = Path(tokenizer_dir)
    if not directory.is_dir():
        raise PgtError(f"tokenizer directory not found: {directory}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise PgtError(f"cannot load a tokenizer from {directory}: {one_line(exc)}") from None
    if not tokenizer.is_fast:
        raise PgtError(f"tokenizer {directory} is not a fast (tokenizers-backed) tokenizer")
    if tokenizer.eos_token_id is None:
        raise PgtError(f"tokenizer {directory} has no eos token (documents are separated by it)")
    backend_json = tokenizer.backend_tokenizer.to_str()
    if (directory / SUBSTRATE_FILE).is_file():
        fingerprint = SubstrateMeta.load(directory / SUBSTRATE_FILE).fingerprint
    elif (directory / "tokenizer.json").is_file():
        fingerprint = "sha256:" + file_sha256(directory / "tokenizer.json")
    else:
        fingerprint = "sha256:" + hashlib.sha256(backend_json.encode()).hexdigest()
    return TokenizerInfo(
        str(directory.resolve()),
        fingerprint,
        int(tokenizer.eos_token_id),
        len(tokenizer),
        backend_json,
        has_chat_tokens(tokenizer),
    )


# Set in each worker process (and in the main process when workers == 1).
_ENCODER: Any = None
_EOS_ID: int = 0


def _init_encoder(backend_json: str, eos_id: int, parent_pid: int | None = None) -> None:
    """Build the encoder; in a worker process (`parent_pid` given) also tie the worker's life to the parent's."""
    global _ENCODER, _EOS_ID
    if parent_pid is not None:
        # One process per core already: the tokenizer's own threads would oversubscribe.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    from tokenizers import Tokenizer

    _ENCODER = Tokenizer.from_str(backend_json)
    _EOS_ID = eos_id


def _exit_with_parent(parent_pid: int) -> None:
    """A SIGKILLed main process cannot stop its workers, so each worker watches for its parent's death."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _encode_chunk(texts: list[str], ends: list[bool], splits: list[str]) -> dict[str, tuple[np.ndarray, int]]:
    """Tokenize one chunk: per split, the concatenated ids (eos after each finished document) and UTF-8 bytes."""
    encodings = _ENCODER.encode_batch_fast(texts, add_special_tokens=False)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    nbytes = dict.fromkeys(SPLITS, 0)
    eos = np.array([_EOS_ID], dtype=DTYPE)
    for text, ends_document, split, encoding in zip(texts, ends, splits, encodings, strict=True):
        parts[split].append(np.asarray(encoding.ids, dtype=DTYPE))
        if ends_document:
            parts[split].append(eos)
        nbytes[split] += len(text.encode("utf-8"))
    return {name: (np.concatenate(parts[name]) if parts[name] else np.empty(0, DTYPE), nbytes[name]) for name in SPLITS}


def tokenized(chunks: Iterator[Chunk], tokenizer: TokenizerInfo, workers: int) -> Iterator[tuple[Chunk, dict]]:
    """(chunk, its encoding) in chunk order; with several workers at most 2 chunks per worker are in flight."""
    if workers == 1:
        _init_encoder(tokenizer.backend_json, tokenizer.eos_id)
        for chunk in chunks:
            yield chunk, _encode_chunk(chunk.texts, chunk.ends, chunk.splits)
        return
    # spawn: a forked copy of a process whose tokenizer has started threads can deadlock.
    pool = ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_encoder,
        initargs=(tokenizer.backend_json, tokenizer.eos_id, os.getpid()),
    )
    pending: deque[tuple[Chunk, Future]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(_encode_chunk, chunk.texts, chunk.ends, chunk.splits)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
