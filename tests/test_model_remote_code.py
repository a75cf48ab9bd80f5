"""A saved model runs exactly as the model card shows, in a virtualenv where pgt is NOT installed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from remote_code import CARD, clean_virtualenv

from pgt.model.loading import init_model_dir


@pytest.mark.slow
def test_model_card_code_runs_without_pgt(substrate_dir, tmp_path):
    model_dir = init_model_dir(substrate_dir, tmp_path / "model", layers=2, heads=4)
    python = clean_virtualenv(tmp_path / "venv")
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [str(python), "-I", "-c", CARD, str(model_dir)],
        # AutoTokenizer asks on a terminal whether to trust the config's code; with no
        # terminal it falls back to the plain config, which is all a tokenizer needs.
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pgt_importable"] is False
    assert report["model_module"].startswith("transformers_modules")  # the directory's own code
    assert report["dtype"] == "torch.bfloat16"
    assert report["total_tokens"] == report["prompt_tokens"] + 100
    assert report["text"].startswith("Hello, I am a language model ") and len(report["text"]) > 40
