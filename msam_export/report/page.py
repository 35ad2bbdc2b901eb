"""The verify report page ("see the drift"): one self-contained HTML file per verify run, and a
side-by-side page of several runs on the same data.

``PageBuilder`` collects the slices of each verified case as ``verify`` runs (see
``overlay`` for what is kept and the exact colours), then writes ``<stem>.html`` and
``<stem>.slices.npz`` beside the verify.json. ``report`` draws the page again from saved runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from ..errors import MsamError
from ..files import PathLike, atomic_file
from .charts import finite, modality_chart, slice_chart, stage_chart, stage_totals
from .html import cell, document, fmt, kv_table, table, verdict_badge
from .overlay import (
    AGREE_TINT,
    CAND_ONLY,
    GT_CONTOUR,
    LABEL_SWAP,
    MAX_SIDE,
    REF_ONLY,
    CaseSlices,
    case_slices,
    data_uri,
    disagreement,
    draw_overlay,
    png_bytes,
)
from .store import html_path, load_run, save_slices, slices_path

# (summary key, column title, decimals) of the per-group tables
SUMMARY_COLUMNS = (
    ("cases", "cases", 0),
    ("boxes", "boxes", 0),
    ("agreement_dsc", "agreement", 5),
    ("agreement_dsc_min", "agreement min", 5),
    ("teacher_forced_agreement_dsc", "teacher-forced", 5),
    ("reference_dsc", "ref DSC", 4),
    ("candidate_dsc", "cand DSC", 4),
    ("dsc_drop", "DSC drop", 4),
    ("reference_nsd", "ref NSD", 4),
    ("candidate_nsd", "cand NSD", 4),
    ("nsd_drop", "NSD drop", 4),
    ("reference_challenge_dsc", "ref chall. DSC", 4),
    ("candidate_challenge_dsc", "cand chall. DSC", 4),
    ("reference_challenge_nsd", "ref chall. NSD", 4),
    ("candidate_challenge_nsd", "cand chall. NSD", 4),
    ("encoder_ms_median", "encoder ms", 1),
    ("wall_ms_median", "wall ms", 1),
    ("reference_wall_ms_median", "ref wall ms", 1),
)
SCORE_ROWS = (("dsc", "DSC"), ("nsd", "NSD"), ("challenge_dsc", "challenge DSC"), ("challenge_nsd", "challenge NSD"))
STAGE_KEYS = ("pre_ms", "encoder_ms", "decoder_ms", "post_ms")
LEGEND = (
    (REF_ONLY, "reference only"),
    (CAND_ONLY, "candidate only"),
    (LABEL_SWAP, "both, labels differ"),
    (AGREE_TINT, "both agree (tinted)"),
    (GT_CONTOUR, "ground-truth contour"),
)
MAX_LABEL_ROWS = 12  # per-label agreement rows shown per case, worst first
DISPLAY_SIDE = 320  # small slices are shown enlarged (pixelated) to about this size


# ----------------------------------------------------------------------------- pieces


def _is_bad(key: str, value: Any, thresholds: dict[str, Any]) -> bool:
    """Whether a summary value breaks its limit (agreement below, drops above)."""
    value = finite(value)
    limits = {"agreement_dsc": "min_agreement", "dsc_drop": "max_dsc_drop", "nsd_drop": "max_nsd_drop"}
    limit = finite(thresholds.get(limits.get(key, ""))) if key in limits else None
    if value is None or limit is None:
        return False
    return value < limit if key == "agreement_dsc" else value > limit


def summary_table(groups: Sequence[tuple[str, dict[str, Any]]], thresholds: dict[str, Any], first: str) -> str:
    """One row per (name, summary) with ``SUMMARY_COLUMNS``; cells breaking a limit are marked."""
    rows = []
    for name, summary in groups:
        cells = [cell(escape(name))]
        cells += [cell(fmt(summary.get(k), d), _is_bad(k, summary.get(k), thresholds)) for k, _, d in SUMMARY_COLUMNS]
        rows.append(cells)
    return table([first, *(title for _, title, _ in SUMMARY_COLUMNS)], rows)


def _ok_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("cases") or [] if isinstance(r, dict) and "error" not in r]


def ordered_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst first: failed cases, then by agreement DSC ascending (a missing/NaN agreement counts as worst)."""

    def key(row: dict[str, Any]) -> tuple[int, float, str]:
        agreement = finite(row.get("agreement_dsc"))
        return (0 if "error" in row else 1, -math.inf if agreement is None else agreement, str(row.get("case")))

    return sorted(rows, key=key)


