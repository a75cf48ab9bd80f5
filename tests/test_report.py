"""`pgt report`: the Markdown page and plots of a real (tiny) growth run, and the published figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pgt.cli import main
from pgt.errors import PgtError
from pgt.eval import published as pub
from pgt.eval.report import write_report
from pgt.eval.results import EvalRecord

pytestmark = pytest.mark.xdist_group("report")  # one worker grows the module's run once

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_growth(substrate: Path, data: Path, out: Path, **overrides) -> Path:
    """A real growth run small enough for a test: a handful of steps per stage."""
    from pgt.growth import GrowthConfig, grow

    settings = dict(
        substrate=str(substrate),
        data=str(data),
        out=str(out),
        stages=2,
        tokens_per_stage=256,
        seq_len=16,
        batch_size=2,
        heads=2,
        eval_every=4,
        eval_tokens=1024,
        checkpoint_every=0,
        log_every=2,
        progress=False,
    )
    return grow(GrowthConfig(**(settings | overrides)))


@pytest.fixture(scope="module")
def run_dir(substrate_dir: Path, token_data_dir: Path, tmp_path_factory) -> Path:
    """A 2-stage growth run, a monolithic baseline in RUN_DIR/baselines/monolithic and, in RUN_DIR/merged/mean,
    the two merged (`pgt merge`) with its held-out perplexity (`pgt eval`)."""
    run = tiny_growth(substrate_dir, token_data_dir, tmp_path_factory.mktemp("report-run") / "run")
    baseline = tiny_growth(substrate_dir, token_data_dir, run / "baselines" / "monolithic", baseline="monolithic")
    merged = run / "merged" / "mean"
    assert main(["merge", str(run / "stage-2"), str(baseline / "stage-2"), "--out", str(merged)]) == 0
    assert main(["eval", str(merged), "--task", "perplexity", "--limit", "2"]) == 0
    return run


def table_rows(markdown: str, section: str) -> list[list[str]]:
    """The body rows of the first table under `## section`, as stripped cells."""
    body = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]  # after header and rule


def is_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
    return path.read_bytes()[:8] == PNG_SIGNATURE


def test_one_row_per_stage_with_the_numbers_of_stage_json(run_dir: Path, tmp_path: Path):
    page = write_report(run_dir, tmp_path / "report.md")
    rows = table_rows(page.read_text(encoding="utf-8"), "Stages")
    stages = [json.loads((run_dir / f"stage-{k}" / "stage.json").read_text()) for k in (1, 2)]
    assert [row[0] for row in rows] == ["`stage-1`", "`stage-2`"]
    for row, info in zip(rows, stages, strict=True):
        assert row[1:8] == [
            str(info["stage"]),
            f"{info['params_total']:,}",
            f"{info['params_trainable']:,}",
            f"{info['tokens_total']:,}",  # every token that trained it, not one stage's share
            "trainer's validation sample",
            f"{info['val_loss']:.4f}",
            f"{info['val_bpb']:.4f}",
        ]
    assert stages[1]["tokens_total"] == 2 * stages[1]["tokens_seen"]
    # Growth adds parameters; only the new block (plus head and norm) trains.
    assert stages[1]["params_total"] > stages[0]["params_total"] > stages[1]["params_trainable"]


def test_plots_are_valid_pngs_and_linked_from_the_page(run_dir: Path, tmp_path: Path):
    page = write_report(run_dir, tmp_path / "out" / "grow.md")
    text = page.read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == ["grow-comparison.png", "grow-depth.png", "grow-loss-curve.png"]
    assert all(is_png(page.parent / name) for name in linked)
    assert not list(page.parent.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_baselines_and_merged_experts_stand_beside_the_deepest_stage(run_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file

    text = write_report(run_dir, tmp_path / "report.md").read_text(encoding="utf-8")
    rows = {row[0]: row for row in table_rows(text, "Baselines and merged experts")}
    assert set(rows) == {"`stage-2`", "`baselines/monolithic`", "`merged/mean`"}
    baseline = json.loads((run_dir / "baselines/monolithic/stage-2/stage.json").read_text())
    assert rows["`baselines/monolithic`"][1] == "monolithic"
    assert rows["`baselines/monolithic`"][3:8] == [
        f"{baseline['params_total']:,}",
        f"{baseline['params_trainable']:,}",
        f"{baseline['tokens_total']:,}",
        "trainer's validation sample",
        f"{baseline['val_loss']:.4f}",
    ]
    # A merged model has no stage.json: its size comes from its weights, its losses from `pgt eval`, marked so.
    merged = rows["`merged/mean`"]
    weights = load_file(str(run_dir / "merged/mean/model.safetensors"))
    perplexity = EvalRecord.load(run_dir / "merged/mean/eval/perplexity--default.json")
    assert merged[1] == "merged"
    assert merged[2] == "– (merge)"  # not placed on the depth axis as if it were deeper
    assert merged[3] == f"{sum(t.numel() for t in weights.values()):,}"
    assert merged[6] == "`pgt eval` perplexity, 2 held-out documents of `default`†"  # the data it was scored on
    assert merged[7:9] == [f"{perplexity.value('loss'):.4f}†", f"{perplexity.value('bpb'):.4f}†"]
    assert "† From `pgt eval --task perplexity`" in text
    assert "⚠" not in text  # equal budgets: no flag
    assert "perplexity (perplexity)" not in text  # a task named after its metric is named once


def test_a_baseline_of_another_budget_is_flagged(
    run_dir: Path, substrate_dir: Path, token_data_dir: Path, tmp_path: Path
):
    other = tiny_growth(
        substrate_dir, token_data_dir, tmp_path / "mono-small", baseline="monolithic", tokens_per_stage=128
    )
    text = write_report(run_dir, tmp_path / "report.md", baselines=(other,)).read_text(encoding="utf-8")
    rows = {row[0]: row for row in table_rows(text, "Baselines and merged experts")}
    assert rows[f"`{other}`"][5] == "256 ⚠"
    assert "⚠ A training budget other than" in text


def test_loss_curve_marks_the_growth_step(run_dir: Path, tmp_path: Path):
    from pgt.eval.report import collect
    from pgt.growth.metrics import EvalPoint, GrowEvent

    report = collect(run_dir)
    grows = [e for e in report.events if isinstance(e, GrowEvent)]
    assert [e.stage for e in grows] == [1, 2]
    assert grows[1].tokens == 256  # stage 2 starts after stage 1's token budget
    # The growth-step table: the last validation loss of stage 1 against stage 2's before training.
    evals = [e for e in report.events if isinstance(e, EvalPoint)]
    before = [e for e in evals if e.stage == 1][-1].val_loss
    after = next(e for e in evals if e.stage == 2 and e.step == 0).val_loss
    text = write_report(run_dir, tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"| +block 2 | {before:.4f} | {after:.4f} | {after - before:+.4f} |" in text


def arc_style_file(path: Path, corpus_files: list[Path]) -> Path:
    """Four ARC-format questions made of real fortune text (answer key A), for `pgt eval --task arc_easy`."""
    from pgt.corpus.sources import iter_fortunes

    texts = [t for t in iter_fortunes(corpus_files[0]) if 10 < len(t) < 120][:20]
    rows = [
        {"question": texts[i], "choices": {"label": list("ABCD"), "text": texts[i + 1 : i + 5]}, "answerKey": "A"}
        for i in range(0, 20, 5)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_published_figures_stand_beside_matching_tasks(run_dir: Path, corpus_files: list[Path], tmp_path: Path):
    """A real `pgt eval` result on a published task (ARC-e) brings the abs-bvv-K figure of the same depth."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "tb", "baselines", "merged"))
    questions = arc_style_file(tmp_path / "arc.jsonl", corpus_files)
    for k in (1, 2):
        assert (
            main(
                [
                    "eval",
                    str(copy / f"stage-{k}"),
                    "--task",
                    "arc_easy",
                    "--data",
                    str(questions),
                    "--runs",
                    "2",
                    "--limit",
                    "3",
                ]
            )
            == 0
        )
    text = write_report(copy, published=pub.embedded_figures()).read_text(encoding="utf-8")
    results = [json.loads((copy / f"stage-{k}" / "eval" / "arc_easy--arc.json").read_text())["metrics"] for k in (1, 2)]
    assert [row[-1] for row in table_rows(text, "Stages")] == [f"{m['mean']:.2f} ± {m['ci95']:.2f}" for m in results]
    beside = [
        line
        for line in text.split("### Ours beside the published models")[1].splitlines()
        if line.startswith("| `stage-")
    ]
    assert len(beside) == 2
    assert "| abs-bvv-1 | 19.21 |" in beside[0] and "| abs-bvv-2 | 21.04 |" in beside[1]


