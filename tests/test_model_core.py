"""The PGT decoder (transformers' ArceeForCausalLM on the substrate): frozen embedding, KV cache,
padding, dtypes, growth hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import ArceeForCausalLM

from pgt.model.architecture import from_substrate, new_decoder_layer
from pgt.model.frozen import freeze_embedding
from pgt.substrate.store import Substrate

PROMPTS = ["The cat sat on the mat.", "Жизнь"]


@pytest.fixture(scope="module")
def substrate(substrate_dir: Path) -> Substrate:
    return Substrate.load(substrate_dir)


@pytest.fixture()
def model(substrate: Substrate) -> ArceeForCausalLM:
    torch.manual_seed(0)
    return from_substrate(substrate, num_hidden_layers=2, num_attention_heads=4).eval()


def test_from_substrate_copies_the_matrix_and_records_its_fingerprint(model, substrate):
    assert model.config.hidden_size == substrate.dim and model.config.vocab_size == substrate.vocab_size
    assert model.config.substrate_fingerprint == substrate.fingerprint and model.config.freeze_embeddings
    assert model.config.model_type == "arcee" and model.config.hidden_act == "gelu"
    assert model.config.num_key_value_heads == 4 and not model.config.tie_word_embeddings
    assert model.config.pad_token_id == substrate.tokenizer.pad_token_id
    assert torch.equal(model.model.embed_tokens.weight, substrate.embeddings)
    assert not model.model.embed_tokens.weight.requires_grad
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()  # untied


def test_training_never_touches_the_frozen_embedding(model, substrate):
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    model.train()
    # Even a careless `requires_grad_(True)` on everything must not let gradients reach it.
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    head_before = model.lm_head.weight.detach().clone()
    for _ in range(3):
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        assert model.model.embed_tokens.weight.grad is None
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(model.model.embed_tokens.weight, substrate.embeddings)
    assert not torch.equal(model.lm_head.weight, head_before)  # the rest did train
    freeze_embedding(model)  # what load_model does: frozen again, the hook not doubled
    assert not model.model.embed_tokens.weight.requires_grad
    assert len(model.model.embed_tokens._forward_hooks) == 1


def test_trainable_embedding_baseline_does_train_it(substrate):
    torch.manual_seed(0)
    model = from_substrate(substrate, num_hidden_layers=1, num_attention_heads=4, freeze_embeddings=False)
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    model(tokens, labels=tokens).loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_save_and_reload_keeps_the_embedding_bit_identical(model, substrate, tmp_path):
    model.save_pretrained(tmp_path)
    reloaded = freeze_embedding(ArceeForCausalLM.from_pretrained(tmp_path))
    assert reloaded.config.substrate_fingerprint == substrate.fingerprint and reloaded.config.freeze_embeddings
    assert torch.equal(reloaded.model.embed_tokens.weight, substrate.embeddings)
    assert not reloaded.model.embed_tokens.weight.requires_grad
    reloaded.train()
    assert not reloaded.model.embed_tokens.weight.requires_grad
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    assert torch.equal(reloaded.eval()(tokens).logits, model(tokens).logits)


def test_greedy_generation_with_cache_equals_without(model, substrate):
    inputs = substrate.tokenizer(PROMPTS[0], return_tensors="pt")
    with_cache = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=True)
    without_cache = model.generate(**inputs, max_new_tokens=12, do_sample=False, use_cache=False)
    assert with_cache.shape[1] == inputs.input_ids.shape[1] + 12
    assert torch.equal(with_cache, without_cache)
    # and the cached step logits are the full forward's
    full = model(with_cache).logits
    prefix = model(with_cache[:, :-1], use_cache=True)
    step = model(with_cache[:, -1:], cache=prefix.cache).logits
    torch.testing.assert_close(step[:, -1], full[:, -1], rtol=1e-4, atol=1e-5)


def test_left_padded_batch_matches_each_prompt_alone(model, substrate):
    tokenizer = substrate.tokenizer
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    assert (batch.attention_mask == 0).any()  # the second prompt is padded
    batch_logits = model(**batch).logits
    for row, prompt in enumerate(PROMPTS):
        alone = model(**tokenizer(prompt, return_tensors="pt")).logits[0]
        real = batch.attention_mask[row].bool()
        torch.testing.assert_close(batch_logits[row, real], alone, rtol=1e-4, atol=1e-5)
    # greedy continuation of the padded batch equals each prompt's own
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    for row, prompt in enumerate(PROMPTS):
        alone = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=5, do_sample=False)
        assert generated[row, -5:].tolist() == alone[0, -5:].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forward_in_each_dtype(model, substrate, dtype):
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    reference = model(tokens).logits
    logits = model.to(dtype)(tokens).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    # a half-precision model still ranks the tokens like the float32 one
    assert (logits.float().argmax(-1) == reference.argmax(-1)).float().mean() > 0.8
    generated = model.generate(tokens, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == tokens.shape[1] + 3


def test_appended_block_is_used_and_cached(model, substrate):
    """Progressive growth appends blocks: a new layer only needs the config and its index."""
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    before = model(tokens).logits
    model.model.layers.append(new_decoder_layer(model.config, layer_idx=2))
    model.config.num_hidden_layers = 3
    assert not torch.equal(model(tokens).logits, before)
    with_cache = model.generate(tokens, max_new_tokens=6, do_sample=False, use_cache=True)
    without_cache = model.generate(tokens, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_gradient_checkpointing_gives_the_same_gradients(model, substrate):
    tokens = substrate.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    model.train()
    assert model(tokens, use_cache=False).cache is None  # what the trainer's forwards ask for
    model(tokens, labels=tokens).loss.backward()
    plain = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    model.activation_checkpointing_enable({"use_reentrant": False})
    model(tokens, labels=tokens, use_cache=True).loss.backward()
    checkpointed = [p.grad for p in model.parameters() if p.requires_grad]
    for expected, actual in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(actual, expected)
