"""A saved model runs exactly as the model card shows, in a virtualenv where pgt is NOT installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pgt.model.loading import init_model_dir

# The model card's code, verbatim apart from the directory and a seed.
CARD = """
import json, sys
import torch
from transformers import AutoTokenizer, AutoModelForCausalLM

try:
    import pgt
    pgt_importable = True
except ImportError:
    pgt_importable = False

DIR = sys.argv[1]
torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained(DIR)
model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True, torch_dtype=torch.bfloat16)
inputs = tokenizer("Hello, I am a language model ", return_tensors="pt")
outputs = model.generate(
    **inputs, max_new_tokens=100, temperature=0.8, top_k=50, top_p=0.95, do_sample=True
)
text = tokenizer.decode(outputs[0], skip_special_tokens=True)
print(text)
print(json.dumps({
    "pgt_importable": pgt_importable,
    "model_module": type(model).__module__,
    "dtype": str(model.dtype),
    "prompt_tokens": inputs["input_ids"].shape[1],
    "total_tokens": outputs.shape[1],
    "text": text,
}))
"""


def clean_virtualenv(root: Path) -> Path:
    """A fresh venv that sees this environment's third-party packages but not pgt.

    Its .pth file puts our site-packages on sys.path as a plain directory: .pth files
    inside it (such as pgt's editable-install hook) are not processed there, so torch,
    transformers, tokenizers and safetensors import while pgt does not.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(target, "parent-site-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


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
