"""The study's results as one typed record (OUT/study.json) and the comparisons judged on them.

A claim is measured on one or more (metric, scope) pairs: held-out bits per byte on each
language, cloze accuracy on their mean, the merge claim on the language both experts know.
Each pair is one comparison. Before a comparison is tested, both models must have learned
something: an arm whose held-out bits per byte on a language it trained on is not below
`bzip2 -9` on the same bytes with every seed gets "undertrained: no verdict" there (a merge
counts as trained on the language all its experts trained on). The comparisons of a family that are tested share one
Holm–Bonferroni correction (pgt.study.stats).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgt.records import Record
from pgt.study.adapter import SubstrateLineage
from pgt.study.arms import (
    BEST_EXPERT,
    CLAIMS,
    SHARED_LANGUAGE,
    TUNE_END,
    TUNE_START,
    Claim,
    Family,
)
from pgt.study.stats import (
    Estimate,
    estimate,
    family_verdict,
    holm,
    p_value,
    paired_difference,
)
from pgt.substrate.health import SubstrateHealth

METRICS = {
    "bpb": ("held-out bits per byte", True),
    "cloze": ("cloze accuracy", False),
    "val_loss": ("validation loss of the tuning data (nats/token)", True),
}
ANCHOR = "bz2_bpb"  # the compressor every arm must beat before it is judged
UNDERTRAINED = "undertrained: no verdict"
NOT_COMPARED = "not compared"


@dataclass
class ModelRow(Record):
    """One model of the study over its seeds (lists are per seed, in seed order)."""

    WHAT = "study model row"
    key: str
    label: str
    family: str
    kind: str  # grown | baseline | expert | merge
    blocks: int | None  # None for a merge: it is not a deeper model
    runs: list[str]
    training_tokens: int  # every token that trained it (a merge: its experts' together)
    training_flops: float
    trained_parameters: int  # parameters that were trained at some point (a merge: its experts' and adapter's)
    lr: float | None  # the learning rate its sweep chose (None: a merge)
    trained_languages: list[str]
    scoring_id: str  # the held-out text it was scored on
    bits_per_byte: dict[str, list[float]]
    cloze_accuracy: dict[str, list[float]]
    cloze_items: dict[str, int]
    validation_bits_per_byte: dict[str, list[float]]

    def table(self, metric: str) -> dict[str, list[float]]:
        return {"bpb": self.bits_per_byte, "cloze": self.cloze_accuracy, "validation": self.validation_bits_per_byte}[
            metric
        ]

    def values(self, metric: str, scope: str) -> list[float]:
        """Per seed: the metric on language `scope`, or its mean over languages (`scope` "mean")."""
        table = self.table(metric)
        if scope != "mean":
            return list(table.get(scope, []))
        languages = sorted(table)
        if not languages:
            return []
        return [sum(table[lang][i] for lang in languages) / len(languages) for i in range(len(table[languages[0]]))]

    def language(self, metric: str, code: str) -> Estimate | None:
        values = self.table(metric).get(code)
        return estimate(values) if values else None


@dataclass
class SweepRecord(Record):
    """OUT/sweeps/ARM.json: the learning rates tried for one arm and the one chosen."""

    WHAT = "learning-rate sweep"
    arm: str
    lrs: list[float]
    val_losses: list[float]  # final validation loss on the training data's validation split
    chosen_lr: float
    tokens: int  # training tokens of each candidate
    seed: int  # the sweep's own seed (none of the study's)


@dataclass
class Comparison(Record):
    WHAT = "study comparison"
    claim: str
    family: str
    text: str
    reference: str
    primary: bool
    metric: str
    scope: str  # a language, "mean" (over languages) or "tuning"
    better: str
    other: str
    better_mean: float
    better_half: float | None
    other_mean: float
    other_half: float | None
    difference: float  # positive: the claim's direction
    difference_half: float | None
    seeds: int
    p_value: float | None  # paired t-test, two-sided
    p_holm: float | None  # Holm-adjusted within the family (None: not tested)
    verdict: str
    note: str  # what differs besides the claim (budgets, scoring data), said in the table itself

    def estimates(self) -> tuple[Estimate, Estimate, Estimate]:
        return (
            Estimate(self.better_mean, self.better_half, self.seeds),
            Estimate(self.other_mean, self.other_half, self.seeds),
            Estimate(self.difference, self.difference_half, self.seeds),
        )


@dataclass
class FamilyResults(Record):
    WHAT = "study family"
    family: str
    rows: list[ModelRow]
    sweeps: list[SweepRecord]
    comparisons: list[Comparison]
    tested: int  # comparisons that got a p-value: the m of Holm's correction
    tune_start: list[float] = field(default_factory=list)
    tune_end: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time the family took to train and score, over all invocations

    def row(self, key: str) -> ModelRow:
        return next(r for r in self.rows if r.key == key)


@dataclass
class StudyResults(Record):
    """OUT/study.json: everything the report shows."""

    WHAT = "study results"
    out: str
    command: str
    scale: str
    seeds: int
    created: str
    languages: list[str]
    scoring_id: str
    substrate: SubstrateLineage  # what the glyph arms stand on and its full-vocabulary parent
    health: dict[str, SubstrateHealth]  # substrate key -> its health on the ids the training text uses
    heldout_documents: int
    validation_documents: int
    compressors: dict[str, dict[str, float]]  # language -> {bz2_bpb, xz_bpb} of the held-out text
    cloze_chance: float
    families: list[FamilyResults]

    def family(self, name: str) -> FamilyResults | None:
        return next((f for f in self.families if f.family == name), None)


# ---------------------------------------------------------------- judging a family


@dataclass
class _Side:
    """One side of a comparison: per-seed values, the rows behind them and the languages they trained on."""

    values: list[float]
    rows: list[ModelRow]
    trained: list[str]
    chosen: list[ModelRow] = field(default_factory=list)  # per seed (the best expert); else empty


def best_expert(rows: dict[str, ModelRow], scope: str) -> list[ModelRow]:
    """Per seed, the expert with the lower bits per byte on the validation documents of `scope`."""
    experts = [row for row in rows.values() if row.kind == "expert"]
    per_seed = [row.values("validation", scope) for row in experts]
    return [experts[min(range(len(experts)), key=lambda i: per_seed[i][seed])] for seed in range(len(per_seed[0]))]


def _side(key: str, metric: str, scope: str, rows: dict[str, ModelRow], tune: dict[str, list[float]]) -> _Side:
    if metric == "val_loss":
        return _Side(list(tune[key]), [], [])
    if key == BEST_EXPERT:
        chosen = best_expert(rows, scope)
        experts = list({row.key: row for row in chosen}.values())
        shared = [lang for lang in experts[0].trained_languages if all(lang in e.trained_languages for e in experts)]
        measured = [row.values(metric, scope) for row in chosen]
        values = [] if not all(measured) else [m[seed] for seed, m in enumerate(measured)]
        return _Side(values, experts, shared, chosen)
    row = rows[key]
    return _Side(row.values(metric, scope), [row], row.trained_languages)


def undertrained(side: _Side, languages: list[str], anchors: dict[str, float]) -> list[str]:
    """`row.key:language` for each language the side trained on where it is not clearly below the anchor."""
    found = []
    for row in side.rows:
        for lang in languages:
            if lang not in side.trained or lang not in row.bits_per_byte:
                continue
            values = row.bits_per_byte[lang]
            if side.chosen:  # the best expert: only the seeds where this expert was the chosen one
                values = [v for seed, v in enumerate(values) if side.chosen[seed] is row]
            if values and not below_anchor(values, anchors[lang]):
                found.append(f"{row.key}:{lang}")
    return found


def below_anchor(values: list[float], anchor: float) -> bool:
    """Whether every seed is below the anchor (one seed above it means that run has not learned enough)."""
    return max(values) < anchor


def _note(claim: Claim, better: _Side, other: _Side) -> str:
    """What differs between the two sides besides the claim (budgets, scoring data)."""
    if claim.better == TUNE_END:
        return "same merge before and after tuning; the tuning data's validation sample"
    notes = [] if claim.primary else ["secondary row"]
    a, b = better.rows[0], other.rows[0]
    if len({r.scoring_id for r in better.rows + other.rows}) > 1:
        return "REFUSED: scored on different held-out text"
    if a.training_tokens != b.training_tokens:
        notes.append(f"unequal training tokens: {a.training_tokens:,} vs {b.training_tokens:,}")
    if abs(a.training_flops - b.training_flops) > 1e-6 * max(a.training_flops, b.training_flops):
        notes.append(f"FLOPs {a.training_flops:.3g} vs {b.training_flops:.3g}")
    if a.trained_parameters != b.trained_parameters:
        notes.append(f"unequal trained parameters: {a.trained_parameters:,} vs {b.trained_parameters:,}")
    if "trainable" in (a.key, b.key):
        notes.append("trainable rows start at N(0, 0.02) and are weight-decayed; frozen rows have unit norm")
    if a.kind == "merge" and b.kind == "expert":
        notes.append("the merge trains nothing itself: its tokens are its experts'")
    return "; ".join(notes) or "equal tokens, FLOPs, trained parameters and scoring data"


def judge_family(
    family: Family,
    rows: list[ModelRow],
    languages: list[str],
    anchors: dict[str, float],
    tune_start: list[float],
    tune_end: list[float],
) -> tuple[list[Comparison], int]:
    """Every comparison of the family's claims with its verdict; returns them and how many were tested (m)."""
    by_key = {r.key: r for r in rows}
    tune = {TUNE_START: tune_start, TUNE_END: tune_end}
    pending = []
    for claim in (c for c in CLAIMS if c.family == family):
        for metric, scope in claim.measures:
            for one in languages if scope == "each" else [scope]:
                comparison = _compare(claim, metric, one, by_key, tune, languages, anchors)
                if comparison is not None:
                    pending.append(comparison)
    adjusted = holm([c.p_value if c.verdict == "" else None for c in pending])
    for comparison, p_holm in zip(pending, adjusted, strict=True):
        if comparison.verdict == "":
            comparison.p_holm = p_holm
            comparison.verdict = family_verdict(comparison.estimates()[2], p_holm)
    return pending, sum(p is not None for p in adjusted)


