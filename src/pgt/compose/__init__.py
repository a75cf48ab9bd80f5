"""Expert merging: models on one frozen substrate combined into one (docs/merging.md), and tuning the merge.

merge_experts(expert_dirs, out, weights=None, mode="mean", seed=0)   merged model directory (`pgt merge`)
pgt.model.PgtMergedForCausalLM.from_experts(models, ...)     the same in memory
pgt.compose.tune.tune_merged(merged_dir, data_dir, out, TuneConfig(tokens=...))   `pgt tune` (docs/study.md)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.compose.merge import merge_experts

_EXPORTS = {
    "merge_experts": "merge",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
