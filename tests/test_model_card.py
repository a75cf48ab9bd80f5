"""The model card is written from typed facts: every fact appears, nothing is invented."""

from __future__ import annotations

from pgt.model.card import EvalFigure, loading_snippet, model_card

FACTS = {
    "name": "stage-3",
    "blocks": 3,
    "d_model": 1024,
    "heads": 32,
    "context": 1024,
    "vocab_size": 65_792,
    "hidden_act": "gelu",
    "params_total": 185_000_000,
    "params_trainable": 118_000_000,
    "substrate_family": "bvv241-2-3",
    "substrate_fingerprint": "sha256:abc123",
}


def test_card_carries_the_stage_record():
    card = model_card(
        **FACTS,
        stage=3,
        training_data="fortunes (en, ru)",
        training_tokens=3_000_000,
        growth="stage 2 plus one block (copy-top); blocks 1-2 frozen",
        evaluations=[EvalFigure("arc_easy", "accuracy %", 21.04, "reference prompt, letter match, 10 runs")],
    )
    for fact in (
        "# stage-3",
        "| stage | 3 |",
        "| blocks | 3 |",
        "| d_model | 1024 |",
        "| heads | 32 |",
        "185.0 M total, 118.0 M trainable (the embedding is frozen)",
        "sha256:abc123",
        "bvv241-2-3",
        "fortunes (en, ru)",
        "3,000,000",
        "copy-top",
        "| arc_easy | accuracy % | 21.04 | reference prompt",
        "arXiv:2507.04886",
        "arXiv:2507.07129",
        "## Limitations",
        "(standard transformers, no custom code)",
    ):
        assert fact in card, fact
    assert "trust_remote_code" not in card and card.startswith("---\nlibrary_name: transformers\n")


def test_untrained_and_merged_cards_say_so():
    untrained = model_card(**FACTS)
    assert "untrained" in untrained and "Not evaluated yet" in untrained and "| stage |" not in untrained
    merged = model_card(**{**FACTS, "experts": 2, "architecture": "PgtMergedForCausalLM"})
    assert "a merge of 2 PGT experts" in merged and "trust_remote_code=True" in merged
    assert loading_snippet(trust_remote_code=True) in merged and "- arcee" not in merged
    assert "dtype=torch.bfloat16" in loading_snippet() and "torch_dtype" not in loading_snippet()
