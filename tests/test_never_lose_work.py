"""Never lose work: every command that takes --out, with and without --overwrite, on a
directory pgt did not write, on an input, on a file, on a read-only and on a full directory: nothing
that existed before is lost, and the error is one line. Tested in process through `pgt.cli.main`."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgt.cli import main as pgt_main

# A tiny growth run: one stage of 6 steps, a checkpoint every 3.
GROW = [
    "--stages",
    "1",
    "--tokens-per-stage",
    str(2 * 16 * 6),
    "--batch-size",
    "2",
    "--seq-len",
    "16",
    "--heads",
    "2",
    "--context",
    "32",
    "--eval-tokens",
    "512",
    "--checkpoint-every",
    "3",
    "--no-progress",
]


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under `roots` with its bytes."""
    found = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        found.update({str(p): p.read_bytes() for p in paths if p.is_file() and not p.is_symlink()})
    return found


def lost(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Files that existed before and are gone or changed."""
    return [path for path, data in before.items() if after.get(path) != data]


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run `pgt ARGV`; it must fail with exactly one `error:` line and no traceback."""
    capsys.readouterr()
    assert pgt_main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


@contextlib.contextmanager
def full_disk(limit: int = 256) -> Iterator[None]:
    """Writes of more than `limit` bytes fail with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@dataclass
class Command:
    argv: Callable[[Path], list[str]]  # the command line for an --out
    inputs: list[Path]  # what it reads; an --out at the first directory among them overlaps an input
    make: bool = True  # a first run can write a real output quickly (for the full-disk case)

    def line(self, out: Path) -> list[str]:
        return [str(a) for a in self.argv(out)]


@pytest.fixture(scope="module")
def world(substrate_dir, token_data_dir, corpus_files, tmp_path_factory) -> dict[str, Command]:
    """Every command that takes --out, with tiny real inputs."""
    from pgt.model.loading import init_model_dir

    root = tmp_path_factory.mktemp("inputs")
    experts = [
        init_model_dir(substrate_dir, root / f"expert-{i}", layers=1, heads=2, seed=i, max_position_embeddings=32)
        for i in range(2)
    ]
    merged = root / "merged"
    assert pgt_main(["merge", *map(str, experts), "--mode", "adapter", "--out", str(merged)]) == 0
    run = root / "run"
    assert (
        pgt_main(["grow", "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--out", str(run), *GROW])
        == 0
    )
    text = root / "text.txt"
    text.write_text(
        "\n\n".join(f"Note {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(16)),
        encoding="utf-8",
    )
    s, d = str(substrate_dir), str(token_data_dir)
    return {
        "substrate build": Command(
            lambda out: [
                "substrate",
                "build",
                "--family",
                "bvv241-2-3",
                "--corpus",
                str(text),
                "--dim",
                "64",
                "--out",
                out,
            ],
            [text],
            make=False,
        ),
        "substrate trim": Command(
            lambda out: ["substrate", "trim", s, "--data", d, "--out", out], [substrate_dir, token_data_dir]
        ),
        "init": Command(
            lambda out: ["init", "--substrate", s, "--layers", "1", "--heads", "2", "--out", out], [substrate_dir]
        ),
        "data prepare": Command(
            lambda out: [
                "data",
                "prepare",
                str(text),
                "--substrate",
                s,
                "--min-val-bytes",
                "0",
                "--val-fraction",
                "0.5",
                "--workers",
                "1",
                "--no-progress",
                "--out",
                out,
            ],
            [text, substrate_dir],
        ),
        "merge": Command(lambda out: ["merge", *map(str, experts), "--out", out], experts),
        "tune": Command(
            lambda out: [
                "tune",
                str(merged),
                "--data",
                d,
                "--tokens",
                "64",
                "--batch-size",
                "2",
                "--seq-len",
                "16",
                "--device",
                "cpu",
                "--no-progress",
                "--out",
                out,
            ],
            [merged, token_data_dir],
        ),
        "grow": Command(
            lambda out: ["grow", "--substrate", s, "--data", d, *GROW, "--out", out], [substrate_dir, token_data_dir]
        ),
        "eval": Command(
            lambda out: [
                "eval",
                str(experts[0]),
                "--task",
                "perplexity",
                "--data",
                str(text),
                "--no-progress",
                "--out",
                out,
            ],
            [text],
        ),
        "report": Command(lambda out: ["report", str(run), "--out", out], [run]),
        "demo": Command(lambda out: ["demo", "--out", out], [], make=False),
        "study": Command(lambda out: ["study", "--out", out], [], make=False),
    }


COMMANDS = [
    "substrate build",
    "substrate trim",
    "init",
    "data prepare",
    "merge",
    "tune",
    "grow",
    "eval",
    "report",
    "demo",
    "study",
]
TAKES_OVERWRITE = set(COMMANDS) - {"demo", "study"}


def _out_name(name: str) -> str:
    return "out.md" if name == "report" else "out"


@pytest.mark.parametrize("name", COMMANDS)
def test_out_never_destroys_what_exists(name, world, tmp_path, capsys):
    """A foreign directory, a file, an input: refused in one line, with and without --overwrite."""
    command = world[name]
    flags = [[], ["--overwrite"]] if name in TAKES_OVERWRITE else [[]]
    foreign = tmp_path / ("thesis.md" if name == "report" else "thesis")
    if name == "report":
        foreign.write_text("# my notes\n")  # a user's Markdown file where the page would go
    else:
        foreign.mkdir()
        (foreign / "thesis.tex").write_text("\\documentclass{article}")
        # eval adds its result files to a directory: a user's file of the result's name is what it must keep
        (foreign / "perplexity--text.json").write_text('{"mine": true}')
    a_file = tmp_path / ("notes.md" if name == "report" else "notes.txt")
    a_file.write_text("mine")
    inputs = [p for p in command.inputs if p.is_dir()]
    before = snapshot(tmp_path, *command.inputs)
    for extra in flags:
        assert "not written by pgt" in one_line_error([*command.line(foreign), *extra], capsys) or not extra
        one_line_error([*command.line(a_file), *extra], capsys)
        one_line_error([*command.line(a_file / _out_name(name)), *extra], capsys)  # through a file
        if name == "report":  # its input is the run; the page beside a stage is the model card
            one_line_error([*command.line(world["report"].inputs[0] / "stage-1" / "README.md"), *extra], capsys)
        for source in inputs[:1]:
            one_line_error([*command.line(source), *extra], capsys)
    assert not lost(before, snapshot(tmp_path, *command.inputs))
    assert not list(tmp_path.rglob("*.lock"))  # locks go with the command


@pytest.mark.parametrize("name", [n for n in COMMANDS if n in TAKES_OVERWRITE])
def test_a_full_disk_keeps_the_previous_output(name, world, tmp_path, capsys):
    """--overwrite of pgt's own output when no file can be written: a one-line error, the old output intact."""
    command = world[name]
    if not command.make:
        pytest.skip(f"pgt {name} takes minutes to make a first output")
    out = tmp_path / _out_name(name)
    assert pgt_main(command.line(out)) == 0
    before = snapshot(tmp_path, *command.inputs)
    with full_disk():
        line = one_line_error([*command.line(out), "--overwrite"], capsys)
    assert "File too large" in line or "No space" in line, line
    assert not lost(before, snapshot(tmp_path, *command.inputs))
    assert not [p for p in tmp_path.rglob(".*tmp-*")]  # no half-written temporaries stay behind


@pytest.mark.parametrize("name", [n for n in COMMANDS if n in TAKES_OVERWRITE])
def test_a_read_only_directory_is_one_line(name, world, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    command = world[name]
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "kept.txt").write_text("mine")
    locked.chmod(0o555)
    try:
        for extra in ([], ["--overwrite"]):
            one_line_error([*command.line(locked / _out_name(name)), *extra], capsys)
        assert (locked / "kept.txt").read_text() == "mine"
    finally:
        locked.chmod(0o755)
        shutil.rmtree(locked)


def test_no_library_progress_bars_nor_lock_files_when_stderr_is_not_a_terminal(substrate_dir, tmp_path):
    """As a user's pipe sees it (transformers drew a bar per model load)."""
    import subprocess
    import sys

    def pgt(*argv: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "pgt", *argv], capture_output=True, text=True, timeout=300, check=True
        ).stderr

    model = tmp_path / "model"
    err = pgt("init", "--substrate", str(substrate_dir), "--layers", "1", "--heads", "2", "--out", str(model))
    err += pgt("eval", str(model), "--task", "perplexity", "--limit", "2", "--out", str(tmp_path / "results"))
    assert "it/s" not in err and "Loading weights" not in err, err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []  # no lock, no temporary


def test_report_replaces_only_its_own_page(world, tmp_path, capsys):
    """An existing page is refused without --overwrite; --overwrite rewrites a page pgt wrote."""
    page = tmp_path / "report.md"
    argv = world["report"].line(page)
    assert pgt_main(argv) == 0
    first = page.read_bytes()
    assert "already exists" in one_line_error(argv, capsys) and page.read_bytes() == first
    assert pgt_main([*argv, "--overwrite"]) == 0 and page.read_text().startswith("<!-- written by pgt report")


def test_a_second_eval_of_the_same_task_into_the_same_place_is_refused_while_the_first_runs(world, tmp_path, capsys):
    """Both passed the early "already exists" check and the second replaced the first; the
    result's lock is held from the check through the write."""
    from pgt.io import output_lock

    out = tmp_path / "results"
    result = out / "perplexity--text.json"
    with output_lock(result):  # a first `pgt eval` of the same task, still computing
        line = one_line_error(world["eval"].line(out), capsys)
    assert f"{result} is in use by another pgt process" in line and not result.exists()
    assert pgt_main(world["eval"].line(out)) == 0 and result.is_file()
    assert "already exists" in one_line_error(world["eval"].line(out), capsys)
