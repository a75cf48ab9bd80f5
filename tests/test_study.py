"""`pgt study --scale smoke` end to end on the embedded fortunes: every arm trains, every claim gets a
verdict its interval supports, the page and its figures appear, and a rerun reuses everything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from pgt.cli import main
from pgt.study.results import StudyResults
from pgt.study.runner import RESULTS_FILE
from pgt.study.stats import Estimate

pytestmark = pytest.mark.xdist_group("study")
VERDICTS = {"holds", "reversed", "inconclusive at this scale"}


@pytest.fixture(scope="module")
def study(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "smoke"
    args = ["study", "--scale", "smoke", "--substrate", str(substrate_dir), "--device", "cpu", "--no-progress",
            "--out", str(out)]
    assert main(args) == 0
    return out


def test_every_claim_has_a_verdict_its_interval_supports(study: Path) -> None:
    results = StudyResults.load(study / RESULTS_FILE)
    assert results.seeds == 2 and results.languages == ["en", "ru", "de"]
    assert {c.key for c in results.claims} == {"glyph-vs-trainable", "glyph-vs-random", "grown-vs-mono-random",
                                               "grown-vs-mono-identity", "depth", "merge-vs-experts", "tune"}
    for claim in results.claims:
        assert claim.verdict in VERDICTS
        difference = Estimate(claim.difference, claim.difference_half, claim.seeds)
        if claim.verdict == "holds":
            assert difference.low > 0
        if claim.verdict == "reversed":
            assert difference.high < 0


def test_rows_carry_budgets_and_scoring_data(study: Path) -> None:
    results = StudyResults.load(study / RESULTS_FILE)
    rows = {row.key: row for row in results.rows}
    assert set(rows) >= {"grown-random@1", "grown-random", "grown-identity", "monolithic", "trainable",
                         "frozen-random", "expert-a", "expert-b", "merge", "merge-tuned"}
    # equal depth and tokens; growth backpropagates through one block per stage, so it spends fewer FLOPs
    assert rows["grown-random"].training_tokens == rows["monolithic"].training_tokens == 2 * 64
    assert rows["grown-random"].training_flops < rows["monolithic"].training_flops
    assert rows["grown-random@1"].training_tokens == 64
    assert rows["merge"].blocks is None and rows["merge"].training_tokens == 2 * rows["expert-a"].training_tokens
    assert len({row.scoring_id for row in rows.values()}) == 1
    for row in rows.values():
        assert all(len(values) == 2 for values in row.bits_per_byte.values())  # one per seed
        assert all(0 < v < 30 for values in row.bits_per_byte.values() for v in values)
    assert all(0 < figures["xz_bpb"] < 8 for figures in results.compressors.values())


def test_every_arm_stands_on_the_substrate_trimmed_to_the_training_text(study: Path, substrate_dir: Path) -> None:
    from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

    full = SubstrateMeta.load(substrate_dir / SUBSTRATE_FILE)
    results = StudyResults.load(study / RESULTS_FILE)
    lineage = results.substrate
    assert lineage.parent_fingerprint == full.fingerprint and lineage.parent_vocab_size == full.vocab_size
    assert lineage.vocab_size < full.vocab_size // 10  # the head shrinks to the ids the training text uses
    control = SubstrateMeta.load(study / "substrate-random" / SUBSTRATE_FILE)
    assert control.vocab_size == lineage.vocab_size and control.derived_from == lineage.fingerprint
    for run in ("monolithic", "frozen-random", "expert-a"):
        model = SubstrateMeta.load(study / "runs" / run / "seed-0" / "stage-2" / SUBSTRATE_FILE)
        assert model.vocab_size == lineage.vocab_size
    assert full.fingerprint in (study / "report.md").read_text(encoding="utf-8")


def test_the_page_leads_with_the_claims_and_links_its_figures(study: Path) -> None:
    text = (study / "report.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[:2] == ["Claims", "Models"]
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        with Image.open(study / image) as png:
            png.verify()
    assert "inconclusive at this scale" in text or "holds" in text or "reversed" in text
    assert "DESIGN.md" not in text


def test_a_rerun_reuses_everything_and_other_settings_are_refused(study: Path, substrate_dir: Path, capsys) -> None:
    stage = study / "runs" / "monolithic" / "seed-0" / "stage-2" / "model.safetensors"
    before = stage.stat().st_mtime_ns
    args = ["study", "--scale", "smoke", "--substrate", str(substrate_dir), "--device", "cpu", "--no-progress",
            "--out", str(study)]
    assert main(args) == 0
    assert stage.stat().st_mtime_ns == before
    assert main([*args[:2], "cpu", *args[3:]]) == 2
    assert "other settings" in capsys.readouterr().err
