"""Trust: SIGKILL + rerun gives bit-identical weights; damaged checkpoints and NaN losses stop clearly;
nothing a user trained is lost to a bad --overwrite, a lost pointer, a second process or a failed start
(tested end to end through `python -m pgt grow`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import checkpoint_pointer, grow_until_stage_checkpoint
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.errors import PgtError
from pgt.growth.checkpoint import load_checkpoint

# Two stages, LoRA in the second, a checkpoint every 3 of 16 steps per stage.
ARGS = [
    "--stages",
    "2",
    "--init",
    "random",
    "--lora-from",
    "2",
    "--tokens-per-stage",
    str(4 * 32 * 16),
    "--batch-size",
    "4",
    "--seq-len",
    "32",
    "--heads",
    "4",
    "--context",
    "64",
    "--eval-every",
    "8",
    "--eval-tokens",
    "2048",
    "--checkpoint-every",
    "3",
    "--log-every",
    "4",
    "--lr",
    "3e-3",
    "--no-progress",
]


def command(substrate_dir, token_data_dir, out) -> list[str]:
    return ["grow", "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--out", str(out), *ARGS]


def pgt(*argv, check_rc: int | None = None) -> subprocess.CompletedProcess:
    """`python -m pgt ARGV` in a subprocess, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "pgt", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
        check=False,
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stderr[-3000:]
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The `error: ...` line of a refused command; there is no traceback."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    return line


