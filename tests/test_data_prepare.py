"""`pgt data prepare`: shards decode back to the documents, manifests tell the truth, output is
deterministic (workers, resumption after SIGKILL) and bad input gets one-line errors."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from pgt.cli import main
from pgt.corpus.sources import iter_fortunes, resolve_sources
from pgt.data import prepare as prepare_module
from pgt.data.prepare import prepare_token_data
from pgt.data.splits import iter_chunks, split_documents, split_of
from pgt.errors import PgtError


@pytest.fixture(scope="module")
def fortune_files(corpus_files: list[Path]) -> list[Path]:
    """A few real fortune files in each language (about 100 KB)."""
    by_language = {"en": [], "ru": [], "de": []}
    for path in corpus_files:
        language = path.parent.name if path.parent.name in by_language else "en"
        if 5_000 < path.stat().st_size < 40_000:
            by_language[language].append(path)
    return [path for files in by_language.values() for path in files[:2]]


@pytest.fixture(scope="module")
def tokenizer(byte_level_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(byte_level_tokenizer_dir))


def read_split(out: Path, manifest: dict, split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(out / shard.file, dtype="<u4") for shard in manifest.splits[split].shards])


def decode_documents(ids: np.ndarray, tokenizer) -> list[str]:
    """Cut a split's stream at the eos ids and decode every document."""
    eos = np.flatnonzero(ids == tokenizer.eos_token_id)
    assert eos.size and eos[-1] == len(ids) - 1, "every document, the last included, ends with eos"
    bounds = zip(np.concatenate([[0], eos[:-1] + 1]), eos, strict=True)
    return [tokenizer.decode(ids[a:b].tolist(), clean_up_tokenization_spaces=False) for a, b in bounds]


def leftovers(directory: Path) -> list[str]:
    """What is in `directory` (an output's lock, `.NAME.lock`, goes when its command ends)."""
    return sorted(p.name for p in directory.iterdir())


def directory_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_shards_decode_to_the_source_documents(tmp_path, fortune_files, tokenizer, byte_level_tokenizer_dir):
    jsonl = tmp_path / "notes.jsonl"
    records = [{"text": "Erste Zeile.\nZweite Zeile.", "id": 1}, {"text": "Ещё одна запись.", "id": 2}]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    out = tmp_path / "data"
    sources = [*map(str, fortune_files), str(jsonl)]
    manifest = prepare_token_data(sources, byte_level_tokenizer_dir, out, val_fraction=0.2, progress=False)

    documents = [text for path in fortune_files for text in iter_fortunes(path)] + [r["text"] for r in records]
    threshold = manifest.split.validation_threshold
    assert threshold == pytest.approx(0.2)  # the corpus is large enough for the fraction alone
    for split in ("train", "validation"):
        expected = [doc for doc in documents if split_of(doc, threshold) == split]
        ids = read_split(out, manifest, split)
        assert decode_documents(ids, tokenizer) == expected
        assert list(split_documents(sources, split, val_fraction=0.2)) == expected
        described = manifest.splits[split]
        assert described.documents == len(expected)
        assert described.tokens == len(ids)
        assert described.bytes == sum(len(doc.encode()) for doc in expected)
        for shard in described.shards:
            assert hashlib.sha256((out / shard.file).read_bytes()).hexdigest() == shard.sha256
    assert 0 < manifest.splits["validation"].documents < manifest.splits["train"].documents
    assert manifest.eos_id == tokenizer.eos_token_id and manifest.dtype == "uint32"
    expected_fingerprint = hashlib.sha256((byte_level_tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert manifest.tokenizer_fingerprint == "sha256:" + expected_fingerprint
    sources = manifest.sources
    assert [s.path for s in sources] == [str(p.resolve()) for p in [*fortune_files, jsonl]]
    assert [s.format for s in sources] == ["fortunes"] * len(fortune_files) + ["jsonl"]
    assert sources[-1].documents == 2
    assert sources[0].sha256 == hashlib.sha256(fortune_files[0].read_bytes()).hexdigest()
    assert sources[0].bytes == fortune_files[0].stat().st_size
    assert leftovers(tmp_path) == ["data", "notes.jsonl"]  # no work or temp dirs left


def test_large_text_file_is_one_document_read_in_pieces(
    tmp_path, monkeypatch, fortune_files, tokenizer, byte_level_tokenizer_dir
):
    monkeypatch.setattr("pgt.corpus.readers.PIECE_CHARS", 500)
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(iter_fortunes(fortune_files[0])), encoding="utf-8")
    manifest = prepare_token_data(
        [str(book)], byte_level_tokenizer_dir, tmp_path / "data", val_fraction=0, text_format="text", progress=False
    )
    assert manifest.sources[0].format == "text"
    assert decode_documents(read_split(tmp_path / "data", manifest, "train"), tokenizer) == [
        book.read_text(encoding="utf-8")
    ]


def test_directory_walk_and_text_formats(tmp_path, fortune_files):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "quotes").write_bytes(fortune_files[0].read_bytes())
    (corpus / "sub" / "notes.jsonl").write_text('{"text": "a note"}\n')
    (corpus / "sub" / "table.parquet").write_bytes(b"")  # parquet is chosen by name; read later
    (corpus / "story.txt").write_text("Line one.\nLine two.\n")
    (corpus / ".hidden.txt").write_text("not corpus")
    (corpus / "link.txt").symlink_to(corpus / "story.txt")
    (corpus / "index.dat").write_bytes(b"\0\0\1binary")
    found = resolve_sources([str(corpus)])
    assert [(Path(s.path).relative_to(corpus.resolve()).as_posix(), s.kind) for s in found] == [
        ("quotes", "fortunes"),
        ("story.txt", "paragraphs"),
        ("sub/notes.jsonl", "jsonl"),
        ("sub/table.parquet", "parquet"),
    ]
    assert list(found[1].pieces()) == [("Line one.\nLine two.", True)]  # one paragraph, its last line end dropped
    whole = resolve_sources([str(corpus / "story.txt")], text_format="text")[0]
    assert list(whole.pieces()) == [("Line one.\nLine two.\n", True)]
    lines = resolve_sources([str(corpus / "story.txt")], text_format="lines")[0]
    assert list(lines.pieces()) == [("Line one.", True), ("Line two.", True)]
    forced = resolve_sources([str(corpus / "story.txt")], text_format="fortunes")[0]
    assert list(forced.pieces()) == [("Line one.\nLine two.", True)]


