"""Model directories: init, save, load, and every way a directory can be wrong."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pgt.errors import PgtError
from pgt.model.loading import init_model_dir, load_model, save_model, substrate_meta_of
from pgt.model.modeling_pgt import PgtForCausalLM
from pgt.substrate.store import SUBSTRATE_FILE, Substrate, save_substrate

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", SUBSTRATE_FILE)


@pytest.fixture(scope="module")
def model_dir(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_dir(substrate_dir, tmp_path_factory.mktemp("model") / "tiny", layers=2, heads=4, seed=3)


@pytest.fixture()
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


@pytest.fixture(scope="module")
def other_substrate_dir(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tokenizer with a different unit-norm matrix: another substrate."""
    substrate = Substrate.load(substrate_dir)
    matrix = np.random.default_rng(1).standard_normal(tuple(substrate.embeddings.shape)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    out = tmp_path_factory.mktemp("other") / "substrate"
    params = dataclasses.replace(substrate.meta.params, token_texts_sha256="other")
    return save_substrate(out, substrate.tokenizer, matrix, params)


def test_init_writes_a_complete_directory_that_loads(model_dir, substrate_dir):
    names = {path.name for path in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_pgt.py", "modeling_pgt.py", "generation_config.json",
            "tokenizer.json", SUBSTRATE_FILE} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    model, tokenizer = load_model(model_dir)
    substrate = Substrate.load(substrate_dir)
    assert torch.equal(model.model.embed_tokens.weight, substrate.embeddings)
    assert not model.model.embed_tokens.weight.requires_grad and not model.training
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == substrate.dim
    assert tokenizer("the nation").input_ids == substrate.tokenizer("the nation").input_ids


def test_init_is_seeded(model_dir, substrate_dir, tmp_path):
    again = init_model_dir(substrate_dir, tmp_path / "again", layers=2, heads=4, seed=3)
    other = init_model_dir(substrate_dir, tmp_path / "other", layers=2, heads=4, seed=4)
    weights = load_file(model_dir / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in load_file(again / "model.safetensors").items())
    assert not torch.equal(weights["lm_head.weight"], load_file(other / "model.safetensors")["lm_head.weight"])


def test_init_refuses_bad_sizes_and_existing_output(model_dir, substrate_dir, tmp_path):
    with pytest.raises(PgtError, match="d_model 4096"):
        init_model_dir(substrate_dir, tmp_path / "big", preset="abs-bvv-1")
    with pytest.raises(PgtError, match="--heads 5"):
        init_model_dir(substrate_dir, tmp_path / "odd", layers=1, heads=5)
    with pytest.raises(PgtError, match="already exists"):
        init_model_dir(substrate_dir, model_dir, layers=1, heads=4)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_save_model_round_trip_after_training(model_dir, tmp_path):
    model, tokenizer = load_model(model_dir)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = tokenizer("Hello, I am a language model ", return_tensors="pt").input_ids
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    out = save_model(model, tokenizer, tmp_path / "trained", substrate_meta=substrate_meta_of(model_dir))
    reloaded, _ = load_model(out)
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
    assert torch.equal(reloaded.model.embed_tokens.weight, load_file(model_dir / "model.safetensors")[
        "model.embed_tokens.weight"])


def test_tokenizer_of_another_substrate_is_refused(model_copy, other_substrate_dir):
    for name in TOKENIZER_FILES:
        if (other_substrate_dir / name).exists():
            shutil.copy(other_substrate_dir / name, model_copy / name)
    with pytest.raises(PgtError, match="tokenizer belongs to"):
        load_model(model_copy)


def test_altered_embedding_is_refused(model_copy):
    weights = load_file(model_copy / "model.safetensors")
    weights["model.embed_tokens.weight"][100, 0] += 1e-3
    save_file(weights, model_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PgtError, match="not the recorded substrate"):
        load_model(model_copy)


def test_missing_embedding_is_refused(model_copy):
    weights = load_file(model_copy / "model.safetensors")
    del weights["model.embed_tokens.weight"]
    save_file(weights, model_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PgtError, match="incomplete"):
        load_model(model_copy)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_is_a_one_line_error(model_copy, damage):
    path = model_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00\x01garbage" * 100)
    with pytest.raises(PgtError) as error:
        load_model(model_copy)
    assert "\n" not in str(error.value)


class _Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_loading_never_unpickles(model_copy, tmp_path):
    marker = tmp_path / "unpickled"
    (model_copy / "model.safetensors").unlink()
    with open(model_copy / "pytorch_model.bin", "wb") as handle:
        pickle.dump(_Marker(str(marker)), handle)
    with pytest.raises(PgtError, match="safetensors"):
        load_model(model_copy)
    assert not marker.exists()


def test_missing_directory_and_foreign_config(tmp_path, model_copy):
    with pytest.raises(PgtError, match="not found"):
        load_model(tmp_path / "nowhere")
    (model_copy / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(PgtError, match="not a pgt model directory"):
        load_model(model_copy)


def test_auto_classes_load_without_trust_remote_code(model_dir):
    import pgt  # noqa: F401  (registration on import)
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert isinstance(model, PgtForCausalLM)
    assert AutoConfig.from_pretrained(model_dir).model_type == "pgt"


@pytest.mark.parametrize(
    "code",
    [
        # importing pgt stays light: the registration waits for transformers
        "import sys, pgt; assert 'torch' not in sys.modules and 'transformers' not in sys.modules",
        # ... and happens once transformers arrives, even when the modeling module itself
        # (half-imported at that moment) is what imports it
        "import pgt.model.modeling_pgt as m; from transformers import AutoModelForCausalLM as A; "
        "assert A._model_mapping[m.PgtConfig] is m.PgtForCausalLM and m.PgtForCausalLM._auto_class",
    ],
)
def test_auto_registration_is_lazy_and_survives_a_circular_import(code):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_sharded_weights_load(model_copy):
    model, _ = load_model(model_copy)
    (model_copy / "model.safetensors").unlink()
    model.save_pretrained(model_copy, max_shard_size="1MB")
    assert len(list(model_copy.glob("model-*.safetensors"))) > 1
    reloaded, _ = load_model(model_copy)
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
