"""Model directories: create untrained ones, save trained ones, load them with every check.

A model directory is a Hugging Face model repository (docs/architecture.md): `config.json`
(a standard `arcee` config plus the extra keys `substrate_fingerprint` and
`freeze_embeddings`), `model.safetensors` (frozen embedding included),
`generation_config.json` (the card's sampling), the tokenizer files (`model_max_length` =
the context), `README.md` (the model card) and a copy of the substrate's `substrate.json`.
Only a merged-experts directory carries code (`trust_remote_code`). Loading checks three
fingerprints against one another: the config's, the copied `substrate.json`'s and one
recomputed from the embedding weights; and the tokenizer's token texts against the
substrate's record of them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgt.corpus.chat import save_tokenizer
from pgt.errors import PgtError, one_line
from pgt.io import atomic_dir, read_json, refuse_existing, refuse_overlap, write_json
from pgt.model.architecture import (
    DEFAULT_ATTN_IMPLEMENTATION,
    SAMPLING,
    check_attn_implementation,
    check_heads,
    count_parameters,
    from_substrate,
)
from pgt.model.card import facts_of, model_card
from pgt.model.frozen import freeze_embedding
from pgt.model.presets import get_preset
from pgt.substrate.store import SUBSTRATE_FILE, Substrate, SubstrateMeta, fingerprint
from pgt.substrate.tokenizer import texts_sha256, token_texts

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # the same, in shards (very large models)
CONFIG_FILE = "config.json"
# config.json fields that size the model: positive integers.
SIZE_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
CARD_FILE = "README.md"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SINGLE_MODEL_TYPE = "arcee"
MERGED_MODEL_TYPE = "pgt_merged"


def model_class(model_type: str) -> type[PreTrainedModel]:
    """The class of a pgt model directory's `model_type` (PgtError for any other)."""
    if model_type == SINGLE_MODEL_TYPE:
        from transformers import ArceeForCausalLM

        return ArceeForCausalLM
    if model_type == MERGED_MODEL_TYPE:
        from pgt.model.modeling_pgt_merged import (
            PgtMergedForCausalLM,  # imports torch: `pgt --help` loads this module
        )

        return PgtMergedForCausalLM
    raise PgtError(f"model type {model_type!r} is not a pgt model ({SINGLE_MODEL_TYPE} or {MERGED_MODEL_TYPE})")


