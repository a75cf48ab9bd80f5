"""lm-evaluation-harness on a pgt model: a local multiple-choice task, offline (one test: lm-eval imports slowly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS_TASKS = Path("tests/data/eval/harness")  # the task YAML's data_files are relative to the repository root


def test_harness_runs_a_local_task_on_a_pgt_model(
    eval_model_dir: Path, hf_offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(REPO)
    from pgt.eval.harness import run_harness
    from pgt.model.loading import load_model

    model, tokenizer = load_model(eval_model_dir)
    [(path, record)] = run_harness(
        model, tokenizer, eval_model_dir, ["fortune_cloze"], include_path=HARNESS_TASKS, batch_size=4, out_dir=tmp_path
    )
    assert path == tmp_path / "harness-fortune_cloze.json"
    assert json.loads(path.read_text(encoding="utf-8")) == record
    assert record["task"] == "harness-fortune_cloze" and record["metric"] == "acc"
    assert record["protocol"]["output_type"] == "multiple_choice" and record["n_examples"] == 10
    raw = record["harness_metrics"]
    # Ten questions with four options: accuracy is a multiple of 10 %, its standard error positive.
    assert record["metrics"]["mean"] == pytest.approx(100 * raw["acc"])
    assert round(raw["acc"] * 10) == pytest.approx(raw["acc"] * 10) and 0 <= raw["acc"] <= 1
    assert 0 <= raw["acc_norm"] <= 1 and raw["acc_stderr"] > 0
    assert record["model_fingerprint"]["substrate_fingerprint"]
