"""Named sizes of the study (litgpt-style presets as keyword data): `--scale smoke|cpu|gpu`.

`cpu` is sized from measurements on 2 shared CPU cores (docs/study.md, "Sizing"); `gpu` is
sized for about 8 minutes on one H200 by the same arithmetic at an assumed throughput and
has not been run yet; `smoke` finishes in well under a minute so CI can run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgt.errors import PgtError


@dataclass(frozen=True)
class Scale:
    name: str
    dim: int  # substrate width built for the study (ignored with --substrate)
    stages: int  # depth N of every arm (grown stages 1..N; baselines N blocks)
    tokens_per_stage: int  # training tokens per grown stage; baselines get stages x this
    batch_size: int
    seq_len: int
    heads: int
    lr: float
    heldout: int  # held-out documents per language (bits per byte and the cloze pool)
    cloze_items: int  # cloze questions per language (at most; short or long quotations are skipped)
    max_train_documents: int | None  # training documents per language (None: all)
    tune_tokens: int  # tokens of `pgt tune` on the adapter merge
    seeds: int = 3
    device: str = "auto"
    # torch CPU threads (None: torch's default). At d = 64 the matrix products are so small that a second
    # thread on shared cores costs more than it gives (measured: held-out scoring 7x slower at 2 threads
    # than at 1 on a loaded 2-core machine).
    threads: int | None = 1


SCALES = {
    "smoke": Scale(name="smoke", dim=64, stages=2, tokens_per_stage=64, batch_size=2, seq_len=32, heads=2,
                   lr=8e-3, heldout=6, cloze_items=4, max_train_documents=60, tune_tokens=64, seeds=2),
    # 2 shared CPU cores, d = 64, the substrate trimmed to the training text (~1,000-2,000 ids): ~15,000
    # training tokens/s measured on one thread (grown and monolithic alike), 50x the full vocabulary's 300;
    # 7 arms x 3 seeds x 3 x 262,144 tokens (~18 min) + scoring ~30 models fit ~30 minutes (docs/study.md).
    "cpu": Scale(name="cpu", dim=64, stages=3, tokens_per_stage=262_144, batch_size=8, seq_len=64, heads=4,
                 lr=8e-3, heldout=150, cloze_items=100, max_train_documents=6_000, tune_tokens=65_536),
    # One H200: wider, deeper, 40x the tokens per stage; an estimate, not yet run.
    "gpu": Scale(name="gpu", dim=256, stages=6, tokens_per_stage=1_048_576, batch_size=32, seq_len=256, heads=8,
                 lr=3e-3, heldout=300, cloze_items=200, max_train_documents=None, tune_tokens=524_288, threads=None),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise PgtError(f"unknown scale {name!r} (choose {', '.join(SCALES)})")
    return SCALES[name]