def snapshot(run_dir) -> dict[str, bytes]:
    """Every file of a run directory (but its lock), for before/after comparisons."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def killed_run(substrate_dir, token_data_dir, tmp_path_factory):
    """A `pgt grow` subprocess SIGKILLed in stage 2, after at least one stage-2 checkpoint."""
    out = tmp_path_factory.mktemp("resume") / "killed"
    process = grow_until_stage_checkpoint(command(substrate_dir, token_data_dir, out), out, stage=2, seconds=240)
    # A second `pgt grow` on the same --out while the first runs is refused in one line
    # (the first is paused meanwhile, so it is still in stage 2 when it is killed).
    process.send_signal(signal.SIGSTOP)
    second = pgt(*command(substrate_dir, token_data_dir, out))
    assert f"is in use by another pgt process (PID {process.pid})" in one_line_error(second)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "stage-2").exists()
    snapshot = out.parent / "snapshot"  # the killed state, for the damage tests
    shutil.copytree(out, snapshot)
    return out, snapshot


@pytest.fixture(scope="module")
def uninterrupted(substrate_dir, token_data_dir, tmp_path_factory):
    fresh = tmp_path_factory.mktemp("resume") / "uninterrupted"
    assert pgt_main(command(substrate_dir, token_data_dir, fresh)) == 0
    return fresh


def assert_same_stages(run_a, run_b) -> None:
    for stage in (1, 2):
        a = load_file(str(run_a / f"stage-{stage}" / "model.safetensors"))
        b = load_file(str(run_b / f"stage-{stage}" / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"stage {stage} differs"


def test_sigkill_then_rerun_ends_bit_identical(killed_run, uninterrupted, substrate_dir, token_data_dir):
    killed, _ = killed_run
    assert pgt_main(command(substrate_dir, token_data_dir, killed)) == 0  # the same command again
    fresh = uninterrupted
    for stage in (1, 2):
        a = load_file(str(killed / f"stage-{stage}" / "model.safetensors"))
        b = load_file(str(fresh / f"stage-{stage}" / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"stage {stage} differs"
    lines = [(killed / "metrics.jsonl").read_text().splitlines(), (fresh / "metrics.jsonl").read_text().splitlines()]
    strip = [[{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in f] for f in lines]
    assert strip[0] == strip[1]  # the killed tail was cut back, no duplicates


def damaged_copy(killed_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(killed_run[1], copy)
    return copy, copy / "checkpoints" / checkpoint_pointer(copy)


def test_truncated_checkpoint_is_a_clear_error(killed_run, substrate_dir, token_data_dir, tmp_path):
    run_dir, checkpoint = damaged_copy(killed_run, tmp_path)
    tensors = checkpoint / "trainable.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(PgtError, match="checkpoint file .*trainable.safetensors is corrupt"):
        load_checkpoint(run_dir)
    assert pgt_main(command(substrate_dir, token_data_dir, run_dir)) == 2  # `error: ...`, no fresh start
    assert not (run_dir / "stage-2").exists()


def test_flipped_byte_and_missing_checkpoint_are_clear_errors(killed_run, tmp_path):
    run_dir, checkpoint = damaged_copy(killed_run, tmp_path)
    data = bytearray((checkpoint / "optimizer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (checkpoint / "optimizer.safetensors").write_bytes(bytes(data))
    with pytest.raises(PgtError, match="checksum mismatch"):
        load_checkpoint(run_dir)
    shutil.rmtree(checkpoint)
    with pytest.raises(PgtError, match="is missing; pass --overwrite"):
        load_checkpoint(run_dir)


def test_lost_pointer_resumes_from_the_newest_checkpoint_that_verifies(
    killed_run, uninterrupted, substrate_dir, token_data_dir, tmp_path
):
    """No latest.json must not restart from scratch; stale temporaries go."""
    run_dir, newest = damaged_copy(killed_run, tmp_path)
    (run_dir / "checkpoints" / "latest.json").unlink()
    damaged = newest.with_name("stage-02-step-000099")  # a damaged "newer" one is skipped, not trusted
    shutil.copytree(newest, damaged)
    (damaged / "trainable.safetensors").write_bytes(b"garbage")
    stale = [run_dir / ".stage-2.tmp-killed", run_dir / "checkpoints" / ".stage-02-step-000009.tmp-killed"]
    for path in stale:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"half a model")
    stage1 = (run_dir / "stage-1" / "model.safetensors").read_bytes()
    result = pgt(*command(substrate_dir, token_data_dir, run_dir), check_rc=0)
    assert f"resuming from the newest checkpoint that verifies, {newest.name}" in result.stdout
    assert f"resuming {run_dir} from {newest.name}" in result.stdout
    assert not any(path.exists() for path in stale)
    assert (run_dir / "stage-1" / "model.safetensors").read_bytes() == stage1  # not retrained
    assert_same_stages(run_dir, uninterrupted)


def test_no_checkpoints_with_trained_stages_is_an_error_not_a_fresh_start(
    killed_run, substrate_dir, token_data_dir, tmp_path
):
    run_dir, _ = damaged_copy(killed_run, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    before = snapshot(run_dir)
    line = one_line_error(pgt(*command(substrate_dir, token_data_dir, run_dir)))
    assert "holds trained work (stage-1) but no usable checkpoint" in line and "--overwrite" in line
    assert snapshot(run_dir) == before


@pytest.fixture(scope="module")
def finished_run(substrate_dir, token_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    argv = command(substrate_dir, token_data_dir, out)
    argv[argv.index("--tokens-per-stage") + 1] = str(4 * 32 * 3)
    assert pgt_main(argv) == 0
    return argv, out


@pytest.mark.parametrize(
    ("option", "values", "message"),
    [
        ("--heads", ["64"], "must divide the substrate's dimension 64 into an even head dimension"),
        ("--betas", ["1.5", "2"], "betas must be two numbers in [0, 1)"),
        ("--device", ["tpu9"], "unknown device 'tpu9'"),
        ("--seq-len", ["1000000"], "too few for sequences of 1000000"),
        # Settings that fail only in a training step, caught by the probe step before any removal.
        ("--fsdp", [], "a single process has nothing to shard over"),
        ("--attn-implementation", ["flex_attention"], "does not support backward on CPU"),
    ],
)
def test_overwrite_with_bad_settings_deletes_nothing(finished_run, option, values, message):
    """--overwrite checks everything before it removes anything."""
    argv, out = finished_run
    before = snapshot(out)
    changed = (
        [*argv[: argv.index(option)], option, *values, *argv[argv.index(option) + 2 :]]
        if option in argv
        else [*argv, option, *values]
    )
    if option == "--seq-len":
        changed[changed.index("--context") + 1] = "1000000"
    assert message in one_line_error(pgt(*changed, "--overwrite"))
    assert snapshot(out) == before


def test_overwrite_with_good_settings_trains_again(finished_run, tmp_path):
    argv, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "baselines").mkdir()
    (copy / "baselines" / "kept.txt").write_text("a nested run survives")
    argv = [*argv[: argv.index("--out") + 1], str(copy), *argv[argv.index("--out") + 2 :]]
    argv[argv.index("--lr") + 1] = "2e-3"
    assert pgt_main([*argv, "--overwrite"]) == 0
    assert json.loads((copy / "run.json").read_text())["config"]["lr"] == 2e-3
    assert (copy / "baselines" / "kept.txt").read_text() == "a nested run survives"


def test_out_that_is_a_file_or_overlaps_an_input_is_refused(substrate_dir, token_data_dir, tmp_path):
    """One-line errors, and the inputs are untouched."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert "is a file, not a directory" in one_line_error(pgt(*command(substrate_dir, token_data_dir, a_file)))
    assert a_file.read_text() == "mine"
    data_before = snapshot(token_data_dir)
    for out in (token_data_dir, token_data_dir / "run", substrate_dir):
        assert "overlaps the input" in one_line_error(pgt(*command(substrate_dir, token_data_dir, out)))
    assert snapshot(token_data_dir) == data_before


