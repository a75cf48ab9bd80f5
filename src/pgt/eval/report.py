"""`pgt report RUN_DIR`: one Markdown page with PNG plots that tells the story of a growth run.

Per stage: parameters (total, trainable), total training tokens, validation loss, bits per
byte and every evaluated task (`stage-K/eval/*.json`), in a table and plotted against depth;
the baselines and merged experts beside the grown model, each row with its training tokens
and the data its losses were scored on (a row of another budget is flagged); the loss curve
with its growth steps (growth.metrics.plot_loss, the same figure as the run's loss.png); and
the papers' published figures (docs/evaluation.md) beside ours where the task is the same.
Missing pieces are noted in the page, not treated as errors.

One job per module: report_discovery gathers, plots draws, report_markdown writes the page,
this module writes the files and holds the command line.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError
from pgt.eval import published as pub
from pgt.eval.plots import plot_comparison, plot_depth
from pgt.eval.report_discovery import RunReport, collect, growth_steps, stage_dirs
from pgt.eval.report_markdown import render_markdown
from pgt.growth.metrics import EvalPoint, TrainPoint, plot_loss
from pgt.io import atomic_file, make_dirs, refuse_existing_file
from pgt.settings import setting, settings_from

__all__ = ["EXAMPLES", "ReportSettings", "collect", "growth_steps", "run_report", "stage_dirs", "write_report"]

EXAMPLES = (
    "pgt report runs/demo/run                              # writes runs/demo/run/report.md + PNGs",
    "pgt report runs/grow --out reports/grow.md",
    "pgt report runs/grow --overwrite                      # rewrite runs/grow/report.md after more stages",
    "pgt report runs/grow --baseline runs/mono --merged runs/merged/en-ru+en-de",
)


def plot_loss_curve(report: RunReport, path: Path) -> bool:
    """The run's own loss figure (train and validation loss, growth steps marked); False without metrics."""
    if not any(isinstance(e, TrainPoint | EvalPoint) for e in report.events):
        return False
    plot_loss(report.run_dir, path)
    return True


PAGE_MARKER = "<!-- written by pgt report; `pgt report --overwrite` replaces it -->"
PLOTTERS = {
    "loss": ("loss-curve", plot_loss_curve),
    "depth": ("depth", plot_depth),
    "comparison": ("comparison", plot_comparison),
}


def is_report_page(path: Path) -> bool:
    """Whether `path` is a page `pgt report` wrote (its first line is PAGE_MARKER)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().rstrip("\n") == PAGE_MARKER


def write_report(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    baselines: tuple[str | os.PathLike, ...] = (),
    merged: tuple[str | os.PathLike, ...] = (),
    published: pub.PublishedFigures | None = None,
) -> Path:
    """Write the report page (default RUN_DIR/report.md) and its PNGs beside it; return the page's path.

    An existing page, or a file where a PNG goes, is refused; `overwrite` replaces only a page pgt
    wrote and the PNGs beside it. Each file is written atomically; the plots come first so the page
    never links a missing one.
    """
    out = Path(out) if out is not None else Path(run_dir) / "report.md"
    if out.suffix.lower() != ".md":
        raise PgtError(f"report output must be a Markdown file ending in .md, got {out}")
    refuse_existing_file(out, overwrite=overwrite, what="report page", ours=is_report_page)
    ours = os.path.lexists(out)  # and checked: the PNGs beside a page pgt wrote are its own
    pngs = {role: out.with_name(f"{out.stem}-{suffix}.png") for role, (suffix, _) in PLOTTERS.items()}
    for png in pngs.values():
        refuse_existing_file(png, overwrite=overwrite, what="report figure", ours=lambda _: ours)
    report = collect(run_dir, baselines=baselines, merged=merged, published=published)
    make_dirs(out.parent)
    plots = {}
    for role, (_, plotter) in PLOTTERS.items():
        png = pngs[role]
        if plotter(report, png):
            plots[role] = png.name
        else:
            png.unlink(missing_ok=True)  # a stale plot from an earlier report would mislead
    with atomic_file(out, "w", encoding="utf-8") as handle:
        handle.write(f"{PAGE_MARKER}\n{render_markdown(report, plots)}")
    return out


# ---------------------------------------------------------------- command line (via pgt.eval.cli)


@dataclass
class ReportSettings:
    """`pgt report`."""

    run_dir: str = setting(
        help="growth run directory (from `pgt grow --out`)", positional=True, required=True, metavar="RUN_DIR"
    )
    out: str | None = setting(
        None, "Markdown page to write (default RUN_DIR/report.md); its PNGs go beside it", metavar="FILE.md"
    )
    overwrite: bool = setting(
        False, "replace an existing page that pgt report wrote (and its PNGs); never another file", switch=True
    )
    baseline: list[str] | None = setting(
        None, "extra baseline run or model directory (RUN_DIR/baselines/* are found on their own)", metavar="DIR"
    )
    merged: list[str] | None = setting(
        None, "extra merged-expert model directory (RUN_DIR/merged/* are found on their own)", metavar="DIR"
    )
    published: str | None = setting(
        None,
        "the reference's published-benchmarks.txt (default: the figures embedded in pgt, listed in docs/evaluation.md)",
        metavar="FILE",
    )


def run_report(args: argparse.Namespace) -> int:
    """Handler of `pgt report`."""
    settings = settings_from(ReportSettings, args)
    figures = pub.load_published(settings.published) if settings.published else None
    page = write_report(
        settings.run_dir,
        settings.out,
        overwrite=settings.overwrite,
        baselines=tuple(settings.baseline or ()),
        merged=tuple(settings.merged or ()),
        published=figures,
    )
    print(f"report: {page}")
    return 0
