"""`pgt grow` under torchrun: 2 CPU processes (gloo DDP) follow the 1-process loss curve at equal global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file

from pgt.cli import main as pgt_main
from pgt.growth.metrics import read_metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_at_the_same_global_batch(substrate_dir, token_data_dir, tmp_path):
    common = ["grow", "--substrate", str(substrate_dir), "--data", str(token_data_dir), "--stages", "2",
              "--init", "random", "--tokens-per-stage", str(4 * 32 * 8), "--seq-len", "32", "--heads", "4",
              "--context", "64", "--eval-every", "4", "--eval-batches", "2", "--checkpoint-every", "4",
              "--log-every", "1", "--lr", "3e-3", "--no-progress"]
    single, double = tmp_path / "one", tmp_path / "two"
    assert pgt_main([*common, "--batch-size", "4", "--out", str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "pgt.cli"]
    result = subprocess.run([*launch, *common, "--batch-size", "2", "--out", str(double)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    def curve(run_dir, kind, key):
        return [(r["stage"], r["step"], r[key]) for r in read_metrics(run_dir) if r["kind"] == kind]

    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        one, two = curve(single, kind, key), curve(double, kind, key)
        assert [r[:2] for r in one] == [r[:2] for r in two] and len(one) >= 6
        assert max(abs(a[2] - b[2]) for a, b in zip(one, two)) < 2e-3, (one, two)
    # The frozen block was not touched by either run, so it is bit-identical between them.
    a, b = (load_file(str(d / "stage-2" / "model.safetensors")) for d in (single, double))
    assert torch.equal(a["model.layers.0.mlp.up_proj.weight"], load_file(str(single / "stage-1" / "model.safetensors"))["model.layers.0.mlp.up_proj.weight"])
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)
    assert '"world_size": 2' in (double / "run.json").read_text()