def test_missing_pieces_are_noted_not_errors(substrate_dir: Path, token_data_dir: Path, tmp_path: Path):
    run = tiny_growth(substrate_dir, token_data_dir, tmp_path / "run", stages=1)
    text = write_report(run).read_text(encoding="utf-8")
    assert "## Missing pieces" in text
    assert "no baselines" in text and "no task evaluations" in text
    assert "None of our evaluated tasks matches a published one" in text


def test_not_a_run_directory_is_a_one_line_error(tmp_path: Path, run_dir: Path, capsys):
    with pytest.raises(PgtError, match="not a growth run directory"):
        write_report(tmp_path)
    with pytest.raises(PgtError, match="run directory not found"):
        write_report(tmp_path / "missing")
    with pytest.raises(PgtError, match="model directory not found"):
        write_report(run_dir, tmp_path / "r.md", merged=(tmp_path / "no-such-expert",))
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not list(tmp_path.glob("*.md"))


def test_embedded_table_matches_the_reference_file(reference_dir: Path):
    parsed = pub.load_published(reference_dir / pub.BENCHMARKS_FILE)
    embedded = pub.embedded_figures()
    for model, scores in embedded.scores.items():
        for task, score in scores.items():
            assert parsed.score(model, task).mean == score.mean, (model, task)
    # Lines run together in the file (`...(σ=0.73%)abs-bvv-6 Total parameters: 2.3B`) still parse.
    assert parsed.params["abs-bvv-6"] == 2.3e9
    assert parsed.score("abs-bvv-6", "SQuAD") == pub.PublishedScore(5.55, 0.65, 1.05)


def test_task_names_map_to_the_reference_names():
    assert [pub.published_task(t) for t in ("mmlu", "arc_easy", "arc_challenge", "commonsense_qa", "squad_v2")] == list(
        pub.PUBLISHED_TASKS
    )
    assert pub.published_task("boolq") is None
