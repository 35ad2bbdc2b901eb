"""The artifact record: names of files and tensors, precision and INT8-ness read from export.json."""

from __future__ import annotations

import json

import pytest

from msam_export.artifact import (
    EXPORT_FILE,
    artifact_name,
    files_of,
    graph_file,
    is_int8,
    open_artifact,
    precision_of,
    read_record,
)
from msam_export.errors import MsamError


@pytest.mark.parametrize(
    ("kind", "options", "name"),
    [
        ("onnx", {"precision": "fp32", "opset": 17}, "onnx"),
        ("openvino", {"precision": "fp32"}, "openvino"),
        ("openvino", {"precision": "fp16"}, "openvino-fp16"),
        ("openvino", {"precision": "int8", "target": "vnni"}, "openvino-int8"),
        ("onnx", {"precision": "int8"}, "onnx-int8"),
    ],
)
def test_name_and_precision_come_from_the_record(kind, options, name):
    record = {"kind": kind, "options": options}
    assert artifact_name(record) == name
    assert precision_of(record) == options["precision"]
    assert is_int8(record) == (options["precision"] == "int8")


def test_graph_files_per_kind():
    assert graph_file("onnx", "decoder") == "decoder.onnx"
    assert files_of("openvino", ["encoder", "decoder"]) == ["encoder.xml", "encoder.bin", "decoder.xml", "decoder.bin"]


def test_reading_a_record(tmp_path):
    with pytest.raises(MsamError, match="no export.json; not an msam-export artifact directory"):
        read_record(tmp_path)
    (tmp_path / EXPORT_FILE).write_text("{not json")
    with pytest.raises(MsamError, match="unreadable export.json"):
        read_record(tmp_path)
    (tmp_path / EXPORT_FILE).write_text(json.dumps({"schema": "other@1"}))
    with pytest.raises(MsamError, match="unknown schema 'other@1'"):
        read_record(tmp_path)
    record = {
        "schema": "msam-export/export@1",
        "kind": "onnx",
        "model": {"variant": "l0"},
        "graphs": {"encoder": {}},
        "options": {"precision": "fp32"},
    }
    (tmp_path / EXPORT_FILE).write_text(json.dumps(record))
    artifact = open_artifact(tmp_path)
    assert artifact.graph("encoder") == tmp_path / "encoder.onnx" and artifact.graph("decoder") is None
    assert (artifact.kind, artifact.variant, artifact.precision) == ("onnx", "l0", "fp32")