def legend() -> str:
    """The overlay colours, as swatches with their exact RGB."""
    spans = [
        f'<span><i class="swatch" style="background:rgb{colour}"></i>{escape(label)} {colour}</span>'
        for colour, label in LEGEND
    ]
    rule = (
        f"Disagreement pixels are drawn opaque in exactly these colours; slices longer than {MAX_SIDE} px "
        f"are shown at every f-th pixel (f = ceil(longest side / {MAX_SIDE}))."
    )
    return f'<div class="legend">{"".join(spans)}</div><p class="note">{escape(rule)}</p>'


def overlay_img(slices: CaseSlices, candidate: int | None = None) -> str:
    """The ``<img class="overlay">`` of a case (its PNG as a data: URI), with data attributes for tests."""
    h, w = slices.reference.shape
    k = max(1, round(DISPLAY_SIDE / max(h, w)))
    attrs = f'class="overlay" data-case="{escape(slices.name)}" data-scale="{slices.scale}"'
    attrs += f' data-slice="{"" if slices.z is None else slices.z}"'
    if candidate is not None:
        attrs += f' data-candidate="{candidate}"'
    alt = escape(f"{slices.name}: reference vs candidate")
    src = data_uri(png_bytes(draw_overlay(slices)))
    return f'<img {attrs} width="{w * k}" height="{h * k}" alt="{alt}" src="{src}">'


def _where(slices: CaseSlices) -> str:
    """Which slice, at what scale, and how many pixels of each disagreement colour it shows."""
    z = "" if slices.z is None else f"slice z = {slices.z}; "
    shown = "full resolution" if slices.scale == 1 else f"every {slices.scale}-th row and column"
    masks = disagreement(slices.reference, slices.candidate)
    counts = f"reference only {int(masks['ref_only'].sum())} px, candidate only {int(masks['cand_only'].sum())} px"
    swapped = int(masks["swap"].sum())
    return f"{z}{shown}; {counts}" + (f", labels differ {swapped} px" if swapped else "")


def figure(slices: CaseSlices | None, caption: str, candidate: int | None = None) -> str:
    """The overlay with a caption, or a note when the run saved no slices of the case."""
    if slices is None:
        return f'<figure><p class="note">no image saved</p><figcaption>{escape(caption)}</figcaption></figure>'
    caption = f"{escape(caption)} ({_where(slices)})"
    return f"<figure>{overlay_img(slices, candidate)}<figcaption>{caption}</figcaption></figure>"


def box_table(row: dict[str, Any]) -> str:
    """Agreement DSC per box (label i+1 = box i), worst first, with the reference mask's pixels
    (2D); past ``MAX_LABEL_ROWS`` boxes the rest are summarised (every value is in verify.json)."""
    per_box = [(i + 1, finite(a)) for i, a in enumerate(row.get("agreement_per_box") or [])]
    per_box.sort(key=lambda item: (-math.inf if item[1] is None else item[1], item[0]))
    pixels = row.get("reference_pixels_per_box")
    rows = [[cell(str(k)), cell(fmt(a, 5))] + ([cell(f"{pixels[k - 1]:,}")] if pixels else []) for k, a in per_box]
    shown = table(["label", "agreement"] + (["ref pixels"] if pixels else []), rows[:MAX_LABEL_ROWS])
    if len(per_box) <= MAX_LABEL_ROWS:
        return shown
    values = [a for _, a in per_box if a is not None]
    median = fmt(statistics.median(values), 5) if values else "-"
    return shown + f'<p class="note">{len(per_box)} labels, the worst {MAX_LABEL_ROWS} shown; median {median}</p>'


