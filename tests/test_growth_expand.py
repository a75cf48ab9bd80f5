"""Growth mechanics on a real (dim-64) substrate: new-block inits, the frozen prefix, LoRA merge."""

from __future__ import annotations

import pytest
import torch

from pgt.growth.expand import add_block, frozen_prefix, set_trainable
from pgt.growth.lora import attach_lora, merge_lora
from pgt.growth.stage import causal_lm_loss


@pytest.fixture(scope="module")
def substrate(substrate_dir):
    from pgt.substrate.store import Substrate

    return Substrate.load(substrate_dir)


@pytest.fixture()
def model(substrate):
    """A 2-block model whose blocks are not at their initial values (so a copy or a no-op is visible)."""
    from pgt.model.architecture import from_substrate

    torch.manual_seed(0)
    model = from_substrate(substrate, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64).float()
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def batch(substrate, corpus_files):
    text = corpus_files[0].read_text(encoding="utf-8", errors="replace")[:4000]
    ids = substrate.tokenizer(text)["input_ids"]
    return torch.tensor(ids[: 4 * 33]).view(4, 33)


def test_identity_block_leaves_the_loss_unchanged(model, batch):
    with torch.no_grad():
        before = causal_lm_loss(model, batch)
        logits_before = model(input_ids=batch, use_cache=False).logits
        add_block(model, "identity", seed=1)
        after = causal_lm_loss(model, batch)
        logits_after = model(input_ids=batch, use_cache=False).logits
    assert len(model.model.layers) == 3 and model.config.num_hidden_layers == 3
    assert torch.equal(logits_before, logits_after)
    assert abs(before.item() - after.item()) <= 1e-6


def test_random_block_changes_the_outputs_and_copy_top_copies(model, batch):
    with torch.no_grad():
        before = model(input_ids=batch, use_cache=False).logits
        add_block(model, "random", seed=1)
        assert not torch.allclose(before, model(input_ids=batch, use_cache=False).logits, atol=1e-4)
        top = model.model.layers[-1].state_dict()
        add_block(model, "copy-top", seed=2)
    copied = model.model.layers[-1].state_dict()
    assert all(torch.equal(top[k], copied[k]) for k in top)
    assert model.model.layers[-1].self_attn.layer_idx == 3  # its own KV-cache slot, not the copied one's


def test_block_init_is_reproducible(substrate):
    from pgt.model.architecture import from_substrate

    blocks = []
    for _ in range(2):
        model = from_substrate(substrate, num_hidden_layers=1, num_attention_heads=4)
        blocks.append(add_block(model, "random", seed=7).state_dict())
    assert all(torch.equal(blocks[0][k], blocks[1][k]) for k in blocks[0])


def test_frozen_prefix_runs_without_autograd_and_gets_no_gradient(model, batch):
    embedding = model.model.embed_tokens.weight.detach().clone()
    frozen = {k: v.detach().clone() for k, v in model.model.layers[0].state_dict().items()}
    new = add_block(model, "random", seed=3)
    set_trainable(model, [new, model.model.norm, model.lm_head])
    seen = {}
    model.model.layers[1].register_forward_hook(
        lambda module, args, out: seen.update(grad_mode=torch.is_grad_enabled(), requires_grad=out.requires_grad)
    )
    new.register_forward_pre_hook(lambda module, args: seen.update(new_input_grad_fn=args[0].grad_fn))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with frozen_prefix(model.model.layers, 2):
        for _ in range(2):
            causal_lm_loss(model, batch).backward()
            optimizer.step()
            for name, p in model.named_parameters():
                if not name.startswith(("model.layers.2.", "model.norm", "lm_head")):
                    assert p.grad is None, name
            optimizer.zero_grad()
    assert seen == {"grad_mode": False, "requires_grad": False, "new_input_grad_fn": None}
    assert torch.is_grad_enabled()
    assert torch.equal(model.model.embed_tokens.weight, embedding)
    assert all(torch.equal(model.model.layers[0].state_dict()[k], v) for k, v in frozen.items())


def test_lora_merge_matches_unmerged_adapters(model, batch):
    new = add_block(model, "identity", seed=4)
    peft_model = attach_lora(model, range(2), rank=4, alpha=8)
    adapted = {n.split(".lora_")[0] for n, p in peft_model.named_parameters() if p.requires_grad}
    assert len(adapted) == 12 and not any(".layers.2." in n for n in adapted)  # 6 projections x old blocks only
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn_like(p))  # B starts at zero; make the adapters do something
        unmerged = peft_model(input_ids=batch, use_cache=False).logits
        merged_model = merge_lora(peft_model)
        merged = merged_model(input_ids=batch, use_cache=False).logits
    assert type(merged_model).__name__ == "ArceeForCausalLM"
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    assert merged_model.model.layers[2] is new
    assert torch.allclose(unmerged, merged, atol=1e-5, rtol=0)
