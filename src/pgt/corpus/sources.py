"""The one corpus reader: `Source`, the documents of a file, directory, dataset or `default`.

`pgt data prepare` (token data), `pgt substrate build --corpus` (n-gram mining) and
`pgt eval --data` (held-out text) all read corpora through `resolve_sources` and
`Source.pieces`, so they accept the same inputs and see the same documents
(docs/data.md states the formats and the lossless contract):

  default               the embedded fortune corpus (languages en, ru, de)
  FILE                  plain text: paragraphs (auto), or fortunes if it has `%` lines; see TEXT_FORMATS
  FILE.jsonl            one JSON object per line, the text in a field, or a chat record (pgt.corpus.chat)
  FILE.parquet          the text in a column, or chat records
  DIR                   every such file below DIR, or a `save_to_disk` dataset
  hf:NAME[:CONFIG]      `datasets.load_dataset`, streamed (a hub name or a local dataset directory)
  LANG=SPEC             any of these, tagged with a language (untagged: "xx")

Every source yields its documents as *pieces* `(text, ends_document)` in a fixed order. A
short document is one piece; a long one comes in pieces of at most `PIECE_CHARS` characters
cut at a line end, else before a space, so no document, line or corpus has to fit in memory
at once (pgt.corpus.readers holds the reader of each format). Tokenizing a document piecewise
is exact for bvv241 tokenizers (their tokens never span white space) and very nearly so for others.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgt.corpus.chat import (
    RECORD_FORMATS,
    RecordError,
    missing_chat_tokens_error,
    record_text,
)
from pgt.corpus.fortunes import DEFAULT_LANGUAGES, default_corpus_files
from pgt.corpus.hub import is_hub_spec, parse_hub_spec
from pgt.corpus.readers import (
    FORTUNE_SEPARATOR,
    Decoding,
    Piece,
    cut_document,
    jsonl_records,
    loaded_dataset_records,
    parquet_records,
    saved_dataset_records,
    text_pieces,
)
from pgt.errors import PgtError, refuse_surrogates
from pgt.io import file_sha256

# How plain text files are cut into documents (docs/data.md, "Formats").
TEXT_FORMATS = ("auto", "paragraphs", "text", "lines", "fortunes")
LINE_FORMATS = ("paragraphs", "lines", "fortunes")
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
DATASET_KINDS = {"hf-disk", "hf-load"}
DEFAULT_SOURCE = "default"
UNLABELLED_LANGUAGE = "xx"
LANGUAGE_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,15})=(.+)$")
# How much of a text file to look at when deciding "text or binary" and "fortunes or not".
SNIFF_BYTES = 1 << 16
SCAN_LINES_FOR_FORTUNES = 10_000


@dataclass
class ReadStats:
    """What reading one source found: documents, UTF-8 bytes of text, and a sha256 of that text."""

    documents: int = 0
    text_bytes: int = 0
    replaced_bytes: int = 0  # invalid UTF-8 bytes read as U+FFFD
    conversations: int = 0  # chat or instruction records rendered with the chat template
    hasher: Any = field(default_factory=hashlib.sha256)

    def add(self, text: str, ends_document: bool) -> None:
        data = text.encode("utf-8")
        self.hasher.update(data)
        self.text_bytes += len(data)
        if ends_document:
            self.hasher.update(b"\0")
            self.documents += 1


@dataclass(frozen=True)
class Source:
    """One input of the corpus and the language its documents are tagged with.

    `kind` is the reader: one of LINE_FORMATS, "text" (the whole file is one document),
    "jsonl", "parquet", "hf-disk" (a `save_to_disk` directory) or "hf-load"
    (`datasets.load_dataset` on a hub name or a local dataset directory, streamed).
    `strict` makes invalid UTF-8 an error instead of a counted replacement. `record_format`
    says how a record (JSONL object, parquet row, dataset row) becomes a document: its
    `text_field`, or a conversation rendered with the chat template (pgt.corpus.chat; `auto`
    decides per record from its fields); `chat_tokens` is False where the tokenizer that will
    read the text lacks the template's tokens, so a chat record is an error.
    """

    path: str
    kind: str
    language: str = UNLABELLED_LANGUAGE
    text_field: str = "text"
    hub_split: str = "train"
    config: str | None = None
    strict: bool = False
    record_format: str = "auto"
    chat_tokens: bool = True

    @property
    def is_records(self) -> bool:
        """Whether documents come from records (JSONL, parquet, datasets) rather than lines of text."""
        return self.kind in {"jsonl", "parquet", *DATASET_KINDS}

    @property
    def is_dataset(self) -> bool:
        return self.kind in DATASET_KINDS

    @property
    def name(self) -> str:
        """The file's name, or the dataset's name."""
        return self.path if self.kind == "hf-load" else Path(self.path).name

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
            "language": self.language,
            "config": self.config,
            "hub_split": self.hub_split if self.is_dataset else None,
            "text_field": self.text_field if self.is_records else None,
            "record_format": self.record_format if self.is_records else None,
            "bytes": self.size_on_disk(),
            "sha256": self.file_sha256(),
        }

    def pieces(self, stats: ReadStats | None = None) -> Iterator[Piece]:
        """The source's documents as `(text, ends_document)` pieces, in file order; `stats` counts them."""
        decoding = Decoding(self.path, self.strict)
        if self.kind in LINE_FORMATS or self.kind == "text":
            pieces = text_pieces(self.path, decoding, self.kind)
        elif self.kind == "jsonl":
            pieces = self._record_pieces(jsonl_records(self.path, decoding), stats)
        elif self.kind == "parquet":
            pieces = self._record_pieces(parquet_records(self.path, self.text_field, self.record_format), stats)
        elif self.kind == "hf-disk":
            pieces = self._record_pieces(
                saved_dataset_records(self.path, self.hub_split, self.text_field, self.record_format), stats
            )
        else:
            pieces = self._record_pieces(loaded_dataset_records(self.path, self.config, self.hub_split), stats)
        for text, ends_document in pieces:
            if stats is not None:
                stats.add(text, ends_document)
            yield text, ends_document
        decoding.report()
        if stats is not None:
            stats.replaced_bytes = decoding.replaced

    def _record_pieces(self, records: Iterator[tuple[str, Any]], stats: ReadStats | None) -> Iterator[Piece]:
        """Each record's document (`record_text`) in pieces; a bad record is a `where: what` error."""
        for where, record in records:
            try:
                text, chat = record_text(record, self.record_format, self.text_field)
            except RecordError as exc:
                raise PgtError(f"{where}: {exc}") from None
            if chat and not self.chat_tokens:
                raise missing_chat_tokens_error(where)
            refuse_surrogates(text, f"{where}: " + (f"field {self.text_field!r}" if not chat else "a message"))
            if stats is not None:
                stats.conversations += chat
            if text:
                yield from cut_document(text)

    def documents(self) -> Iterator[str]:
        """The source's whole documents (pieces joined): for small documents, such as tests' and evaluation's."""
        parts: list[str] = []
        for text, ends_document in self.pieces():
            parts.append(text)
            if ends_document:
                yield "".join(parts)
                parts = []