def test_output_is_independent_of_workers_and_chunking(tmp_path, fortune_files, byte_level_tokenizer_dir):
    common = dict(val_fraction=0.1, shard_tokens=3_000, progress=False)
    one = prepare_token_data(
        list(map(str, fortune_files)), byte_level_tokenizer_dir, tmp_path / "one", workers=1, **common
    )
    two = prepare_token_data(
        list(map(str, fortune_files)),
        byte_level_tokenizer_dir,
        tmp_path / "two",
        workers=2,
        chunk_chars=2_000,
        **common,
    )
    assert len(one.splits["train"].shards) > 5  # shard boundaries are exercised
    assert all(shard.tokens == 3_000 for shard in one.splits["train"].shards[:-1])
    assert one == two
    assert directory_bytes(tmp_path / "one") == directory_bytes(tmp_path / "two")


def test_split_of_a_document_does_not_depend_on_other_sources(
    tmp_path, fortune_files, tokenizer, byte_level_tokenizer_dir
):
    def documents(sources: list[Path], out: Path) -> dict[str, set[str]]:
        manifest = prepare_token_data(
            list(map(str, sources)), byte_level_tokenizer_dir, out, val_fraction=0.3, min_val_bytes=0, progress=False
        )
        return {
            split: set(decode_documents(read_split(out, manifest, split), tokenizer))
            for split in ("train", "validation")
        }

    few = documents(fortune_files[:2], tmp_path / "few")
    more = documents(fortune_files, tmp_path / "more")
    assert few["validation"] and few["validation"] <= more["validation"]
    assert few["train"] <= more["train"]
    assert not more["train"] & more["validation"]


def test_jsonl_parquet_and_saved_datasets_give_the_same_tokens(tmp_path, fortune_files, byte_level_tokenizer_dir):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [text for path in fortune_files[:3] for text in iter_fortunes(path)]
    rows = [{"body": text, "n": i} for i, text in enumerate(texts)]
    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet", row_group_size=50)
    dataset = datasets.Dataset.from_list(rows)
    dataset.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"other": dataset.select(range(3)), "main": dataset}).save_to_disk(
        str(tmp_path / "saved-dict")
    )
    (tmp_path / "loadable").mkdir()
    (tmp_path / "loadable" / "part.jsonl").write_text(
        (tmp_path / "docs.jsonl").read_text(encoding="utf-8"), encoding="utf-8"
    )

    inputs = {
        "jsonl": [str(tmp_path / "docs.jsonl")],
        "parquet": [str(tmp_path / "docs.parquet")],
        "saved": [str(tmp_path / "saved")],
        "saved-dict": [str(tmp_path / "saved-dict")],
        "load_dataset": [f"hf:{tmp_path / 'loadable'}"],
    }
    results = {}
    for name, sources in inputs.items():
        split = "main" if name == "saved-dict" else "train"
        manifest = prepare_token_data(
            sources,
            byte_level_tokenizer_dir,
            tmp_path / f"out-{name}",
            text_field="body",
            hub_split=split,
            val_fraction=0.1,
            min_val_bytes=0,
            progress=False,
        )
        assert manifest.sources[0].documents == len(texts), name
        results[name] = (manifest.splits, directory_bytes(tmp_path / f"out-{name}") | {"manifest.json": b""})
    assert all(result == results["jsonl"] for result in results.values())
    # Datasets have no single file to hash: their documents' text is hashed, identically for both kinds.
    assert (
        len(
            {
                json.loads((tmp_path / f"out-{n}" / "manifest.json").read_text())["sources"][0]["sha256"]
                for n in ("saved", "load_dataset")
            }
        )
        == 1
    )


