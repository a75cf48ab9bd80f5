"""The arms of the study and the claims that compare them (docs/study.md, "Arms" and "Claims").

Every arm is one `pgt grow` run per seed, at the same depth N and the same total training
tokens (N x tokens_per_stage); they differ only in what the table says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DataKey = Literal["all", "all-random", "expert-a", "expert-b"]


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    baseline: str = "none"  # GrowthConfig.baseline
    init: str = "random"  # GrowthConfig.init
    data: DataKey = "all"
    random_substrate: bool = False  # the frozen random unit-row control


ARMS = (
    Arm(name="grown-random", label="grown, random init (frozen glyph)"),
    Arm(name="grown-identity", label="grown, identity init (frozen glyph)", init="identity"),
    Arm(name="monolithic", label="monolithic, frozen glyph", baseline="monolithic"),
    Arm(name="trainable", label="monolithic, trainable embeddings", baseline="trainable-embeddings"),
    Arm(name="frozen-random", label="monolithic, frozen random unit rows", baseline="monolithic",
        data="all-random", random_substrate=True),
    Arm(name="expert-a", label="expert en+{a} (grown)", data="expert-a"),
    Arm(name="expert-b", label="expert en+{b} (grown)", data="expert-b"),
)
MERGE = "merge"  # the experts' logit mean
TUNED = "merge-tuned"  # the adapter merge after `pgt tune`


@dataclass(frozen=True)
class Claim:
    """`better` beats `other` on `metric` (the claim's direction); `reference` is what the papers report."""

    key: str
    text: str
    better: str  # a model key (arm name, `arm@k` for a grown stage, merge keys) or a special key below
    other: str
    reference: str


BEST_EXPERT = "best-expert"  # per seed, the expert with the lower mean held-out bits per byte
TUNE_START, TUNE_END = "tune-start", "tune-end"  # validation loss of the adapter merge before/after tuning

CLAIMS = (
    Claim("glyph-vs-trainable", "Frozen glyph embeddings beat trainable embeddings (same model, data, tokens)",
          "monolithic", "trainable",
          "paper 1: frozen best_bvv_ru 22.29 vs trainable 11.37 MMLU %, 23.04 vs 20.56 ARC-e %"),
    Claim("glyph-vs-random", "Glyph structure matters: frozen glyph beats frozen random unit-row embeddings",
          "monolithic", "frozen-random", "no published figure (a control the papers lack)"),
    Claim("grown-vs-mono-random", "Grown (random init) beats monolithic at equal depth and tokens",
          "grown-random", "monolithic", "paper 2: the grown model 'rivals' a monolithic one (no figure)"),
    Claim("grown-vs-mono-identity", "Grown (identity init) beats monolithic at equal depth and tokens",
          "grown-identity", "monolithic", "not in the papers (pgt's own init variant)"),
    Claim("depth", "Depth helps: grown stage N beats stage 1", "grown-random", "grown-random@1",
          "paper 2: abs-bvv-1 → 6: MMLU 18.08 → 21.63 %, ARC-e 19.21 → 23.42 %"),
    Claim("merge-vs-experts", "The logit-mean merge beats its best expert over all languages", MERGE, BEST_EXPERT,
          "paper 2: best_bvv_moe 23.44 vs best_bvv_ru 22.29 MMLU %"),
    Claim("tune", "Training the merge lowers its loss", TUNE_END, TUNE_START,
          "paper 2: fine-tuning the merge: loss 2.7 → 2.04"),
)
