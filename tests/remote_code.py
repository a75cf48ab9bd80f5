"""Helpers for running saved models where pgt is not installed (the model card's setting)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

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
