"""`pgt data prepare` never loses a user's work: it refuses outputs that overlap its inputs, holds
its output's lock, cleans only its own stale temporaries, and bad input or damaged shards get
one-line errors. Run through the CLI where a user would meet them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pgt.cli import main
from pgt.corpus.sources import iter_fortunes
from pgt.data.loader import TokenData
from pgt.data.prepare import prepare_token_data
from pgt.errors import PgtError


def prepare(capsys, *args: str) -> tuple[int, str]:
    code = main(["data", "prepare", *args, "--no-progress", "--workers", "1"])
    return code, capsys.readouterr().err


@pytest.fixture
def book(tmp_path, corpus_files) -> Path:
    """One plain text file of paragraphs, as a user's first corpus (nanoGPT's input.txt)."""
    quotes = [q for path in corpus_files[:20] for q in iter_fortunes(path) if all(map(str.strip, q.split("\n")))]
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(quotes[:300]) + "\n", encoding="utf-8")
    return path


def test_a_single_text_file_is_a_corpus_with_defaults(tmp_path, book, byte_level_tokenizer_dir, capsys):
    code = main(
        [
            "data",
            "prepare",
            str(book),
            "--substrate",
            str(byte_level_tokenizer_dir),
            "--out",
            str(tmp_path / "data"),
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = TokenData(tmp_path / "data").manifest
    assert manifest.sources[0].format == "paragraphs"
    assert manifest.sources[0].documents == 300
    assert manifest.splits["validation"].documents > 0 and manifest.splits["train"].documents > 0


@pytest.mark.parametrize(
    "out_of", ["the source file", "the tokenizer directory", "inside the source directory", "around the source file"]
)
def test_an_output_overlapping_an_input_is_refused(tmp_path, book, byte_level_tokenizer_dir, capsys, out_of):
    import shutil

    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(byte_level_tokenizer_dir, tokenizer)
    before = {p: p.read_bytes() for p in [book, *tokenizer.iterdir()]}
    source, out = {
        "the source file": (book, book),
        "the tokenizer directory": (book, tokenizer),
        "inside the source directory": (tmp_path, tmp_path / "data"),
        "around the source file": (book, tmp_path),
    }[out_of]
    code, err = prepare(capsys, str(source), "--substrate", str(tokenizer), "--out", str(out), "--overwrite")
    assert code == 2 and "overlaps the input" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in before} == before


def test_a_second_prepare_of_the_same_output_stops_naming_the_holder(tmp_path, book, byte_level_tokenizer_dir, capsys):
    out = tmp_path / "data"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pgt.io import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = prepare(capsys, str(book), "--substrate", str(byte_level_tokenizer_dir), "--out", str(out))
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"PID {holder.pid}" in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / ".data.prepare-work").exists()


def test_stale_temporaries_of_the_same_output_are_removed(tmp_path, book, byte_level_tokenizer_dir):
    stale = [tmp_path / ".data.tmp-killed", tmp_path / ".data.old-killed"]
    for path in stale:
        path.mkdir()
        (path / "shard.bin").write_bytes(b"\0" * 64)
    others = tmp_path / ".other.tmp-live"
    others.mkdir()
    work = tmp_path / ".data.prepare-work"
    work.mkdir()
    (work / ".progress.json.tmp-killed").write_text("{")
    prepare_token_data([str(book)], byte_level_tokenizer_dir, tmp_path / "data", progress=False)
    assert not any(path.exists() for path in stale)
    assert others.is_dir()  # another output's temporary is not ours to remove
    assert not work.exists()


def test_lone_surrogates_and_empty_jsonl_are_one_line_errors_leaving_nothing(tmp_path, byte_level_tokenizer_dir):
    cases = {
        "surrogate.jsonl": (
            '{"text": "fine"}\n{"text": "half a pair \\ud83d here"}\n',
            r"surrogate\.jsonl:2: field 'text' holds the lone surrogate \\ud83d",
        ),
        "empty.jsonl": ("", r"empty corpus: no documents in .*empty\.jsonl"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(PgtError, match=message) as caught:
            prepare_token_data([str(tmp_path / name)], byte_level_tokenizer_dir, tmp_path / "out", progress=False)
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(cases)


def test_strict_refuses_invalid_utf8_and_the_default_records_the_count(
    tmp_path, book, byte_level_tokenizer_dir, capsys
):
    book.write_bytes(book.read_bytes() + b"\n\nA last paragraph with a bad byte \xff.\n")
    args = [str(book), "--substrate", str(byte_level_tokenizer_dir)]
    code, err = prepare(capsys, *args, "--out", str(tmp_path / "strict"), "--strict")
    assert code == 2 and "invalid UTF-8 (--strict" in err
    code, err = prepare(capsys, *args, "--out", str(tmp_path / "data"))
    assert code == 0 and "1 invalid UTF-8 byte(s) replaced by U+FFFD" in err
    assert TokenData(tmp_path / "data").manifest.sources[0].replaced_bytes == 1


def test_help_says_how_plain_text_is_cut_and_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = capsys.readouterr().out
    assert "by default one document per paragraph" in text and "--format" in text
    assert "examples:\n  pgt data prepare default --substrate" in text and "--hub-split" in text


def test_negative_workers_are_refused_when_parsing(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["data", "prepare", "default", "--substrate", "s", "--out", "o", "--workers", "-3"])
    assert caught.value.code == 2 and "--workers: -3 must be a finite number ≥ 1" in capsys.readouterr().err


@pytest.fixture
def data_dir(tmp_path, book, byte_level_tokenizer_dir) -> Path:
    prepare_token_data([str(book)], byte_level_tokenizer_dir, tmp_path / "data", progress=False)
    return tmp_path / "data"


def test_token_ids_beyond_the_vocabulary_are_a_one_line_error(data_dir):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    shard = data_dir / manifest["splits"]["train"]["shards"][0]["file"]
    ids = np.fromfile(shard, dtype="<u4")
    ids[:] = manifest["tokenizer"]["vocab_size"] + 7  # same size: only the ids tell
    shard.unlink()  # shards are hard links of the work files; write a new file
    ids.tofile(shard)
    with pytest.raises(PgtError, match=r"holds token id \d+ at token \d+, beyond the tokenizer's 400 ids") as caught:
        TokenData(data_dir).train_batch(0, 2, 16, seed=0)
    assert "\n" not in str(caught.value)
    manifest["splits"]["train"]["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PgtError, match="train-00000.bin holds token id"):
        TokenData(data_dir, verify=True)  # the checksum now agrees: --verify reads the ids too


def test_a_bad_id_is_reported_where_it_is(data_dir):
    """A bad id at index 100 of a window starting at 70 was reported "at token 70"."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    shard = data_dir / manifest["splits"]["train"]["shards"][0]["file"]
    ids = np.fromfile(shard, dtype="<u4")
    ids[100] = manifest["tokenizer"]["vocab_size"] + 7
    shard.unlink()
    ids.tofile(shard)
    with pytest.raises(PgtError, match=r"the train split holds token id 407 at token 100, beyond"):
        TokenData(data_dir).splits["train"].read(70, 40)