def worst_label(row: dict[str, Any]) -> str:
    """The lowest per-box agreement as "0.98765 (label 3 of 5)", escaped; "-" without boxes."""
    per_box = [(finite(a), i + 1) for i, a in enumerate(row.get("agreement_per_box") or [])]
    found = [(a, label) for a, label in per_box if a is not None]
    if not found:
        return "-"
    value, label = min(found)
    return f"{fmt(value, 5)} (label {label} of {len(per_box)})"


def score_table(row: dict[str, Any]) -> str:
    """DSC/NSD of reference and candidate against ground truth, and the drop."""
    ref, cand = row.get("reference") or {}, row.get("candidate") or {}
    rows = []
    for key, title in SCORE_ROWS:
        r, c = finite(ref.get(key)), finite(cand.get(key))
        drop = r - c if r is not None and c is not None else None
        rows.append([cell(title), cell(fmt(r)), cell(fmt(c)), cell(fmt(drop))])
    return table(["vs ground truth", "reference", "candidate", "drop"], rows)


def case_meta(row: dict[str, Any]) -> str:
    """Modality, dims, boxes and agreement of a case row, as escaped text ("failed" for a failed case)."""
    if "error" in row:
        return "failed"
    parts = [fmt(row.get("modality")), fmt(row.get("dims")), f"{fmt(row.get('boxes'))} box(es)"]
    parts.append(f"agreement {fmt(row.get('agreement_dsc'), 5)}")
    if row.get("dims") == "3D":
        parts.append(f"teacher-forced {fmt(row.get('teacher_forced_agreement_dsc'), 5)}")
    return " · ".join(parts)


# ----------------------------------------------------------------------------- one run


def header(report: dict[str, Any]) -> str:
    cand = report.get("candidate") or {}
    what = f"{cand.get('weights', '?')} weights, {cand.get('actual_precision', '?')} inference"
    title = f"verify: {cand.get('model', '?')} {cand.get('kind', '?')} ({what})"
    return f"<h1>{escape(title)}</h1>{verdict_badge(report.get('verdict'))}"


def _isa(system: dict[str, Any]) -> str:
    isa = system.get("isa") or {}
    return ", ".join(f"{flag}{'' if on else ' (no)'}" for flag, on in isa.items()) or "-"


def summary_section(report: dict[str, Any]) -> str:
    """What ran, against what, where, and the limits."""
    cand, ref = report.get("candidate") or {}, report.get("reference") or {}
    system, data = report.get("system") or {}, report.get("data") or {}
    arithmetic = report.get("arithmetic") or {}
    keys = ("kind", "backend", "model", "weights", "requested_precision", "actual_precision", "target", "propagation")
    tables = [
        kv_table("candidate", [(k, cand.get(k)) for k in keys] + [("arithmetic exact", arithmetic.get("exact"))]),
        kv_table("reference", [(k, ref.get(k)) for k in keys[:6]]),
        kv_table("thresholds", (report.get("thresholds") or {}).items()),
        kv_table(
            "system",
            [
                ("cpu", system.get("model")),
                ("isa", _isa(system)),
                ("logical / usable cpus", f"{fmt(system.get('logical_cpus'))} / {fmt(system.get('usable_cpus'))}"),
                ("peak RSS MB", system.get("peak_rss_mb")),
                ("int8 arithmetic", f"{fmt(arithmetic.get('cpu'))} (target {fmt(arithmetic.get('target'))})"),
                ("latency", report.get("latency_note")),
            ],
        ),
        kv_table(
            "data",
            [("cases", len(report.get("cases") or [])), ("repeats", report.get("repeats"))]
            + [("ground truth", data.get("gts")), ("fingerprint", str(data.get("fingerprint") or "-")[:16])],
        ),
    ]
    return '<h2>Summary</h2><div class="row">' + "".join(tables) + "</div>"


def group_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """("all", overall), then the dims groups and the modalities."""
    groups = [("all", report.get("overall") or {})]
    groups += [(f"{k} cases", v) for k, v in (report.get("by_dims") or {}).items()]
    return groups + list((report.get("by_modality") or {}).items())


def modality_section(report: dict[str, Any], title: str = "Per modality") -> str:
    thresholds = report.get("thresholds") or {}
    chart = modality_chart(report.get("by_modality") or {}, thresholds)
    return f"<h2>{escape(title)}</h2>{summary_table(group_rows(report), thresholds, 'group')}{chart}"


