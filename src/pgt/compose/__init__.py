"""Expert merging: models on one frozen substrate combined into one (DESIGN.md §6, docs/merging.md).

merge_experts(expert_dirs, out, weights=None, mode="mean")   merged model directory (`pgt merge`)
pgt.model.PgtMergedForCausalLM.from_experts(models, ...)     the same in memory
"""

from pgt.compose.merge import merge_experts

__all__ = ["merge_experts"]
