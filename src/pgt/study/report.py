"""The study's page: OUT/report.md with its PNGs, from OUT/study.json (read once, through its type).

Order: how to read the verdicts; per family its comparisons (primary rows first), its models
(tokens, FLOPs, trained parameters, the swept learning rate, bits per byte beside bzip2 -9),
its learning-rate sweeps; the substrates' health; the plots; what the study does not show.
"""

from __future__ import annotations

from pathlib import Path

from pgt.eval.plots import PALETTE, Panel, Series, plot_panels
from pgt.eval.report_markdown import markdown_table
from pgt.growth.metrics import GrowEvent, TrainPoint
from pgt.growth.run_layout import stage_number
from pgt.io import atomic_file
from pgt.study import adapter
from pgt.study.results import (
    ANCHOR,
    METRICS,
    FamilyResults,
    ModelRow,
    StudyResults,
    below_anchor,
)
from pgt.study.stats import ALPHA
from pgt.substrate.health import SubstrateHealth

REPORT_FILE = "report.md"
PLOTS = {"depth": "report-depth.png", "loss": "report-loss-curves-{family}.png", "tune": "report-tune.png"}
COMPRESSORS = {"bz2_bpb": "bzip2 -9", "xz_bpb": "xz -9e"}  # pgt.growth.validation's figures, as labelled there
HEALTH_LABELS = {
    "glyph": "glyph (reference)",
    "recentred": "re-centred",
    "shuffled": "shuffled across ids",
    "visible": "visible blanks",
    "random": "random unit rows",
}

NOT_SHOWN = (
    "- **Scale.** Models of a few hundred thousand parameters trained on a few million tokens of fortunes: the "
    "papers' claims are about 0.5–2.3 B-parameter models on billions of tokens and on other tasks (MMLU, ARC). A "
    "verdict here says what holds at this scale, not at theirs.",
    "- **Uncertainty.** The intervals cover the variation between training seeds (initialisation and data order) "
    "on one fixed held-out text; they say nothing about another corpus, another width or another held-out sample.",
    "- **Learning rates.** Each arm's rate is the best of the swept candidates on the training data's validation "
    "split, at a share of the arm's budget; a wider sweep, other schedules or other optimiser settings could "
    "change a close verdict.",
    "- **Inconclusive is not equal.** An interval that includes zero says the difference is too small to resolve "
    "with these seeds, not that there is none.",
    "- **Cloze.** A 4-way choice between held-out half-quotations: near chance at this scale, it shows little.",
)


def colours(rows: list[ModelRow]) -> dict[str, str]:
    """One colour per model, the same in every panel (grown stages share their arm's colour)."""
    keys = list(dict.fromkeys(row.key.split("@")[0] for row in rows))
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}


def _cell(row: ModelRow, metric: str, code: str, digits: int) -> str:
    value = row.language(metric, code)
    return "–" if value is None else value.format(digits)


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def comparisons_section(results: StudyResults, family: FamilyResults) -> list[str]:
    rows = []
    for c in sorted(family.comparisons, key=lambda c: not c.primary):
        better, other, difference = c.estimates()
        scope = {"mean": "mean of languages", "tuning": "tuning data"}.get(c.scope, c.scope)
        rows.append(
            [
                c.text + ("" if c.primary else " *(secondary)*"),
                c.reference,
                METRICS[c.metric][0],
                scope,
                f"`{c.better}` {better.format(3)}",
                f"`{c.other}` {other.format(3)}",
                difference.format_interval(3),
                _p(c.p_value),
                _p(c.p_holm),
                f"**{c.verdict}**",
                c.note,
            ]
        )
    return [
        *markdown_table(
            [
                "claim",
                "reference figure (papers)",
                "metric",
                "scored on",
                "ours: claimed better",
                "ours: other",
                "difference (positive = as claimed) [95 % CI]",
                "p",
                "p (Holm)",
                "verdict",
                "budgets and scoring data",
            ],
            rows,
        ),
        "",
        f"{family.tested} comparisons of this family were tested; their p-values (paired t-test over "
        f"{results.seeds} seeds) are Holm–Bonferroni adjusted together, and a verdict is **holds** or "
        f"**reversed** only where the adjusted p is below {ALPHA:.2f}. A comparison where either model is not "
        "below bzip2 -9 with every seed on a language it trained on is **undertrained: no verdict** and is not "
        "tested.",
        "",
    ]


