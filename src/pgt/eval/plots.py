"""PNG figures of the reports: generic panels and bars, and `pgt report`'s metrics against depth and
the grown model beside its baselines (the loss curve is growth.metrics.plot_loss's). Rendered
off-screen (matplotlib's Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgt.eval import published as pub
from pgt.eval.report_discovery import LOSS_METRICS, RunReport
from pgt.io import atomic_file

# One colour per model in every panel: the grown model first, then the others in page order.
PALETTE = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "black",
)


@dataclass
class Series:
    """A named line of (x, y) points with optional error half-widths."""

    label: str
    x: list[float]
    y: list[float]
    err: list[float] | None = None
    style: dict = field(default_factory=dict)


@dataclass
class Panel:
    """One subplot: its title, axis labels and lines."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    log_y: bool = False
    integer_x: bool = False  # depth axes: whole blocks only
    markers_x: list[tuple[float, str]] = field(default_factory=list)  # vertical lines with labels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike) -> None:
    """Write `figure` as PNG atomically and release it."""
    plt = _pyplot()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def plot_panels(
    panels: Sequence[Panel],
    path: str | os.PathLike,
    *,
    columns: int = 2,
    title: str = "",
    panel_size: tuple[float, float] = (5.2, 3.6),
) -> None:
    """Draw `panels` in a grid and save the PNG to `path`."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    width, height = panel_size
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for series in panel.series:
            if series.err is not None:
                ax.errorbar(series.x, series.y, yerr=series.err, label=series.label, capsize=3, **series.style)
            else:
                ax.plot(series.x, series.y, label=series.label, **series.style)
        for x, label in panel.markers_x:
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
            ax.annotate(
                label,
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
                color="grey",
            )
        if panel.log_y:
            ax.set_yscale("log")
        if panel.integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        if sum(bool(series.label) for series in panel.series) > 6:  # many lines: the legend beside, not over them
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        elif any(series.label for series in panel.series):
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_bars(
    groups: Sequence[str], bars: dict[str, list[float]], path: str | os.PathLike, *, ylabel: str, title: str
) -> None:
    """Grouped bar chart: one group per metric (`groups`), one bar per model (`bars`; NaN = no bar)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * max(1, len(bars)) / 2), 3.8))
    width = 0.8 / max(1, len(bars))
    for index, (label, values) in enumerate(bars.items()):
        xs = [g + (index - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=label)
    ax.set_xticks(range(len(groups)), groups)
    values = [v for vs in bars.values() for v in vs if math.isfinite(v)]
    if values:  # zoomed to the data: bars from 0 would hide 4.39 against 4.29
        low, high = min(values), max(values)
        margin = 0.15 * (high - low) or 0.05 * abs(high) or 1.0
        ax.set_ylim(low - margin, high + margin)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


# ---------------------------------------------------------------- `pgt report`'s figures


def plot_depth(report: RunReport, path: Path) -> bool:
    """Loss, bits/byte, parameters and every task against depth; baselines as single points."""
    stages = [e for e in report.stages if e.blocks is not None]
    if not stages:
        return False
    depth = [float(e.blocks) for e in stages]

    def line(label: str, values: list[float | None], errors: list[float | None] | None = None) -> Series:
        errors = errors or [None] * len(values)
        points = [(x, v, e) for x, v, e in zip(depth, values, errors, strict=True) if v is not None]
        err = [e or 0.0 for _, _, e in points] if any(e for _, _, e in points) else None
        return Series(
            label, [p[0] for p in points], [p[1] for p in points], err=err, style={"marker": "o", "color": PALETTE[0]}
        )

    def others(getter) -> list[Series]:
        points = [(e, v) for e in report.others if e.blocks is not None and (v := getter(e)) is not None]
        return [
            Series(
                e.name,
                [float(e.blocks)],
                [v],
                style={"marker": "s", "linestyle": "none", "color": PALETTE[1 + report.others.index(e) % 9]},
            )
            for e, v in points
        ]

    panels = []
    for key, label in LOSS_METRICS:
        values = [e.metric(key) for e in stages]
        if any(v is not None for v in values):
            panels.append(
                Panel(
                    label,
                    "blocks",
                    label,
                    [line("grown", values), *others(lambda e, k=key: e.metric(k))],
                    integer_x=True,
                )
            )
    params = [
        line(label, [e.field(key) for e in stages])
        for key, label in (("params_total", "total"), ("params_trainable", "trainable"))
    ]
    params[1].style.update(color=PALETTE[1], linestyle="--")  # two quantities: two colours
    if any(series.y for series in params):
        panels.append(Panel("parameters", "blocks", "parameters", params, log_y=True, integer_x=True))
    for task in report.tasks:
        scores = [e.task_score(task) for e in stages]
        series = [line("grown", [s[0] if s else None for s in scores], [s[1] if s else None for s in scores])]
        reference = pub.published_task(task)
        if reference:
            ref_points = [
                (x, score.mean)
                for x in depth
                if (model := pub.growth_counterpart(int(x))) and (score := report.published.score(model, reference))
            ]
            if ref_points:
                series.append(
                    Series(
                        f"published abs-bvv ({reference})",
                        [p[0] for p in ref_points],
                        [p[1] for p in ref_points],
                        style={"linestyle": "--", "marker": "x", "color": "grey"},
                    )
                )
        series += others(lambda e, t=task: s[0] if (s := e.task_score(t)) else None)
        panels.append(Panel(report.task_label(task), "blocks", report.task_unit(task), series, integer_x=True))
    if not panels:
        return False
    plot_panels(panels, path, columns=2, title="Metrics against depth")
    return True


def plot_comparison(report: RunReport, path: Path) -> bool:
    """Validation loss and bits/byte of the deepest stage beside every baseline and merged expert."""
    if not report.others or not report.stages:
        return False
    entries = [report.stages[-1], *report.others]
    groups = [label for key, label in LOSS_METRICS if any(e.metric(key) is not None for e in entries)]
    if not groups:
        return False
    keys = [key for key, label in LOSS_METRICS if label in groups]
    bars = {e.name: [v if (v := e.metric(k)) is not None else math.nan for k in keys] for e in entries}
    plot_bars(groups, bars, path, ylabel="lower is better", title="Grown model against baselines and merged experts")
    return True
