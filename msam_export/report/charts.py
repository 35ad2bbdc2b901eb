"""Small inline SVG charts (no plotting library): agreement and drops per modality, agreement per
slice along z, and per-stage latency. Each function returns one ``<svg>`` element as a string;
bars carry a ``<title>`` (the browser's own tooltip) with the exact value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

AGREEMENT_SERIES = (
    ("agreement_dsc", "agreement", "#1b7837"),
    ("teacher_forced_agreement_dsc", "teacher-forced", "#7fbf7b"),
)
DROP_SERIES = (("dsc_drop", "DSC drop", "#e08214"), ("nsd_drop", "NSD drop", "#8073ac"))
STAGES = (("pre_ms", "pre", "#9ecae1"), ("encoder_ms", "encoder", "#3182bd"), ("decoder_ms", "decoder", "#fd8d3c"))
STAGES += (("post_ms", "post", "#bdbdbd"),)
LABEL_W, PLOT_W, BAR_H, GAP = 96, 220, 9, 8
FONT = 'font-family="sans-serif" font-size="11"'


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (None, NaN, strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(text)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "") -> str:
    tip = f"<title>{escape(title)}</title>" if title else ""
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.0):.1f}" height="{h:.1f}" fill="{fill}">{tip}</rect>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dash: bool = False) -> str:
    style = ' stroke-dasharray="4 3"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{style}/>'


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>"
    )


def agreement_floor(values: Sequence[float | None], also: Sequence[float | None] = ()) -> float:
    """The axis start for agreement values near 1: below the smallest by a quarter of its gap to 1
    (at least 0.005), on a 0.01 step, in [0, 0.99]; so the worst value still shows as a bar."""
    found = [v for v in (*values, *also) if v is not None]
    low = min(found, default=1.0)
    return min(0.99, max(0.0, math.floor((low - max(0.005, (1.0 - low) / 4)) * 100) / 100))


def _panel(
    x0: float,
    title: str,
    groups: list[tuple[str, dict[str, Any]]],
    series: Sequence[tuple[str, str, str]],
    span: tuple[float, float],
    marks: Sequence[tuple[float, str]],
) -> tuple[list[str], float]:
    """Horizontal bars of ``series`` per group from max(lo, 0) on an axis ``span``; dashed
    lines at ``marks`` (the limits). Returns the elements and the panel's height."""
    lo, hi = span
    scale = PLOT_W / (hi - lo)

    def x_of(value: float) -> float:  # clamped to the axis
        return x0 + LABEL_W + (min(max(value, lo), hi) - lo) * scale

    base = x_of(max(lo, 0.0))
    body, y = [_text(x0, 14, title, extra='font-weight="bold"')], 26.0
    for name, values in groups:
        body.append(_text(x0 + LABEL_W - 6, y + BAR_H * len(series) / 2 + 4, name, anchor="end"))
        for key, label, colour in series:
            value = finite(values.get(key))
            if value is None:
                body.append(_text(base + 3, y + BAR_H - 1, "-"))
            else:
                left, right = sorted((base, x_of(value)))
                body.append(_rect(left, y, max(right - left, 1.0), BAR_H - 1, colour, f"{name} {label}: {value:.6f}"))
            y += BAR_H
        y += GAP
    axis = y + 2
    body.append(_line(x0 + LABEL_W, axis, x0 + LABEL_W + PLOT_W, axis, "#444"))
    for tick in (lo, (lo + hi) / 2, hi):
        body.append(_text(x_of(tick), axis + 13, f"{tick:.3g}", anchor="middle"))
    for value, label in marks:
        body.append(_line(x_of(value), 20, x_of(value), axis, "#c00", dash=True))
        body.append(_text(x_of(value), axis + 26, label, anchor="middle", extra='fill="#c00"'))
    return body, axis + 30


def _legend(x: float, y: float, series: Sequence[tuple[str, str, str]]) -> list[str]:
    body = []
    for _, label, colour in series:
        body += [_rect(x, y - 9, 10, 10, colour), _text(x + 14, y, label)]
        x += 24 + 7 * len(label)
    return body


