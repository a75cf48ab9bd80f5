"""Named sizes of the study (litgpt-style presets as keyword data): `--scale smoke|cpu|gpu`.

Each claim family has its own budget: the embeddings family trains monolithic models of
`embedding_blocks` blocks on `embedding_tokens` tokens; the growth family grows
`growth_stages` blocks on `growth_tokens` tokens each (its baselines get the same total); the
merging family grows two experts of `expert_stages` blocks on `expert_tokens` tokens per stage.
Every arm's learning rate is chosen from `sweep_lrs` by a sweep on the training data's
validation split (`sweep_share` of the arm's tokens per candidate). `cpu` is sized from
measurements on 2 CPU cores (docs/study.md, "Sizing"); `gpu` is an estimate for one H200 and
has not been run; `smoke` runs every code path in seconds for CI.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgt.errors import PgtError


@dataclass(frozen=True)
class Scale:
    name: str
    dim: int  # substrate width built for the study (ignored with --substrate)
    heads: int
    batch_size: int
    seq_len: int
    embedding_blocks: int  # depth of every embeddings-family arm
    embedding_tokens: int  # training tokens of each embeddings-family arm
    growth_stages: int  # depth N of the growth family (grown stages 1..N; baselines N blocks)
    growth_tokens: int  # training tokens per grown stage; baselines get N x this
    expert_stages: int  # depth of each expert of the merging family
    expert_tokens: int  # training tokens per expert stage
    sweep_lrs: tuple[float, ...]  # learning rates every arm's sweep tries
    sweep_share: float  # share of an arm's tokens each sweep candidate trains
    heldout: int  # held-out documents per language (bits per byte and the cloze pool)
    validation: int  # further documents per language, never trained on: they choose the best expert
    cloze_items: int  # cloze questions per language (at most; short or long quotations are skipped)
    max_train_documents: int | None  # training documents per language (None: all)
    tune_tokens: int  # tokens of `pgt tune` on the adapter merge
    seeds: int = 3
    device: str = "auto"
    threads: int | None = None  # torch CPU threads per run (None: torch's default; with jobs > 1 the CPUs / jobs)
    jobs: int = 1  # training runs at once, each in its own process (pgt.study.pool)
    compile: bool = True  # `pgt grow --compile`: one compilation per model shape, reused by every later arm


SCALES = {
    "smoke": Scale(
        name="smoke",
        dim=64,
        heads=2,
        batch_size=2,
        seq_len=32,
        embedding_blocks=1,
        embedding_tokens=64,
        growth_stages=2,
        growth_tokens=64,
        expert_stages=1,
        expert_tokens=64,
        sweep_lrs=(4e-3, 8e-3, 1.6e-2),
        sweep_share=1.0,
        heldout=6,
        validation=4,
        cloze_items=4,
        max_train_documents=60,
        tune_tokens=64,
        seeds=2,
        threads=1,
        compile=False,
    ),
    # 2 CPU cores, d = 128, the substrate trimmed to the training text (~2,100 ids), batch 16 x 128:
    # sized so that every seed of every arm is below bzip2 -9 on each language it trains on; a family
    # takes 12-31 minutes of two cores with --compile (docs/study.md, "Results at cpu scale", has the measurements).
    "cpu": Scale(
        name="cpu",
        dim=128,
        heads=4,
        batch_size=16,
        seq_len=128,
        embedding_blocks=1,
        embedding_tokens=2_621_440,
        growth_stages=2,
        growth_tokens=1_572_864,
        expert_stages=2,
        expert_tokens=1_048_576,
        sweep_lrs=(4e-3, 8e-3, 1.6e-2),
        sweep_share=0.2,
        heldout=150,
        validation=50,
        cloze_items=100,
        max_train_documents=None,
        tune_tokens=262_144,
    ),
    # One H200, width 512 (where glyph rows are as distinct as at the native 1,024): ~350 M training tokens
    # in all, about 8 minutes at an assumed 1 M tokens/s; an estimate, not yet run on a GPU.
    "gpu": Scale(
        name="gpu",
        dim=512,
        heads=8,
        batch_size=64,
        seq_len=256,
        embedding_blocks=2,
        embedding_tokens=8_388_608,
        growth_stages=4,
        growth_tokens=2_097_152,
        expert_stages=3,
        expert_tokens=2_097_152,
        sweep_lrs=(1e-3, 2e-3, 4e-3),
        sweep_share=0.25,
        heldout=300,
        validation=100,
        cloze_items=200,
        max_train_documents=None,
        tune_tokens=2_097_152,
    ),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise PgtError(f"unknown scale {name!r} (choose {', '.join(SCALES)})")
    return SCALES[name]