def size_section(report: dict[str, Any]) -> str:
    """2D agreement by object size (reference mask area) per group; empty without 2D boxes."""
    groups = [(name, s) for name, s in group_rows(report) if s.get("agreement_2d_by_object_size")]
    if not groups:
        return ""
    bands = [b["band"] for b in groups[0][1]["agreement_2d_by_object_size"]]
    rows = []
    for name, summary in groups:
        found = {b["band"]: b for b in summary["agreement_2d_by_object_size"]}
        values = [f"{fmt(found[b]['agreement_dsc'], 4)} ({found[b]['boxes']})" if b in found else "-" for b in bands]
        rows.append([cell(escape(name)), *(cell(v) for v in values)])
    note = (
        '<p class="note">Agreement DSC of the 2D boxes by the area of the reference mask (boxes in brackets). '
        "One boundary pixel is many points of DSC on an object of a few pixels.</p>"
    )
    return f"<h2>2D agreement by object size</h2>{table(['group', *bands], rows)}{note}"


def _stage(row: dict[str, Any], key: str, stage: str) -> Any:
    return ((row.get("latency") or {}).get(key) or {}).get(stage)


def latency_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per case: each stage's ms of reference and candidate, encoder calls and wall times."""
    header_cells = ["case", "encoder calls"]
    header_cells += [f"{s[:-3]} {who} ms" for s in STAGE_KEYS for who in ("ref", "cand")]
    header_cells += ["ref wall ms", "cand wall ms (median)", "cand encoder ms (median / p90)"]
    out = []
    for row in rows:
        latency = row.get("latency") or {}
        cells = [cell(escape(str(row.get("case")))), cell(fmt(latency.get("encoder_calls")))]
        for stage in STAGE_KEYS:
            cells += [
                cell(fmt(_stage(row, "reference_stages_ms", stage), 1)),
                cell(fmt(_stage(row, "stages_ms", stage), 1)),
            ]
        median, p90 = fmt(latency.get("encoder_ms_median"), 1), fmt(latency.get("encoder_ms_p90"), 1)
        cells += [cell(fmt(latency.get("reference_wall_ms"), 1)), cell(fmt(latency.get("wall_ms_median"), 1))]
        out.append([*cells, cell(f"{median} / {p90}")])
    return table(header_cells, out)


def cold_table(cold: dict[str, Any] | None) -> str:
    keys = ("open_ms", "first_encoder_call_ms", "warm_encoder_ms_median", "compile_cache")
    return kv_table("cold start (candidate)", [(k, (cold or {}).get(k)) for k in keys])


def latency_section(report: dict[str, Any]) -> str:
    rows = _ok_rows(report)
    bars = [("reference", stage_totals(rows, "reference_stages_ms")), ("candidate", stage_totals(rows, "stages_ms"))]
    return (
        "<h2>Latency</h2>"
        f'<div class="row">{cold_table(report.get("cold_start"))}<div><h3>per stage, summed over cases</h3>'
        f"{stage_chart(bars)}</div></div>{latency_table(rows)}"
    )


def case_card(row: dict[str, Any], slices: CaseSlices | None) -> str:
    """One case: overlay, per-slice agreement (3D), per-box agreement and DSC/NSD of both."""
    name = str(row.get("case"))
    head = f'<h3>{escape(name)} <span class="meta">{case_meta(row)}</span></h3>'
    if "error" in row:
        return f'<section class="case">{head}<p class="error">{escape(str(row["error"]))}</p></section>'
    side = [slice_chart(row.get("agreement_per_slice") or [], slices.z if slices else row.get("worst_slice"))]
    side += [box_table(row), score_table(row) if "reference" in row else '<p class="note">no ground truth</p>']
    body = figure(slices, "reference vs candidate") + "<div>" + "".join(side) + "</div>"
    return f'<section class="case">{head}<div class="row">{body}</div></section>'


def cases_section(report: dict[str, Any], slices: dict[str, CaseSlices]) -> str:
    rows = [r for r in report.get("cases") or [] if isinstance(r, dict)]
    cards = "".join(case_card(r, slices.get(str(r.get("case")))) for r in ordered_rows(rows))
    return f"<h2>Cases, worst first</h2>{legend()}{cards}"


