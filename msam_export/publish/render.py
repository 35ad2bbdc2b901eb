"""Tables on screen for publish, check and gate."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .check import FileStatus
from .gate import Check

STATUS_STYLE = {"ok": "green", "pass": "green", "skip": "yellow", "fail": "red"}


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def publish_table(manifest: dict[str, Any], out_dir: str) -> Table:
    """One row per published artifact: precision, metrics, how it was accepted."""
    table = Table(title=f"{manifest['model']['title']} -> {out_dir}")
    for col in ("artifact", "files", "MB", "precision", "agreement", "DSC", "NSD", "accepted"):
        table.add_column(col, justify="left" if col in ("artifact", "precision", "accepted") else "right")
    for name, entry in manifest["artifacts"].items():
        overall = entry["verify"]["overall"] or {}
        size = sum(info["size_bytes"] for path, info in manifest["files"].items() if path.startswith(f"{name}/"))
        files = sum(path.startswith(f"{name}/") for path in manifest["files"])
        accepted = entry["accepted"]
        table.add_row(
            f"{name}/",
            str(files),
            f"{size / 1e6:.1f}",
            str(entry["verify"]["precision"]["actual"]),
            _num(overall.get("agreement_dsc")),
            _num(overall.get("candidate_dsc")),
            _num(overall.get("candidate_nsd")),
            "[red]--allow-failed[/]" if accepted["problems"] else "verify passed",
        )
    return table


def check_table(rows: list[FileStatus], title: str) -> Table:
    """One row per file (and per manifest record): status, size, sha256 expected/found."""
    table = Table(title=title)
    for col in ("file", "status", "size", "sha256 (manifest)", "sha256 (found)"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for row in rows:
        info = row.actual or row.expected or {}
        size = info.get("size_bytes")
        table.add_row(
            row.path,
            f"[{STATUS_STYLE.get(row.status, 'red')}]{row.status}[/]",
            f"{size:,}" if isinstance(size, int) else "",
            str((row.expected or {}).get("sha256", ""))[:16],
            str((row.actual or {}).get("sha256", ""))[:16],
        )
    return table


def gate_table(checks: list[Check], title: str) -> Table:
    """One row per check: artifact, check, PASS/FAIL/SKIP, value, limit, detail."""
    table = Table(title=title)
    for col in ("artifact", "check", "result", "value", "limit", "detail"):
        table.add_column(col, overflow="fold")
    for check in checks:
        style = STATUS_STYLE[check.status]
        table.add_row(
            check.artifact, check.name, f"[{style}]{check.status.upper()}[/]", check.value, check.limit, check.detail
        )
    return table
