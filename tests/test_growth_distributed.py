"""`pgt grow` under torchrun: 2 CPU processes (gloo; DDP and FSDP2) follow the 1-process loss curve
at the same global batch (per-process batch x processes x 2 accumulated micro-batches)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.growth.metrics import read_metrics

pytestmark = pytest.mark.slow  # each test launches torchrun

# Stage 2 has a frozen block, stage 3 LoRA on the older two: every kind of stage runs distributed.
COMMON = [
    "grow",
    "--stages",
    "3",
    "--lora-from",
    "3",
    "--init",
    "random",
    "--tokens-per-stage",
    str(4 * 32 * 6),
    "--seq-len",
    "32",
    "--heads",
    "4",
    "--context",
    "64",
    "--eval-every",
    "3",
    "--eval-tokens",
    "2048",
    "--checkpoint-every",
    "3",
    "--log-every",
    "1",
    "--lr",
    "3e-3",
    "--grad-accum",
    "2",
    "--no-progress",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single(substrate_dir, token_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "one"
    argv = [*COMMON, "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--batch-size", "2"]
    assert pgt_main([*argv, "--out", str(out)]) == 0
    return out


def curve(run_dir, kind, key):
    return [(r.stage, r.step, getattr(r, key)) for r in read_metrics(run_dir) if r.KIND == kind]


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp2"])
def test_two_processes_match_one_at_the_same_global_batch(single, sharding, substrate_dir, token_data_dir, tmp_path):
    double = tmp_path / "two"
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "pgt.cli",
    ]
    argv = [*COMMON, "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--batch-size", "1", *sharding]
    result = subprocess.run(
        [*launch, *argv, "--out", str(double)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        one, two = curve(single, kind, key), curve(double, kind, key)
        assert [r[:2] for r in one] == [r[:2] for r in two] and len(one) >= 9
        assert max(abs(a[2] - b[2]) for a, b in zip(one, two, strict=True)) < 2e-3, (one, two)
    a, b = (load_file(str(d / "stage-3" / "model.safetensors")) for d in (single, double))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)
    assert '"world_size": 2' in (double / "run.json").read_text()
