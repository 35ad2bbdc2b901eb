"""publish: bundle layout, manifest, model card, refusals, --allow-failed, atomicity, from a checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
from publish_fixtures import CASES, bundles, edited_report, invoke, make_data, verified

from msam_export.checkpoints import default_checkpoint_path
from msam_export.data import list_cases
from msam_export.files import describe_file, sha256_of
from msam_export.limits import Limits
from msam_export.publish import BUILDERS, check_bundle, publish
from msam_export.verify.report import data_fingerprint

pytestmark = pytest.mark.slow  # every test here verifies or publishes real exports
LITEMEDSAM_SHA = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


@pytest.fixture(scope="module")
def reports(tmp_path_factory, litemedsam_exports):
    return verified(tmp_path_factory, litemedsam_exports)


@pytest.fixture(scope="module")
def published(tmp_path_factory, litemedsam_exports):
    return bundles(tmp_path_factory, litemedsam_exports)


def test_bundle_layout_and_manifest(published, reports):
    bundle = published["both"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert on_disk == sorted([*manifest["files"], "manifest.json"])
    assert set(manifest["files"]) == {
        "MODEL_CARD.md",
        *(f"onnx/{f}" for f in ("encoder.onnx", "decoder.onnx", "export.json", "verify.json")),
        *(f"openvino/{f}" for f in ("encoder.xml", "encoder.bin", "decoder.xml", "decoder.bin", "export.json")),
        "openvino/verify.json",
    }
    for rel, info in manifest["files"].items():
        assert describe_file(bundle / rel) == info
    assert (bundle / "openvino" / "verify.json").read_bytes() == reports["openvino"].read_bytes()

    assert manifest["schema"] == "msam-export/bundle@1"
    assert manifest["source"]["sha256"] == LITEMEDSAM_SHA == sha256_of(default_checkpoint_path())
    assert manifest["source"]["format"] == "raw" and manifest["source"]["variant"] == "litemedsam"
    assert manifest["source"]["file"] == "lite_medsam.pth"
    assert manifest["allow_failed"] == {"used": False, "overridden": []}

    fingerprint = data_fingerprint(list_cases(reports["data"] / "imgs"), reports["data"] / "gts")
    for name in ("onnx", "openvino"):
        entry = manifest["artifacts"][name]
        verify = entry["verify"]
        assert entry["dir"] == name and entry["kind"] == name and entry["quantization"] is None
        assert entry["precision"] == "fp32"
        assert entry["parity"]["passed"] is True and entry["versions"]["onnxruntime"]
        assert entry["accepted"] == {"by": "verify", "problems": []}
        assert verify["overall"]["agreement_dsc"] >= 0.999 and abs(verify["overall"]["dsc_drop"]) < 1e-3
        assert set(verify["by_modality"]) == {"US", "Fundus"}
        assert verify["precision"] == {"requested": "f32", "actual": "f32"}
        assert verify["system"]["model"] and set(verify["system"]["isa"]) >= {"avx2", "avx512_vnni", "amx_int8"}
        assert verify["data"] == {"cases": sorted(CASES), "fingerprint": fingerprint}
        assert verify["thresholds"] == {"min_agreement": 0.99, "max_dsc_drop": 0.005, "max_nsd_drop": 0.005}
        assert verify["verdict"] == {"passed": True, "failures": []}
        assert verify["candidate"]["source_sha256"] == LITEMEDSAM_SHA
    assert manifest["artifacts"]["openvino"]["options"]["precision"] == "fp32"
    assert manifest["artifacts"]["onnx"]["options"]["opset"] == 17


def test_model_card(published):
    bundle = published["both"]
    card = (bundle / "MODEL_CARD.md").read_text()
    manifest = json.loads((bundle / "manifest.json").read_text())
    front, body = card.split("\n---\n", 1)
    assert front.startswith("---\nlibrary_name: msam-export\n")
    assert "model-index:\n" in front and '- name: "LiteMedSAM (openvino)"' in front
    dsc = manifest["artifacts"]["openvino"]["verify"]["overall"]["candidate_dsc"]
    dice = '    - type: dice\n      name: "DSC (mean over cases, vs ground truth)"\n'
    assert f"{dice}      value: {round(dsc, 4)}" in front
    assert "    - type: nsd\n" in front
    assert "## `openvino/`: OpenVINO, inference precision f32" in body
    assert "| modality | cases | boxes | agreement DSC |" in body and "| **overall** | 2 | 2 | 1.0000 |" in body
    assert "msam-export segment BUNDLE/openvino IN OUT" in body
    assert "--allow-failed" not in card


def test_bundle_runs_with_segment(published, tmp_path):
    """The bundle's artifact dirs are what `segment` takes; running them changes nothing."""
    bundle = published["openvino"]
    inputs = make_data(tmp_path / "in", CASES[:1], gts=False) / "imgs"
    result = invoke("segment", bundle / "openvino", inputs, tmp_path / "out")
    assert result.code == 0, result.stderr
    assert (tmp_path / "out" / CASES[0]).is_file()
    assert check_bundle(bundle).passed


