"""The study's results as one typed record (OUT/study.json) and the claims evaluated on them."""

from __future__ import annotations

from dataclasses import dataclass

from pgt.records import Record
from pgt.study.adapter import SubstrateLineage
from pgt.study.arms import BEST_EXPERT, CLAIMS, MERGE, TUNE_END, TUNE_START, TUNED, Claim
from pgt.study.stats import Estimate, estimate, paired_difference, verdict

METRICS = {"bpb": ("held-out bits per byte, mean over languages", True),
           "cloze": ("cloze accuracy, mean over languages", False),
           "val_loss": ("validation loss (nats/token)", True)}


@dataclass
class ModelRow(Record):
    """One model of the study over its seeds (lists are per seed, in seed order)."""

    WHAT = "study model row"
    key: str
    label: str
    kind: str  # grown | baseline | expert | merge
    blocks: int | None  # None for a merge: it is not a deeper model
    runs: list[str]
    training_tokens: int  # every token that trained it (a merge: its experts' together)
    training_flops: float
    scoring_id: str  # the held-out text it was scored on
    bits_per_byte: dict[str, list[float]]
    cloze_accuracy: dict[str, list[float]]
    cloze_items: dict[str, int]

    def per_seed(self, metric: str) -> list[float]:
        """The metric's mean over languages, per seed."""
        table = self.bits_per_byte if metric == "bpb" else self.cloze_accuracy
        languages = sorted(table)
        if not languages:
            return []
        return [sum(table[lang][i] for lang in languages) / len(languages) for i in range(len(table[languages[0]]))]

    def language(self, metric: str, code: str) -> Estimate | None:
        values = (self.bits_per_byte if metric == "bpb" else self.cloze_accuracy).get(code)
        return estimate(values) if values else None


@dataclass
class ClaimResult(Record):
    WHAT = "study claim"
    key: str
    text: str
    reference: str
    metric: str
    better: str
    other: str
    better_mean: float
    better_half: float | None
    other_mean: float
    other_half: float | None
    difference: float  # positive: the claim's direction
    difference_half: float | None
    seeds: int
    verdict: str
    note: str  # unequal budgets or scoring data, said in the table itself

    def estimates(self) -> tuple[Estimate, Estimate, Estimate]:
        return (Estimate(self.better_mean, self.better_half, self.seeds),
                Estimate(self.other_mean, self.other_half, self.seeds),
                Estimate(self.difference, self.difference_half, self.seeds))


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
    substrate: SubstrateLineage  # what every arm stands on and its full-vocabulary parent
    heldout_documents: int
    compressors: dict[str, dict[str, float]]  # language -> {bz2_bpb, xz_bpb} of the held-out text
    cloze_chance: float
    rows: list[ModelRow]
    tune_start: list[float]
    tune_end: list[float]
    claims: list[ClaimResult]

    def row(self, key: str) -> ModelRow:
        return next(r for r in self.rows if r.key == key)


def _values(key: str, metric: str, rows: dict[str, ModelRow], tune: dict[str, list[float]]) -> list[float]:
    if metric == "val_loss":
        return tune[key]
    if key == BEST_EXPERT:  # per seed, whichever expert is better on this metric
        experts = [r.per_seed(metric) for r in rows.values() if r.kind == "expert"]
        lower = METRICS[metric][1]
        return [(min if lower else max)(seed) for seed in zip(*experts, strict=True)]
    return rows[key].per_seed(metric)


def _note(claim: Claim, rows: dict[str, ModelRow]) -> str:
    """What differs between the two sides besides the claim (budgets, scoring data)."""
    sides = [rows.get(claim.better), rows.get(claim.other if claim.other != BEST_EXPERT else "expert-a")]
    if claim.better in (TUNE_END, TUNE_START) or None in sides:
        return "same merge before and after tuning; validation batches of the tuning data"
    a, b = sides
    notes = []
    if a.scoring_id != b.scoring_id:
        notes.append(f"REFUSED: scored on different held-out text ({a.scoring_id} vs {b.scoring_id})")
    if a.training_tokens != b.training_tokens:
        notes.append(f"unequal training tokens: {a.training_tokens:,} vs {b.training_tokens:,}"
                     + (" (the merge trains nothing itself)" if a.kind == "merge" else ""))
    if abs(a.training_flops - b.training_flops) > 1e-6 * max(a.training_flops, b.training_flops):
        notes.append(f"FLOPs {a.training_flops:.3g} vs {b.training_flops:.3g}")
    return "; ".join(notes) or "equal tokens, FLOPs and scoring data"


def evaluate_claims(rows: list[ModelRow], tune_start: list[float], tune_end: list[float]) -> list[ClaimResult]:
    """Every claim on every metric it can be measured by, with its verdict (pgt.study.stats).

    The tuning claim is measured on the tuning data's validation loss, and on the held-out
    text as the tuned merge against the untuned one (the adapter starts exactly as the mean).
    """
    by_key = {r.key: r for r in rows}
    tune = {TUNE_START: tune_start, TUNE_END: tune_end}
    results = []
    for claim in CLAIMS:
        if claim.better == TUNE_END:
            results.append(_one(claim, "val_loss", by_key, tune))
            claim = Claim(claim.key, claim.text, TUNED, MERGE, claim.reference)
        results += [_one(claim, metric, by_key, tune) for metric in ("bpb", "cloze")]
    return results


def _one(claim: Claim, metric: str, rows: dict[str, ModelRow], tune: dict[str, list[float]]) -> ClaimResult:
    better, other = _values(claim.better, metric, rows, tune), _values(claim.other, metric, rows, tune)
    lower = METRICS[metric][1]
    a, b = estimate(better), estimate(other)
    difference = paired_difference(better, other, lower_is_better=lower)
    note = _note(claim, rows)
    decided = "not compared" if note.startswith("REFUSED") else verdict(difference)
    return ClaimResult(claim.key, claim.text, claim.reference, metric, claim.better, claim.other, a.mean, a.half,
                       b.mean, b.half, difference.mean, difference.half, difference.n, decided, note)