def _compare(
    claim: Claim,
    metric: str,
    scope: str,
    rows: dict[str, ModelRow],
    tune: dict[str, list[float]],
    languages: list[str],
    anchors: dict[str, float],
) -> Comparison | None:
    """One comparison, its verdict left empty when it is to be tested (judge_family fills it in); None where
    a side has no measurement (no cloze item could be built from a language's held-out text)."""
    better, other = _side(claim.better, metric, scope, rows, tune), _side(claim.other, metric, scope, rows, tune)
    if not better.values or not other.values:
        return None
    lower = METRICS[metric][1]
    a, b = estimate(better.values), estimate(other.values)
    difference = paired_difference(better.values, other.values, lower_is_better=lower)
    raw_p = p_value(
        difference, [(-1 if lower else 1) * (x - y) for x, y in zip(better.values, other.values, strict=True)]
    )
    note, verdict = _note(claim, better, other), ""
    if metric != "val_loss":
        checked = languages if scope == "mean" else [scope]
        short = undertrained(better, checked, anchors) + undertrained(other, checked, anchors)
        if short:
            verdict, note = UNDERTRAINED, f"not below bzip2 -9: {', '.join(short)}; " + note
    if note.startswith("REFUSED"):
        verdict = NOT_COMPARED
    if verdict == "" and raw_p is None:
        verdict = "inconclusive at this scale"  # no interval: nothing to test
    return Comparison(
        claim.key,
        claim.family,
        claim.text,
        claim.reference,
        claim.primary,
        metric,
        scope,
        claim.better,
        claim.other,
        a.mean,
        a.half,
        b.mean,
        b.half,
        difference.mean,
        difference.half,
        difference.n,
        raw_p,
        None,
        verdict,
        note,
    )


__all__ = [
    "ANCHOR",
    "METRICS",
    "SHARED_LANGUAGE",
    "Comparison",
    "FamilyResults",
    "ModelRow",
    "StudyResults",
    "SweepRecord",
    "below_anchor",
    "best_expert",
    "judge_family",
]
