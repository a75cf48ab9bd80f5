"""Model directories: init, save, load, and every way a directory can be wrong."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ArceeForCausalLM

from pgt.errors import PgtError
from pgt.model.architecture import SAMPLING
from pgt.model.loading import init_model_dir, load_model, save_model, substrate_meta_of
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
    return save_substrate(out, substrate.tokenizer, matrix, substrate.meta.params)  # same tokenizer, other matrix


def test_init_writes_a_complete_directory_that_loads(model_dir, substrate_dir):
    names = {path.name for path in model_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "README.md",
        "tokenizer.json",
        SUBSTRATE_FILE,
    } <= names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".py")) for name in names)  # no code, no pickles
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "arcee" and config["architectures"] == ["ArceeForCausalLM"]
    assert "auto_map" not in config and config["freeze_embeddings"] is True
    assert config["hidden_act"] == "gelu" and config["num_key_value_heads"] == config["num_attention_heads"] == 4
    assert not config["tie_word_embeddings"] and not config["attention_bias"] and not config["mlp_bias"]
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
    assert torch.equal(
        reloaded.model.embed_tokens.weight, load_file(model_dir / "model.safetensors")["model.embed_tokens.weight"]
    )


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


def test_auto_classes_load_without_pgt_registration_or_remote_code(model_dir, substrate_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model) is ArceeForCausalLM
    assert AutoConfig.from_pretrained(model_dir).substrate_fingerprint == Substrate.load(substrate_dir).fingerprint
    reference, _ = load_model(model_dir)
    tokens = AutoTokenizer.from_pretrained(model_dir)("the nation", return_tensors="pt").input_ids
    assert torch.equal(model.eval()(tokens).logits, reference(tokens).logits)


def test_importing_pgt_stays_light():
    import subprocess
    import sys

    code = "import sys, pgt, pgt.model.cli; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_directory_is_a_hub_repository(model_dir, substrate_dir):
    from transformers import AutoTokenizer, GenerationConfig

    generation = GenerationConfig.from_pretrained(model_dir)
    assert {key: getattr(generation, key) for key in SAMPLING} == SAMPLING
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.model_max_length == 1024  # the context, so a too-long prompt is warned about
    card = (model_dir / "README.md").read_text()
    fingerprint = Substrate.load(substrate_dir).fingerprint
    for fact in (
        "library_name: transformers",
        "| blocks | 2 |",
        "| d_model | 64 |",
        "| heads | 4 |",
        fingerprint,
        "ArceeForCausalLM",
        "arXiv:2507.04886",
        "arXiv:2507.07129",
        "dtype=torch.bfloat16",
        "temperature 0.8",
        "## Limitations",
    ):
        assert fact in card
    assert "trust_remote_code" not in card and "torch_dtype" not in card


def test_swapped_tokenizer_json_is_refused(model_copy):
    """tokenizer.json alone replaced (substrate.json intact): the token texts give it away."""
    from transformers import AutoTokenizer

    tokenizer_file = json.loads((model_copy / "tokenizer.json").read_text())
    vocab = tokenizer_file["model"]["vocab"]
    vocab["A"], vocab["B"] = vocab["B"], vocab["A"]  # two tokens trade ids: same size, other texts
    (model_copy / "tokenizer.json").write_text(json.dumps(tokenizer_file))
    assert AutoTokenizer.from_pretrained(model_copy)("A").input_ids != [65]
    with pytest.raises(PgtError, match="tokenizer's tokens are not those of the model's substrate"):
        load_model(model_copy)


def test_init_refuses_an_output_overlapping_the_substrate(substrate_dir):
    with pytest.raises(PgtError, match="overlaps the input"):
        init_model_dir(substrate_dir, substrate_dir / "model", layers=1, heads=4)
    assert not (substrate_dir / "model").exists()


def test_relu2_is_a_recorded_option(substrate_dir, tmp_path):
    out = init_model_dir(substrate_dir, tmp_path / "relu2", layers=1, heads=4, hidden_act="relu2")
    model, _ = load_model(out)
    assert model.config.hidden_act == "relu2" and "relu2" in (out / "README.md").read_text()
    with pytest.raises(PgtError, match="unknown hidden_act 'silu'"):
        init_model_dir(substrate_dir, tmp_path / "silu", layers=1, heads=4, hidden_act="silu")


def test_sharded_weights_load(model_copy):
    model, _ = load_model(model_copy)
    (model_copy / "model.safetensors").unlink()
    model.save_pretrained(model_copy, max_shard_size="1MB")
    assert len(list(model_copy.glob("model-*.safetensors"))) > 1
    reloaded, _ = load_model(model_copy)
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)


def test_unusable_attention_backend_is_a_one_line_error(model_dir):
    from transformers.utils import is_flash_attn_2_available

    if is_flash_attn_2_available():
        pytest.skip("flash-attn is installed here")
    with pytest.raises(PgtError, match="flash_attention_2 needs CUDA and the flash-attn package"):
        load_model(model_dir, attn_implementation="flash_attention_2")
    with pytest.raises(PgtError, match="unknown attention implementation 'eager'"):
        load_model(model_dir, attn_implementation="eager")
