"""`pgt demo` end to end at its smallest settings, reusing the test substrate and token data."""

from __future__ import annotations

import json
import re
from itertools import islice
from pathlib import Path

import pytest
from PIL import Image

from pgt.cli import main
from pgt.demo import PROMPTS
from pgt.eval.results import EvalRecord
from pgt.eval.runner import held_out_texts
from pgt.growth.validation import compressed_bits_per_byte

pytestmark = pytest.mark.xdist_group("demo")  # one worker runs the module's demo once


def demo_args(out: Path, substrate: Path, data: Path, *extra: str) -> list[str]:
    return [
        "demo",
        "--out",
        str(out),
        "--substrate",
        str(substrate),
        "--data",
        str(data),
        "--stages",
        "2",
        "--tokens-per-stage",
        "256",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--eval-docs",
        "3",
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]  # one thread per xdist worker, as conftest sets


@pytest.fixture(scope="module")
def demo(trimmed_substrate_dir: Path, trimmed_token_data_dir: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished tiny demo on a trimmed substrate and its printed lines."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    args = demo_args(out, trimmed_substrate_dir, trimmed_token_data_dir)
    assert main(args) == 0
    return out, args


def test_demo_writes_report_plots_samples_and_glyphs(demo):
    out, _ = demo
    report = (out / "report.md").read_text(encoding="utf-8")
    stage_rows = [
        line for line in report.split("## Stages", 1)[1].split("## ", 1)[0].splitlines() if line.startswith("| `stage-")
    ]
    assert len(stage_rows) == 2
    # The held-out perplexity of each stage is a task column of the report.
    assert re.search(r"\| perplexity \|", report) and "perplexity (perplexity)" not in report
    for png in ("report-loss-curve.png", "report-depth.png", "glyphs.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG" and image.width > 100
    samples = (out / "samples.md").read_text(encoding="utf-8")
    for stage in (1, 2):
        for prompt in PROMPTS:
            assert f"## stage {stage}: {prompt}" in samples
    assert samples.count("```text\n") == 4
    bpbs = []
    for stage in (1, 2):
        result = EvalRecord.load(out / "run" / f"stage-{stage}" / "eval" / "perplexity--default.json")
        assert result.n_examples == 3 and result.value("bpb") > 0
        bpbs.append(result.value("bpb"))
    # The compressors' figures beside the model's, on the same three held-out documents.
    section = report.split("## Held-out bits per byte against compressors", 1)[1]
    rows = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \|$", section, re.MULTILINE))
    assert [float(rows[f"stage {stage}"]) for stage in (1, 2)] == pytest.approx(bpbs, abs=5e-4)
    texts = list(islice(held_out_texts(None), 3))
    assert float(rows["`bzip2 -9`"]) == pytest.approx(
        compressed_bits_per_byte("".join(texts).encode())["bz2_bpb"], abs=5e-4
    )
    assert float(rows["`xz -9e`"]) > 1


def test_identical_glyphs_are_nearest_neighbours(demo):
    """Latin A, Greek Alpha and Cyrillic A look the same in Unifont, so their frozen vectors coincide."""
    out, _ = demo
    neighbours = (out / "neighbours.txt").read_text(encoding="utf-8")
    line = next(line for line in neighbours.splitlines() if line.startswith("'A' (id 65)"))  # the full parent's ids
    first_two = re.findall(r"'(.)' ([\d.]+)", line)[:2]
    assert sorted(token for token, _ in first_two) == ["Α", "А"]
    assert all(float(similarity) == 1.0 for _, similarity in first_two)


def test_rerun_reuses_the_finished_steps(demo, capsys):
    out, args = demo
    finished = [out / "run" / "stage-2" / "stage.json", out / "run" / "stage-2" / "eval" / "perplexity--default.json"]
    before = [path.stat().st_mtime_ns for path in finished]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "resuming the plan" in printed and "already holds this finished run" in printed
    assert [path.stat().st_mtime_ns for path in finished] == before
    assert re.search(r"^\s+2\s+2\s+256\s+[\d.]+\s+[\d.]+$", printed, re.MULTILINE)  # stage 2: 2 blocks, 256 tokens


def test_rerun_with_other_settings_is_a_one_line_error(demo, capsys):
    out, args = demo
    changed = [*args]
    changed[changed.index("--seq-len") + 1] = "12"
    assert main(changed) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "seq_len 16 -> 12" in error and error.count("\n") == 1


def test_a_full_substrate_is_trimmed_to_the_default_corpus(substrate_dir: Path, tmp_path: Path):
    from pgt.demo import ensure_substrate, full_substrate_of
    from pgt.substrate.trim import load_trim_record

    trimmed = ensure_substrate(tmp_path, str(substrate_dir), None, trim=True, progress=False)
    assert trimmed == tmp_path / "substrate" and full_substrate_of(trimmed) == substrate_dir
    record = load_trim_record(trimmed)
    assert record.parent_vocab_size == 65_792 and record.vocab_size < 1_500
    assert ensure_substrate(tmp_path, str(substrate_dir), None, trim=False, progress=False) == substrate_dir


def test_a_killed_demo_continues_where_it_stopped(
    trimmed_substrate_dir: Path, trimmed_token_data_dir: Path, tmp_path: Path, capsys
):
    """SIGKILL the demo once stage 1 is saved; the same command then finishes the run, stage 1 bit-identical."""
    import hashlib
    import subprocess
    import sys
    import time

    out = tmp_path / "demo"
    args = demo_args(out, trimmed_substrate_dir, trimmed_token_data_dir)
    args[args.index("--tokens-per-stage") + 1] = "512"  # long enough a stage 2 to kill it in
    process = subprocess.Popen(
        [sys.executable, "-m", "pgt.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stage_1 = out / "run" / "stage-1" / "stage.json"
    while not stage_1.exists() and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert stage_1.exists() and not (out / "run" / "stage-2").exists(), "the demo was not killed inside stage 2"
    weights = out / "run" / "stage-1" / "model.safetensors"
    saved = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert main(args) == 0
    assert "resuming the plan" in capsys.readouterr().out
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == saved
    assert json.loads((out / "run" / "stage-2" / "stage.json").read_text())["tokens_seen"] == 512
    assert (out / "report.md").is_file()
