"""A finished stage on disk: `RUN_DIR/stage-K` as a standalone model directory, its `stage.json`
(pgt.growth.records.StageRecord) and the model card written from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from pgt.growth.records import STAGE_FILE, StageRecord
from pgt.io import atomic_dir


def stage_card(
    model: nn.Module, meta: Any, name: str, info: StageRecord, *, data: str | list[str] | None, stages: int
) -> str:
    """The model card of a stage, from its record: data (a mixture's sources), tokens, how it grew, where
    it stopped, what it started from, and its validation figures (overall and per source)."""
    from pgt.model.card import DataSourceFact, EvalFigure, facts_of, model_card

    if info.mixture:
        training_data = "a weighted mixture of token data: " + ", ".join(
            f"{d.name} {d.weight:.1%}" for d in info.mixture
        )
    else:
        training_data = f"token data `{data}`" if data else None
    stop = (
        f"stopped by --patience at {info.tokens_seen:,} of {info.tokens_budget or info.tokens_seen:,} tokens "
        "(validation loss stopped improving: trained to convergence)"
        if info.stopped_early
        else f"the full budget of {info.tokens_seen:,} tokens"
    )
    if info.kind == "growth":
        lora = (
            f", LoRA (rank {info.lora.rank}) on blocks {', '.join(str(b + 1) for b in info.lora.blocks)}"
            if info.lora
            else ""
        )
        growth = (
            f"stage {info.stage} of {stages}: block {info.blocks} added ({info.init}) on "
            f"{info.frozen_blocks} frozen block(s){lora}; {stop}"
        )
    else:
        growth = f"the {info.kind} baseline: all {info.blocks} blocks trained together; {stop}"
    protocol = f"trainer's validation sample ({info.val_documents or 0:,} documents)"
    evaluations = [
        EvalFigure("validation", "loss (nats/token)", info.val_loss, protocol),
        EvalFigure("validation", "bits/byte", info.val_bpb, protocol),
    ]
    evaluations += [
        EvalFigure(f"validation: {d.name}", metric, value, f"{d.name}'s part of the sample")
        for d in info.mixture or []
        for metric, value in (("loss (nats/token)", d.val_loss), ("bits/byte", d.val_bpb))
        if value is not None
    ]
    sources = [DataSourceFact(d.name, d.path, d.weight, d.tokens_total, d.epochs) for d in info.mixture or []]
    return model_card(
        **facts_of(model, meta, name),
        stage=info.stage,
        training_data=training_data,
        training_tokens=info.tokens_total,
        growth=growth,
        evaluations=evaluations,
        data_sources=sources,
        lineage=info.started_from.describe() if info.started_from else None,
    )


def save_stage_model(
    model: nn.Module,
    substrate: Any,
    out: Path,
    info: StageRecord,
    *,
    data: str | list[str] | None = None,
    stages: int | None = None,
) -> None:
    """Write a stage as a standalone model directory (pgt.model.loading.save_model) plus
    `stage.json`, all appearing at once; its model card comes from `info` (`stage_card`).

    A model whose embedding trained (the trainable-embeddings baseline) no longer holds the
    substrate's matrix, so it must not claim the substrate's fingerprint: its directory
    records the fingerprint of its own matrix, `derived_from` the substrate's, and
    `embedding_trained: true`, which keeps load_model's three-way check meaningful.
    """
    from pgt.model.loading import embedding_fingerprint, save_model

    meta = substrate.meta
    if info.embedding_trained:
        meta = dataclasses.replace(
            meta,
            fingerprint=embedding_fingerprint(model, meta),
            derived_from=substrate.fingerprint,
            embedding_trained=True,
        )
        model.config.substrate_fingerprint = meta.fingerprint
        model.config.embedding_trained = True
    with atomic_dir(out, overwrite=True) as tmp:
        card = stage_card(model, meta, out.name, info, data=data, stages=stages or info.stage)
        save_model(model, substrate.tokenizer, tmp, substrate_meta=meta, card=card, overwrite=True)
        info.save(tmp / STAGE_FILE)


__all__ = ["save_stage_model", "stage_card"]