def failing_copy(src, dest):
    """A genuinely failing verify.json: stricter thresholds, verdict recomputed from its metrics."""

    def stricter(report):
        thresholds = Limits(min_agreement=1.5)
        report["thresholds"] = thresholds.to_dict()
        report["verdict"] = {"passed": False, "failures": thresholds.failures(report["overall"])}

    return edited_report(src, dest, stricter)


def test_failing_verify_refused_unless_allowed(litemedsam_exports, reports, tmp_path):
    failing = failing_copy(reports["openvino"], tmp_path / "failing.json")
    out = tmp_path / "bundle"
    args = ("publish", litemedsam_exports["openvino"], "--verify", failing, "-o", out)
    refused = invoke(*args)
    assert refused.code == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: refused openvino: verify failed:")
    assert "mean agreement DSC 1.0000 < 1.5" in refused.stderr and "--allow-failed" in refused.stderr
    assert not out.exists()

    forced = invoke(*args, "--allow-failed")
    assert forced.code == 0, forced.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["allow_failed"] == {
        "used": True,
        "overridden": ["openvino: verify failed: mean agreement DSC 1.0000 < 1.5"],
    }
    assert manifest["artifacts"]["openvino"]["accepted"]["by"] == "--allow-failed"
    assert "published with --allow-failed" in forced.stderr
    assert "**Published with --allow-failed:** openvino: verify failed" in (out / "MODEL_CARD.md").read_text()
    assert check_bundle(out).passed


