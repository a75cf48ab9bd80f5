"""The study's claim families, their arms and the claims that compare them (docs/study.md).

Three families run alone (`pgt study embeddings …`) or together; each arm is one `pgt grow`
run per seed. Within a family every arm has the same depth and training tokens unless the
claim is about exactly that difference (which its row then flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["embeddings", "growth", "merging"]
FAMILIES: tuple[Family, ...] = ("embeddings", "growth", "merging")
SubstrateKey = Literal["glyph", "recentred", "shuffled", "visible", "random"]
DataKey = Literal["all", "expert-a", "expert-b"]


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    family: Family
    baseline: str = "none"  # GrowthConfig.baseline
    init: str = "random"  # GrowthConfig.init
    substrate: SubstrateKey = "glyph"
    data: DataKey = "all"
    one_block: bool = False  # one block trained on the growth family's whole token budget


ARMS = (
    Arm("glyph", "frozen glyph rows (the reference's matrix)", "embeddings", baseline="monolithic"),
    Arm(
        "glyph-recentred",
        "frozen glyph rows re-centred on the kept ids (beyond)",
        "embeddings",
        baseline="monolithic",
        substrate="recentred",
    ),
    Arm(
        "glyph-shuffled",
        "frozen glyph rows shuffled across ids (geometry control)",
        "embeddings",
        baseline="monolithic",
        substrate="shuffled",
    ),
    Arm(
        "glyph-visible",
        "frozen glyph rows, invisible characters drawn visibly (beyond)",
        "embeddings",
        baseline="monolithic",
        substrate="visible",
    ),
    Arm("frozen-random", "frozen random unit rows", "embeddings", baseline="monolithic", substrate="random"),
    Arm("trainable", "trainable embeddings (random start)", "embeddings", baseline="trainable-embeddings"),
    Arm("grown-random", "grown, random init", "growth"),
    Arm("grown-identity", "grown, identity init (pgt's variant)", "growth", init="identity"),
    Arm("monolithic", "monolithic, all blocks at once", "growth", baseline="monolithic"),
    Arm("one-block", "one block on the same total tokens", "growth", baseline="monolithic", one_block=True),
    Arm("expert-a", "expert en+{a} (grown)", "merging", data="expert-a"),
    Arm("expert-b", "expert en+{b} (grown)", "merging", data="expert-b"),
)
MERGE = "merge"  # the experts' logit mean
TUNED = "merge-tuned"  # the adapter merge after `pgt tune`
BEST_EXPERT = "best-expert"  # per seed, the expert with the lower bits per byte on the validation documents
TUNE_START, TUNE_END = "tune-start", "tune-end"  # validation loss of the adapter merge before/after tuning
SHARED_LANGUAGE = "en"  # the language both experts train on: where the merge claim is judged


def family_arms(family: Family) -> tuple[Arm, ...]:
    return tuple(arm for arm in ARMS if arm.family == family)


# Where a comparison is scored: "each" = every study language separately, "mean" = their mean,
# a language code = that language, "tuning" = the tuning data's validation loss.
Scope = str


@dataclass(frozen=True)
class Claim:
    """`better` beats `other` on each (metric, scope) of `measures` (the claim's direction)."""

    key: str
    family: Family
    text: str
    better: str  # a model key (arm name, `arm@k` for a grown stage, merge keys) or a special key above
    other: str
    reference: str
    measures: tuple[tuple[str, Scope], ...] = (("bpb", "each"), ("cloze", "mean"))
    primary: bool = True  # False: a secondary row, labelled as such


CLAIMS = (
    Claim(
        "glyph-vs-trainable",
        "embeddings",
        "Frozen glyph embeddings beat trainable embeddings",
        "glyph",
        "trainable",
        "paper 1: frozen best_bvv_ru 22.29 vs trainable 11.37 MMLU %, 23.04 vs 20.56 ARC-e %",
    ),
    Claim(
        "glyph-vs-random",
        "embeddings",
        "Glyph rows beat frozen random unit rows",
        "glyph",
        "frozen-random",
        "no published figure (a control the papers lack)",
    ),
    Claim(
        "glyph-vs-shuffled",
        "embeddings",
        "Visual content matters: glyph rows beat the same rows shuffled across ids",
        "glyph",
        "glyph-shuffled",
        "no published figure (same geometry, no visual content)",
    ),
    Claim(
        "recentred-vs-glyph",
        "embeddings",
        "Re-centring the kept rows helps (beyond)",
        "glyph-recentred",
        "glyph",
        "not in the papers (pgt's option)",
    ),
    Claim(
        "visible-vs-glyph",
        "embeddings",
        "Distinct glyphs for invisible characters help (beyond)",
        "glyph-visible",
        "glyph",
        "not in the papers (pgt's option)",
    ),
    Claim(
        "grown-vs-mono-random",
        "growth",
        "Grown (random init) beats monolithic at equal depth and tokens",
        "grown-random",
        "monolithic",
        "paper 2: the grown model 'rivals' a monolithic one (no figure)",
    ),
    Claim(
        "grown-vs-mono-identity",
        "growth",
        "Grown (identity init) beats monolithic at equal depth and tokens",
        "grown-identity",
        "monolithic",
        "not in the papers (pgt's own init variant)",
    ),
    Claim(
        "depth-equal-tokens",
        "growth",
        "Depth helps at equal tokens: grown stage N beats one block",
        "grown-random",
        "one-block",
        "paper 2: abs-bvv-1 → 6: MMLU 18.08 → 21.63 %, ARC-e 19.21 → 23.42 %",
    ),
    Claim(
        "depth",
        "growth",
        "Grown stage N beats stage 1 (stage N has seen N times the tokens)",
        "grown-random",
        "grown-random@1",
        "paper 2: abs-bvv-1 → 6 (each stage trained further)",
        primary=False,
    ),
    Claim(
        "merge-vs-experts",
        "merging",
        "The logit-mean merge beats its best expert on the language both know",
        MERGE,
        BEST_EXPERT,
        "paper 2: best_bvv_moe 23.44 vs best_bvv_ru 22.29 MMLU % (English MMLU)",
        measures=(("bpb", SHARED_LANGUAGE), ("cloze", SHARED_LANGUAGE)),
    ),
    Claim(
        "merge-vs-experts-all",
        "merging",
        "The merge beats its best expert over all languages (each expert never saw one of them)",
        MERGE,
        BEST_EXPERT,
        "not claimed by the papers",
        primary=False,
        measures=(("bpb", "mean"), ("cloze", "mean")),
    ),
    Claim(
        "tune",
        "merging",
        "Training the merge lowers its loss",
        TUNE_END,
        TUNE_START,
        "paper 2: fine-tuning the merge: loss 2.7 → 2.04",
        measures=(("val_loss", "tuning"),),
    ),
    Claim(
        "tune-heldout",
        "merging",
        "The tuned merge beats the untuned one on held-out text",
        TUNED,
        MERGE,
        "paper 2: fine-tuning the merge (no held-out figure)",
    ),
)


def family_claims(family: Family) -> tuple[Claim, ...]:
    return tuple(claim for claim in CLAIMS if claim.family == family)
