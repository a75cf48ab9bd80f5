"""PNG figures of the run report: the loss curve with its growth steps, metrics against depth,
and the grown model beside its baselines. Rendered off-screen (matplotlib's Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgt.io import atomic_file


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


def plot_panels(panels: Sequence[Panel], path: str | os.PathLike, *, columns: int = 2, title: str = "",
                panel_size: tuple[float, float] = (5.2, 3.6)) -> None:
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
            ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                        va="top", ha="right", color="grey")
        if panel.log_y:
            ax.set_yscale("log")
        if panel.integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        if any(series.label for series in panel.series):
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_bars(groups: Sequence[str], bars: dict[str, list[float]], path: str | os.PathLike, *,
              ylabel: str, title: str) -> None:
    """Grouped bar chart: one group per metric (`groups`), one bar per model (`bars`; NaN = no bar)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * max(1, len(bars)) / 2), 3.8))
    width = 0.8 / max(1, len(bars))
    for index, (label, values) in enumerate(bars.items()):
        xs = [g + (index - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=label)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)
