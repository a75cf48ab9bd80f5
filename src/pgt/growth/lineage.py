"""`pgt grow --from MODEL_DIR`: growing on from a saved single model of any run (docs/growth.md, "Growing on").

The source is any single model directory pgt wrote (a `stage-K`, `pgt init`'s, one from the
Hub in pgt's format): a K-block model on the run's substrate. Before the run directory is
touched, `check_source_model` checks that it stands on `--substrate` (its config's and its
`substrate.json`'s fingerprint, its tokenizer's tokens) and that its shape agrees with the
run's settings; the run then grows stages K+1 … N on top of it, on whatever data it is given.
`Lineage` (path, sha256 of the weights, blocks) is recorded in `run.json`, every
`stage.json` and every stage's model card; a resumed run refuses a source whose weights
changed since. Stage K+1 loads the source as it is: its blocks stay bit-identical (frozen),
unless LoRA adapts them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pgt.errors import PgtError
from pgt.growth.records import STAGE_FILE, Lineage, StageRecord
from pgt.io import file_sha256

if TYPE_CHECKING:
    from pgt.growth.config import GrowthConfig
    from pgt.substrate.store import Substrate


def check_source_model(path: str | os.PathLike, substrate: Substrate, config: GrowthConfig) -> Lineage:
    """The lineage of `--from PATH` after checking it can be grown on with `config`; PgtError otherwise."""
    from pgt.model.loading import (
        SINGLE_MODEL_TYPE,
        WEIGHTS_FILE,
        check_token_texts,
        read_model_config,
        substrate_meta_of,
    )
    from pgt.substrate.tokenizer import load_tokenizer

    source = Path(path)
    if not source.is_dir():
        raise PgtError(f"--from {source}: no such model directory")
    model_config = read_model_config(source)
    where = f"--from {source}"
    if model_config.model_type != SINGLE_MODEL_TYPE:
        raise PgtError(
            f"{where} is a {model_config.model_type} model; growth goes on from a single "
            f"({SINGLE_MODEL_TYPE}) model such as a stage directory"
        )
    if getattr(model_config, "embedding_trained", False):
        raise PgtError(f"{where} trained its embedding (a baseline): it no longer stands on a frozen substrate")
    fingerprints = {getattr(model_config, "substrate_fingerprint", None), substrate_meta_of(source).fingerprint}
    if fingerprints != {substrate.fingerprint}:
        shown = ", ".join(sorted(f"{f[:19]}…" for f in fingerprints if f))
        raise PgtError(
            f"{where} stands on substrate {shown}, not on --substrate {config.substrate} "
            f"({substrate.fingerprint[:19]}…); grow it on its own substrate"
        )
    check_token_texts(load_tokenizer(source), substrate.meta, source)
    blocks = model_config.num_hidden_layers
    shape = {
        "heads": model_config.num_attention_heads,
        "context": model_config.max_position_embeddings,
        "hidden_act": model_config.hidden_act,
        "intermediate_multiple": model_config.intermediate_size // model_config.hidden_size,
    }
    for key, value in shape.items():
        if getattr(config, key) != value:
            raise PgtError(
                f"{where} has {key} {value}, but the run sets {getattr(config, key)}; "
                f"pass --{key.replace('_', '-')} {value}"
            )
    if config.stages <= blocks:
        raise PgtError(f"{where} already has {blocks} blocks; --stages {config.stages} must be more to grow it")
    if not (source / WEIGHTS_FILE).is_file():
        raise PgtError(f"{where} has no {WEIGHTS_FILE}")
    stage = StageRecord.load(source / STAGE_FILE) if (source / STAGE_FILE).is_file() else None
    return Lineage(
        path=str(source.resolve()),
        weights_sha256=file_sha256(source / WEIGHTS_FILE),
        blocks=blocks,
        substrate_fingerprint=substrate.fingerprint,
        tokens_total=stage.tokens_total if stage else None,
    )


def check_unchanged(started: Lineage, now: Lineage) -> None:
    """PgtError when a resumed run's source model is no longer the one it started from."""
    if started.weights_sha256 != now.weights_sha256:
        raise PgtError(
            f"--from {now.path}: the model changed since this run started from it (weights sha256 "
            f"{started.weights_sha256[:12]}… -> {now.weights_sha256[:12]}…); restore it, or pass "
            "--overwrite to start the run anew"
        )


__all__ = ["check_source_model", "check_unchanged"]
