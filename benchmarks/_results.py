"""Result rows: a median with its min-max over runs, the ratio, the target and whether it is met."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

CLIENTS = ("dingsync", "official", "raw")


@dataclass
class Summary:
    """Median and range of one figure over several runs."""

    values: List[float]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def to_dict(self) -> Dict[str, Any]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "values": self.values}


def summarize(values: Sequence[Optional[float]]) -> Optional[Summary]:
    kept = [float(v) for v in values if v is not None]
    return Summary(kept) if kept else None


def fmt_number(value: float, unit: str) -> str:
    """A value as shown in the table (the unit is in the row's label, not here)."""
    if value == float("inf"):
        return "never"
    if unit in ("s", "ms", "MiB") and abs(value) < 100:
        return f"{value:.2f}" if unit == "s" else f"{value:.1f}"
    if unit == "":
        return f"{value:g}"
    if unit == "/s" and abs(value) < 100:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def fmt_summary(summary: Optional[Summary], unit: str) -> str:
    if summary is None:
        return "—"
    text = fmt_number(summary.median, unit)
    lo, hi = fmt_number(summary.lo, unit), fmt_number(summary.hi, unit)
    if lo != hi:
        text += f" ({lo}–{hi})"
    return text


@dataclass
class Row:
    """One line of the results table.

    ``check`` decides whether the target is met from the dingsync and official medians; it may
    return None when the figure could not be measured. When the runs are paired (``ratios``), it
    gets ``(median ratio, 1.0)`` instead, so the verdict matches the ratio the table prints.
    """

    figure: str
    metric: str
    unit: str
    dingsync: Optional[Summary] = None
    official: Optional[Summary] = None
    target: str = ""
    # (dingsync median, official median or None) -> met?; a TypeError (missing figure) = unknown
    check: Optional[Callable[[Any, Any], Any]] = None
    note: str = ""
    ratios: Optional[List[float]] = None  # per-run dingsync/official, when runs are paired
    show_ratio: bool = True  # False where dingsync/official means nothing (counts, zeros)
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> Optional[float]:
        """dingsync / official: the median of the per-run ratios if given, else of the medians."""
        if not self.show_ratio:
            return None
        if self.ratios:
            return float(statistics.median(self.ratios))
        if self.dingsync is None or self.official is None or self.official.median == 0:
            return None
        return self.dingsync.median / self.official.median

    @property
    def met(self) -> Optional[bool]:
        if self.check is None or self.dingsync is None:
            return None  # every target is about dingsync
        d = self.dingsync.median if self.dingsync else None
        o = self.official.median if self.official else None
        if self.ratios:
            d, o = float(statistics.median(self.ratios)), 1.0
        try:
            return bool(self.check(d, o))
        except TypeError:  # a missing figure
            return None

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("check", None)
        out["dingsync"] = self.dingsync.to_dict() if self.dingsync else None
        out["official"] = self.official.to_dict() if self.official else None
        out["ratio"] = self.ratio
        out["met"] = self.met
        return out


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| # | Figure | dingsync | official SDK | ratio | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.ratio is None:
            ratio = "—"
        elif row.ratio < 0.01:
            ratio = "< 0.01×"
        else:
            ratio = f"{row.ratio:.3g}×"
        met = {True: "✅", False: "❌", None: "—"}[row.met]
        label = f"{row.metric} ({row.unit})" if row.unit not in ("", "%") else row.metric
        lines.append(
            f"| {row.figure} | {label} | {fmt_summary(row.dingsync, row.unit)} | "
            f"{fmt_summary(row.official, row.unit)} | {ratio} | {row.target} | {met} | {row.note} |"
        )
    return "\n".join(lines)
