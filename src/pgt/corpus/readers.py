"""The readers behind `Source.pieces` (pgt.corpus.sources), one per format: plain text cut into documents
(paragraphs, lines, fortunes, whole file), JSONL, parquet and datasets' records, and long documents cut
into pieces of at most `PIECE_CHARS` characters at a line end, else before a space.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pgt.corpus.hub import with_timeout
from pgt.errors import PgtError, one_line

Piece = tuple[str, bool]  # (text, ends_document)

PIECE_CHARS = 1 << 20
FORTUNE_SEPARATOR = "%"
# Invalid UTF-8 bytes arrive as the lone surrogates of Python's "surrogateescape" decoding.
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
STRICT_HINT = "without --strict such bytes are replaced by U+FFFD"


@dataclass
class Decoding:
    """UTF-8 decoding of one file: invalid bytes become U+FFFD and are counted, or fail with --strict."""

    path: str
    strict: bool
    replaced: int = 0

    def clean(self, text: str, line: int) -> str:
        if text.isascii():
            return text
        cleaned, count = ESCAPED_BYTE.subn("\ufffd", text)
        if count and self.strict:
            raise PgtError(f"{self.path}:{line}: invalid UTF-8 (--strict; {STRICT_HINT})")
        self.replaced += count
        return cleaned

    def report(self) -> None:
        if self.replaced:
            print(
                f"warning: {self.path}: {self.replaced:,} invalid UTF-8 byte(s) replaced by U+FFFD "
                "(--strict refuses such files)",
                file=sys.stderr,
            )


def _cut_point(text: str, start: int, end: int) -> int:
    """Where to end a piece of text[start:end]: after its last line end, else before its last space, else at end."""
    newline = text.rfind("\n", start, end - 1)
    if newline >= start:
        return newline + 1
    space = max(text.rfind(" ", start + 1, end), text.rfind("\t", start + 1, end))
    return space if space > start else end


def _read_lines(path: str, decoding: Decoding, limit: int | None) -> Iterator[tuple[str, bool]]:
    """The file's lines as `(text, ends_line)`, line ends kept (as `\\n`); memory stays bounded.

    A line longer than `limit` characters comes in several segments cut before a space.
    """
    number = 1
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            carry = ""
            while True:
                text = carry + handle.readline(-1 if limit is None else limit - len(carry))
                if len(text) == len(carry):  # end of file
                    if carry:
                        yield decoding.clean(carry, number), True
                    return
                if limit is None or text.endswith("\n") or len(text) < limit:
                    yield decoding.clean(text, number), True
                    carry, number = "", number + 1
                    continue
                cut = _cut_point(text, 0, limit)
                yield decoding.clean(text[:cut], number), False
                carry = text[cut:]
    except OSError as exc:
        raise PgtError(f"cannot read {path}: {exc.strerror}") from None


def text_pieces(path: str, decoding: Decoding, kind: str) -> Iterator[Piece]:
    """A plain text file's documents in pieces, cut as `kind` (one of LINE_FORMATS, or "text") says."""
    return _line_documents(_read_lines(path, decoding, PIECE_CHARS), kind)


def _line_documents(lines: Iterator[tuple[str, bool]], kind: str) -> Iterator[Piece]:
    """Documents made of whole lines, kept exactly; only separators are dropped (docs/data.md, "Lossless").

    paragraphs: blank lines (empty or white space only) separate documents.
    lines:      every line that is not blank is a document.
    fortunes:   `%` lines separate documents; blank lines at a document's edges are dropped.
    text:       the whole file is one document, exactly.
    A document of the line formats ends without the line end of its last line.
    """
    parts: list[str] = []  # the current document's text not yet yielded
    size = 0
    held: list[str] = []  # fortunes: blank lines after the last text line, kept if more text follows
    has_text, starts_line = False, True
    for text, ends_line in lines:
        whole = starts_line and ends_line
        starts_line = ends_line
        blank = whole and not text.strip()
        if (kind == "fortunes" and whole and text.rstrip("\n") == FORTUNE_SEPARATOR) or (
            blank and kind in ("paragraphs", "lines")
        ):
            if has_text:
                yield "".join(parts).removesuffix("\n"), True
            parts, size, held, has_text = [], 0, [], False
            continue
        if blank and kind != "text":  # fortunes
            if has_text:
                held.append(text)
            continue
        if held:
            parts += held
            size += sum(map(len, held))
            held = []
        parts.append(text)
        size += len(text)
        has_text = has_text or not blank
        if kind == "lines" and ends_line:
            yield "".join(parts).removesuffix("\n"), True
            parts, size, has_text = [], 0, False
        elif has_text and size >= PIECE_CHARS and len(parts) > 1:
            yield "".join(parts[:-1]), False  # the last segment stays: the document's end is cut from it
            parts, size = parts[-1:], len(parts[-1])
    if has_text:
        text = "".join(parts)
        yield (text if kind == "text" else text.removesuffix("\n")), True


