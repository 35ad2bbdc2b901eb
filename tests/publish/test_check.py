"""check: every file re-hashed against manifest.json; changed, missing, extra files fail."""

from __future__ import annotations

import json
import shutil

import pytest
from publish_fixtures import bundles, flip_byte, invoke
from test_cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory, litemedsam_exports):
    return bundles(tmp_path_factory, litemedsam_exports)


@pytest.fixture
def bundle(published, tmp_path):
    """A private copy of the one-artifact ONNX bundle, to tamper with."""
    return shutil.copytree(published["onnx"], tmp_path / "bundle")


def test_intact_bundle_passes(bundle):
    result = invoke("check", bundle)
    assert result.code == 0, result.stderr
    assert "6/6 ok" in result.stdout and "onnx/encoder.onnx" in result.stdout
    assert "manifest.json: artifacts.onnx" in result.stdout
    report = json.loads(invoke("check", bundle, "--json").stdout)
    assert report["passed"] is True and {r["status"] for r in report["rows"]} == {"ok"}


@pytest.mark.parametrize(
    ("tamper", "line"),
    [
        (lambda b: flip_byte(b / "onnx" / "decoder.onnx"), "CHANGED onnx/decoder.onnx"),
        (lambda b: (b / "onnx" / "encoder.onnx").unlink(), "MISSING onnx/encoder.onnx"),
        (lambda b: (b / "onnx" / "notes.txt").write_text("added later"), "EXTRA onnx/notes.txt"),
        (lambda b: (b / "MODEL_CARD.md").write_text("# better numbers\n"), "CHANGED MODEL_CARD.md"),
    ],
    ids=["byte", "deleted", "added", "card"],
)
def test_tampered_bundle_fails(bundle, tamper, line):
    tamper(bundle)
    result = invoke("check", bundle)
    assert result.code == 1
    assert result.stderr.strip().splitlines() == [line]
    status = line.split()[0].lower()
    rows = json.loads(invoke("check", bundle, "--json").stdout)["rows"]
    assert [r["path"] for r in rows if r["status"] == status] == [line.split()[1]]


def test_manifest_record_must_match_bundled_json(bundle):
    """Editing a metric in manifest.json (not a hashed file) is caught too."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"]["onnx"]["verify"]["overall"]["candidate_dsc"] = 0.99
    path.write_text(json.dumps(manifest))
    result = invoke("check", bundle)
    assert result.code == 1
    assert result.stderr.strip() == "INCONSISTENT manifest.json: artifacts.onnx"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: "not json", "unreadable manifest.json"),
        (lambda m: m | {"schema": "msam-export/bundle@0"}, "unknown schema 'msam-export/bundle@0'"),
        (lambda m: m | {"files": {"../outside.bin": {"sha256": "0", "size_bytes": 1}}}, "not a plain relative path"),
        (lambda m: m | {"artifacts": {}}, "no artifacts"),
    ],
    ids=["garbage", "schema", "traversal", "no-artifacts"],
)
def test_unreadable_manifest_exit_2(bundle, edit, message):
    path = bundle / "manifest.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    result = invoke("check", bundle)
    assert result.code == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_missing_manifest_exit_2_in_a_real_process(bundle):
    (bundle / "manifest.json").unlink()
    result = run_cli("check", str(bundle))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no such manifest.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
