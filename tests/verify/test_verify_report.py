"""The verify report's summaries (``msam_export.verify.report``) on rows of known values."""

from __future__ import annotations

import pytest
from rich.console import Console

from msam_export.verify.render import size_table
from msam_export.verify.report import group_summaries, size_bands, summarize

ROWS = [
    {
        "modality": "Microscope",
        "dims": "2D",
        "agreement_per_box": [0.5, 1.0, 0.9],
        "reference_pixels_per_box": [4, 150, 20_000],
    },
    {"modality": "Microscope", "dims": "2D", "agreement_per_box": [0.8], "reference_pixels_per_box": [99]},
    {"modality": "CT", "dims": "3D", "agreement_per_box": [0.3]},  # 3D boxes have no pixel areas
]


def test_size_bands_group_2d_boxes_by_reference_area():
    assert size_bands(ROWS) == [
        {"band": "0-99 px", "boxes": 2, "agreement_dsc": pytest.approx(0.65)},
        {"band": "100-999 px", "boxes": 1, "agreement_dsc": 1.0},
        {"band": ">= 10,000 px", "boxes": 1, "agreement_dsc": 0.9},
    ]
    assert size_bands(ROWS[2:]) == []


def full_row(row: dict) -> dict:
    agreement = row["agreement_per_box"]
    return row | {
        "case": f"{row['dims']}Box_{row['modality']}_x.npz",
        "boxes": len(agreement),
        "agreement_dsc": sum(agreement) / len(agreement),
        "latency": {
            "encoder_ms_median": 1.0,
            "decoder_ms_per_box": 1.0,
            "wall_ms_median": 1.0,
            "reference_wall_ms": 1.0,
        },
    }


def test_summaries_and_table_carry_the_size_bands():
    rows = [full_row(r) for r in ROWS]
    report = {"overall": summarize(rows), "by_modality": group_summaries(rows, "modality")}
    assert report["overall"]["agreement_2d_by_object_size"] == size_bands(rows)
    assert report["by_modality"]["CT"]["agreement_2d_by_object_size"] == []
    console = Console(width=160, record=True)
    console.print(size_table(report))
    text = console.export_text()
    assert "0-99 px" in text and "0.6500 (2)" in text and "CT" not in text
    assert size_table({"overall": summarize(rows[2:]), "by_modality": group_summaries(rows[2:], "modality")}) is None
