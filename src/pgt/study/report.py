"""The study's page: OUT/report.md with its PNGs, from OUT/study.json (read once, through its type).

Order: the claims table (claim, the papers' figure, ours with intervals, the difference with
its interval, the verdict, what differs in budget or scoring data), the models table (every
row with its total training tokens, FLOPs and scoring data; experts beside their merge;
compressors and chance beside the models), the plots, then the published figures, which are
set beside ours only for the same task under the same protocol (none here).
"""

from __future__ import annotations

from pathlib import Path

from pgt.eval.plots import Panel, Series, plot_panels
from pgt.eval.report_markdown import markdown_table
from pgt.io import atomic_file
from pgt.study import adapter
from pgt.study.results import METRICS, ModelRow, StudyResults

REPORT_FILE = "report.md"
PLOTS = {"depth": "report-depth.png", "loss": "report-loss-curves.png", "tune": "report-tune.png"}
COMPRESSORS = {"bz2_bpb": "bzip2 -9", "xz_bpb": "xz -9e"}  # pgt.growth.validation's figures, as labelled there
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
           "tab:cyan", "black")


def colours(results: StudyResults) -> dict[str, str]:
    """One colour per model, the same in every panel (grown stages share their arm's colour)."""
    keys = list(dict.fromkeys(row.key.split("@")[0] for row in results.rows))
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}


def _cell(row: ModelRow, metric: str, code: str, digits: int) -> str:
    value = row.language(metric, code)
    return "–" if value is None else value.format(digits)


def claims_section(results: StudyResults) -> list[str]:
    rows = []
    for claim in results.claims:
        better, other, difference = claim.estimates()
        digits = 3
        rows.append([claim.text, claim.reference, METRICS[claim.metric][0],
                     f"`{claim.better}` {better.format(digits)}", f"`{claim.other}` {other.format(digits)}",
                     difference.format_interval(digits), f"**{claim.verdict}**", claim.note])
    return ["## Claims", "",
            *markdown_table(["claim", "reference figure (papers)", "metric", "ours: claimed better", "ours: other",
                     "difference (positive = as claimed) [95 % CI]", "verdict", "budgets and scoring data"], rows),
            "", f"Mean ± the 95 % Student-t half-interval over {results.seeds} seeds; the difference is paired by "
            "seed. Verdict: **holds** when the whole interval of the difference is above zero, **reversed** when "
            "it is below, otherwise **inconclusive at this scale** (an interval that includes zero never holds). "
            "The reference figures are the papers' own, on other tasks and at far larger scale: orientation, "
            "not a comparison.", ""]


def models_section(results: StudyResults) -> list[str]:
    codes = results.languages
    header = ["model", "kind", "blocks", "training tokens", "training FLOPs", "scored on",
              *(f"bits/byte {c}" for c in codes), *(f"cloze {c} (chance {results.cloze_chance:.2f})" for c in codes)]
    rows = []
    for row in results.rows:
        blocks = str(row.blocks) if row.blocks is not None else "– (merge: 2 experts, not deeper)"
        rows.append([f"`{row.key}` {row.label}", row.kind, blocks, f"{row.training_tokens:,}",
                     f"{row.training_flops:.3g}", f"held-out `{row.scoring_id}`",
                     *(_cell(row, "bpb", c, 3) for c in codes), *(_cell(row, "cloze", c, 2) for c in codes)])
    for name, label in COMPRESSORS.items():
        rows.append([f"{label} (compressor)", "compressor", "–", "–", "–", f"held-out `{results.scoring_id}`",
                     *(f"{results.compressors[c][name]:.3f}" for c in codes), *("–" for _ in codes)])
    items = results.rows[0].cloze_items if results.rows else {}
    return ["## Models", "", *markdown_table(header, rows), "",
            f"Held-out text: {results.heldout_documents} documents per language never trained on "
            f"(scoring data `{results.scoring_id}`); cloze items per language: "
            + ", ".join(f"{c} {items.get(c, 0)}" for c in codes)
            + ". FLOPs are analytic (docs/study.md); a merge's tokens and FLOPs are its experts' together, "
            "and the tuned merge adds its tuning.", ""]


