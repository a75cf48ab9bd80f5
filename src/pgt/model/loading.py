"""Model directories: create untrained ones, save trained ones, load them with every check.

A model directory holds `config.json` (with `auto_map` and `substrate_fingerprint`),
`model.safetensors` (frozen embedding included), the self-contained `configuration_pgt.py`
and `modeling_pgt.py`, `generation_config.json`, the tokenizer files and a copy of the
substrate's `substrate.json`. Loading checks three fingerprints against one another: the
config's, the copied `substrate.json`'s, and one recomputed from the embedding weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgt.errors import PgtError
from pgt.io import atomic_dir, read_json
from pgt.substrate.store import SUBSTRATE_FILE, Substrate, SubstrateMeta, fingerprint

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # the same, in shards (very large models)


def model_config_kwargs(
    *, preset: str | None = None, layers: int | None = None, heads: int | None = None, hidden_size: int
) -> dict[str, Any]:
    """Config fields for a model on a substrate of width `hidden_size`: a preset or layers + heads."""
    from pgt.model.presets import get_preset

    if preset is not None:
        if layers is not None or heads is not None:
            raise PgtError("give either a preset or --layers/--heads, not both")
        chosen = get_preset(preset)
        if chosen.hidden_size != hidden_size:
            raise PgtError(
                f"preset {preset} has d_model {chosen.hidden_size} but the substrate's dimension is {hidden_size}; "
                f"build a {chosen.hidden_size}-dim substrate or use --layers/--heads"
            )
        return {
            "num_hidden_layers": chosen.num_hidden_layers,
            "num_attention_heads": chosen.num_attention_heads,
            "max_position_embeddings": chosen.max_position_embeddings,
        }
    if layers is None or heads is None:
        raise PgtError("give a --preset, or both --layers and --heads")
    if layers < 1 or heads < 1:
        raise PgtError(f"--layers and --heads must be positive (got {layers} and {heads})")
    if hidden_size % heads or (hidden_size // heads) % 2:
        raise PgtError(f"--heads {heads} must divide the substrate dimension {hidden_size} into even head sizes")
    return {"num_hidden_layers": layers, "num_attention_heads": heads}


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str | os.PathLike,
    *,
    substrate_meta: SubstrateMeta,
    overwrite: bool = False,
) -> Path:
    """Write a complete model directory atomically (weights as safetensors, code, tokenizer,
    `substrate.json`); `substrate_meta` is the substrate's `substrate.json` record."""
    from pgt.model import register_auto_classes

    register_auto_classes()  # makes save_pretrained write auto_map and ship the modeling code
    if getattr(model.config, "substrate_fingerprint", None) != substrate_meta.fingerprint:
        raise PgtError("the model's substrate_fingerprint differs from the substrate.json given to save it")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        substrate_meta.save(tmp / SUBSTRATE_FILE)
    return Path(out)


def init_model_dir(
    substrate_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    preset: str | None = None,
    layers: int | None = None,
    heads: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    **config_overrides: Any,
) -> Path:
    """Write an untrained model on the substrate in `substrate_dir` to `out` and return `out`.

    Width and vocabulary come from the substrate; depth and heads from `preset` or from
    `layers` and `heads`. `seed` fixes the random initialisation of the trainable weights.
    """
    import torch

    from pgt.model.modeling_pgt import PgtForCausalLM

    substrate = Substrate.load(substrate_dir)
    config_kwargs = model_config_kwargs(preset=preset, layers=layers, heads=heads, hidden_size=substrate.dim)
    torch.manual_seed(seed)
    model = PgtForCausalLM.from_substrate(substrate, **config_kwargs, **config_overrides)
    return save_model(model, substrate.tokenizer, out, substrate_meta=substrate.meta, overwrite=overwrite)


def embedding_fingerprint(model: PreTrainedModel, substrate_meta: SubstrateMeta) -> str:
    """The substrate fingerprint recomputed from the model's (float32) token embedding."""
    weight = model.get_input_embeddings().weight.detach()
    return fingerprint(weight.float().cpu().numpy(), substrate_meta.params)


def load_model(
    path: str | os.PathLike, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model directory as (model, tokenizer), in eval mode, after checking that its
    config, its tokenizer's `substrate.json` and its embedding weights share one substrate.

    `dtype` defaults to float32. Only safetensors weights are read (never pickle).
    Raises PgtError on a missing or corrupt directory or any fingerprint mismatch.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pgt.model import register_auto_classes

    register_auto_classes()
    path = Path(path)
    if not path.is_dir():
        raise PgtError(f"model directory not found: {path}")
    config = read_json(path / "config.json", "model config")
    substrate_meta = SubstrateMeta.load(path / SUBSTRATE_FILE)
    recorded = config.get("substrate_fingerprint")
    if not recorded:
        raise PgtError(f"{path} is not a pgt model directory (its config has no substrate_fingerprint)")
    if recorded != substrate_meta.fingerprint:
        raise PgtError(
            f"{path}: the model was built on substrate {recorded[:19]}… but its tokenizer belongs to "
            f"{substrate_meta.fingerprint[:19]}…; use the tokenizer of the model's own substrate"
        )
    if not (path / WEIGHTS_FILE).is_file() and not (path / WEIGHTS_INDEX_FILE).is_file():
        raise PgtError(f"{path} has no {WEIGHTS_FILE} (pgt reads safetensors weights only)")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=torch.float32, use_safetensors=True, local_files_only=True, output_loading_info=True
        )
    except Exception as exc:  # safetensors, OSError and shape errors all mean the same to the user
        raise PgtError(f"cannot load the weights in {path / WEIGHTS_FILE}: {str(exc).splitlines()[0]}") from None
    if info["missing_keys"] or info["mismatched_keys"]:
        missing = sorted(info["missing_keys"]) + [str(key) for key in info["mismatched_keys"]]
        raise PgtError(f"{path / WEIGHTS_FILE} is incomplete or mismatched: {', '.join(missing[:5])}")
    if embedding_fingerprint(model, substrate_meta) != recorded:
        raise PgtError(f"{path}: the token embedding in the weights is not the recorded substrate (altered or corrupt)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PgtError(f"cannot load the tokenizer in {path}: {exc}") from None
    if len(tokenizer) > model.config.vocab_size:
        raise PgtError(f"{path}: tokenizer has {len(tokenizer)} ids but the model only {model.config.vocab_size}")
    model.to(device=device, dtype=dtype or torch.float32)
    return model.eval(), tokenizer


def substrate_meta_of(path: str | os.PathLike) -> SubstrateMeta:
    """The `substrate.json` of a substrate or model directory (what `save_model` needs)."""
    return SubstrateMeta.load(Path(path) / SUBSTRATE_FILE)
