"""Corpus sources for `pgt data prepare`: text and fortune files, directories, JSONL, parquet,
Hugging Face datasets (saved with `save_to_disk`, loadable with `load_dataset`, or on the hub),
and `default`, the embedded fortune corpus.

Every source yields its documents as *pieces* `(text, ends_document)` in a fixed order. A
document is normally one piece; a large plain-text document (a whole book file) comes in
pieces of about `PIECE_CHARS` characters cut at line ends, so no document and no corpus ever
has to fit in memory. Tokenizing a document piecewise is exact for bvv241 tokenizers (their
tokens never span a line break) and very nearly so for others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt.data.corpus import default_corpus_files, iter_fortunes
from pgt.errors import PgtError
from pgt.io import file_sha256

Piece = tuple[str, bool]

PIECE_CHARS = 1 << 20
TEXT_FORMATS = ("auto", "fortunes", "text", "lines")
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
DEFAULT_SOURCE = "default"
HF_PREFIX = "hf:"
# How much of a text file to look at when deciding "text or binary" and "fortunes or not".
SNIFF_BYTES = 1 << 16
SCAN_LINES_FOR_FORTUNES = 10_000


@dataclass(frozen=True)
class Source:
    """One input of the corpus.

    `kind` is the reader: "fortunes", "text" (the whole file is one document), "lines" (every
    non-empty line is a document), "jsonl", "parquet", "hf-disk" (a `save_to_disk` directory)
    or "hf-load" (`datasets.load_dataset` on a hub name or a local dataset directory, streamed).
    """

    path: str
    kind: str
    text_field: str = "text"
    split: str = "train"
    config: str | None = None

    @property
    def is_dataset(self) -> bool:
        return self.kind in {"hf-disk", "hf-load"}

    def size_on_disk(self) -> int | None:
        """Bytes on disk where known (progress bar, validation floor); None for streamed datasets."""
        if self.kind == "hf-load":
            return None
        if self.kind == "hf-disk":
            return sum(p.stat().st_size for p in Path(self.path).rglob("*.arrow"))
        return os.path.getsize(self.path)

    def file_sha256(self) -> str | None:
        """sha256 of the file's bytes; None for datasets (their documents are hashed while read)."""
        if self.is_dataset:
            return None
        return file_sha256(self.path)

    def identity(self) -> dict[str, Any]:
        """What identifies this source's content (recorded in the manifest, keys resumption)."""
        return {
            "path": self.path,
            "format": self.kind,
            "config": self.config,
            "split": self.split if self.is_dataset else None,
            "text_field": self.text_field if self.kind in {"jsonl", "parquet", "hf-disk", "hf-load"} else None,
            "bytes": self.size_on_disk(),
            "sha256": self.file_sha256(),
        }

    def pieces(self) -> Iterator[Piece]:
        """The source's documents as `(text, ends_document)` pieces, in file order."""
        readers = {
            "fortunes": lambda: ((text, True) for text in iter_fortunes(self.path)),
            "text": lambda: _whole_file_pieces(self.path),
            "lines": lambda: _line_pieces(self.path),
            "jsonl": lambda: _jsonl_pieces(self.path, self.text_field),
            "parquet": lambda: _parquet_pieces(self.path, self.text_field),
            "hf-disk": lambda: _saved_dataset_pieces(self.path, self.split, self.text_field),
            "hf-load": lambda: _loaded_dataset_pieces(self.path, self.config, self.split, self.text_field),
        }
        yield from readers[self.kind]()


def resolve_sources(
    specs: list[str], *, text_format: str = "auto", text_field: str = "text", split: str = "train"
) -> list[Source]:
    """Expand the command line's SOURCES into an ordered list of sources.

    A directory is a `save_to_disk` dataset if it has `dataset_dict.json` (or `state.json`
    and `dataset_info.json`), otherwise it is walked recursively (sorted; hidden files,
    symbolic links and binary files skipped). `hf:NAME[:CONFIG]` goes through `datasets.load_dataset` (a hub name or a
    local dataset directory); `default` is the embedded fortune corpus.
    """
    if text_format not in TEXT_FORMATS:
        raise PgtError(f"unknown text format {text_format!r} (choose from {', '.join(TEXT_FORMATS)})")
    if not specs:
        raise PgtError("no sources given")
    sources: list[Source] = []
    for spec in specs:
        if spec == DEFAULT_SOURCE:
            sources += [Source(str(p.resolve()), "fortunes") for p in default_corpus_files()]
        elif spec.startswith(HF_PREFIX):
            name, _, config = spec[len(HF_PREFIX) :].partition(":")
            if not name:
                raise PgtError(f"source {spec!r}: expected hf:NAME or hf:NAME:CONFIG")
            sources.append(Source(name, "hf-load", text_field, split, config or None))
        else:
            path = Path(spec)
            if not path.exists():
                raise PgtError(f"source not found: {spec}")
            if path.is_dir():
                sources += _directory_sources(path, text_format, text_field, split)
            else:
                source = _file_source(path, text_format, text_field)
                if source is None:
                    raise PgtError(f"source {spec} is not a text, JSONL or parquet file (it looks binary)")
                sources.append(source)
    return sources