def models_section(results: StudyResults, family: FamilyResults) -> list[str]:
    codes = results.languages
    header = [
        "model",
        "kind",
        "blocks",
        "training tokens",
        "training FLOPs",
        "trained parameters",
        "lr",
        *(f"bits/byte {c}" for c in codes),
        *(f"cloze {c}" for c in codes),
    ]
    rows = []
    for row in family.rows:
        blocks = str(row.blocks) if row.blocks is not None else "– (merge)"
        bpb = []
        for code in codes:
            mark = (
                ""
                if code not in row.trained_languages
                or below_anchor(row.bits_per_byte[code], results.compressors[code][ANCHOR])
                else " ⚠"
            )
            untrained = " (not known to both experts)" if row.kind == "merge" else " (not trained on)"
            bpb.append(_cell(row, "bpb", code, 3) + ("" if code in row.trained_languages else untrained) + mark)
        rows.append(
            [
                f"`{row.key}` {row.label}",
                row.kind,
                blocks,
                f"{row.training_tokens:,}",
                f"{row.training_flops:.3g}",
                f"{row.trained_parameters:,}",
                "–" if row.lr is None else f"{row.lr:g}",
                *bpb,
                *(_cell(row, "cloze", c, 2) for c in codes),
            ]
        )
    for name, label in COMPRESSORS.items():
        rows.append(
            [
                f"{label} (compressor)",
                "anchor" if name == ANCHOR else "compressor",
                *["–"] * 5,
                *(f"{results.compressors[c][name]:.3f}" for c in codes),
                *(f"chance {results.cloze_chance:.2f}" for _ in codes),
            ]
        )
    return [
        *markdown_table(header, rows),
        "",
        "Mean ± the 95 % Student-t half-interval over seeds. ⚠: some seed not below bzip2 -9 on a language "
        "the model trained on (undertrained there); a merge is held to the anchor only on the language both "
        "its experts trained on. FLOPs are analytic (docs/study.md); a merge's tokens, FLOPs and "
        "parameters are its experts' together, and the tuned merge adds its tuning.",
        "",
    ]


def sweeps_section(family: FamilyResults) -> list[str]:
    rows = [
        [
            f"`{s.arm}`",
            ", ".join(f"{lr:g}: {loss:.4f}" for lr, loss in zip(s.lrs, s.val_losses, strict=True)),
            f"**{s.chosen_lr:g}**",
            f"{s.tokens:,}",
        ]
        for s in family.sweeps
    ]
    return [
        *markdown_table(["arm", "validation loss per learning rate", "chosen", "tokens per candidate"], rows),
        "",
        "Each candidate trained once with the sweep's own seed (none of the study's); the validation loss is "
        "on the training data's validation split, never on the held-out text.",
        "",
    ]


def health_section(results: StudyResults) -> list[str]:
    keys = list(results.health)
    first: SubstrateHealth = results.health[keys[0]]
    table = []
    for index, (label, _, theirs) in enumerate(first.rows()):
        table.append([label, *(results.health[k].rows()[index][1] for k in keys), theirs])
    table.append(["ids sharing a vector", *(f"{results.health[k].ids_in_groups:,}" for k in keys), "0"])
    table.append(["tokens on such ids", *(f"{results.health[k].data_share_in_groups:.1%}" for k in keys), "0.0%"])
    return [
        "## Substrate health",
        "",
        f"`pgt substrate inspect` of each matrix on the ids the training text uses ({first.glyph.rows:,} rows "
        f"of d = {first.dim}), beside random unit rows of the same shape:",
        "",
        *markdown_table(["figure", *(HEALTH_LABELS[k] for k in keys), "random (reference point)"], table),
        "",
        f"Largest groups of identical glyph vectors: {first.largest_groups()}.",
        "",
    ]


def plot_depth(results: StudyResults, family: FamilyResults, path: Path) -> None:
    """Held-out bits per byte per language against depth; the family's other models as horizontal lines."""
    colour = colours(family.rows)
    grown = sorted((r for r in family.rows if r.key.split("@")[0] == "grown-random"), key=lambda r: r.blocks)
    depth = [float(r.blocks) for r in grown]
    span = [min(depth), max(depth)] if len(depth) > 1 else [depth[0] - 0.5, depth[0] + 0.5]
    panels = []
    for code in results.languages:
        points = [r.language("bpb", code) for r in grown]
        series = [
            Series(
                "grown, random init (stages)",
                depth,
                [p.mean for p in points],
                err=[p.half or 0.0 for p in points],
                style={"marker": "o", "color": colour["grown-random"]},
            )
        ]
        for row in family.rows:
            if row.key.split("@")[0] == "grown-random":
                continue
            value = row.language("bpb", code)
            series.append(
                Series(
                    f"{row.key} ({row.blocks} blocks)",
                    span,
                    [value.mean] * 2,
                    style={"linestyle": "--", "color": colour[row.key]},
                )
            )
        for (name, label), style in zip(COMPRESSORS.items(), (":", "-."), strict=True):
            series.append(
                Series(label, span, [results.compressors[code][name]] * 2, style={"linestyle": style, "color": "grey"})
            )
        panels.append(Panel(f"{code}: bits per byte", "blocks (grown stages)", "bits per byte", series, integer_x=True))
    plot_panels(
        panels,
        path,
        columns=len(results.languages),
        title=f"{results.out}: held-out bits per byte against depth ({results.seeds} seeds, ± 95 %)",
    )