def modality_chart(by_modality: dict[str, dict[str, Any]], thresholds: dict[str, Any]) -> str:
    """Two panels per modality: agreement (and teacher-forced) DSC, and the DSC/NSD drops versus
    ground truth (reference - candidate; positive = the candidate is worse), with the limits."""
    groups = sorted(by_modality.items())
    if not groups:
        return ""
    agreement = [finite(s.get(k)) for _, s in groups for k, _, _ in AGREEMENT_SERIES]
    limit = finite(thresholds.get("min_agreement"))
    lo = agreement_floor(agreement, [limit])
    left, h1 = _panel(0, "agreement DSC", groups, AGREEMENT_SERIES, (lo, 1.0), [(limit, "limit")] if limit else [])
    drops = [abs(v) for _, s in groups for k, _, _ in DROP_SERIES if (v := finite(s.get(k))) is not None]
    limits = [v for k in ("max_dsc_drop", "max_nsd_drop") if (v := finite(thresholds.get(k))) is not None]
    reach = max([*drops, *limits, 1e-4]) * 1.15
    marks = [(v, "limit") for v in sorted(set(limits))]
    x1 = LABEL_W + PLOT_W + 40
    right, h2 = _panel(x1, "drop vs ground truth", groups, DROP_SERIES, (-reach, reach), marks)
    height = max(h1, h2) + 8
    legend = _legend(LABEL_W, height, AGREEMENT_SERIES) + _legend(x1 + LABEL_W, height, DROP_SERIES)
    return _svg(2 * (LABEL_W + PLOT_W) + 60, height + 8, left + right + legend, "agreement and drops per modality")


def slice_chart(values: Sequence[Any], chosen: int | None, width: float = 320, height: float = 90) -> str:
    """Agreement DSC per slice along z as bars from the axis floor; the slice shown is outlined in red."""
    if not values:
        return ""
    per_slice = [finite(v) for v in values]
    lo = agreement_floor(per_slice)
    left, top, plot_w, plot_h = 34.0, 8.0, width - 42, height - 30
    step = plot_w / len(per_slice)
    body = [_line(left, top + plot_h, left + plot_w, top + plot_h, "#444")]
    body += [_text(left - 4, top + 8, "1", anchor="end"), _text(left - 4, top + plot_h, f"{lo:.2f}", anchor="end")]
    for z, value in enumerate(per_slice):
        x = left + z * step
        if value is None:
            body.append(_text(x + step / 2, top + plot_h - 2, "-", anchor="middle"))
            continue
        bar = (value - lo) / (1.0 - lo) * plot_h
        colour = "#1b7837" if value >= 1.0 else "#74add1" if value >= 0.99 else "#f46d43"
        body.append(_rect(x + 0.5, top + plot_h - bar, max(step - 1, 1.0), bar, colour, f"z={z}: {value:.6f}"))
        if z == chosen:
            body.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{step:.1f}" height="{plot_h:.1f}" '
                'fill="none" stroke="#c00" stroke-width="2"/>'
            )
    body.append(_text(left, height - 6, "z = 0"))
    body.append(_text(left + plot_w, height - 6, f"z = {len(per_slice) - 1}", anchor="end"))
    body.append(_text(left + plot_w / 2, height - 6, "agreement per slice", anchor="middle"))
    return _svg(width, height, body, "agreement per slice along z")


def stage_totals(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    """Per-stage milliseconds summed over the cases' ``latency[key]`` ("stages_ms" or "reference_stages_ms")."""
    totals = {stage: 0.0 for stage, _, _ in STAGES}
    for row in rows:
        stages = (row.get("latency") or {}).get(key) or {}
        for stage in totals:
            totals[stage] += finite(stages.get(stage)) or 0.0
    return totals


def stage_chart(bars: Sequence[tuple[str, dict[str, float]]]) -> str:
    """Stacked horizontal bars of per-stage milliseconds, one bar per (name, totals)."""
    if not bars:
        return ""
    longest = max((sum(t.values()) for _, t in bars), default=0.0) or 1.0
    width, plot_w = 2 * (LABEL_W + PLOT_W) + 60, 2 * PLOT_W + 60  # leaves room for the total's label
    body, y = [], 8.0
    for name, totals in bars:
        body.append(_text(LABEL_W + 34, y + 12, name, anchor="end"))
        x = LABEL_W + 40
        for stage, label, colour in STAGES:
            w = totals.get(stage, 0.0) / longest * plot_w
            body.append(_rect(x, y, w, 16, colour, f"{name} {label}: {totals.get(stage, 0.0):.1f} ms"))
            x += w
        body.append(_text(x + 6, y + 12, f"{sum(totals.values()):.1f} ms"))
        y += 24
    body += _legend(LABEL_W + 40, y + 12, STAGES)
    return _svg(width, y + 20, body, "milliseconds per stage, summed over the cases")