def test_a_failed_first_start_leaves_nothing_that_blocks_the_corrected_command(
    substrate_dir, token_data_dir, tmp_path, capsys
):
    """A run that fails before its first checkpoint leaves no directory behind."""
    out = tmp_path / "first"
    argv = command(substrate_dir, token_data_dir, out)
    for option, value in (("--lr", "1e30"), ("--checkpoint-every", "0"), ("--eval-every", "0")):
        argv[argv.index(option) + 1] = value
    assert pgt_main(argv) == 2
    assert "no checkpoint of this stage was written yet" in capsys.readouterr().err
    assert not out.exists()
    argv[argv.index("--lr") + 1] = "3e-3"
    argv[argv.index("--stages") + 1] = "1"
    assert pgt_main(argv) == 0 and (out / "stage-1" / "stage.json").is_file()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--lr", "inf"), ("--grad-clip", "nan"), ("--lr", "-1"), ("--warmup-steps", "nan"), ("--eval-tokens", "0")],
)
def test_non_finite_or_negative_numbers_are_refused_at_parse_time(
    option, value, substrate_dir, token_data_dir, tmp_path, capsys
):
    argv = [*command(substrate_dir, token_data_dir, tmp_path / "never"), option, value]  # the last one counts
    with pytest.raises(SystemExit) as exit_info:
        pgt_main(argv)
    assert exit_info.value.code == 2 and "must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_changed_settings_are_refused(killed_run, substrate_dir, token_data_dir, tmp_path, capsys):
    run_dir, _ = damaged_copy(killed_run, tmp_path)
    argv = command(substrate_dir, token_data_dir, run_dir)
    argv[argv.index("--lr") + 1] = "1e-3"
    assert pgt_main(argv) == 2
    assert "holds a run with a different configuration (lr: 0.003 -> 0.001)" in capsys.readouterr().err


def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(substrate_dir, token_data_dir, tmp_path, capsys):
    argv = command(substrate_dir, token_data_dir, tmp_path / "nan")
    for option, value in (("--lr", "1e30"), ("--checkpoint-every", "1"), ("--eval-every", "0")):
        argv[argv.index(option) + 1] = value
    assert pgt_main(argv) == 2
    # The message names what became non-finite (a finite loss can still overflow the gradient norm).
    assert re.search(
        r"stage 1, step \d+: the (loss|gradient norm) became non-finite .* last good checkpoint .* "
        r"is intact",
        capsys.readouterr().err,
    )
    good = load_checkpoint(tmp_path / "nan")  # intact and loadable
    assert good.state.stage == 1 and good.state.step >= 1
    assert all(torch.isfinite(t).all() for t in good.trainable.values())

    def strict(constant):
        raise AssertionError(f"metrics.jsonl holds {constant}, which is not JSON")

    records = [json.loads(line, parse_constant=strict) for line in (tmp_path / "nan" / "metrics.jsonl").open()]
    assert records[-1]["event"] == "stop"
    assert json.loads((tmp_path / "nan" / "run.json").read_text())["halted"]["reason"] == "non-finite loss or gradient"

    # The advice can be followed: a lower --lr resumes from that checkpoint, and run.json says so.
    argv[argv.index("--lr") + 1] = "3e-3"
    other = [*argv]
    other[other.index("--seq-len") + 1] = "16"  # not an optimizer setting: still refused
    assert pgt_main(other) == 2
    assert "only optimizer and schedule settings may change" in capsys.readouterr().err
    code = pgt_main(argv)
    captured = capsys.readouterr()
    assert f"resuming {tmp_path / 'nan'} from {good.path.name}" in captured.out
    run = json.loads((tmp_path / "nan" / "run.json").read_text())
    (change,) = run["config_changes"]
    assert change["changes"] == {"lr": [1e30, 3e-3]} and change["reason"].startswith("resumed after a non-finite")
    # The checkpoint's weights took one step at lr 1e30, so the run may diverge again; if it does, it says so.
    assert code == 0 or re.search("the (loss|gradient norm) became non-finite", captured.err)
