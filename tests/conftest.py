"""Shared test fixtures: real text from the installed fortune packages and real substrates.

Expensive artefacts (a built substrate, a small trained model) are built once and cached
under `.cache/test-fixtures/`, keyed by a hash of the code that builds them, so a second
run (or the second xdist worker) reuses them; a lock keeps workers from building twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "pgt"
SHARED_REFERENCE = REPO.parent / "shared" / "reference"
CACHE = Path(os.environ.get("PGT_TEST_CACHE", REPO / ".cache" / "test-fixtures"))

# Tests are small; one thread per xdist worker avoids oversubscribing 2 cores.
torch.set_num_threads(1)


def code_hash(*packages: str) -> str:
    """Hash of the source files of the given pgt sub-packages (cache key for fixtures)."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")) if (SRC / package).is_dir() else [SRC / package]:
            digest.update(path.relative_to(SRC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_artifact(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """Return `CACHE/name-key`, calling `build(tmp_dir)` once to create it (atomically, under a lock)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"{name}-{key}"
    with FileLock(str(CACHE / f"{name}.lock")):
        if not target.exists():
            for stale in CACHE.glob(f"{name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = CACHE / f".{name}-{key}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            os.replace(tmp, target)
    return target


@pytest.fixture(scope="session")
def corpus_files() -> list[Path]:
    """The embedded default corpus (Debian fortunes: en, ru, de)."""
    from pgt.corpus.fortunes import default_corpus_files

    return default_corpus_files()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: the reference's published data files (skips where absent)."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/reference is not available")
    return SHARED_REFERENCE


@pytest.fixture(scope="session")
def substrate_dir(corpus_files: list[Path]) -> Path:
    """A real bvv241-2-3 substrate mined from the fortune corpus, at a small dimension (64)."""
    from pgt.substrate.build import build_substrate

    def build(out: Path) -> None:
        build_substrate(out, family="bvv241-2-3", corpus=corpus_files, dim=64, progress=False)

    return cached_artifact("substrate-2-3-d64", code_hash("substrate"), build)


@pytest.fixture(scope="session")
def visible_substrate_dir(substrate_dir: Path) -> Path:
    """`substrate_dir` rendered again with visible blanks (`pgt study`'s visible-blanks arm stands on it)."""
    from pgt.substrate.build import rebuild_substrate

    def build(out: Path) -> None:
        rebuild_substrate(substrate_dir, out, visible_blanks=True, progress=False)

    return cached_artifact("visible-2-3-d64", code_hash("substrate"), build)


@pytest.fixture(scope="session")
def byte_level_tokenizer_dir(corpus_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GPT-2 style byte-level BPE tokenizer (400 ids) trained on fortune text, saved for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from pgt.corpus.sources import iter_fortunes

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((text for path in corpus_files[:3] for text in iter_fortunes(path)), trainer)
    path = tmp_path_factory.mktemp("byte-level-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def eval_model_dir(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained one-block pgt model (2 heads) on `substrate_dir` with a 128-token context, for evaluation tests."""
    from pgt.model.loading import init_model_dir

    out = tmp_path_factory.mktemp("eval-model") / "model"
    return init_model_dir(substrate_dir, out, layers=1, heads=2, seed=0, max_position_embeddings=128)


@pytest.fixture(scope="session")
def token_data_dir(substrate_dir: Path, corpus_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small fortune files (one Russian, one English) tokenized with `substrate_dir` (`pgt data prepare`)."""
    from pgt.data.prepare import prepare_token_data

    out = tmp_path_factory.mktemp("token-data") / "data"
    prepare_token_data(small_corpus(corpus_files), substrate_dir, out, min_val_bytes=5_000, progress=False)
    return out


def small_corpus(corpus_files: list[Path]) -> list[str]:
    """Two small fortune files, one Russian and one English: the text of `token_data_dir`."""
    small = [f for f in corpus_files if 20_000 <= f.stat().st_size <= 60_000]
    return [str(next(f for f in small if f.parent.name == name)) for name in ("ru", "fortunes")]


@pytest.fixture(scope="session")
def trimmed_substrate_dir(substrate_dir: Path, token_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`substrate_dir` trimmed to the ids of `token_data_dir` (`pgt substrate trim --data`)."""
    from pgt.data.loader import TokenData
    from pgt.substrate.trim import trim_substrate

    out = tmp_path_factory.mktemp("trimmed") / "substrate"
    trim_substrate(substrate_dir, out, data=TokenData(token_data_dir))
    return out


@pytest.fixture(scope="session")
def trimmed_token_data_dir(
    trimmed_substrate_dir: Path, corpus_files: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The text of `token_data_dir` tokenized with `trimmed_substrate_dir`."""
    from pgt.data.prepare import prepare_token_data

    out = tmp_path_factory.mktemp("trimmed-data") / "data"
    prepare_token_data(small_corpus(corpus_files), trimmed_substrate_dir, out, min_val_bytes=5_000, progress=False)
    return out


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hugging Face hub access, also where datasets/huggingface_hub were imported before the variables were set."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def write_instruction_set(path: Path, corpus_files: list[Path], count: int = 240) -> Path:
    """A small instruction set written for the tests: Alpaca records asking to repeat or shorten real fortunes."""
    import json

    from pgt.corpus.sources import iter_fortunes

    english = next(f for f in corpus_files if f.parent.name == "fortunes" and 20_000 <= f.stat().st_size <= 60_000)
    sayings = [text for text, _ in zip(iter_fortunes(english), range(count), strict=False)]
    with open(path, "w", encoding="utf-8") as handle:
        for number, saying in enumerate(sayings):
            first = saying.split("\n", 1)[0]
            record = (
                {"instruction": "Repeat this saying.", "input": saying, "output": saying}
                if number % 2
                else {"instruction": "Give the first line of this saying.", "input": saying, "output": first}
            )
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def sft_data_dir(substrate_dir: Path, corpus_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`write_instruction_set` rendered with the chat template and tokenized with `substrate_dir`."""
    from pgt.data.prepare import prepare_token_data

    root = tmp_path_factory.mktemp("sft")
    source = write_instruction_set(root / "instructions.jsonl", corpus_files)
    prepare_token_data([str(source)], substrate_dir, root / "data", min_val_bytes=3_000, progress=False)
    return root / "data"


def checkpoint_pointer(run_dir: Path) -> str | None:
    """The checkpoint a run's `latest.json` names, or None while there is none (or it is being written)."""
    try:
        return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["name"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def grow_until_stage_checkpoint(args: list[str], run_dir: Path, *, stage: int, seconds: float) -> subprocess.Popen:
    """Start `python -m pgt ARGS` (one thread, as the test process) and return it, still running, once
    `run_dir` has a checkpoint of `stage`; the caller pauses or kills it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the kernels of this (1-thread) test process
    process = subprocess.Popen(
        [sys.executable, "-m", "pgt", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + seconds
    while not (checkpoint_pointer(run_dir) or "").startswith(f"stage-{stage:02d}-step-"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.send_signal(signal.SIGKILL)
            process.wait()
            raise AssertionError(f"no stage-{stage} checkpoint appeared: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    return process
