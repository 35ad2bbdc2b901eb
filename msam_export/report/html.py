"""HTML building blocks of the report: escaped values, tables, the document shell and its style.

Every value that reaches the page goes through ``fmt`` (or ``escape``): None and NaN print "-"."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:16px 0 6px} .meta{font-weight:normal;color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.kv td:first-child{color:#555} .row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;color:#fff;font-weight:bold}
.pass{background:#1b7837} .fail{background:#b2182b} td.bad{background:#fddbc7;color:#b2182b}
.case{border:1px solid #ddd;border-radius:6px;padding:6px 12px;margin:10px 0}
.overlay{max-width:100%;height:auto;image-rendering:pixelated;border:1px solid #999}
figure{margin:0} figcaption{font-size:12px;color:#555}
.grid{display:grid;gap:12px} .legend span{display:inline-block;margin-right:14px;font-size:12px}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #666;vertical-align:middle;margin-right:4px}
.error{color:#b2182b} .note{color:#555;font-size:12px}
"""
# no script, no network: only inline style and data: images may load
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def fmt(value: Any, digits: int = 4) -> str:
    """An escaped cell text: "-" for None/NaN, yes/no for bools, floats to ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, digits) for v in value) or "-"
    return escape(str(value))


def cell(html: str, bad: bool = False) -> str:
    return f'<td class="bad">{html}</td>' if bad else f"<td>{html}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table: ``header`` is plain text (escaped here); each row's cells are ``<td>`` HTML (see ``cell``)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(title: str, pairs: Iterable[tuple[str, Any]]) -> str:
    """A titled two-column table of (name, value) pairs."""
    rows = [[cell(escape(k)), cell(fmt(v))] for k, v in pairs]
    return f"<div><h3>{escape(title)}</h3>{table(['', ''], rows, 'kv')}</div>"


def verdict_badge(verdict: dict[str, Any] | None) -> str:
    """PASS/FAIL and the failures as a list."""
    verdict = verdict or {}
    passed = bool(verdict.get("passed"))
    badge = f'<span class="verdict {"pass" if passed else "fail"}">{"PASS" if passed else "FAIL"}</span>'
    failures = "".join(f'<li class="error">{escape(str(f))}</li>' for f in verdict.get("failures") or [])
    return badge + (f"<ul>{failures}</ul>" if failures else "")


def document(title: str, sections: Iterable[str]) -> str:
    """The whole self-contained page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
