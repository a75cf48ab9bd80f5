"""The PGT decoder as transformers' built-in `ArceeForCausalLM`, and the choices around it.

A PGT block is pre-norm RMSNorm, rotary multi-head attention and a non-gated
`down(act(up(x)))` MLP, with no biases, a final norm and an untied head: exactly the
Llama-family `arcee` architecture of transformers with `num_key_value_heads = heads`.
So every single model pgt writes is a standard `arcee` checkpoint (no custom code);
what is PGT-specific rides along as extra `config.json` keys:

- `substrate_fingerprint`: the frozen glyph substrate the token embedding is;
- `freeze_embeddings`: True for PGT models (False: the trainable-embedding baseline).

The embedding is kept frozen by `pgt.model.frozen.freeze_embedding` (no gradient reaches it);
plain `AutoModelForCausalLM.from_pretrained` gives the standard, trainable module.

torch and transformers are imported inside the functions, so the choices below can be
imported by command-line parsers without paying for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from pgt.errors import PgtError
from pgt.model.frozen import freeze_embedding
from pgt.settings import setting

if TYPE_CHECKING:
    from torch import nn
    from transformers import ArceeConfig, ArceeForCausalLM

# Activations: GELU is our default; relu2 is what vLLM's and SGLang's native Arcee kernels
# serve (GELU serves through vLLM's transformers backend; docs/architecture.md).
HiddenAct = Literal["gelu", "relu2"]
HIDDEN_ACTS: tuple[str, ...] = get_args(HiddenAct)
DEFAULT_HIDDEN_ACT = "gelu"

# transformers' own attention backends (flash attention needs the flash-attn package on CUDA).
AttnImplementation = Literal["sdpa", "flash_attention_2", "flex_attention"]
ATTN_IMPLEMENTATIONS: tuple[str, ...] = get_args(AttnImplementation)
DEFAULT_ATTN_IMPLEMENTATION = "sdpa"


def attn_implementation_setting() -> Any:
    """`--attn-implementation`, a field of every command that loads a model to run it (grow, generate, eval)."""
    return setting(
        DEFAULT_ATTN_IMPLEMENTATION, "attention backend; flash_attention_2 needs CUDA and the flash-attn package"
    )


# How a block added by progressive growth starts (pgt.growth.expand).
BlockInit = Literal["random", "identity", "copy-top"]
BLOCK_INITS: tuple[str, ...] = get_args(BlockInit)

# The model card's sampling settings: generation_config.json, `pgt generate`, the demo.
SAMPLING: dict[str, Any] = {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95}

# How a merged model combines its experts' logits (`pgt merge --mode`). The shipped
# configuration_pgt_merged.py cannot import pgt, so it keeps the same tuple (a test checks).
MERGE_MODES: tuple[str, ...] = ("mean", "adapter")

INTERMEDIATE_MULTIPLE = 4  # MLP width = 4 x d_model unless given
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5
DEFAULT_CONTEXT = 1024


def check_heads(hidden_size: int, heads: int) -> None:
    """PgtError unless `heads` splits `hidden_size` into equal, even (rotary) head sizes."""
    if heads < 1 or hidden_size % heads or (hidden_size // heads) % 2:
        raise PgtError(
            f"--heads {heads} must divide the substrate's dimension {hidden_size} into an even head "
            "dimension (rotary embeddings rotate pairs)"
        )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PgtError(f"unknown {name} {value!r} (choose from {', '.join(choices)})")


def check_attn_implementation(name: str) -> None:
    """PgtError unless `name` is a backend this machine can run (flash attention needs its package)."""
    check_choice("attention implementation", name, ATTN_IMPLEMENTATIONS)
    if name == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise PgtError(
                "--attn-implementation flash_attention_2 needs CUDA and the flash-attn package "
                "(pip install flash-attn); use sdpa"
            )


def pgt_config(
    *,
    vocab_size: int,
    hidden_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    intermediate_size: int | None = None,
    max_position_embeddings: int = DEFAULT_CONTEXT,
    hidden_act: str = DEFAULT_HIDDEN_ACT,
    attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION,
    substrate_fingerprint: str | None = None,
    freeze_embeddings: bool = True,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    **extra: Any,
) -> ArceeConfig:
    """The `ArceeConfig` of a PGT model (every head its own KV head, no biases, untied head)."""
    from transformers import ArceeConfig

    check_heads(hidden_size, num_attention_heads)
    check_choice("hidden_act", hidden_act, HIDDEN_ACTS)
    check_attn_implementation(attn_implementation)
    config = ArceeConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or INTERMEDIATE_MULTIPLE * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        hidden_act=hidden_act,
        max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        rms_norm_eps=RMS_NORM_EPS,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        substrate_fingerprint=substrate_fingerprint,
        freeze_embeddings=freeze_embeddings,
        **extra,
    )
    config._attn_implementation = attn_implementation
    return config


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts of a model in memory (the meta device counts too)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def build_model(config: ArceeConfig) -> ArceeForCausalLM:
    """A randomly initialised `ArceeForCausalLM` of `config`, its embedding frozen when PGT."""
    from transformers import ArceeForCausalLM

    return freeze_embedding(ArceeForCausalLM(config))


def from_substrate(substrate: Any, **config_kwargs: Any) -> ArceeForCausalLM:
    """A randomly initialised model whose token embedding is `substrate`'s matrix.

    `substrate` is anything with `.embeddings` ([V, d] float tensor), `.fingerprint` and
    `.tokenizer` (e.g. `pgt.substrate.store.Substrate`); vocabulary, width and the special
    token ids come from it, the rest from `config_kwargs` (see `pgt_config`).
    """
    import torch

    vocab_size, hidden_size = substrate.embeddings.shape
    tokenizer = substrate.tokenizer
    config_kwargs = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **config_kwargs,
    }
    config = pgt_config(
        vocab_size=int(vocab_size),
        hidden_size=int(hidden_size),
        substrate_fingerprint=substrate.fingerprint,
        **config_kwargs,
    )
    model = build_model(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(substrate.embeddings)
    return model


def new_decoder_layer(config: ArceeConfig, layer_idx: int) -> nn.Module:
    """A fresh decoder block for KV-cache slot `layer_idx` (progressive growth appends these)."""
    from transformers.models.arcee.modeling_arcee import ArceeDecoderLayer

    return ArceeDecoderLayer(config, layer_idx)
