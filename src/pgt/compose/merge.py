"""`merge_experts`: several trained PGT models on one substrate -> one merged model directory.

The merged directory is a model directory like any other (docs/architecture.md): config
(recording every expert's config, the mode and the weights), safetensors weights, the
shared tokenizer, a copy of `substrate.json`, a model card, and (the one directory kind
that has code) the merged modeling files for `trust_remote_code`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pgt.errors import PgtError
from pgt.io import refuse_existing
from pgt.model.loading import CONFIG_FILE, load_model, save_model, substrate_meta_of

if TYPE_CHECKING:
    from transformers import ArceeForCausalLM, PreTrainedTokenizerBase

DEFAULT_ADAPTER_HIDDEN = 64  # width of an adapter merge's bottleneck (`pgt merge --adapter-hidden-size`)


def merge_experts(
    expert_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    weights: Sequence[float] | None = None,
    mode: str = "mean",
    adapter_hidden_size: int = DEFAULT_ADAPTER_HIDDEN,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Merge the model directories `expert_dirs` into a `PgtMergedForCausalLM` saved at `out`.

    `mode="mean"` averages the experts' logits with `weights` (default equal, normalised to
    sum to 1); `mode="adapter"` adds a trainable adapter that starts equal to that average (its
    random down-projection drawn from `seed`, so the same merge gives the same model).
    Experts with different substrates or vocabularies are refused with a PgtError naming
    the two directories. The output appears atomically; returns its path.
    """
    # These import transformers and torch: kept off `pgt --help`, which loads this module.
    import torch

    from pgt.model.configuration_pgt_merged import check_merge_mode, normalised_weights
    from pgt.model.modeling_pgt_merged import PgtMergedForCausalLM

    if len(expert_dirs) < 2:
        raise PgtError(f"merging needs at least two expert directories, got {len(expert_dirs)}")
    try:
        check_merge_mode(mode)
    except ValueError as exc:
        raise PgtError(str(exc)) from None
    try:
        weights = normalised_weights(None if weights is None else list(weights), len(expert_dirs))
    except ValueError as exc:
        raise PgtError(f"bad expert weights: {exc}") from None
    if adapter_hidden_size < 1:
        raise PgtError(f"adapter hidden size must be positive, not {adapter_hidden_size}")
    refuse_existing(out, overwrite=overwrite, marker=CONFIG_FILE)  # again on writing; here before loading experts

    experts = _load_compatible_experts([Path(path) for path in expert_dirs])
    try:
        with torch.random.fork_rng(devices=[]):  # the adapter's draw, not the caller's generator
            torch.manual_seed(seed)
            merged = PgtMergedForCausalLM.from_experts(
                [expert.model for expert in experts],
                mode=mode,
                weights=weights,
                adapter_hidden_size=adapter_hidden_size,
            )
    except ValueError as exc:
        raise PgtError(f"cannot merge {', '.join(map(str, expert_dirs))}: {exc}") from None

    first = experts[0]
    return save_model(merged, first.tokenizer, out, substrate_meta=substrate_meta_of(first.path), overwrite=overwrite)


class _Expert(NamedTuple):
    path: Path
    model: ArceeForCausalLM
    tokenizer: PreTrainedTokenizerBase


def _load_compatible_experts(expert_dirs: list[Path]) -> list[_Expert]:
    """Load every expert (with `load_model`'s checks) and refuse any that cannot merge with the first."""
    from transformers import ArceeForCausalLM

    experts: list[_Expert] = []
    for path in expert_dirs:
        expert = _Expert(path, *load_model(path))
        if not isinstance(expert.model, ArceeForCausalLM):
            kind = type(expert.model).__name__
            raise PgtError(f"{path} is a {kind}, not a single PGT model; merge its experts instead")
        if experts:
            _check_same_substrate(experts[0], expert)
        experts.append(expert)
    return experts


def _check_same_substrate(first: _Expert, other: _Expert) -> None:
    def differs(what: str, a: object, b: object) -> PgtError:
        return PgtError(f"cannot merge {first.path} and {other.path}: {what} differ ({a} vs {b})")

    first_fp, other_fp = first.model.config.substrate_fingerprint, other.model.config.substrate_fingerprint
    if first_fp != other_fp:
        # Experts share an index space only on one substrate; two trims of one parent number ids differently.
        raise PgtError(
            f"cannot merge {first.path} and {other.path}: they stand on different (trimmed) substrates "
            f"({str(first_fp)[:19]}… vs {str(other_fp)[:19]}…); train every expert on one substrate, e.g. one "
            "`pgt substrate trim` on the union of their corpora (docs/trimming.md)"
        )
    vocabularies = [(expert.model.config.vocab_size, len(expert.tokenizer)) for expert in (first, other)]
    if vocabularies[0] != vocabularies[1]:
        raise differs("vocabularies", *(f"{ids} ids, {tokens} tokens" for ids, tokens in vocabularies))
