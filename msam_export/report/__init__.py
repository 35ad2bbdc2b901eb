"""The HTML verify report: ``PageBuilder`` (verify writes ``<stem>.html`` and ``<stem>.slices.npz``
beside its verify.json) and ``report`` (the page again from saved runs, or several side by side)."""

from .overlay import CAND_ONLY, LABEL_SWAP, MAX_SIDE, REF_ONLY, CaseSlices, downscale_factor
from .page import PageBuilder, render_comparison, render_page, report
from .store import html_path, load_run, slices_path

__all__ = [
    "CAND_ONLY",
    "LABEL_SWAP",
    "MAX_SIDE",
    "REF_ONLY",
    "CaseSlices",
    "PageBuilder",
    "downscale_factor",
    "html_path",
    "load_run",
    "render_comparison",
    "render_page",
    "report",
    "slices_path",
]
