"""End-to-end exports: ONNX and OpenVINO artifacts reproduce the golden outputs,
re-export is byte-identical, and bad requests write nothing."""

from __future__ import annotations

import json

import make_weights
import numpy as np
import pytest
from conftest import golden_file, write_checkpoint

from msam_export.checkpoints import DISTILLED, FINETUNED, RAW, default_checkpoint_path
from msam_export.errors import MsamError, ParityError
from msam_export.export import pipeline
from msam_export.export.parity import Tolerance
from msam_export.runtime import OnnxBackend, OpenVinoBackend

pytestmark = pytest.mark.slow
ATOL = 1e-4  # ONNX / OpenVINO FP32 against the golden outputs


def backends(folder, kind):
    decoder = "decoder.onnx" if kind == "onnx" else "decoder.xml"
    encoder = "encoder.onnx" if kind == "onnx" else "encoder.xml"
    dec = folder / decoder if (folder / decoder).exists() else None
    if kind == "onnx":
        return OnnxBackend(folder / encoder, dec)
    return OpenVinoBackend(folder / encoder, dec, precision="f32")


def assert_golden(backend, image, boxes, golden, prefix="", with_decoder=True, atol=ATOL):
    emb = backend.encode(image)
    np.testing.assert_allclose(emb, golden["image_embeddings"], rtol=0, atol=atol)
    if not with_decoder:
        return
    logits, iou = backend.decode(golden["image_embeddings"], boxes)
    for i in range(len(boxes)):
        np.testing.assert_allclose(logits[i : i + 1], golden[f"box{i}_lowres_logits"], rtol=0, atol=atol)
        np.testing.assert_allclose(iou[i : i + 1], golden[f"box{i}_iou"], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def litemedsam_onnx(litemedsam_exports):
    out = litemedsam_exports["onnx"]
    return out, json.loads((out / "export.json").read_text())


def test_litemedsam_onnx_artifact(litemedsam_onnx):
    out, meta = litemedsam_onnx
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json"]
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk["schema"] == "msam-export/export@1" and on_disk["kind"] == "onnx"
    assert on_disk["source"]["sha256"].startswith("79d8c9dca6db") and on_disk["source"]["variant"] == "litemedsam"
    assert on_disk["options"] == {"precision": "fp32", "opset": 17, "simplify": True, "with_preprocess": False}
    assert on_disk["model"]["propagation"] == "margin:3"
    assert on_disk["graphs"]["decoder"]["inputs"] == [
        {"name": "image_embeddings", "shape": [1, 256, 64, 64], "dtype": "float32"},
        {"name": "boxes", "shape": ["num_boxes", 4], "dtype": "float32"},
    ]
    assert on_disk["graphs"]["encoder"]["simplified"] == "ok"
    parity = on_disk["parity"]
    assert parity["passed"] and parity["reference"] == "pytorch f64"
    assert [r["input"] for r in parity["inputs"]] == [
        "synthetic",
        "2DBox_US_HC18-000",
        "3DBox_CT_MSDSpleen-spleen2",
    ]
    assert parity["worst"]["logits_max_abs"] <= 1e-4 and parity["worst"]["mask_dsc_min"] > 0.999
    for name, info in on_disk["files"].items():
        assert info["size_bytes"] == (out / name).stat().st_size
    assert set(on_disk["timings_s"]) >= {"load", "trace", "simplify", "check", "parity"}


def test_litemedsam_onnx_reproduces_golden(litemedsam_onnx):
    golden = np.load(golden_file("litemedsam.golden.npz"))
    assert_golden(backends(litemedsam_onnx[0], "onnx"), golden["image"], golden["boxes_256"], golden)


def test_reexport_is_byte_identical(litemedsam_onnx, tmp_path):
    first, meta = litemedsam_onnx
    pipeline.export_onnx(default_checkpoint_path(), tmp_path / "again")
    for name in ("encoder.onnx", "decoder.onnx"):
        assert (tmp_path / "again" / name).read_bytes() == (first / name).read_bytes(), name


def test_litemedsam_openvino_from_onnx_dir(litemedsam_exports):
    out = litemedsam_exports["openvino"]
    meta = json.loads((out / "export.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.bin",
        "decoder.xml",
        "encoder.bin",
        "encoder.xml",
        "export.json",
    ]
    assert meta["options"]["parity_inference_precision"] == "f32" and meta["parity"]["passed"]
    golden = np.load(golden_file("litemedsam.golden.npz"))
    assert_golden(backends(out, "openvino"), golden["image"], golden["boxes_256"], golden)


def test_openvino_decoder_runs_with_a_dynamic_box_count(litemedsam_exports):
    """Our runtime compiles per static box bucket; a user's own OpenVINO code may not."""
    import openvino as ov

    decoder = ov.Core().compile_model(
        str(litemedsam_exports["openvino"] / "decoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    golden = np.load(golden_file("litemedsam.golden.npz"))
    embeddings = golden["image_embeddings"].astype(np.float32)
    for count in (1, 2):
        boxes = golden["boxes_256"][:count].astype(np.float32)
        logits = decoder({"image_embeddings": embeddings, "boxes": boxes})["low_res_logits"]
        for i in range(count):
            np.testing.assert_allclose(logits[i : i + 1], golden[f"box{i}_lowres_logits"], rtol=0, atol=ATOL)


def test_openvino_fp16_is_smaller_and_reports_drift(litemedsam_onnx, tmp_path):
    meta = pipeline.export_openvino(litemedsam_onnx[0], tmp_path / "fp16", weight_format="fp16").record
    fp32_bytes = sum(
        f["size_bytes"] for f in json.loads((litemedsam_onnx[0] / "export.json").read_text())["files"].values()
    )
    fp16_bytes = sum(v["size_bytes"] for k, v in meta["files"].items() if k.endswith(".bin"))
    assert fp16_bytes < 0.6 * fp32_bytes
    assert meta["parity"]["passed"] and meta["parity"]["worst"]["mask_dsc_min"] >= 0.98
    assert meta["parity"]["worst"]["logits_max_abs"] > 1e-4  # FP16 weights do drift; it is reported


def write_variant(variant, folder):
    sd = make_weights.make_state_dict(golden_file(f"medficientsam_{variant}.manifest.json"))
    return tuple(
        write_checkpoint(sd, folder / name, layout)
        for name, layout in (("raw.pt", RAW), ("best.ckpt", FINETUNED), ("step_400000.ckpt", DISTILLED))
    )


@pytest.mark.parametrize("variant", ["l0", "l1", "l2"])
def test_medficientsam_golden_in_every_format(variant, tmp_path):
    raw, finetuned, distilled = write_variant(variant, tmp_path)
    golden = np.load(golden_file(f"medficientsam_{variant}.golden.npz"))
    image = make_weights.golden_image().numpy()
    boxes = make_weights.boxes_for_python_path().numpy()
    synthetic_only: tuple[str, ...] = ()
    out = {}
    for name, ckpt in (("raw", raw), ("finetuned", finetuned), ("distilled", distilled)):
        out[name] = tmp_path / f"onnx-{name}"
        meta = pipeline.export_onnx(ckpt, out[name], parity_cases=synthetic_only).record
        assert meta["parity"]["passed"]
    assert_golden(backends(out["raw"], "onnx"), image, boxes, golden)
    # the same weights in another container give the same graphs, byte for byte
    for name in ("encoder.onnx", "decoder.onnx"):
        assert (out["finetuned"] / name).read_bytes() == (out["raw"] / name).read_bytes()
    assert not (out["distilled"] / "decoder.onnx").exists()
    assert (out["distilled"] / "encoder.onnx").read_bytes() == (out["raw"] / "encoder.onnx").read_bytes()
    ov = tmp_path / "ov"
    pipeline.export_openvino(finetuned, ov, parity_cases=synthetic_only)
    assert_golden(backends(ov, "openvino"), image, boxes, golden)


def test_parity_failure_writes_nothing(monkeypatch, tmp_path):
    raw, _, _ = write_variant("l0", tmp_path)
    monkeypatch.setattr(pipeline, "FP32", Tolerance(max_abs=1e-12))
    with pytest.raises(ParityError, match="parity failed: embeddings_max_abs"):
        pipeline.export_onnx(raw, tmp_path / "out", parity_cases=())
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MsamError, match=r"exists and is not empty \(use --overwrite to replace it\)"):
        pipeline.export_onnx(default_checkpoint_path(), out)
    assert (out / "keep.txt").read_text() == "mine"


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MsamError, match="cannot write"):
        pipeline.export_onnx(default_checkpoint_path(), blocker / "out")