def _directory_sources(root: Path, text_format: str, text_field: str, split: str) -> list[Source]:
    if (root / "dataset_dict.json").is_file() or (
        (root / "state.json").is_file() and (root / "dataset_info.json").is_file()
    ):
        return [Source(str(root.resolve()), "hf-disk", text_field, split)]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and not path.is_symlink():
                found.append(path)
    sources = [
        s
        for p in sorted(found, key=lambda p: p.relative_to(root).as_posix())
        if (s := _file_source(p, text_format, text_field))
    ]
    if not sources:
        raise PgtError(f"source directory {root} holds no text, JSONL or parquet files")
    return sources


def _file_source(path: Path, text_format: str, text_field: str) -> Source | None:
    """The reader for one file, or None for a binary file that is not parquet."""
    resolved = str(path.resolve())
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return Source(resolved, "jsonl", text_field)
    if suffix in PARQUET_SUFFIXES:
        return Source(resolved, "parquet", text_field)
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if b"\0" in head:
        return None
    if text_format != "auto":
        return Source(resolved, text_format)
    return Source(resolved, "fortunes" if _looks_like_fortunes(path) else "text")


def _looks_like_fortunes(path: Path) -> bool:
    """Fortune files separate quotations with lines holding a single `%`."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            if line.rstrip("\r\n") == "%":
                return True
            if number >= SCAN_LINES_FOR_FORTUNES:
                break
    return False


def _whole_file_pieces(path: str) -> Iterator[Piece]:
    """The file as one document, in pieces of about PIECE_CHARS cut after a line end."""

    def chunks() -> Iterator[str]:
        buffer: list[str] = []
        size = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                buffer.append(line)
                size += len(line)
                if size >= PIECE_CHARS:
                    yield "".join(buffer)
                    buffer, size = [], 0
        if buffer:
            yield "".join(buffer)

    pending: str | None = None
    for chunk in chunks():
        if pending is not None:
            yield pending, False
        pending = chunk
    # A file of nothing but white space holds no document (a multi-piece one always does).
    if pending is not None and pending.strip():
        yield pending, True


def _line_pieces(path: str) -> Iterator[Piece]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.strip()
            if text:
                yield text, True


def _jsonl_pieces(path: str, field: str) -> Iterator[Piece]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PgtError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise PgtError(f"{path}:{number}: expected an object with a string field {field!r} (see --text-field)")
            if record[field]:
                yield record[field], True


def _parquet_pieces(path: str, field: str) -> Iterator[Piece]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if field not in names:
            raise PgtError(f"{path}: no column {field!r} (columns: {', '.join(names)}; see --text-field)")
        for batch in parquet.iter_batches(batch_size=1024, columns=[field]):
            column = batch.column(0)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                raise PgtError(f"{path}: column {field!r} holds {column.type}, not text")
            yield from ((text, True) for text in column.to_pylist() if text)
    except (pa.ArrowException, OSError) as exc:
        raise PgtError(f"{path}: unreadable parquet file ({_one_line(exc)})") from None


def _saved_dataset_pieces(path: str, split: str, field: str) -> Iterator[Piece]:
    import datasets

    try:
        dataset = datasets.load_from_disk(path)
    except (OSError, ValueError) as exc:
        raise PgtError(f"{path}: unreadable saved dataset ({_one_line(exc)})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise PgtError(f"{path}: no split {split!r} (splits: {', '.join(dataset)}; see --split)")
        dataset = dataset[split]
    if field not in dataset.column_names:
        raise PgtError(f"{path}: no column {field!r} (columns: {', '.join(dataset.column_names)}; see --text-field)")
    for batch in dataset.select_columns([field]).iter(batch_size=1024):
        yield from ((text, True) for text in batch[field] if text)


def _loaded_dataset_pieces(name: str, config: str | None, split: str, field: str) -> Iterator[Piece]:
    import datasets

    where = f"Hugging Face dataset {name!r}" + (f" (config {config!r})" if config else "")
    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
        for record in dataset:
            if field not in record:
                raise PgtError(f"{where}: no field {field!r} (fields: {', '.join(record)}; see --text-field)")
            if record[field]:
                yield record[field], True
    except PgtError:
        raise
    except Exception as exc:  # datasets and the hub raise many types; all mean "cannot read it"
        raise PgtError(
            f"cannot load {where}, split {split!r}: {_one_line(exc)} "
            "(hub datasets need network access; offline, pass a save_to_disk directory instead)"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "…") if len(text) > 300 else text or type(exc).__name__