def test_nested_records_name_the_file_once(data_dir):
    """The message used to read "token data split token data manifest …", two records for one file."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["splits"]["train"]["tokens"] = "many"
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PgtError) as caught:
        TokenData(data_dir)
    assert str(caught.value).startswith(f"token data manifest {data_dir / 'manifest.json'}: field 'splits'['train']")
    assert "token data split" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eos_id", 10**6, "eos_id 1000000 is not an id of the tokenizer's 400"),
        ("eos_id", None, "lacks the field 'eos_id'"),
        ("shard_tokens", "many", "field 'shard_tokens' is 'many', expected int"),
        ("format", "other-format", "field 'format' is 'other-format'"),
    ],
)
def test_a_manifest_with_a_missing_or_wrong_field_is_a_one_line_error(data_dir, field, value, message):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    if value is None:
        del manifest[field]
    else:
        manifest[field] = value
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PgtError, match=message) as caught:
        TokenData(data_dir)
    assert "\n" not in str(caught.value) and "manifest" in str(caught.value)


def test_the_manifest_round_trips_through_its_record(data_dir):
    from pgt.data.manifest import Manifest

    manifest = Manifest.read(data_dir)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.to_json() == json.loads((data_dir / "manifest.json").read_text())


def test_a_manifest_that_repeats_the_tokenizer_fingerprint_still_loads(data_dir):
    """Manifests written before the fingerprint was stored once repeat it as a top-level key."""
    from pgt.data.manifest import Manifest

    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert "tokenizer_fingerprint" not in manifest
    old = {**manifest, "tokenizer_fingerprint": manifest["tokenizer"]["fingerprint"]}
    (data_dir / "manifest.json").write_text(json.dumps(old))
    assert Manifest.read(data_dir).tokenizer_fingerprint == manifest["tokenizer"]["fingerprint"]
    assert TokenData(data_dir).tokenizer_fingerprint == manifest["tokenizer"]["fingerprint"]
