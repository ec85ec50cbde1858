"""Draw a :class:`~broker.trust_series.Series`: ``enlace trust plot``'s picture (matplotlib).

matplotlib is the ``plot`` extra (``pip install 'enlace[plot]'``), imported only when a plot is
drawn; the figure is built with the object-oriented API on the Agg canvas, never pyplot, so no
GUI backend and no global figure state are involved. The top panel is the score with the
classification thresholds (a band per classification reached), incidents and missing receipts
on the line; the strip below has one row of ticks per kind of marked evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from broker.evidence import EvidenceClass
from broker.trust_series import Mark, Series
from enlace.core.errors import ConfigError, EnvironmentProblem
from schemas.vocab import Classification

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_PX, HEIGHT_PX, DPI = 1000, 450, 100
INSTALL_HINT = "pip install 'enlace[plot]'"

COLOURS = {
    Classification.SECRET: "#c0392b",
    Classification.CONFIDENTIAL: "#2962b0",
    Classification.RESTRICTED: "#b58900",
    Classification.UNCLASSIFIED: "#2e8b57",
}
# The strip's rows, top to bottom: (class, label, colour).
ROWS: tuple[tuple[EvidenceClass, str, str], ...] = (
    (EvidenceClass.INCIDENT_LEAK, "leak", "#c0392b"),
    (EvidenceClass.INCIDENT_CORRUPTION, "corruption", "#8e1b10"),
    (EvidenceClass.INCIDENT_MISHANDLING, "mishandling", "#e67e22"),
    (EvidenceClass.RECEIPT_MISSING, "receipt missing", "#222222"),
    (EvidenceClass.RECEIPT_LATE, "receipt late", "#7f8c8d"),
    (EvidenceClass.FEEDBACK_ACTIONED, "actioned", "#1e8449"),
    (EvidenceClass.FEEDBACK_USEFUL, "useful", "#58d68d"),
    (EvidenceClass.FEEDBACK_NOT_USEFUL, "not useful", "#b2babb"),
)
_INCIDENTS = frozenset(
    {
        EvidenceClass.INCIDENT_LEAK,
        EvidenceClass.INCIDENT_CORRUPTION,
        EvidenceClass.INCIDENT_MISHANDLING,
    }
)


def image_format(out: Path) -> Literal["png", "svg"]:
    """PNG, or SVG when ``out`` ends in .svg; any other suffix is refused (not mislabelled)."""
    suffix = out.suffix.lower()
    if suffix == ".svg":
        return "svg"
    if suffix == ".png":
        return "png"
    raise ConfigError(f"{out}: the plot is written as .png or .svg, not {suffix or 'no suffix'!r}")


def render(
    series: Series,
    out: Path,
    *,
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
    dpi: int = DPI,
) -> Path:
    """Draw ``series`` into ``out`` (``width_px`` x ``height_px`` for a PNG); returns ``out``."""
    fmt = image_format(out)
    try:
        # Imported here: matplotlib is an optional extra, needed only to draw.
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as exc:
        raise EnvironmentProblem(
            f"enlace trust plot needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    score_ax, strip_ax = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1.0]}
    )
    _score_panel(score_ax, series)
    _strip_panel(strip_ax, series)
    _time_axis(strip_ax, series)
    figure.suptitle(f"{series.originator} → {series.partner}", fontsize=13, fontweight="bold")
    out.parent.mkdir(parents=True, exist_ok=True)
    # No creation date in an SVG, so the same history draws the same file.
    metadata = {"Date": None} if fmt == "svg" else {}
    figure.savefig(out, format=fmt, dpi=dpi, metadata=metadata)
    return out


def _score_panel(ax: Axes, series: Series) -> None:
    times = [_num(s.at) for s in series.samples]
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(_num(series.since), _num(series.until))
    bounds = [t for _, t in series.thresholds] + [1.0]
    for (classification, low), high in zip(series.thresholds, bounds[1:], strict=True):
        colour = COLOURS.get(classification, "#888888")
        ax.axhspan(low, high, color=colour, alpha=0.06, linewidth=0)
        if low > 0.0:
            ax.axhline(low, color=colour, linestyle="--", linewidth=0.9)
        ax.text(
            1.005,
            (low + min(high, 1.0)) / 2,
            f"{classification.value}\n≥ {low:.2f}",
            transform=ax.get_yaxis_transform(),
            color=colour,
            fontsize=8,
            va="center",
            ha="left",
        )
    ax.plot(times, [s.score for s in series.samples], color="#1b2631", linewidth=1.5, label="score")
    incidents = [m for m in series.marks if m.cls in _INCIDENTS]
    missing = [m for m in series.marks if m.cls is EvidenceClass.RECEIPT_MISSING]
    if incidents:
        _points(ax, incidents, marker="X", size=90, colour="#c0392b", label="incident")
        for mark in incidents:
            ax.annotate(
                f"{mark.cls.value.removeprefix('incident_')} {mark.at:%d %b}",
                (_num(mark.at), mark.score),
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=8,
                color="#c0392b",
            )
    if missing:
        _points(ax, missing, marker="v", size=22, colour="#222222", label="receipt missing")
    ax.set_ylabel("score")
    ax.grid(visible=True, axis="x", alpha=0.25)
    ax.legend(loc="lower left", fontsize=8, frameon=False)


def _strip_panel(ax: Axes, series: Series) -> None:
    rows = [row for row in ROWS if any(m.cls is row[0] for m in series.marks)]
    for y, (cls, _, colour) in enumerate(reversed(rows)):
        at = [_num(m.at) for m in series.marks if m.cls is cls]
        ax.vlines(at, y - 0.35, y + 0.35, color=colour, linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for _, label, _ in reversed(rows)], fontsize=7)
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax.tick_params(axis="y", length=0)
    ax.grid(visible=True, axis="x", alpha=0.25)
    if not rows:
        ax.text(0.5, 0.5, "no marked evidence", transform=ax.transAxes, ha="center", va="center")


def _time_axis(ax: Axes, series: Series) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: PLC0415 - optional extra

    # matplotlib.dates has no annotations (matplotlib 3.11 types the rest of the API).
    locator = AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    ax.set_xlabel(f"UTC ({series.since:%Y-%m-%d %H:%M} to {series.until:%Y-%m-%d %H:%M})")


def _points(
    ax: Axes, marks: Sequence[Mark], *, marker: str, size: float, colour: str, label: str
) -> None:
    ax.scatter(
        [_num(m.at) for m in marks],
        [m.score for m in marks],
        marker=marker,
        s=size,
        color=colour,
        label=label,
        zorder=3,
    )


def _num(at: datetime) -> float:
    from matplotlib.dates import date2num  # noqa: PLC0415 - optional extra

    return float(date2num(at))  # type: ignore[no-untyped-call]  # matplotlib.dates: untyped
