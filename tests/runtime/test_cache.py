"""OpenVINO's compiled-model cache: on by default, per artifact content, never a stale blob."""

from __future__ import annotations

import shutil
import subprocess
import sys

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


BF16_AFTER_F32 = """
import sys
import numpy as np
from msam_export.contract import preprocess
from msam_export.data import SAMPLES, load_case
from msam_export.runtime import open_model

case = load_case(SAMPLES / "imgs" / "2DBox_US_HC18-000.npz")
image, _ = preprocess(case.image, 256, "area")
outputs = {}
for precision in ("f32", "bf16", "f32"):
    model = open_model(sys.argv[1], precision=precision, cache_dir=sys.argv[2])
    outputs.setdefault(precision, []).append(model.backend.encode(image))
    print(precision, model.backend.actual_precision())
assert np.array_equal(outputs["f32"][0], outputs["f32"][1])
print("bf16 drift", float(np.abs(outputs["bf16"][0] - outputs["f32"][0]).max()))
"""


@pytest.mark.slow
def test_each_inference_precision_has_its_own_cached_blob(litemedsam_exports, tmp_path):
    """A bf16 compile of an artifact whose f32 blob was cached used to load that blob and crash
    (SIGSEGV) at the first inference; run in a process of its own so a crash fails this test only."""
    from msam_export.system import cpu_info

    isa = cpu_info()["isa"]
    if not (isa["avx512_bf16"] or isa["amx_bf16"]):
        pytest.skip("this CPU runs no bf16: OpenVINO compiles bf16 requests as f32")
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", BF16_AFTER_F32, str(litemedsam_exports["openvino"]), str(cache)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[:3] == ["f32 f32", "bf16 bf16", "f32 f32"]
    assert float(proc.stdout.splitlines()[3].split()[-1]) > 0  # bf16 really ran
    assert sorted(d.name.rsplit("-", 1)[1] for d in cache.iterdir()) == ["bf16", "f32"]
