"""OpenVINO's compiled-model cache: on by default, per artifact content, never a stale blob."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from msam_export.data import SAMPLES, load_case
from msam_export.export import export_openvino
from msam_export.runtime import open_model


@pytest.mark.slow
def test_an_artifact_rewritten_at_the_same_path_does_not_load_the_old_blob(litemedsam_exports, tmp_path):
    case = load_case(SAMPLES / "imgs" / "2DBox_US_HC18-000.npz")
    path, cache = tmp_path / "artifact", tmp_path / "cache"
    shutil.copytree(litemedsam_exports["openvino"], path)
    open_model(path, cache_dir=cache).segment_case(case)
    assert any(cache.rglob("*.blob"))
    fp16 = tmp_path / "fp16"
    export_openvino(litemedsam_exports["onnx"], fp16, weight_format="fp16")
    shutil.rmtree(path)
    shutil.copytree(fp16, path)
    cached = open_model(path, cache_dir=cache).segment_case(case).segs
    fresh = open_model(path, cache_dir=None).segment_case(case).segs
    np.testing.assert_array_equal(cached, fresh)
    assert len([d for d in cache.iterdir() if d.is_dir()]) == 2  # one subdirectory per artifact content


def test_msam_cache_dir_moves_the_default_cache(tmp_path, monkeypatch):
    from msam_export.runtime import default_cache_dir

    monkeypatch.setenv("MSAM_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("MSAM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "msam-export" / "openvino"