def plot_depth(results: StudyResults, path: Path) -> None:
    """Bits per byte and cloze accuracy per language against depth; other models as horizontal lines."""
    colour = colours(results)
    grown = sorted((r for r in results.rows if r.key.split("@")[0] == "grown-random"), key=lambda r: r.blocks)
    depth = [float(r.blocks) for r in grown]
    span = [min(depth), max(depth)] if len(depth) > 1 else [depth[0] - 0.5, depth[0] + 0.5]
    panels = []
    for metric, unit in (("bpb", "bits per byte"), ("cloze", "accuracy")):
        for code in results.languages:
            points = [r.language(metric, code) for r in grown]
            if any(p is None for p in points):
                continue
            series = [Series("grown, random init (stages)", depth, [p.mean for p in points],
                             err=[p.half or 0.0 for p in points],
                             style={"marker": "o", "color": colour["grown-random"]})]
            for row in results.rows:
                value = row.language(metric, code)
                if row.key.split("@")[0] == "grown-random" or value is None:
                    continue
                where = f"{row.blocks} blocks" if row.blocks else "merge"
                series.append(Series(f"{row.key} ({where})", span, [value.mean] * 2,
                                     style={"linestyle": "--", "color": colour[row.key]}))
            if metric == "bpb":
                for (name, label), style in zip(COMPRESSORS.items(), (":", "-."), strict=True):
                    series.append(Series(label, span, [results.compressors[code][name]] * 2,
                                         style={"linestyle": style, "color": "grey"}))
            else:
                series.append(Series("chance", span, [results.cloze_chance] * 2,
                                     style={"linestyle": ":", "color": "grey"}))
            panels.append(Panel(f"{code}: {unit}", "blocks (grown stages)", unit, series, integer_x=True))
    plot_panels(panels, path, columns=len(results.languages),
                title=f"{results.out}: held-out metrics against depth ({results.seeds} seeds, ± 95 %)")


def plot_losses(results: StudyResults, path: Path) -> None:
    """Training loss of every arm's seed-0 run on one axis; growth steps of the grown runs marked."""
    colour = colours(results)
    series, markers = [], []
    for row in results.rows:
        run_dir = Path(row.runs[0]).parent
        if "@" in row.key or not Path(row.runs[0]).name.startswith("stage-"):
            continue  # a grown run appears once (its deepest stage); merges have no training curve
        key = row.key
        records = adapter.read_metrics(run_dir)
        train = [r for r in records if r["kind"] == "train"]
        series.append(Series(f"{key} ({run_dir.parent.name}/{run_dir.name})", [r["tokens"] for r in train],
                             [r["loss"] for r in train], style={"color": colour[key], "linewidth": 1}))
        if key == "grown-random":
            markers = [(r["tokens"], f"+block {r['stage']}") for r in records
                       if r["kind"] == "event" and r.get("event") == "grow" and r["stage"] > 1]
    plot_panels([Panel("Training loss of every arm (seed 0); dotted: growth steps of the grown runs",
                       "training tokens", "loss (nats/token)", series, markers_x=markers)],
                path, columns=1, panel_size=(10.0, 5.0), title=f"{results.out}/runs/*/seed-0")


def plot_tune(results: StudyResults, path: Path) -> None:
    """Validation loss of the adapter merge during `pgt tune`, from the merge's starting loss, per seed."""
    from pgt.compose.tune import TUNE_FILE, TuneRecord

    series = []
    for index, run in enumerate(results.row("merge-tuned").runs):
        record = TuneRecord.load(Path(run) / TUNE_FILE)
        points = [p for p in record.curve if p.val_loss is not None]
        series.append(Series(f"{Path(run).name}: validation", [p.tokens for p in points],
                             [p.val_loss for p in points], style={"marker": "o", "color": PALETTE[index]}))
        train = [p for p in record.curve if p.train_loss is not None]
        series.append(Series(f"{Path(run).name}: training", [p.tokens for p in train], [p.train_loss for p in train],
                             style={"linewidth": 0.8, "alpha": 0.5, "color": PALETTE[index]}))
    plot_panels([Panel("Tuning the adapter merge (step 0 = the untrained merge)", "tuning tokens",
                       "loss (nats/token)", series)], path, columns=1, panel_size=(8.0, 4.5),
                title=f"{results.out}/runs/merge-tuned")


def write_study_report(out: Path, results: StudyResults) -> Path:
    """Write OUT/report.md and its PNGs (plots first, so the page never links a missing one)."""
    plot_depth(results, out / PLOTS["depth"])
    plot_losses(results, out / PLOTS["loss"])
    plot_tune(results, out / PLOTS["tune"])
    lines = [f"# pgt study: `{results.out}`", "",
             f"`{results.command}` — scale **{results.scale}**, {results.seeds} seeds, languages "
             f"{', '.join(results.languages)}, written {results.created}.", "",
             f"Every arm stands on the substrate `{results.substrate.path}`: {results.substrate.describe()}; "
             "the frozen-random control has its tokenizer and shape.", "",
             *claims_section(results), *models_section(results),
             "## Plots", "",
             f"![held-out metrics against depth]({PLOTS['depth']})", "",
             "Grown stages as a line (± 95 %); every other model as a dashed line at its own value (baselines "
             "and experts have N blocks; a merge has no depth of its own); compressors and chance in grey.", "",
             f"![loss curves of all arms]({PLOTS['loss']})", "",
             f"![tuning the merge]({PLOTS['tune']})", "",
             "## Published figures", "",
             "The papers publish MMLU, ARC-Easy, ARC-Challenge, CommonsenseQA and SQuAD scores of 0.5–2.3 B "
             "models (docs/evaluation.md). This study measures held-out bits per byte and a cloze task built "
             "from held-out fortunes: not the same tasks, so no published figure is set beside ours. The "
             "papers' statements appear in the claims table as reference figures only.", ""]
    path = out / REPORT_FILE
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path