def resolve_sources(
    specs: list[str | os.PathLike],
    *,
    text_format: str = "auto",
    text_field: str = "text",
    hub_split: str = "train",
    strict: bool = False,
    record_format: str = "auto",
    chat_tokens: bool = True,
) -> list[Source]:
    """Expand SOURCE arguments (see the module's docstring) into an ordered list of sources.

    A directory is a `save_to_disk` dataset if it has `dataset_dict.json` (or `state.json`
    and `dataset_info.json`), otherwise it is walked recursively (sorted; hidden files,
    symbolic links and binary files skipped). A file named explicitly must not be binary.
    """
    if text_format not in TEXT_FORMATS:
        raise PgtError(f"unknown text format {text_format!r} (choose from {', '.join(TEXT_FORMATS)})")
    if record_format not in RECORD_FORMATS:
        raise PgtError(f"unknown record format {record_format!r} (choose from {', '.join(RECORD_FORMATS)})")
    if not specs:
        raise PgtError("no sources given")
    options = {
        "text_field": text_field,
        "hub_split": hub_split,
        "strict": strict,
        "record_format": record_format,
        "chat_tokens": chat_tokens,
    }
    sources: list[Source] = []
    for given in specs:
        language, spec = split_label(given)
        if spec == DEFAULT_SOURCE:
            for lang in DEFAULT_LANGUAGES:
                # A label renames the whole default corpus's language; unlabelled, each file keeps its own.
                tag = lang if language == UNLABELLED_LANGUAGE else language
                sources += [
                    Source(str(p.resolve()), "fortunes", tag, strict=strict) for p in default_corpus_files((lang,))
                ]
        elif is_hub_spec(spec):
            name, config = parse_hub_spec(spec)
            sources.append(Source(name, "hf-load", language, config=config, **options))
        else:
            path = Path(spec)
            if not path.exists():
                raise PgtError(f"source not found: {spec}")
            if path.is_dir():
                sources += _directory_sources(path, text_format, language, options)
            else:
                source = _file_source(path, text_format, language, options)
                if source is None:
                    raise PgtError(
                        f"source {spec} is not a text, JSONL or parquet file (it looks binary: it holds NUL bytes)"
                    )
                sources.append(source)
    return sources


