"""Helpers for running saved models where pgt is not installed (the model card's setting)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# The published model card's code, verbatim apart from the directory and a seed.
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

# Plain transformers, no trust_remote_code: the class, greedy ids and logits for the caller to compare.
PLAIN = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DIR, PROMPT = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(DIR)
model = AutoModelForCausalLM.from_pretrained(DIR)
inputs = tokenizer(PROMPT, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
greedy = model.generate(**inputs, max_new_tokens=8, do_sample=False)
print(json.dumps({
    "class": type(model).__name__,
    "module": type(model).__module__,
    "logits": logits[0, -1].tolist(),
    "greedy": greedy[0].tolist(),
    "model_max_length": tokenizer.model_max_length,
    "do_sample": model.generation_config.do_sample,
}))
"""

TOKENIZER_ONLY = (
    "import sys; from transformers import AutoTokenizer; AutoTokenizer.from_pretrained(sys.argv[1]); print('loaded')"
)


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
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(target, "parent-site-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a child in the clean venv: no PYTHONPATH (it would show pgt), offline."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def run_on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin/stdout/stderr (as a user at a shell would);
    return its exit status and everything it printed. Nothing is typed: a prompt would wait."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    else:
        process.kill()
    os.close(leader)
    return process.wait(), b"".join(chunks).decode(errors="replace")
