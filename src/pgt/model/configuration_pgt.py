"""Configuration of a PGT decoder (shipped into saved model directories: torch/transformers only).

A PGT model is a pre-norm decoder-only Transformer whose token embedding is a frozen
substrate matrix (glyph embeddings). `hidden_size` and `vocab_size` therefore come from
the substrate, and `substrate_fingerprint` records which substrate the model was built on.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class PgtConfig(PretrainedConfig):
    """Hyper-parameters of `PgtForCausalLM`.

    Blocks are `x + attn(norm(x))` then `x + mlp(norm(x))` with rotary multi-head attention
    and a non-gated GELU MLP of width `intermediate_size` (default 4 * hidden_size); a final
    RMSNorm precedes an untied, bias-free output head. With `freeze_embeddings` the token
    embedding never receives gradients (the PGT setting); False gives the trainable-embedding
    baseline of the paper.
    """

    model_type = "pgt"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 65536
    hidden_size: int = 1024
    num_hidden_layers: int = 1
    num_attention_heads: int = 32
    intermediate_size: int | None = None
    hidden_act: str = "gelu"
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    attention_dropout: float = 0.0
    freeze_embeddings: bool = True
    substrate_fingerprint: str | None = None
    use_cache: bool = True
    pad_token_id: int | None = 57344  # <pad> in the bvv241 layout
    bos_token_id: int | None = 57345  # <s>
    eos_token_id: int | list[int] | None = 57346  # </s>
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("rotary embeddings need an even head dimension (hidden_size / num_attention_heads)")
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


__all__ = ["PgtConfig"]
