"""docs/recipe.md (issue 18.5): its small-scale command block runs as written, so the page cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgt.growth.records import RunRecord, StageRecord

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipe.md"
MARKER = "<!-- recipe:small-scale"


def small_scale_block() -> str:
    """The bash block that follows the small-scale marker in docs/recipe.md."""
    text = RECIPE.read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```bash\n(.*?)```", after, re.DOTALL)
    assert match, "docs/recipe.md lost its small-scale bash block"
    return match.group(1)


def test_the_block_is_the_recipe_in_small():
    block = small_scale_block()
    for step in ("pgt substrate build", "pgt data prepare default", "pgt data prepare small/sft.jsonl",
                 "--data wiki=small/wiki:0.9 --data sft=small/sft:0.1", "--patience", "--from small/run/stage-2",
                 "--lora-from", "pgt eval", "pgt report"):
        assert step in block


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PGT_RECIPE_TEST"), reason="about 17 minutes on 2 cores (a full-vocabulary "
                    "substrate and the whole corpus): set PGT_RECIPE_TEST=1 to run it")
def test_the_small_scale_commands_run(tmp_path):
    script = "set -euo pipefail\npgt() { \"$PGT_PYTHON\" -m pgt \"$@\"; }\n" + small_scale_block()
    env = {**os.environ, "PGT_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    small = tmp_path / "small"
    run = RunRecord.load(small / "run" / "run.json")
    assert run.finished and [d.name for d in run.mixture] == ["wiki", "sft"]
    on = RunRecord.load(small / "run-on" / "run.json")
    assert on.finished and on.started_from.blocks == 2
    stage = StageRecord.load(small / "run-on" / "stage-3" / "stage.json")
    assert stage.lora is not None and stage.tokens_seen <= 1024
    for report in (small / "run" / "report.md", small / "run-on" / "report.md"):
        text = report.read_text(encoding="utf-8")
        assert "## Tokens each stage used" in text and "## Data mixture" in text
    assert (small / "run-on" / "stage-3" / "eval").is_dir()
    assert '"chat_template"' in (small / "run-on" / "stage-3" / "tokenizer_config.json").read_text(encoding="utf-8")