def render_page(report: dict[str, Any], slices: dict[str, CaseSlices]) -> str:
    """The page of one verify run (``slices``: case name -> what to draw)."""
    sections = [header(report), summary_section(report), modality_section(report), size_section(report)]
    sections.append(latency_section(report))
    sections.append(cases_section(report, slices))
    cand = report.get("candidate") or {}
    return document(f"msam-export verify: {cand.get('model', '')} {cand.get('kind', '')}", sections)


# ----------------------------------------------------------------------------- side by side


def run_label(report: dict[str, Any]) -> str:
    """A candidate's short name: kind, weights and what ran ("openvino fp32/f32")."""
    cand = report.get("candidate") or {}
    return f"{cand.get('kind', '?')} {cand.get('weights', '?')}/{cand.get('actual_precision', '?')}"


def candidates_table(runs: Sequence[tuple[str, dict[str, Any], dict[str, CaseSlices]]]) -> str:
    """One row per candidate: verdict, what ran, overall agreement, drops and latency."""
    header_cells = ["#", "candidate", "file", "verdict", "failures", "arithmetic exact"]
    header_cells += ["agreement", "teacher-forced", "DSC drop", "NSD drop", "encoder ms", "wall ms", "open ms"]
    rows = []
    for k, (source, report, _) in enumerate(runs):
        overall, thresholds = report.get("overall") or {}, report.get("thresholds") or {}
        verdict = report.get("verdict") or {}
        cells = [cell(str(k + 1)), cell(escape(run_label(report))), cell(escape(source))]
        cells += [cell("PASS" if verdict.get("passed") else "FAIL", not verdict.get("passed"))]
        cells += [cell(escape("; ".join(map(str, verdict.get("failures") or []))) or "-")]
        cells += [cell(fmt((report.get("arithmetic") or {}).get("exact")))]
        for key, digits in (
            ("agreement_dsc", 5),
            ("teacher_forced_agreement_dsc", 5),
            ("dsc_drop", 4),
            ("nsd_drop", 4),
        ):
            cells.append(cell(fmt(overall.get(key), digits), _is_bad(key, overall.get(key), thresholds)))
        cells += [cell(fmt(overall.get("encoder_ms_median"), 1)), cell(fmt(overall.get("wall_ms_median"), 1))]
        rows.append([*cells, cell(fmt((report.get("cold_start") or {}).get("open_ms"), 1))])
    return table(header_cells, rows)


def _same_data(reports: Sequence[dict[str, Any]]) -> str:
    prints = {str((r.get("data") or {}).get("fingerprint")) for r in reports}
    if len(prints) == 1:
        return '<p class="note">All runs read the same data (same fingerprint).</p>'
    return '<p class="error">The runs read different data (fingerprints differ): compare with care.</p>'


COMPARISON_COLUMNS = ("candidate", "agreement", "teacher-forced", "worst label", "ref DSC", "ref NSD", "cand DSC")
COMPARISON_COLUMNS += ("cand NSD", "wall ms")


def _comparison_row(label: str, row: dict[str, Any]) -> list[str]:
    """One candidate's numbers for a case (``COMPARISON_COLUMNS``)."""
    ref, cand = row.get("reference") or {}, row.get("candidate") or {}
    cells = [cell(escape(label)), cell(fmt(row.get("agreement_dsc"), 5))]
    cells += [cell(fmt(row.get("teacher_forced_agreement_dsc"), 5)), cell(worst_label(row))]
    cells += [cell(fmt(ref.get(m))) for m in ("dsc", "nsd")] + [cell(fmt(cand.get(m))) for m in ("dsc", "nsd")]
    return [*cells, cell(fmt((row.get("latency") or {}).get("wall_ms_median"), 1))]


