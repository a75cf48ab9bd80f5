"""`pgt study --scale smoke` end to end on the embedded fortunes: every family trains (sweeps included),
every comparison gets the verdict its numbers allow, the page agrees with study.json, and a rerun reuses
everything."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pgt.cli import main
from pgt.study.arms import CLAIMS, FAMILIES
from pgt.study.results import NOT_COMPARED, UNDERTRAINED, StudyResults, below_anchor
from pgt.study.runner import RESULTS_FILE
from pgt.study.scales import SCALES
from pgt.study.stats import ALPHA
from pgt.substrate.store import SUBSTRATE_FILE, SubstrateMeta

pytestmark = pytest.mark.xdist_group("study")
VERDICTS = {"holds", "reversed", "inconclusive at this scale", UNDERTRAINED, NOT_COMPARED}


def _args(out: Path, substrate: Path, *families: str, twin: Path | None = None) -> list[str]:
    return [
        "study",
        *families,
        "--scale",
        "smoke",
        "--substrate",
        str(substrate),
        *(["--visible-substrate", str(twin)] if twin else []),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def study(substrate_dir: Path, visible_substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study on the test substrate and its visible-blanks twin (built once, beside the substrate: the twin
    is checked here, its rendering is tested in test_substrate_health)."""
    out = tmp_path_factory.mktemp("study") / "smoke"
    assert main(_args(out, substrate_dir, "embeddings", twin=visible_substrate_dir)) == 0  # one family alone ...
    assert StudyResults.load(out / RESULTS_FILE).family("growth") is None
    assert main(_args(out, substrate_dir)) == 0  # ... then the rest, reusing it
    return out


@pytest.fixture(scope="module")
def results(study: Path) -> StudyResults:
    return StudyResults.load(study / RESULTS_FILE)


def test_every_comparison_has_the_verdict_its_numbers_allow(results: StudyResults) -> None:
    assert [f.family for f in results.families] == list(FAMILIES)
    for family in results.families:
        claims = {c.key for c in CLAIMS if c.family == family.family}
        assert {c.claim for c in family.comparisons} == claims
        tested = [c for c in family.comparisons if c.p_holm is not None]
        assert family.tested == len(tested)
        for c in family.comparisons:
            assert c.verdict in VERDICTS
            if c.verdict in ("holds", "reversed"):
                assert c.p_holm < ALPHA and (c.difference > 0) == (c.verdict == "holds")
                assert c.p_holm >= c.p_value  # Holm never makes a p-value smaller
            if c.verdict == UNDERTRAINED:
                assert c.p_holm is None and "not below bzip2 -9" in c.note
    merge = next(c for c in results.family("merging").comparisons if c.claim == "merge-vs-experts")
    assert merge.scope == "en" and merge.primary  # judged on the language both experts know


def test_the_undertrained_rule_follows_the_compressor_anchor(results: StudyResults) -> None:
    anchors = {code: figures["bz2_bpb"] for code, figures in results.compressors.items()}
    for family in results.families:
        rows = {row.key: row for row in family.rows}
        for c in family.comparisons:
            if c.metric != "bpb" or c.scope not in anchors or c.better not in rows or c.other not in rows:
                continue
            learned = all(
                below_anchor(rows[k].bits_per_byte[c.scope], anchors[c.scope])
                for k in (c.better, c.other)
                if c.scope in rows[k].trained_languages
            )
            assert (c.verdict == UNDERTRAINED) == (not learned)


def test_rows_carry_budgets_sweeps_and_scoring_data(results: StudyResults) -> None:
    scale = SCALES["smoke"]
    embeddings, growth, merging = (results.family(f) for f in FAMILIES)
    assert {r.training_tokens for r in embeddings.rows} == {scale.embedding_tokens}
    trainable, glyph = embeddings.row("trainable"), embeddings.row("glyph")
    assert (
        trainable.trained_parameters == glyph.trained_parameters + results.substrate.vocab_size * results.substrate.dim
    )
    note = next(c.note for c in embeddings.comparisons if c.claim == "glyph-vs-trainable")
    assert "unequal trained parameters" in note
    rows = {r.key: r for r in growth.rows}
    total = scale.growth_stages * scale.growth_tokens
    assert rows["grown-random"].training_tokens == rows["monolithic"].training_tokens == total
    assert rows["one-block"].blocks == 1 and rows["one-block"].training_tokens == total
    assert rows["grown-random"].training_flops < rows["monolithic"].training_flops
    assert rows["grown-random@1"].training_tokens == scale.growth_tokens
    assert (
        merging.row("merge").training_tokens
        == merging.row("expert-a").training_tokens + merging.row("expert-b").training_tokens
    )
    assert merging.row("expert-a").trained_languages == ["en", "ru"]
    for family in results.families:
        swept = {s.arm: s for s in family.sweeps}
        for row in family.rows:
            if row.kind != "merge":
                sweep = swept[row.key.split("@")[0]]
                assert row.lr == sweep.chosen_lr == sweep.lrs[sweep.val_losses.index(min(sweep.val_losses))]
                assert len(sweep.lrs) >= 3
            assert all(len(v) == results.seeds for v in row.bits_per_byte.values())
    assert len({row.scoring_id for family in results.families for row in family.rows}) == 1