def split_label(spec: str | os.PathLike) -> tuple[str, str]:
    """`LANG=SPEC` -> (LANG, SPEC); anything else (an existing path included) -> ("xx", SPEC)."""
    text = os.fspath(spec)
    label = LANGUAGE_LABEL.match(text)
    if label and not Path(text).exists():
        return label.group(1), label.group(2)
    return UNLABELLED_LANGUAGE, text


def local_inputs(specs: list[str | os.PathLike]) -> list[Path]:
    """The files and directories on this machine that SOURCE arguments read (what an output must not touch)."""
    paths = []
    for given in specs:
        spec = split_label(given)[1]
        if is_hub_spec(spec):
            spec = parse_hub_spec(spec)[0]  # hf:DIR may name a local dataset directory
        if spec != DEFAULT_SOURCE and Path(spec).exists():
            paths.append(Path(spec))
    return paths


def _directory_sources(root: Path, text_format: str, language: str, options: dict[str, Any]) -> list[Source]:
    if (root / "dataset_dict.json").is_file() or (
        (root / "state.json").is_file() and (root / "dataset_info.json").is_file()
    ):
        return [Source(str(root.resolve()), "hf-disk", language, **options)]
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
        if (s := _file_source(p, text_format, language, options))
    ]
    if not sources:
        raise PgtError(f"source directory {root} holds no text, JSONL or parquet files")
    return sources


def _file_source(path: Path, text_format: str, language: str, options: dict[str, Any]) -> Source | None:
    """The reader for one file, or None for a binary file that is not parquet."""
    resolved = str(path.resolve())
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return Source(resolved, "jsonl", language, **options)
    if suffix in PARQUET_SUFFIXES:
        return Source(resolved, "parquet", language, **options)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise PgtError(f"cannot read {path}: {exc.strerror}") from None
    if b"\0" in head:
        return None
    if text_format == "auto":
        text_format = "fortunes" if _looks_like_fortunes(path) else "paragraphs"
    return Source(resolved, text_format, language, strict=options["strict"])


def _looks_like_fortunes(path: Path) -> bool:
    """Fortune files separate quotations with lines holding a single `%`."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            if line.rstrip("\r\n") == FORTUNE_SEPARATOR:
                return True
            if number >= SCAN_LINES_FOR_FORTUNES:
                break
    return False


def iter_fortunes(path: str | os.PathLike) -> Iterator[str]:
    """Yield the quotations of one fortune file (format "fortunes")."""
    yield from Source(str(path), "fortunes").documents()