def comparison_case(name: str, runs: Sequence[tuple[str, dict[str, Any], dict[str, CaseSlices]]]) -> str:
    """One case across the candidates: one overlay per candidate in a row, then their numbers."""
    figures, rows = [], []
    for k, (_, report, slices) in enumerate(runs):
        row, label = _row_of(report, name), f"#{k + 1} {run_label(report)}"
        if row is None or "error" in row:
            problem = escape("not in this run" if row is None else f"failed: {row['error']}")
            figures.append(f'<figure><p class="error">{problem}</p><figcaption>{escape(label)}</figcaption></figure>')
            continue
        figures.append(figure(slices.get(name), f"{label}: agreement {fmt(row.get('agreement_dsc'), 5)}", k))
        rows.append(_comparison_row(label, row))
    style = f"grid-template-columns:repeat({len(runs)}, minmax(0, 1fr))"
    grid = f'<div class="grid" style="{style}">{"".join(figures)}</div>'
    return f'<section class="case"><h3>{escape(name)}</h3>{grid}{table(COMPARISON_COLUMNS, rows)}</section>'


def _row_of(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((r for r in report.get("cases") or [] if isinstance(r, dict) and r.get("case") == name), None)


def comparison_order(reports: Sequence[dict[str, Any]]) -> list[str]:
    """Every case of any run, worst first by its lowest agreement over the runs (failures first)."""
    worst: dict[str, float] = {}
    for report in reports:
        for row in report.get("cases") or []:
            if not isinstance(row, dict):
                continue
            value = -math.inf if "error" in row else finite(row.get("agreement_dsc"))
            value = -math.inf if value is None else value
            name = str(row.get("case"))
            worst[name] = min(worst.get(name, math.inf), value)
    return sorted(worst, key=lambda n: (worst[n], n))


def render_comparison(runs: Sequence[tuple[str, dict[str, Any], dict[str, CaseSlices]]]) -> str:
    """The side-by-side page of several runs: (source name, report, slices) each."""
    reports = [report for _, report, _ in runs]
    models = ", ".join(sorted({str((r.get("candidate") or {}).get("model")) for r in reports}))
    sections = [f"<h1>{escape(f'verify: {len(runs)} candidates of {models} side by side')}</h1>"]
    sections += ["<h2>Candidates</h2>", candidates_table(runs), _same_data(reports)]
    for k, (_, report, _) in enumerate(runs):
        sections.append(modality_section(report, f"#{k + 1} {run_label(report)}: per modality"))
    bars = [("reference", stage_totals(_ok_rows(reports[0]), "reference_stages_ms"))]
    bars += [(f"#{k + 1}", stage_totals(_ok_rows(r), "stages_ms")) for k, r in enumerate(reports)]
    sections.append(f"<h2>Latency per stage, summed over cases</h2>{stage_chart(bars)}")
    cards = "".join(comparison_case(name, runs) for name in comparison_order(reports))
    sections.append(f"<h2>Cases, worst first</h2>{legend()}{cards}")
    return document(f"msam-export verify: {len(runs)} candidates side by side", sections)


# ----------------------------------------------------------------------------- API


def _write_text(path: Path, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text)
    return path


class PageBuilder:
    """Collects each verified case's slices (``add``), then writes the page and its slices (``write``)."""

    def __init__(self) -> None:
        self._slices: dict[str, CaseSlices] = {}

    def add(self, result: Any) -> None:
        """Keeps what the page draws of a ``verify.report.CaseResult`` (one 2D slice; volumes are dropped)."""
        slices = case_slices(result)
        self._slices[slices.name] = slices

    def write(self, json_path: PathLike, report: dict[str, Any]) -> Path:
        """Writes ``<stem>.slices.npz`` and ``<stem>.html`` beside ``json_path``; returns the html path."""
        save_slices(slices_path(json_path), list(self._slices.values()))
        return _write_text(html_path(json_path), render_page(report, self._slices))


def _source_name(path: Path) -> str:
    """How the side-by-side page names a run's file: ``dir/verify.json`` (or ``dir/`` given as such)."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def report(reports: Sequence[PathLike], output: PathLike) -> Path:
    """Draws the page again from saved verify runs (each verify.json with its ``.slices.npz``
    beside it): one run gives the page verify wrote, several a side-by-side page."""
    if not reports:
        raise MsamError("report needs at least one verify.json")
    runs = [(_source_name(Path(p)), *load_run(p)) for p in reports]
    page = render_page(runs[0][1], runs[0][2]) if len(runs) == 1 else render_comparison(runs)
    return _write_text(Path(output), page)
