"""Trust: SIGKILL + rerun gives bit-identical weights; damaged checkpoints and NaN losses stop clearly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.errors import PgtError
from pgt.growth.checkpoint import load_checkpoint

# Two stages, LoRA in the second, a checkpoint every 3 of 16 steps per stage.
ARGS = ["--stages", "2", "--init", "random", "--lora-from", "2", "--tokens-per-stage", str(4 * 32 * 16),
        "--batch-size", "4", "--seq-len", "32", "--heads", "4", "--context", "64", "--eval-every", "8",
        "--eval-tokens", "2048", "--checkpoint-every", "3", "--log-every", "4", "--lr", "3e-3", "--no-progress"]


def command(substrate_dir, token_data_dir, out) -> list[str]:
    return ["grow", "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--out", str(out), *ARGS]


def pointer(run_dir) -> str | None:
    try:
        return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["name"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


@pytest.fixture(scope="module")
def killed_run(substrate_dir, token_data_dir, tmp_path_factory):
    """A `pgt grow` subprocess SIGKILLed in stage 2, after at least one stage-2 checkpoint."""
    out = tmp_path_factory.mktemp("resume") / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same kernels as this (1-thread) test process
    process = subprocess.Popen([sys.executable, "-m", "pgt.cli", *command(substrate_dir, token_data_dir, out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (pointer(out) or "").startswith("stage-02-step-"):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no stage-2 checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "stage-2").exists()
    snapshot = out.parent / "snapshot"  # the killed state, for the damage tests
    shutil.copytree(out, snapshot)
    return out, snapshot


def test_sigkill_then_rerun_ends_bit_identical(killed_run, substrate_dir, token_data_dir, tmp_path):
    killed, _ = killed_run
    assert pgt_main(command(substrate_dir, token_data_dir, killed)) == 0  # the same command again
    fresh = tmp_path / "uninterrupted"
    assert pgt_main(command(substrate_dir, token_data_dir, fresh)) == 0
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
    return copy, copy / "checkpoints" / pointer(copy)


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
    assert re.search(r"stage 1, step \d+: the loss became non-finite .* last good checkpoint .* is intact",
                     capsys.readouterr().err)
    good = load_checkpoint(tmp_path / "nan")  # intact and loadable
    assert good.state.stage == 1 and good.state.step >= 1
    assert all(torch.isfinite(t).all() for t in good.trainable.values())
    assert json.loads((tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "stop"