def plot_losses(results: StudyResults, family: FamilyResults, path: Path) -> None:
    """Training loss of the family's seed-0 runs on one axis; growth steps of the grown runs marked."""
    colour = colours(family.rows)
    series, markers = [], []
    for row in family.rows:
        run_dir = Path(row.runs[0]).parent
        if "@" in row.key or stage_number(row.runs[0]) is None:
            continue  # a grown run appears once (its deepest stage); merges have no training curve
        records = adapter.read_metrics(run_dir)
        train = [r for r in records if isinstance(r, TrainPoint)]
        series.append(
            Series(
                row.key,
                [r.tokens for r in train],
                [r.loss for r in train],
                style={"color": colour[row.key], "linewidth": 1},
            )
        )
        if row.key == "grown-random":
            markers = [(r.tokens, f"+block {r.stage}") for r in records if isinstance(r, GrowEvent) and r.stage > 1]
    plot_panels(
        [
            Panel(
                f"{family.family}: training loss (seed 0)",
                "training tokens",
                "loss (nats/token)",
                series,
                markers_x=markers,
            )
        ],
        path,
        columns=1,
        panel_size=(10.0, 5.0),
        title=f"{results.out}/runs",
    )


def plot_tune(results: StudyResults, family: FamilyResults, path: Path) -> None:
    """Validation loss of the adapter merge during `pgt tune`, from the merge's starting loss, per seed."""
    curves = (  # what is drawn of each seed's curve, and how
        ("validation", "val_loss", {"marker": "o"}),
        ("training", "train_loss", {"linewidth": 0.8, "alpha": 0.5}),
    )
    series = []
    for index, run in enumerate(family.row("merge-tuned").runs):
        record = adapter.tune_record(Path(run))
        for name, key, style in curves:
            points = [p for p in record.curve if getattr(p, key) is not None]
            series.append(
                Series(
                    f"{Path(run).name}: {name}",
                    [p.tokens for p in points],
                    [getattr(p, key) for p in points],
                    style={**style, "color": PALETTE[index]},
                )
            )
    plot_panels(
        [
            Panel(
                "Tuning the adapter merge (step 0 = the untrained merge)", "tuning tokens", "loss (nats/token)", series
            )
        ],
        path,
        columns=1,
        panel_size=(8.0, 4.5),
        title=f"{results.out}/runs/merge-tuned",
    )


def write_study_report(out: Path, results: StudyResults) -> Path:
    """Write OUT/report.md and its PNGs (plots first, so the page never links a missing one)."""
    lines = [
        f"# pgt study: `{results.out}`",
        "",
        f"`{results.command}` — scale **{results.scale}**, {results.seeds} seeds, languages "
        f"{', '.join(results.languages)}, written {results.created}.",
        "",
        f"The glyph arms stand on `{results.substrate.path}`: {results.substrate.describe()}. Held-out text: "
        f"{results.heldout_documents} documents per language, never trained on (scoring data "
        f"`{results.scoring_id}`); {results.validation_documents} further documents per language choose the "
        "best expert.",
        "",
    ]
    figures = []
    for family in results.families:
        lines += [
            f"## Family: {family.family}",
            "",
            f"Trained and scored in {family.seconds / 60:.1f} minutes (wall time, over all invocations).",
            "",
            *comparisons_section(results, family),
            "### Models",
            "",
            *models_section(results, family),
            "### Learning-rate sweeps",
            "",
            *sweeps_section(family),
        ]
        loss_png = PLOTS["loss"].format(family=family.family)
        plot_losses(results, family, out / loss_png)
        figures += [f"![{family.family}: training loss]({loss_png})", ""]
        if family.family == "growth":
            plot_depth(results, family, out / PLOTS["depth"])
            figures += [
                f"![held-out bits per byte against depth]({PLOTS['depth']})",
                "",
                "Grown stages as a line (± 95 %); the family's other models as dashed lines at their own "
                "value; compressors in grey.",
                "",
            ]
        if family.family == "merging":
            plot_tune(results, family, out / PLOTS["tune"])
            figures += [f"![tuning the merge]({PLOTS['tune']})", ""]
    lines += [
        *health_section(results),
        "## Plots",
        "",
        *figures,
        "## What this study does not show",
        "",
        *NOT_SHOWN,
        "",
        "## Published figures",
        "",
        "The papers publish MMLU, ARC-Easy, ARC-Challenge, CommonsenseQA and SQuAD scores of 0.5–2.3 B "
        "models (docs/evaluation.md). This study measures held-out bits per byte and a cloze task built "
        "from held-out fortunes: not the same tasks, so no published figure is set beside ours. The "
        "papers' statements appear in the tables as reference figures only.",
        "",
    ]
    path = out / REPORT_FILE
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path