def test_reading_resumes_exactly_where_any_chunk_ended(fortune_files):
    sources = resolve_sources(list(map(str, fortune_files[:4])))
    identities = [source.identity() for source in sources]
    chunks = list(iter_chunks(sources, identities, (0, 0), 0.1, chunk_chars=4_000))
    assert len(chunks) > len(sources)  # sources span several chunks, and chunks span sources
    assert any(chunk.finished_sources and chunk.position[1] > 0 for chunk in chunks)  # a chunk across a boundary
    for done in range(len(chunks)):
        rest = list(iter_chunks(sources, identities, chunks[done].position, 0.1, chunk_chars=4_000))
        assert [t for c in rest for t in c.texts] == [t for c in chunks[done + 1 :] for t in c.texts]
        assert [s for c in rest for s in c.splits] == [s for c in chunks[done + 1 :] for s in c.splits]
        assert [r for c in rest for r in c.finished_sources] == [
            r for c in chunks[done + 1 :] for r in c.finished_sources
        ]


def _prepare_then_die(sources: list[str], tokenizer_dir: str, out: str, kill_after_writes: int) -> None:
    """Child process (with 2 workers of its own): record progress after every chunk, SIGKILL itself mid-write."""
    prepare_module.PROGRESS_INTERVAL_S = 0.0
    original_write = prepare_module.ShardWriter.write
    calls = 0

    def write_then_maybe_die(self, ids):
        nonlocal calls
        calls += 1
        if calls == kill_after_writes:
            original_write(self, ids[: len(ids) // 2])
            self._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        original_write(self, ids)

    prepare_module.ShardWriter.write = write_then_maybe_die
    prepare_token_data(
        sources, tokenizer_dir, out, val_fraction=0.1, shard_tokens=2_000, chunk_chars=3_000, workers=2, progress=False
    )


def test_resume_after_sigkill_gives_identical_output(tmp_path, fortune_files, byte_level_tokenizer_dir):
    sources = list(map(str, fortune_files))
    reference = prepare_token_data(
        sources, byte_level_tokenizer_dir, tmp_path / "reference", val_fraction=0.1, shard_tokens=2_000, progress=False
    )

    out = tmp_path / "resumed"
    child = multiprocessing.get_context("fork").Process(
        target=_prepare_then_die, args=(sources, str(byte_level_tokenizer_dir), str(out), 25)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    assert not out.exists()
    progress = json.loads((tmp_path / ".resumed.prepare-work" / "progress.json").read_text())
    assert progress["splits"]["train"]["finished"], "killed mid-way: some shards were finished already"

    resumed = prepare_token_data(
        sources, byte_level_tokenizer_dir, out, val_fraction=0.1, shard_tokens=2_000, progress=False
    )
    assert resumed == reference
    assert directory_bytes(out) == directory_bytes(tmp_path / "reference")
    assert not (tmp_path / ".resumed.prepare-work").exists()


def test_a_different_command_does_not_resume_stale_work(tmp_path, fortune_files, byte_level_tokenizer_dir):
    work = tmp_path / ".data.prepare-work"
    work.mkdir()
    (work / "progress.json").write_text(
        json.dumps({"key": "another command", "source": 3, "piece": 0, "sources": [], "splits": {}})
    )
    (work / "train-00000.bin").write_bytes(b"\1\0\0\0" * 10)
    fresh = prepare_token_data(
        list(map(str, fortune_files[:2])), byte_level_tokenizer_dir, tmp_path / "data", progress=False
    )
    clean = prepare_token_data(
        list(map(str, fortune_files[:2])), byte_level_tokenizer_dir, tmp_path / "clean", progress=False
    )
    assert fresh == clean


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "fine"}\n{"text": broken}\n', r"bad\.jsonl:2: malformed JSON"),
        ('{"text": "fine"}\n\n{"body": "x"}\n', r"bad\.jsonl:3: expected an object with a string field 'text'"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, message, byte_level_tokenizer_dir):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(PgtError, match=message):
        prepare_token_data([str(tmp_path / "bad.jsonl")], byte_level_tokenizer_dir, tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == ["bad.jsonl"]  # nothing half-written


def test_bad_inputs_get_one_line_errors(tmp_path, fortune_files, byte_level_tokenizer_dir):
    def error_of(sources: list[str], **options) -> str:
        with pytest.raises(PgtError) as caught:
            prepare_token_data(
                sources, byte_level_tokenizer_dir, options.pop("out", tmp_path / "out"), progress=False, **options
            )
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "source not found: " + str(tmp_path / "missing.txt") in error_of([str(tmp_path / "missing.txt")])
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    assert "empty corpus" in error_of([str(tmp_path / "empty.txt"), str(tmp_path / "empty.jsonl")])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "broken.parquet: unreadable parquet file" in error_of([str(tmp_path / "broken.parquet")])
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    assert "looks binary" in error_of([str(tmp_path / "blob.bin")])
    (tmp_path / "exists").mkdir()
    assert "already exists" in error_of([str(fortune_files[0])], out=tmp_path / "exists")
    (tmp_path / "one.txt").write_text("A single short document.")
    assert "validation split is empty" in error_of([str(tmp_path / "one.txt")], val_fraction=0.01, min_val_bytes=0)
    assert "hf:NAME" in error_of(["hf:"])
    assert leftovers(tmp_path) == [
        "blob.bin",
        "broken.parquet",
        "empty.jsonl",
        "empty.txt",
        "exists",
        "one.txt",
    ]


def test_hub_dataset_offline_is_a_clear_error(tmp_path, byte_level_tokenizer_dir, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        PgtError, match=r"cannot load Hugging Face dataset 'no-such-user/no-such-corpus'.*network"
    ) as caught:
        prepare_token_data(
            ["hf:no-such-user/no-such-corpus"], byte_level_tokenizer_dir, tmp_path / "out", progress=False
        )
    assert "\n" not in str(caught.value)


def test_cli_prepare_and_show(tmp_path, fortune_files, byte_level_tokenizer_dir, capsys):
    out = tmp_path / "data"
    argv = [
        "data",
        "prepare",
        *map(str, fortune_files[:2]),
        "--substrate",
        str(byte_level_tokenizer_dir),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "train:" in capsys.readouterr().out
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: output directory {out} already exists")
    (out / "stray-file").write_text("replaced by --overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "stray-file").exists() and (out / "manifest.json").is_file()
    assert main(["data", "show", str(out), "--verify"]) == 0
    assert "all shards match their sha256" in capsys.readouterr().out


def test_default_source_is_the_embedded_fortune_corpus(corpus_files):
    sources = resolve_sources(["default"])
    assert [source.path for source in sources] == [str(p.resolve()) for p in corpus_files]
    assert {source.kind for source in sources} == {"fortunes"}
    assert {Path(source.path).parent.name for source in sources} >= {"ru", "de"}


def test_real_substrate_tokenizer(tmp_path, request, fortune_files):
    pytest.importorskip("pgt.substrate.build", reason="build_substrate is not available yet")
    substrate_dir: Path = request.getfixturevalue("substrate_dir")
    from pgt.substrate.store import Substrate

    substrate = Substrate.load(substrate_dir)
    out = tmp_path / "data"
    manifest = prepare_token_data(list(map(str, fortune_files)), substrate_dir, out, val_fraction=0.2, progress=False)
    assert manifest.tokenizer_fingerprint == substrate.fingerprint
    assert manifest.eos_id == substrate.tokenizer.eos_token_id == 0xE002
    for split in ("train", "validation"):
        documents = decode_documents(read_split(out, manifest, split), substrate.tokenizer)
        expected = list(split_documents(list(map(str, fortune_files)), split, val_fraction=0.2))
        assert len(documents) == len(expected) == manifest.splits[split].documents > 10
        # bvv241 decoding concatenates token texts: text inside the Basic Multilingual Plane comes back exactly.
        exact = [(got, want) for got, want in zip(documents, expected, strict=True) if max(map(ord, want)) < 0xD800]
        assert len(exact) > 0.9 * len(expected) and all(got == want for got, want in exact)