def cut_document(text: str) -> Iterator[Piece]:
    """One document held as a string, in pieces of at most PIECE_CHARS."""
    start = 0
    while len(text) - start > PIECE_CHARS:
        end = _cut_point(text, start, start + PIECE_CHARS)
        yield text[start:end], False
        start = end
    yield text[start:], True


# --------------------------------------------------------------------------- records


def json_line(line: str, where: str) -> Any:
    """One line of a JSON-lines file (a corpus or a task's data), or a one-line PgtError naming `where`."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise PgtError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None


def jsonl_records(path: str, decoding: Decoding) -> Iterator[tuple[str, Any]]:
    for number, (line, _) in enumerate(_read_lines(path, decoding, None), start=1):
        if line.strip():
            yield f"{path}:{number}", json_line(line, f"{path}:{number}")


def parquet_records(path: str, field: str, record_format: str) -> Iterator[tuple[str, Any]]:
    """Rows as records: only the text column when the documents are texts, else every column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        text_only = record_format == "text" or (record_format == "auto" and field in names)
        if record_format == "text" and field not in names:
            raise PgtError(f"{path}: no column {field!r} (columns: {', '.join(names)}; see --text-field)")
        row = 0
        for batch in parquet.iter_batches(batch_size=1024, columns=[field] if text_only else None):
            if text_only and not (
                pa.types.is_string(batch.column(0).type) or pa.types.is_large_string(batch.column(0).type)
            ):
                raise PgtError(f"{path}: column {field!r} holds {batch.column(0).type}, not text")
            for record in batch.to_pylist():
                row += 1
                yield f"{path}: row {row}", record
    except (pa.ArrowException, OSError) as exc:
        raise PgtError(f"{path}: unreadable parquet file ({one_line(exc)})") from None


def saved_dataset_records(path: str, split: str, field: str, record_format: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        dataset = datasets.load_from_disk(path)
    except (OSError, ValueError) as exc:
        raise PgtError(f"{path}: unreadable saved dataset ({one_line(exc)})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise PgtError(f"{path}: no split {split!r} (splits: {', '.join(dataset)}; see --hub-split)")
        dataset = dataset[split]
    if record_format == "text" and field not in dataset.column_names:
        raise PgtError(f"{path}: no column {field!r} (columns: {', '.join(dataset.column_names)}; see --text-field)")
    if record_format in ("text", "auto") and field in dataset.column_names:
        dataset = dataset.select_columns([field])  # documents are texts: read that column only
    for number, record in enumerate(dataset, 1):
        yield f"{path}: record {number}", record


def loaded_dataset_records(name: str, config: str | None, split: str) -> Iterator[tuple[str, Any]]:
    where = f"Hugging Face dataset {name!r}" + (f" (config {config!r})" if config else "")

    def records() -> Iterator[dict[str, Any]]:
        import datasets

        yield from datasets.load_dataset(name, config, split=split, streaming=True)

    try:
        for number, record in enumerate(with_timeout(records, f"cannot load {where}, split {split!r}"), 1):
            yield f"{where}: record {number}", record
    except PgtError:
        raise
    except Exception as exc:  # datasets and the hub raise many types; all mean "cannot read it"
        raise PgtError(
            f"cannot load {where}, split {split!r}: {one_line(exc)} "
            "(hub datasets need network access; offline, pass a save_to_disk directory instead)"
        ) from None
