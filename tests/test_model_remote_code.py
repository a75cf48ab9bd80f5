"""A grown stage is a standard transformers checkpoint: it loads, generates and evaluates in a
virtualenv where pgt is NOT installed, with no trust_remote_code and no terminal prompt."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from remote_code import (
    CARD,
    PLAIN,
    TOKENIZER_ONLY,
    clean_env,
    clean_virtualenv,
    run_on_a_terminal,
)

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Hello, I am a language model "


@pytest.fixture(scope="module")
def grown_stage(substrate_dir, token_data_dir, tmp_path_factory) -> Path:
    """Stage 2 of a real (tiny) growth run: one block trained, one grown on top with copy-top."""
    from pgt.growth import GrowthConfig, grow

    out = tmp_path_factory.mktemp("grown") / "run"
    grow(
        GrowthConfig(
            substrate=str(substrate_dir),
            data=str(token_data_dir),
            out=str(out),
            stages=2,
            init="copy-top",
            batch_size=2,
            seq_len=32,
            heads=4,
            context=64,
            tokens_per_stage=2 * 32 * 4,
            eval_every=0,
            eval_tokens=1024,
            checkpoint_every=0,
            progress=False,
        )
    )
    return out / "stage-2"


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    return clean_virtualenv(tmp_path_factory.mktemp("venv") / "venv")


def run_clean(python: Path, code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-I", "-c", code, *args],
        cwd=cwd,
        env=clean_env(cwd / "hf-home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_grown_stage_loads_with_plain_transformers(grown_stage, python, tmp_path):
    from pgt.model.loading import load_model

    result = run_clean(python, PLAIN, str(grown_stage), PROMPT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["class"] == "ArceeForCausalLM" and report["module"].startswith("transformers.models.arcee")
    assert report["model_max_length"] == 64 and report["do_sample"] is True  # the card's sampling by default
    model, tokenizer = load_model(grown_stage)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(report["logits"]), model(**inputs).logits[0, -1], rtol=0, atol=1e-5)
    assert report["greedy"] == model.generate(**inputs, max_new_tokens=8, do_sample=False)[0].tolist()
    assert "trust_remote_code" not in result.stderr and "custom code" not in result.stderr


@pytest.mark.slow
def test_model_card_code_runs_without_pgt(grown_stage, python, tmp_path):
    result = run_clean(python, CARD, str(grown_stage), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pgt_importable"] is False
    assert report["model_module"] == "transformers.models.arcee.modeling_arcee"  # built in, no shipped code
    assert report["dtype"] == "torch.bfloat16"
    assert report["prompt_tokens"] < report["total_tokens"] <= report["prompt_tokens"] + 100
    assert report["text"].startswith(PROMPT) and len(report["text"]) > len(PROMPT) + 5


@pytest.mark.slow
def test_auto_tokenizer_on_a_terminal_neither_asks_nor_warns(grown_stage, python, tmp_path):
    status, output = run_on_a_terminal(
        [str(python), "-I", "-c", TOKENIZER_ONLY, str(grown_stage)], clean_env(tmp_path / "hf-home"), tmp_path
    )
    assert status == 0 and "loaded" in output, output[-2000:]
    assert "Do you wish" not in output and "custom code" not in output
    assert "model of type" not in output


@pytest.mark.slow
def test_lm_eval_cli_runs_a_local_task_without_trust_remote_code(grown_stage, python, tmp_path):
    """`lm_eval --model hf --model_args pretrained=DIR`, offline, on the repository's tiny local task."""
    command = [
        str(python),
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={grown_stage}",
        "--tasks",
        "fortune_cloze",
        "--include_path",
        "tests/data/eval/harness",
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--output_path",
        str(tmp_path / "results"),
    ]
    # data_files in the task YAML are relative to the repository root
    result = subprocess.run(
        command,
        cwd=REPO,
        env=clean_env(tmp_path / "hf-home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = (tmp_path / "results").rglob("results_*.json")
    accuracy = json.loads(path.read_text())["results"]["fortune_cloze"]["acc,none"]
    assert 0 <= accuracy <= 1 and round(accuracy * 10) == pytest.approx(accuracy * 10)  # 10 questions