@pytest.mark.parametrize(
    ("artifact", "edit", "message"),
    [
        ("openvino", None, "verify.json is for a 'onnx' candidate, the artifact is 'openvino'"),
        ("onnx", lambda r: r["candidate"].update(source_sha256="0" * 64), "verify.json is for checkpoint 000000000000"),
        ("onnx", lambda r: r["candidate"].update(model="l0"), "verify.json is for model 'l0'"),
    ],
)
def test_verify_of_another_artifact_refused(litemedsam_exports, reports, tmp_path, artifact, edit, message):
    verify = reports["onnx"] if edit is None else edited_report(reports["onnx"], tmp_path / "v.json", edit)
    result = invoke("publish", litemedsam_exports[artifact], "--verify", verify, "-o", tmp_path / "b")
    assert result.code == 1 and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_unusable_inputs_exit_2(litemedsam_exports, reports, tmp_path):
    onnx = litemedsam_exports["onnx"]
    (tmp_path / "bad.json").write_text('{"schema": "msam-export/export@1"}')
    cases = [
        (("publish", onnx, "-o", tmp_path / "b"), "no verify.json in it; pass --verify FILE"),
        (("publish", onnx, "--verify", tmp_path / "bad.json", "-o", tmp_path / "b"), "not a verify report"),
        (("publish", onnx, "--verify", tmp_path / "nope.json", "-o", tmp_path / "b"), "no such verify.json"),
        (("publish", onnx, onnx, "--verify", reports["onnx"], "-o", tmp_path / "b"), "1 --verify file(s)"),
        (
            ("publish", onnx, onnx, "--verify", reports["onnx"], "--verify", reports["onnx"], "-o", tmp_path / "b"),
            "both be published as onnx/",
        ),
        (("publish", "-o", tmp_path / "b"), "nothing to publish"),
        (("publish", "--default", "-o", tmp_path / "b"), "--data is required to publish from a checkpoint"),
        (
            ("publish", "--default", "--formats", "onnx,tflite", "--data", reports["data"], "-o", tmp_path / "b"),
            "unknown format(s) tflite; choose from onnx, openvino, openvino-int8",
        ),
        (
            ("publish", "--default", "--verify", reports["onnx"], "-o", tmp_path / "b"),
            "verify files are for artifact dirs",
        ),
        (
            (
                "publish",
                "--default",
                "--formats",
                "onnx",
                "--data",
                make_data(tmp_path / "nogts", gts=False),
                "-o",
                tmp_path / "b",
            ),
            "no gts/ beside imgs/",
        ),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_existing_output_needs_overwrite(litemedsam_exports, reports, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("previous release")
    args = ("publish", litemedsam_exports["onnx"], "--verify", reports["onnx"], "-o", out)
    result = invoke(*args)
    assert result.code == 2 and "exists and is not empty (use --overwrite to replace it)" in result.stderr
    assert (out / "old.txt").is_file()
    result = invoke(*args, "--overwrite")
    assert result.code == 0, result.stderr
    assert not (out / "old.txt").exists() and (out / "manifest.json").is_file()


def test_bundle_appears_complete_or_not_at_all(litemedsam_exports, reports, tmp_path):
    """A file changed after export is found while copying: nothing is left behind."""
    artifact = tmp_path / "onnx"
    shutil.copytree(litemedsam_exports["onnx"], artifact)
    with (artifact / "decoder.onnx").open("ab") as f:
        f.write(b"\0")
    out = tmp_path / "out" / "bundle"
    result = invoke("publish", artifact, "--verify", reports["onnx"], "-o", out)
    assert result.code == 2 and "decoder.onnx changed since export" in result.stderr
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []


def test_from_a_checkpoint_builds_verifies_publishes(litemedsam_exports, tmp_path, monkeypatch):
    """publish CKPT --formats: each registered builder writes an artifact, which is verified on
    --data against the checkpoint and published. The ONNX builder is swapped for a copy of the
    session's real export (same checkpoint) to save the 30 s trace; verify runs for real."""
    calls = []

    def copy_onnx(ctx, out_dir):
        calls.append((ctx.checkpoint, dict(ctx.built)))
        shutil.copytree(litemedsam_exports["onnx"], out_dir)

    monkeypatch.setitem(BUILDERS, "onnx", copy_onnx)
    data = make_data(tmp_path / "data", CASES[:1])
    out = tmp_path / "rel" / "bundle"
    release = publish(str(default_checkpoint_path()), str(out), formats="onnx", data=str(data / "imgs"))
    manifest = release.manifest
    assert calls == [(default_checkpoint_path(), {})]
    assert release.bundle == out and not release.withheld and not release.not_built
    entry = manifest["artifacts"]["onnx"]
    assert entry["verify"]["data"]["cases"] == [CASES[0]]
    assert entry["verify"]["thresholds"] == {"min_agreement": 0.99, "max_dsc_drop": 0.005, "max_nsd_drop": 0.005}
    assert entry["verify"]["verdict"]["passed"] and entry["accepted"]["by"] == "verify"
    assert check_bundle(out).passed and (out / "onnx" / "verify.html").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["bundle"]  # the work dir is gone
    page = out / "onnx" / "verify.html"
    page.chmod(0o644)
    page.write_text(page.read_text().replace("</body>", "<p>edited</p></body>"))
    assert not check_bundle(out).passed  # the page is hashed like every other file
