"""PGT decoder: a pre-norm Transformer on a frozen token embedding (transformers-native).

This file is copied into every saved model directory and loaded there with
`trust_remote_code=True`, so it imports only torch, transformers and `.configuration_pgt`.

Shapes: B batch, T new tokens, S = past + T keys, H heads, D head dim, d model width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import can_return_tuple

from .configuration_pgt import PgtConfig


class PgtRotaryEmbedding(nn.Module):
    """Rotary position embedding: cos/sin tables for the given positions."""

    def __init__(self, config: PgtConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.theta = config.rope_theta
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.float()  # [B, T, D/2]
        angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, T, D], broadcast over heads
        return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head's vector by the position angles."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class PgtAttention(nn.Module):
    """Causal multi-head self-attention with rotary positions, through `scaled_dot_product_attention`."""

    def __init__(self, config: PgtConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx  # the slot of this layer in the KV cache
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        d = config.hidden_size
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape

        def heads(x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, H, T, D]
            return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        cos, sin = rotary
        query = apply_rotary(heads(self.q_proj(hidden_states)), cos, sin)
        key = apply_rotary(heads(self.k_proj(hidden_states)), cos, sin)
        value = heads(self.v_proj(hidden_states))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            # Without a mask, only a prompt processed from scratch needs the causal triangle;
            # a single new token may see every cached key.
            is_causal=attention_mask is None and length > 1,
        )
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class PgtMLP(nn.Module):
    """Non-gated feed-forward block: down(act(up(x))), width `intermediate_size`."""

    def __init__(self, config: PgtConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


class PgtDecoderLayer(GradientCheckpointingLayer):
    """One pre-norm block. Depends on nothing global but `layer_idx` (its KV-cache slot),
    so progressive growth can append new blocks to `PgtModel.layers`."""

    def __init__(self, config: PgtConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = PgtAttention(config, layer_idx)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = PgtMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        attended = self.self_attn(self.input_layernorm(hidden_states), rotary, attention_mask, cache)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


def attention_mask_4d(
    padding_mask: torch.Tensor | None, query_length: int, past_length: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean [B, 1, T, S] mask (True = may attend), or None when SDPA's own causal mode suffices.

    `padding_mask` is the usual [B, S] tensor (1 = token, 0 = padding). A padding query
    is allowed to see itself so that no row is fully masked (SDPA would return NaN there,
    which would then leak into the real tokens' attention through 0 * NaN).
    """
    key_length = past_length + query_length
    if padding_mask is not None and padding_mask.shape[-1] != key_length:
        raise ValueError(f"attention_mask covers {padding_mask.shape[-1]} tokens, expected past + new = {key_length}")
    padded = padding_mask is not None and not bool(padding_mask.all())
    if not padded and (past_length == 0 or query_length == 1):
        return None
    query_positions = torch.arange(past_length, key_length, device=device)[:, None]
    key_positions = torch.arange(key_length, device=device)[None, :]
    mask = (key_positions <= query_positions)[None, None]
    if padded:
        mask = (mask & padding_mask[:, None, None, :].bool()) | (key_positions == query_positions)
    return mask


class PgtPreTrainedModel(PreTrainedModel):
    """Weight initialisation and transformers capabilities shared by the PGT classes."""

    config_class = PgtConfig
    config: PgtConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PgtDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # The frozen substrate matrix is copied in, never drawn at random; only the
            # trainable-embedding baseline gets a random start.
            if not self.config.freeze_embeddings:
                init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, PgtRotaryEmbedding):
            init.copy_(module.inv_freq, module.compute_inv_freq())


class PgtModel(PgtPreTrainedModel):
    """The decoder stack: frozen token embedding, `layers`, final norm; returns hidden states."""

    def __init__(self, config: PgtConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_tokens.weight.requires_grad_(not config.freeze_embeddings)
        self.layers = nn.ModuleList(PgtDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = PgtRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    def train(self, mode: bool = True) -> PgtModel:
        # Loading replaces parameters with fresh trainable ones; `from_pretrained` ends with
        # `eval()`, which lands here, so the substrate matrix is frozen again every time.
        super().train(mode)
        if self.config.freeze_embeddings:
            self.embed_tokens.weight.requires_grad_(False)
        return self

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
            if self.config.freeze_embeddings:
                inputs_embeds = inputs_embeds.detach()  # no gradient can reach the substrate
        if use_cache is None:  # a training forward has no use for a cache
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )

        query_length = inputs_embeds.shape[1]
        past_length = cache.get_seq_length() if cache is not None else 0
        if past_length + query_length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {past_length + query_length} tokens exceeds the model's context of "
                f"{self.config.max_position_embeddings} (max_position_embeddings); shorten the prompt or max_new_tokens"
            )
        if position_ids is None:
            if attention_mask is not None:  # left padding: count only real tokens
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -query_length:]
            else:
                position_ids = torch.arange(past_length, past_length + query_length, device=inputs_embeds.device)[None]
        mask = attention_mask_4d(attention_mask, query_length, past_length, inputs_embeds.device)
        rotary = self.rotary_emb(position_ids, inputs_embeds.dtype)

        hidden_states = inputs_embeds
        all_hidden_states = [hidden_states] if output_hidden_states else None
        for layer in self.layers[: self.config.num_hidden_layers]:
            # keywords let gradient checkpointing drop the cache (its replay would write twice)
            hidden_states = layer(hidden_states, rotary, attention_mask=mask, cache=cache)
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
        )


class PgtForCausalLM(PgtPreTrainedModel, GenerationMixin):
    """PGT language model: `PgtModel` plus an untied, trainable output head."""

    def __init__(self, config: PgtConfig) -> None:
        super().__init__(config)
        self.model = PgtModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @classmethod
    def from_substrate(cls, substrate, **config_kwargs) -> PgtForCausalLM:
        """A randomly initialised model whose frozen token embedding is `substrate`'s matrix.

        `substrate` is anything with `.embeddings` ([V, d] float tensor), `.fingerprint` and
        `.tokenizer` (e.g. `pgt.substrate.store.Substrate`); vocabulary size, width and the
        special token ids come from it.
        """
        vocab_size, hidden_size = substrate.embeddings.shape
        tokenizer = substrate.tokenizer
        config_kwargs = {
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            **config_kwargs,
        }
        config = PgtConfig(
            vocab_size=int(vocab_size),
            hidden_size=int(hidden_size),
            substrate_fingerprint=substrate.fingerprint,
            **config_kwargs,
        )
        model = cls(config)
        with torch.no_grad():
            model.model.embed_tokens.weight.copy_(substrate.embeddings)
        return model

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for every position (or the last `logits_to_keep`); with `labels`, the
        mean next-token cross-entropy (labels are shifted inside; -100 is ignored)."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )


__all__ = ["PgtPreTrainedModel", "PgtModel", "PgtDecoderLayer", "PgtAttention", "PgtMLP", "PgtForCausalLM"]
