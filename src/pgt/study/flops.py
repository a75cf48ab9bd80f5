"""Training FLOPs of each arm, computed analytically (docs/study.md, "FLOPs").

Per token, with width d, vocabulary V, training sequence length T and the block of
12·d² weights (attention 4·d², MLP with a 4·d hidden layer 8·d²):
  forward of one block  F_b = 2·12·d² + 4·T·d   (matrix multiplies, plus QKᵀ and AV)
  forward of the head   F_h = 2·V·d             (the frozen embedding is a lookup: 0)
A trained part costs 3x its forward (forward + input gradient + weight gradient); a frozen
part that nothing below needs a gradient through costs its forward only. So
  monolithic / trainable-embeddings, N blocks: 3·(N·F_b + F_h) per token
  grown stage k (k-1 frozen blocks run forward only): (k-1)·F_b + 3·F_b + 3·F_h per token
  logit-adapter tuning of N experts: Σ experts' forward + 3·F_a, F_a = 2·h·V·(N+1)
Norms, biases, softmax and the optimizer are left out (well under 1 % at these sizes).
"""

from __future__ import annotations


def block_forward(d: int, seq_len: int) -> float:
    return 2.0 * 12 * d * d + 4.0 * seq_len * d


def head_forward(d: int, vocab: int) -> float:
    return 2.0 * vocab * d


def monolithic_flops(*, d: int, vocab: int, seq_len: int, blocks: int, tokens: int) -> float:
    """All `blocks` blocks and the head trained for `tokens` tokens."""
    return tokens * 3.0 * (blocks * block_forward(d, seq_len) + head_forward(d, vocab))


def grown_stage_flops(*, d: int, vocab: int, seq_len: int, stage: int, tokens: int) -> float:
    """Stage `stage` of growth: the older blocks forward only, the new block and the head trained."""
    per_token = (stage - 1) * block_forward(d, seq_len) + 3.0 * block_forward(d, seq_len) + 3.0 * head_forward(d, vocab)
    return tokens * per_token


def grown_flops(*, d: int, vocab: int, seq_len: int, stages: int, tokens_per_stage: int) -> float:
    """Stages 1..`stages` of growth, `tokens_per_stage` tokens each."""
    return sum(
        grown_stage_flops(d=d, vocab=vocab, seq_len=seq_len, stage=k, tokens=tokens_per_stage)
        for k in range(1, stages + 1)
    )


def adapter_tune_flops(
    *, d: int, vocab: int, seq_len: int, expert_blocks: list[int], hidden: int, tokens: int
) -> float:
    """Tuning a logit adapter over frozen experts: the experts forward, the adapter trained."""
    experts = sum(b * block_forward(d, seq_len) + head_forward(d, vocab) for b in expert_blocks)
    return tokens * (experts + 3.0 * 2.0 * hidden * vocab * (len(expert_blocks) + 1))


def full_tune_flops(*, d: int, vocab: int, seq_len: int, expert_blocks: list[int], hidden: int, tokens: int) -> float:
    """Tuning the whole merged model: every expert and the adapter (if any) trained."""
    experts = sum(b * block_forward(d, seq_len) + head_forward(d, vocab) for b in expert_blocks)
    return tokens * 3.0 * (experts + 2.0 * hidden * vocab * (len(expert_blocks) + 1))