def build_from_config(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised pgt model of `config`, its substrate embedding frozen."""
    return freeze_embedding(model_class(config.model_type)(config))


def read_model_config(path: str | os.PathLike) -> PretrainedConfig:
    """The config of a pgt model directory, or a one-line PgtError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise PgtError(f"model directory not found: {path}")
    raw = read_json(path / CONFIG_FILE, "model config")
    if not raw.get("substrate_fingerprint"):
        raise PgtError(f"{path} is not a pgt model directory (its config has no substrate_fingerprint)")
    cls = model_class(str(raw.get("model_type")))
    for key in SIZE_FIELDS:  # transformers takes any JSON value; a string here fails deep inside the model
        if key in raw and not (type(raw[key]) is int and raw[key] > 0):
            raise PgtError(f"{path / CONFIG_FILE}: {key} is {raw[key]!r}, expected a positive integer")
    try:
        return cls.config_class.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise PgtError(f"{path / CONFIG_FILE} is not a valid {cls.config_class.__name__}: {one_line(exc)}") from None


def refuse_pickle_weights(path: str | os.PathLike) -> None:
    """A directory whose only weights are pickles (`pytorch_model.bin`) is refused in one line: unpickling
    can run code, and even `weights_only` loading is not what pgt trusts."""
    path = Path(path)
    if not any(path.glob("*.safetensors")) and (pickles := sorted(p.name for p in path.glob("*.bin"))):
        raise PgtError(
            f"{path} holds pickle weights only ({pickles[0]}); pgt reads safetensors weights only, "
            "since loading a pickle can run code: convert them to safetensors where you trust them"
        )


def model_config_kwargs(
    *, preset: str | None = None, layers: int | None = None, heads: int | None = None, hidden_size: int
) -> dict[str, Any]:
    """Config fields for a model on a substrate of width `hidden_size`: a preset or layers + heads."""
    if preset is not None:
        if layers is not None or heads is not None:
            raise PgtError("give either a preset or --blocks/--heads, not both")
        chosen = get_preset(preset)
        if chosen.hidden_size != hidden_size:
            raise PgtError(
                f"preset {preset} has d_model {chosen.hidden_size} but the substrate's dimension is {hidden_size}; "
                f"build a {chosen.hidden_size}-dim substrate or use --blocks/--heads"
            )
        return {
            "num_hidden_layers": chosen.num_hidden_layers,
            "num_attention_heads": chosen.num_attention_heads,
            "max_position_embeddings": chosen.max_position_embeddings,
        }
    if layers is None or heads is None:
        raise PgtError("give a --preset, or both --blocks and --heads")
    if layers < 1:
        raise PgtError(f"--blocks must be positive (got {layers})")
    check_heads(hidden_size, heads)
    return {"num_hidden_layers": layers, "num_attention_heads": heads}


def _generation_config(config: PretrainedConfig) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        **SAMPLING,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str | os.PathLike,
    *,
    substrate_meta: SubstrateMeta,
    card: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete model directory atomically (safetensors weights, config, generation
    config, tokenizer, `substrate.json`, model card); `substrate_meta` is the substrate's
    `substrate.json` record. `card` is the README.md (`pgt.model.card.model_card`);
    without one, a card is written from what the model and substrate record."""
    if getattr(model.config, "substrate_fingerprint", None) != substrate_meta.fingerprint:
        raise PgtError("the model's substrate_fingerprint differs from the substrate.json given to save it")
    model.generation_config = _generation_config(model.config)
    with atomic_dir(out, overwrite=overwrite, marker=CONFIG_FILE) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        save_tokenizer(tokenizer, tmp)  # with the chat template (pgt.corpus.chat)
        # The tokenizer warns about a prompt longer than the model's context (transformers' default: 1e30).
        tokenizer_config = read_json(tmp / TOKENIZER_CONFIG_FILE, "tokenizer config")
        write_json(
            tmp / TOKENIZER_CONFIG_FILE, {**tokenizer_config, "model_max_length": model.config.max_position_embeddings}
        )
        substrate_meta.save(tmp / SUBSTRATE_FILE)
        if card is None:
            card = model_card(**facts_of(model, substrate_meta, Path(out).name))
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
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
    `layers` and `heads`; `config_overrides` go to `pgt.model.architecture.pgt_config`
    (e.g. `hidden_act="relu2"`). `seed` fixes the random initialisation of the trainable weights.
    """
    import torch

    refuse_overlap(out, [substrate_dir])
    refuse_existing(out, overwrite=overwrite, marker=CONFIG_FILE)  # before the model is built
    substrate = Substrate.load(substrate_dir)
    config_kwargs = model_config_kwargs(preset=preset, layers=layers, heads=heads, hidden_size=substrate.dim)
    torch.manual_seed(seed)
    model = from_substrate(substrate, **config_kwargs, **config_overrides)
    return save_model(model, substrate.tokenizer, out, substrate_meta=substrate.meta, overwrite=overwrite)


def embedding_fingerprint(model: PreTrainedModel, substrate_meta: SubstrateMeta) -> str:
    """The substrate fingerprint recomputed from the model's (float32) token embedding."""
    weight = model.get_input_embeddings().weight.detach()
    return fingerprint(weight.float().cpu().numpy(), substrate_meta.params)


def check_token_texts(tokenizer: PreTrainedTokenizerBase, substrate_meta: SubstrateMeta, where: Path) -> None:
    """PgtError unless the tokenizer's tokens are those whose glyphs the substrate rendered.

    The substrate records `params.token_texts_sha256`. A bvv241 build hashes the vocabulary
    strings; a substrate built from another tokenizer hashes their rendered texts
    (`pgt.substrate.tokenizer.token_texts`); either matching is the same tokenizer.
    """
    recorded = substrate_meta.params.token_texts_sha256
    ids = list(range(len(tokenizer)))

    if texts_sha256(tokenizer.convert_ids_to_tokens(ids)) == recorded:
        return
    if texts_sha256(token_texts(tokenizer)) != recorded:
        raise PgtError(
            f"{where}: the tokenizer's tokens are not those of the model's substrate (tokenizer.json was "
            "replaced or edited); restore the tokenizer files of the model's own substrate"
        )


def _load_tokenizer(path: Path, *, merged: bool) -> PreTrainedTokenizerBase:
    """The directory's tokenizer. A merged directory's config names custom code, which a tokenizer
    never needs: refusing it avoids transformers' terminal prompt (and its model-type warning)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    if merged:
        hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PgtError(f"cannot load the tokenizer in {path}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def load_model(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model directory as (model, tokenizer), in eval mode, after checking that its
    config, its tokenizer's `substrate.json` and its embedding weights share one substrate
    and that the tokenizer is the substrate's. The embedding comes back frozen.

    `dtype` defaults to float32; `attn_implementation` is transformers' attention backend.
    Only safetensors weights are read (never pickle).
    Raises PgtError on a missing or corrupt directory or any fingerprint mismatch.
    """
    import torch

    check_attn_implementation(attn_implementation)
    path = Path(path)
    config = read_model_config(path)
    substrate_meta = SubstrateMeta.load(path / SUBSTRATE_FILE)
    recorded = config.substrate_fingerprint
    if recorded != substrate_meta.fingerprint:
        raise PgtError(
            f"{path}: the model was built on substrate {recorded[:19]}… but its tokenizer belongs to "
            f"{substrate_meta.fingerprint[:19]}…; use the tokenizer of the model's own substrate"
        )
    refuse_pickle_weights(path)
    if not (path / WEIGHTS_FILE).is_file() and not (path / WEIGHTS_INDEX_FILE).is_file():
        raise PgtError(f"{path} has no {WEIGHTS_FILE} (pgt reads safetensors weights only)")
    try:
        model, info = model_class(config.model_type).from_pretrained(
            str(path),
            dtype=torch.float32,
            use_safetensors=True,
            local_files_only=True,
            output_loading_info=True,
            attn_implementation=attn_implementation,
        )
    except Exception as exc:  # safetensors, OSError and shape errors all mean the same to the user
        raise PgtError(f"cannot load the weights in {path / WEIGHTS_FILE}: {one_line(exc)}") from None
    if info["missing_keys"] or info["mismatched_keys"]:
        missing = sorted(info["missing_keys"]) + [str(key) for key in info["mismatched_keys"]]
        raise PgtError(f"{path / WEIGHTS_FILE} is incomplete or mismatched: {', '.join(missing[:5])}")
    if embedding_fingerprint(model, substrate_meta) != recorded:
        raise PgtError(f"{path}: the token embedding in the weights is not the recorded substrate (altered or corrupt)")
    tokenizer = _load_tokenizer(path, merged=config.model_type == MERGED_MODEL_TYPE)
    if len(tokenizer) > model.config.vocab_size:
        raise PgtError(f"{path}: tokenizer has {len(tokenizer)} ids but the model only {model.config.vocab_size}")
    check_token_texts(tokenizer, substrate_meta, path)
    model.to(device=device, dtype=dtype or torch.float32)
    return freeze_embedding(model).eval(), tokenizer


def substrate_meta_of(path: str | os.PathLike) -> SubstrateMeta:
    """The `substrate.json` of a substrate or model directory (what `save_model` needs)."""
    return SubstrateMeta.load(Path(path) / SUBSTRATE_FILE)


def parameter_counts(config: PretrainedConfig) -> tuple[int, int]:
    """(total, trainable) parameters of the causal LM of `config` (a PGT `ArceeConfig` or a
    merged one), counted on the meta device. Trainable excludes the frozen substrate embedding."""
    import torch

    with torch.device("meta"):
        return count_parameters(build_from_config(config))


def stored_parameters(model_dir: str | os.PathLike) -> int | None:
    """Total parameters in a model directory's safetensors files (read from their headers only), or None
    when it has none: counts any causal LM's directory without building the model."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(key).get_shape())
    return total
