"""`pgt substrate build|show` and `pgt tokenize`, end to end through `pgt.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoTokenizer

from pgt.cli import main


@pytest.mark.parametrize("command", [["substrate", "build"], ["substrate", "show"], ["tokenize"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert f"pgt {' '.join(command)} " in capsys.readouterr().out.split("examples:")[1]


def test_tokenize_prints_ids_and_tokens(substrate_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["tokenize", "the nation 😀", "--substrate", str(substrate_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = AutoTokenizer.from_pretrained(str(substrate_dir)).encode("the nation 😀")
    assert lines[0] == f"ids: {ids}"
    assert lines[1].split() == [str(ids[0]), "'the'"]
    assert lines[-1].split() == [str(ids[-1]), "'<0x80>'"]  # last UTF-8 byte of the emoji


def test_show_writes_png_and_lists_lookalikes(substrate_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    png = tmp_path / "A.png"
    assert main(["substrate", "show", "A", "--substrate", str(substrate_dir), "--png", str(png), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "token 65 'A'; nearest by cosine:"
    assert {line.split()[-1] for line in out[1:3]} == {"'Α'", "'А'"}  # Greek and Cyrillic capital A
    assert len(out) == 5
    image = Image.open(png)
    assert image.size == (32, 32) and image.getextrema() == (0, 255)

    assert main(["substrate", "show", "A b", "--substrate", str(substrate_dir), "-k", "1"]) == 0
    assert "'A b' is not one token but 3; showing the first:" in capsys.readouterr().out


def test_build_from_tokenizer_then_tokenize(byte_level_tokenizer_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "nemo"
    assert (
        main(
            [
                "substrate",
                "build",
                "--from-tokenizer",
                str(byte_level_tokenizer_dir),
                "--dim",
                "8",
                "--workers",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert f"built {out}" in capsys.readouterr().out
    meta = json.loads((out / "substrate.json").read_text(encoding="utf-8"))
    assert (meta["params"]["family"], meta["vocab_size"], meta["dim"]) == ("bvv241-nemo", 400, 8)
    assert main(["tokenize", "the", "--substrate", str(out)]) == 0
    assert "'the'" in capsys.readouterr().out

    assert main(["substrate", "build", "--from-tokenizer", str(byte_level_tokenizer_dir), "--out", str(out)]) == 2
    assert "error: output directory" in capsys.readouterr().err


def test_build_arguments_reach_their_readers(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    corrupt, empty = tmp_path / "corrupt.txt", tmp_path / "empty.txt"
    corrupt.write_text("[{'lang': ", encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    cases = [
        (["--ngrams", str(corrupt)], f"n-gram file {corrupt} is not a Python literal"),
        (["--extra-tokens", str(tmp_path / "missing.txt")], "extra-token file not found"),
        (["--corpus", f"en={empty}"], "the corpus yields no n-grams"),
        (["--corpus", str(empty), "--dim", "5000"], "embedding dim 5000"),
    ]
    for arguments, message in cases:
        assert main(["substrate", "build", "--family", "bvv241-2-3", *arguments, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert main(["substrate", "build", "--out", str(tmp_path / "out")]) == 2
    assert "--family is required" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["corrupt.txt", "empty.txt"]
    assert main(["substrate"]) == 2 and "give a command" in capsys.readouterr().err


def test_bad_numbers_are_refused_at_parse_time(capsys: pytest.CaptureFixture[str]):
    for flag, value in (("--workers", "-3"), ("--dim", "0")):
        with pytest.raises(SystemExit) as exit_info:
            main(["substrate", "build", "--family", "bvv241-2-3", flag, value, "--out", "x"])
        assert exit_info.value.code == 2 and f"{value} must be a finite number" in capsys.readouterr().err


def children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_sigkill_of_a_build_leaves_no_render_workers(corpus_files: list[Path], tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "pgt",
        "substrate",
        "build",
        "--family",
        "bvv241-abs",
        "--workers",
        "2",
        "--corpus",
        *map(str, corpus_files[:2]),
        "--dim",
        "8",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and build.poll() is None:
            time.sleep(0.2)
            workers = children_of(build.pid)
        assert len(workers) >= 2, "the build never started its render workers"
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)]
    finally:
        build.kill()
        for pid in workers:  # only if the test failed: do not leave them running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not (tmp_path / "out").exists()


def test_strict_refuses_invalid_utf8_in_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from pgt.substrate.layout import get_family
    from pgt.substrate.ngrams import collect_ngrams

    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(b"the nation and the station\n" + "caf\xe9 crème\n".encode("latin-1"))
    out = tmp_path / "out"
    assert (
        main(
            ["substrate", "build", "--family", "bvv241-2-3", "--corpus", f"en={corpus}", "--strict", "--out", str(out)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{corpus}:2: invalid UTF-8 (--strict" in err and err.count("\n") == 1
    assert not out.exists()
    # Without --strict the same corpus is mined, with a warning that counts the replaced bytes.
    ngrams = collect_ngrams(get_family("bvv241-2-3"), corpus=[f"en={corpus}"])
    assert "th" in ngrams.strings
    assert "2 invalid UTF-8 byte(s) replaced by U+FFFD" in capsys.readouterr().err
