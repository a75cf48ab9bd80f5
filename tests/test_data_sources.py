"""The one corpus reader: formats are lossless, long lines come in bounded pieces, bad bytes are
counted or refused, n-gram mining reads the same sources as token data, and local data never
touches the network."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pgt.corpus.sources import Source, resolve_sources
from pgt.data.splits import held_out_documents, split_documents
from pgt.errors import PgtError
from pgt.substrate.layout import get_family
from pgt.substrate.ngrams import (
    NgramCounter,
    collect_ngrams,
    mine_ngrams,
    parse_corpus_arg,
)

POEM = (
    "  An indented first line,  \n"
    "\tand a tabbed second one.\n"
    "   \n"  # a blank line of spaces: a separator
    "\n"
    "Second paragraph, trailing spaces   \n"
    "    and an indented end.\n"
    "\n\n"
)


def non_blank_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def documents_of(path: Path, text_format: str) -> list[str]:
    return list(resolve_sources([str(path)], text_format=text_format)[0].documents())


def test_paragraphs_are_the_default_and_every_format_keeps_text_exactly(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(POEM, encoding="utf-8")
    assert resolve_sources([str(book)])[0].kind == "paragraphs"
    paragraphs = documents_of(book, "auto")
    assert paragraphs == [
        "  An indented first line,  \n\tand a tabbed second one.",
        "Second paragraph, trailing spaces   \n    and an indented end.",
    ]
    # Lossless: every non-blank line of the file comes back exactly, in order, in every line format.
    for text_format in ("paragraphs", "lines", "text"):
        got = [line for doc in documents_of(book, text_format) for line in non_blank_lines(doc)]
        assert got == non_blank_lines(POEM), text_format
    assert documents_of(book, "lines") == non_blank_lines(POEM)  # one document per line, not stripped
    assert documents_of(book, "text") == [POEM]


def test_fortune_documents_keep_their_indentation(tmp_path):
    quotes = tmp_path / "quotes"
    quotes.write_text("\t\tIndented verse,\n\n  kept with its blank line.\n\n%\nSecond  \n%\n\n%\n", encoding="utf-8")
    assert resolve_sources([str(quotes)])[0].kind == "fortunes"
    assert documents_of(quotes, "auto") == ["\t\tIndented verse,\n\n  kept with its blank line.", "Second  "]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_long_lines_come_in_bounded_pieces_cut_before_spaces(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr("pgt.corpus.readers.PIECE_CHARS", 64)
    words = " ".join(f"word{i}" for i in range(400))  # one line of ~3,600 characters
    path = tmp_path / f"long{suffix}"
    path.write_text(json.dumps({"text": words}) + "\n" if suffix == ".jsonl" else words + "\n", encoding="utf-8")
    pieces = list(resolve_sources([str(path)])[0].pieces())
    assert len(pieces) > 40 and all(len(text) <= 64 for text, _ in pieces)
    assert [end for _, end in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(text for text, _ in pieces) == words  # nothing lost
    assert all(text.startswith(" ") for text, _ in pieces[1:])  # cut before a space: words stay whole


def test_mining_through_the_reader_counts_what_line_by_line_counting_did(corpus_files, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(POEM * 3 + "東京の夜\n\n東京 東京\n", encoding="utf-8")
    files = [*corpus_files[:3], next(p for p in corpus_files if p.parent.name == "ru"), book]
    mined, provenance = mine_ngrams(resolve_sources(list(map(str, files))), (2, 3))
    # Today's rule, written out: every line of every file counted on its own.
    counter = NgramCounter((2, 3))
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            counter.add(line)
    assert mined == {"xx": counter.top(1000)}
    assert [entry["name"] for entry in provenance] == [p.name for p in files]


def test_corpus_takes_jsonl_parquet_and_datasets_with_languages(tmp_path, corpus_files):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pgt.corpus.sources import iter_fortunes

    russian = list(iter_fortunes(next(p for p in corpus_files if p.parent.name == "ru")))[:200]
    (tmp_path / "ru.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in russian), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([{"text": t} for t in russian]), tmp_path / "ru.parquet")
    datasets.Dataset.from_list([{"text": t} for t in russian]).save_to_disk(str(tmp_path / "saved"))
    family = get_family("bvv241-2-3")
    ngrams = collect_ngrams(
        family, corpus=[f"ru={tmp_path / 'ru.jsonl'}", f"de={tmp_path / 'ru.parquet'}", f"ru={tmp_path / 'saved'}"]
    )
    assert {(s["language"], s["name"]) for s in ngrams.sources} == {
        ("ru", "ru.jsonl"),
        ("de", "ru.parquet"),
        ("ru", "saved"),
    }
    assert {"ст", "про"} <= ngrams.strings
    assert [s.language for s in parse_corpus_arg("default")] == [s.language for s in resolve_sources(["default"])]
    assert {s.language for s in resolve_sources(["default"])} == {"en", "ru", "de"}


def test_binary_corpus_files_are_refused_by_name_and_skipped_in_directories(tmp_path):
    blob = tmp_path / "image.txt"
    blob.write_bytes(b"GIF89a\0\0\1\2 words words")
    with pytest.raises(PgtError, match=r"image\.txt is not a text.*looks binary"):
        collect_ngrams(get_family("bvv241-2-3"), corpus=[blob])
    (tmp_path / "notes.txt").write_text("plain words", encoding="utf-8")
    assert [s.name for s in parse_corpus_arg(tmp_path)] == ["notes.txt"]


def test_invalid_utf8_is_counted_and_strict_refuses_it(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("fine text\n\nthen bad bytes: \xff\xfe and more\n".encode("latin-1"))
    assert list(resolve_sources([str(bad)])[0].documents()) == ["fine text", "then bad bytes: \ufffd\ufffd and more"]
    assert "bad.txt: 2 invalid UTF-8 byte(s) replaced by U+FFFD" in capsys.readouterr().err
    with pytest.raises(PgtError, match=r"bad\.txt:3: invalid UTF-8 \(--strict"):
        list(resolve_sources([str(bad)], strict=True)[0].pieces())
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(b'{"text": "ok"}\n{"text": "bad \xc3"}\n')
    assert list(Source(str(jsonl), "jsonl").documents()) == ["ok", "bad \ufffd"]
    assert "bad.jsonl: 1 invalid UTF-8 byte(s)" in capsys.readouterr().err


def test_held_out_documents_of_a_language_are_the_default_corpus_validation_split():
    russian = list(held_out_documents("ru"))
    everything = list(split_documents(["default"], "validation"))
    ru_files = [s for s in resolve_sources(["default"]) if s.language == "ru"]
    ru_documents = {doc for source in ru_files for doc in source.documents()}
    assert russian and set(russian) <= ru_documents
    assert set(russian) < set(everything)
    with pytest.raises(PgtError, match="no source tagged with language 'fr'"):
        list(held_out_documents("fr"))


def test_local_sources_never_touch_the_network(tmp_path, monkeypatch, byte_level_tokenizer_dir):
    import datasets
    import huggingface_hub

    from pgt.data.prepare import prepare_token_data

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    rows = [{"text": f"Document number {i} with some words."} for i in range(50)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "loadable").mkdir()
    (tmp_path / "loadable" / "part.jsonl").write_text((tmp_path / "docs.jsonl").read_text(), encoding="utf-8")
    for index, spec in enumerate([tmp_path / "docs.jsonl", tmp_path / "saved", f"hf:{tmp_path / 'loadable'}"]):
        manifest = prepare_token_data(
            [str(spec)],
            byte_level_tokenizer_dir,
            tmp_path / f"out-{index}",
            val_fraction=0.1,
            min_val_bytes=0,
            progress=False,
        )
        assert manifest.sources[0].documents == 50
    assert attempts == []


def test_a_stalled_hub_is_a_one_line_error_after_the_timeout(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("PGT_HUB_TIMEOUT", "0.5")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(PgtError, match=r"no data from the Hugging Face hub for 0\.5 s") as caught:
        list(resolve_sources(["hf:someone/stalled"])[0].pieces())
    assert time.monotonic() - started < 5
    assert "\n" not in str(caught.value)


def test_language_labels_and_unknown_formats():
    assert resolve_sources(["de=default"])[0].language == "de"
    with pytest.raises(PgtError, match="unknown text format"):
        resolve_sources(["default"], text_format="pages")
