"""`pgt grow --compile` in one process compiles the loss with the model: it must train what eager trains."""

from __future__ import annotations

import pytest
import torch._dynamo
from torch._dynamo.utils import counters

from pgt.growth import GrowthConfig, grow
from pgt.growth.records import STAGE_FILE, StageRecord

pytestmark = pytest.mark.slow  # inductor compiles a C++ kernel on first use (~20 s on 2 cores)


def test_compiled_training_matches_eager(trimmed_substrate_dir, trimmed_token_data_dir, tmp_path):
    losses, graphs = {}, {}
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        torch._dynamo.reset()
        counters.clear()
        grow(
            GrowthConfig(
                substrate=str(trimmed_substrate_dir),
                data=str(trimmed_token_data_dir),
                out=str(out),
                stages=2,
                batch_size=4,
                seq_len=32,
                heads=4,
                context=64,
                tokens_per_stage=4 * 32 * 6,
                eval_every=6,
                eval_tokens=2048,
                lr=3e-3,
                progress=False,
                compile=compiled,
            )
        )
        graphs[compiled] = counters["stats"]["unique_graphs"]
        losses[compiled] = [StageRecord.load(out / f"stage-{k}" / STAGE_FILE).val_loss for k in (1, 2)]
    assert graphs[False] == 0 and graphs[True] > 0  # the compiled run really went through torch.compile
    eager, compiled = losses[False], losses[True]
    assert eager[1] < eager[0]  # the run learned something worth comparing
    assert compiled == pytest.approx(eager, abs=2e-3)
