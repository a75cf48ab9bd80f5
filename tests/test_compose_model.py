"""PgtMergedForCausalLM in memory: logit averaging, weights, the KV cache, the adapter."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import ArceeForCausalLM

from pgt.corpus.fortunes import default_corpus_files
from pgt.corpus.sources import iter_fortunes
from pgt.model.architecture import from_substrate
from pgt.model.modeling_pgt_merged import PgtMergedForCausalLM
from pgt.substrate.store import Substrate


@pytest.fixture(scope="module")
def substrate(substrate_dir: Path) -> Substrate:
    return Substrate.load(substrate_dir)


def random_expert(substrate: Substrate, *, layers: int, seed: int) -> ArceeForCausalLM:
    torch.manual_seed(seed)
    return from_substrate(substrate, num_hidden_layers=layers, num_attention_heads=4).eval()


@pytest.fixture(scope="module")
def experts(substrate: Substrate) -> list[ArceeForCausalLM]:
    """Two different experts on one substrate, of different depths (1 and 2 blocks)."""
    return [random_expert(substrate, layers=1, seed=1), random_expert(substrate, layers=2, seed=2)]


@pytest.fixture(scope="module")
def text_ids(substrate: Substrate, corpus_files: list[Path]) -> torch.Tensor:
    """Two rows of 24 real (English fortune) tokens."""
    text = " ".join(iter_fortunes(corpus_files[0]))
    ids = substrate.tokenizer(text, add_special_tokens=False)["input_ids"][:48]
    return torch.tensor(ids).view(2, 24)


def logits_of(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, use_cache=False).logits


def test_merging_a_model_with_itself_gives_its_own_logits(experts, text_ids):
    expert = experts[0]
    merged = PgtMergedForCausalLM.from_experts([expert, copy.deepcopy(expert)]).eval()
    torch.testing.assert_close(logits_of(merged, text_ids), logits_of(expert, text_ids), atol=1e-6, rtol=0)


def test_merged_logits_are_the_mean_or_weighted_mean(experts, text_ids):
    first, second = (logits_of(expert, text_ids) for expert in experts)
    assert (first - second).abs().max() > 0.1  # the experts really differ
    merged = PgtMergedForCausalLM.from_experts(experts).eval()
    torch.testing.assert_close(logits_of(merged, text_ids), (first + second) / 2, atol=1e-6, rtol=0)
    weighted = PgtMergedForCausalLM.from_experts(experts, weights=[1.0, 3.0]).eval()
    assert weighted.config.expert_weights == [0.25, 0.75]
    torch.testing.assert_close(logits_of(weighted, text_ids), 0.25 * first + 0.75 * second, atol=1e-6, rtol=0)


def test_experts_share_one_embedding_tensor(experts):
    merged = PgtMergedForCausalLM.from_experts(experts)
    embeddings = [expert.get_input_embeddings().weight for expert in merged.experts]
    assert embeddings[1] is embeddings[0]
    assert not embeddings[0].requires_grad


def test_generate_with_kv_cache_equals_generate_without(experts, text_ids):
    merged = PgtMergedForCausalLM.from_experts(experts).eval()
    prompt = text_ids[:, :6]
    runs = {
        use_cache: merged.generate(
            prompt,
            max_new_tokens=10,
            do_sample=False,
            use_cache=use_cache,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=merged.config.pad_token_id,
        )
        for use_cache in (True, False)
    }
    assert torch.equal(runs[True].sequences, runs[False].sequences)
    assert runs[True].sequences.shape == (2, 16)
    for cached, uncached in zip(runs[True].logits, runs[False].logits, strict=True):
        torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)
    # One cache holds both experts' layers: 1 + 2 blocks.
    assert len(runs[True].cache.layers) == 3
    assert runs[True].cache.get_seq_length() == 15


def test_mismatched_experts_are_refused(substrate, experts):
    other = random_expert(substrate, layers=1, seed=3)
    with torch.no_grad():
        other.get_input_embeddings().weight[0] += 1.0  # a trained (non-substrate) embedding
    with pytest.raises(ValueError, match="embedding differs"):
        PgtMergedForCausalLM.from_experts([experts[0], other])
    other.config.substrate_fingerprint = "sha256:another"
    with pytest.raises(ValueError, match="substrate_fingerprint"):
        PgtMergedForCausalLM.from_experts([experts[0], other])


def test_adapter_starts_as_the_mean_and_only_it_trains(experts, text_ids):
    merged = PgtMergedForCausalLM.from_experts(experts, mode="adapter", weights=[1.0, 3.0], adapter_hidden_size=16)
    merged.eval()
    first, second = (logits_of(expert, text_ids) for expert in experts)
    torch.testing.assert_close(logits_of(merged, text_ids), 0.25 * first + 0.75 * second, atol=1e-5, rtol=0)

    merged.experts.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in merged.experts.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in merged.parameters() if p.requires_grad], lr=0.05)
    losses = []
    for _ in range(6):
        loss = merged(text_ids, labels=text_ids, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses
    assert all(parameter.grad is None for parameter in merged.experts.parameters())
    for name, tensor in merged.experts.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_left_padded_batch_generates_as_each_prompt_alone(experts, substrate):
    merged = PgtMergedForCausalLM.from_experts(experts).eval()
    tokenizer = substrate.tokenizer
    tokenizer.padding_side = "left"
    prompts = ["Hello, I am", "The quick brown fox jumps over"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    together = merged.generate(**batch, max_new_tokens=5, do_sample=False)
    for row, prompt in enumerate(prompts):
        alone = merged.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=5, do_sample=False)
        assert together[row, -5:].tolist() == alone[0, -5:].tolist()


def language_tokens(substrate: Substrate, language: str, rows: int, length: int = 32) -> torch.Tensor:
    text = "\n".join(text for path in default_corpus_files((language,))[:5] for text in iter_fortunes(path))
    ids = substrate.tokenizer(text, add_special_tokens=False)["input_ids"][: rows * length]
    return torch.tensor(ids).view(rows, length)


def trained_expert(substrate: Substrate, batches: torch.Tensor, seed: int) -> ArceeForCausalLM:
    """A 1-block expert after a few AdamW steps on `batches` (rows of tokens, two per step)."""
    expert = random_expert(substrate, layers=1, seed=seed).train()
    optimizer = torch.optim.AdamW([p for p in expert.parameters() if p.requires_grad], lr=1e-2)
    for batch in batches.split(2):
        loss = expert(batch, labels=batch, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return expert.eval()


def test_mean_of_an_english_and_a_russian_expert_covers_both(substrate):
    """The paper's point: logit averaging of experts trained on different data, with no
    further training, models the union better than either expert alone."""
    english, russian = (language_tokens(substrate, language, rows=40) for language in ("en", "ru"))
    experts = [trained_expert(substrate, english[:30], seed=1), trained_expert(substrate, russian[:30], seed=2)]
    merged = PgtMergedForCausalLM.from_experts(experts).eval()
    held_out = {"en": english[30:], "ru": russian[30:], "both": torch.cat([english[30:], russian[30:]])}

    def loss(model: torch.nn.Module, text: str) -> float:
        with torch.no_grad():
            return model(held_out[text], labels=held_out[text], use_cache=False).loss.item()

    english_expert, russian_expert = experts
    assert loss(merged, "both") < min(loss(english_expert, "both"), loss(russian_expert, "both")) - 0.3
    assert loss(merged, "en") < loss(russian_expert, "en") - 1.0
    assert loss(merged, "ru") < loss(english_expert, "ru") - 1.0