def test_every_matrix_stands_on_one_vocabulary_and_says_what_it_is(
    study: Path, results: StudyResults, substrate_dir: Path
) -> None:
    full = SubstrateMeta.load(substrate_dir / SUBSTRATE_FILE)
    assert results.substrate.parent_fingerprint == full.fingerprint
    metas = {
        key: SubstrateMeta.load(study / f"substrate-{key}" / SUBSTRATE_FILE)
        for key in ("recentred", "shuffled", "visible", "random")
    }
    assert {m.vocab_size for m in metas.values()} == {results.substrate.vocab_size}
    assert len({m.fingerprint for m in metas.values()} | {results.substrate.fingerprint}) == 5
    assert metas["recentred"].params.recentred and metas["visible"].params.visible_blanks
    glyph_space = next(g for g in results.health["glyph"].groups if " " in g.texts)
    assert "\n" in glyph_space.texts
    assert not any(" " in g.texts for g in results.health["visible"].groups)  # the twin tells them apart
    assert results.health["recentred"].glyph.mean_pairwise_cosine < results.health["glyph"].glyph.mean_pairwise_cosine


def test_the_page_shows_every_comparison_as_study_json_has_it(study: Path, results: StudyResults) -> None:
    text = (study / "report.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert sections[:3] == [f"Family: {f}" for f in FAMILIES]
    assert "Substrate health" in sections and "What this study does not show" in sections
    shown = [cell for cell in re.findall(r"\| \*\*([^*]+)\*\* \|", text) if cell in VERDICTS]
    assert shown == [c.verdict for f in results.families for c in sorted(f.comparisons, key=lambda c: not c.primary)]
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        with Image.open(study / image) as png:
            png.verify()
    # the page draws every arm's loss from its metrics.jsonl; the arms' runs draw none of their own
    assert list((study / "runs").rglob("metrics.jsonl")) and not list((study / "runs").rglob("loss.png"))


def test_a_rerun_reuses_everything_and_other_settings_are_refused(study: Path, substrate_dir: Path, capsys) -> None:
    stage = study / "runs" / "monolithic" / "seed-0" / "stage-2" / "model.safetensors"
    before = stage.stat().st_mtime_ns
    assert main(_args(study, substrate_dir)) == 0
    assert stage.stat().st_mtime_ns == before
    args = _args(study, substrate_dir)
    args[args.index("smoke")] = "cpu"
    assert main(args) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(_args(study, substrate_dir, "nonsense")) == 2
    assert "unknown family" in capsys.readouterr().err


def test_jobs_change_the_wall_time_not_the_numbers(
    results: StudyResults, substrate_dir: Path, tmp_path: Path, capsys
) -> None:
    """The growth family again, its runs trained two at a time in worker processes (one thread each, as the
    smoke scale's one process): every sweep, row and comparison equals the one-process study's."""
    out = tmp_path / "jobs"
    assert main([*_args(out, substrate_dir, "growth"), "--jobs", "2"]) == 0
    alone, pooled = results.family("growth"), StudyResults.load(out / RESULTS_FILE).family("growth")

    def numbers(family):
        rows = [{k: v for k, v in vars(row).items() if k != "runs"} for row in family.rows]  # runs: paths
        return rows, family.sweeps, family.comparisons

    assert numbers(pooled) == numbers(alone)
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert "runs-monolithic-seed-1.log" in logs and "sweeps-one-block-lr-0.004.log" in logs
    assert "stage 2:" in (out / "logs" / "runs-monolithic-seed-1.log").read_text()

    # a run that fails in a worker is the command's one-line error
    foreign = out / "runs" / "monolithic" / "seed-1"
    shutil.rmtree(foreign)
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([*_args(out, substrate_dir, "growth"), "--jobs", "2"]) == 2
    assert f"run directory {foreign} was not written by pgt" in capsys.readouterr().err
