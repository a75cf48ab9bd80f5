"""docs/recipe.md: its small-scale command block runs as written, so the page cannot rot."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pgt.eval.results import EvalRecord
from pgt.growth.metrics import EvalPoint, read_metrics
from pgt.growth.records import RunRecord, StageRecord
from pgt.io import file_sha256
from pgt.substrate.store import Substrate
from pgt.substrate.trim import load_trim_record

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipe.md"
MARKER = "<!-- recipe:small-scale"
WEIGHTS = [("wiki", 0.9), ("sft", 0.1)]


def small_scale_block() -> str:
    """The bash block that follows the small-scale marker in docs/recipe.md."""
    text = RECIPE.read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    assert match, "docs/recipe.md lost its small-scale bash block"
    return match.group(1)


def test_the_block_is_the_recipe_in_small():
    block = small_scale_block()
    for step in (
        "pgt substrate build",
        "pgt substrate trim small/full",
        "pgt data prepare small/wiki.txt",
        "pgt data prepare small/sft.jsonl",
        "--data wiki=small/wiki:0.9 --data sft=small/sft:0.1",
        "--patience",
        "--from small/run/stage-2",
        "--lora-from",
        "pgt eval",
        "pgt report",
    ):
        assert step in block


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def check_small_scale_outputs(small: Path) -> None:
    """What the block must leave behind: the recipe's outcomes, not just files."""
    full, trimmed = Substrate.load(small / "full"), Substrate.load(small / "substrate")
    trim = load_trim_record(small / "substrate")
    assert trim.parent_fingerprint == full.fingerprint and trimmed.vocab_size < full.vocab_size
    run = RunRecord.load(small / "run" / "run.json")
    assert run.finished and [d.name for d in run.mixture] == ["wiki", "sft"]
    assert [d.weight for d in run.mixture] == pytest.approx([weight for _, weight in WEIGHTS])
    assert run.config["data"] == [f"{name}=small/{name}:{weight}" for name, weight in WEIGHTS]
    on = RunRecord.load(small / "run-on" / "run.json")
    assert on.finished and on.started_from.blocks == 2
    source = small / "run" / "stage-2"
    assert on.started_from.weights_sha256 == file_sha256(source / "model.safetensors")
    stage = StageRecord.load(small / "run-on" / "stage-3" / "stage.json")
    assert stage.lora is not None and stage.tokens_seen <= 1024
    for record in (run, on):  # every stage ends at its token cap or by --patience
        assert record.config["patience"] > 0
        for result in record.results:
            assert result.tokens_budget == record.config["tokens_per_stage"]
            assert result.tokens_seen == result.tokens_budget or result.stopped_early
    for run_dir in (small / "run", small / "run-on"):  # every evaluation scores each source on its own
        evals = [r for r in read_metrics(run_dir) if isinstance(r, EvalPoint)]
        assert evals and all(set(r.sources) == {name for name, _ in WEIGHTS} for r in evals)
        assert all(math.isfinite(p.val_bpb) and p.val_bpb > 0 for r in evals for p in r.sources.values())
    # Frozen: the substrate's rows (trimmed, bit for bit) and block 1 of stage 1 stay as they were in stage 2;
    # growing on with LoRA leaves the embeddings and the older blocks' norms and trains their projections.
    first, second, grown = weights(small / "run" / "stage-1"), weights(source), weights(small / "run-on" / "stage-3")
    assert torch.equal(second["model.embed_tokens.weight"], full.embeddings[trim.parent_ids])
    block_1 = [k for k in first if k.startswith("model.layers.0.")]
    assert len(block_1) > 2 and all(torch.equal(first[k], second[k]) for k in block_1)
    kept = [k for k in second if k.startswith("model.embed_tokens.") or k.endswith("layernorm.weight")]
    assert len(kept) == 5 and all(torch.equal(second[k], grown[k]) for k in kept)
    assert not torch.equal(second["model.layers.0.mlp.up_proj.weight"], grown["model.layers.0.mlp.up_proj.weight"])
    assert "model.layers.2.mlp.up_proj.weight" in grown
    for report in (small / "run" / "report.md", small / "run-on" / "report.md"):
        text = report.read_text(encoding="utf-8")
        assert "## Tokens each stage used" in text and "## Data mixture" in text
    assert (small / "run-on" / "stage-3" / "eval").is_dir()
    # pgt eval scores the held-out paragraphs as the trainer's validation scored them
    result = EvalRecord.load(small / "run-on" / "stage-3" / "eval" / "bpb--wiki-validation.json")
    assert result.metrics.mean == pytest.approx(next(d.val_bpb for d in stage.mixture if d.name == "wiki"), rel=1e-4)
    assert '"chat_template"' in (small / "run-on" / "stage-3" / "tokenizer_config.json").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_small_scale_commands_run(tmp_path):
    script = 'set -euo pipefail\npgt() { "$PGT_PYTHON" -m pgt "$@"; }\n' + small_scale_block()
    env = {**os.environ, "PGT_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_small_scale_outputs(tmp_path / "small")
