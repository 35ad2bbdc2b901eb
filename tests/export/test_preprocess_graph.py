"""The uint8-input encoder graph (--with-preprocess): bit-exact preprocessing in ONNX."""

from __future__ import annotations

import json
import warnings

import make_weights
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import FIXTURES, write_checkpoint
from test_cli import run_cli

from msam_export.contract import preprocess
from msam_export.export import pipeline
from msam_export.export.preprocess_graph import PreprocessingEncoder

SHAPES = [(540, 800, 3), (725, 725, 3), (512, 512, 3), (101, 122, 3), (1000, 300, 3), (30, 41, 3)]


def random_shapes(n: int, seed: int = 1) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    return SHAPES + [(int(rng.integers(20, 1100)), int(rng.integers(20, 1100)), 3) for _ in range(n)]


@pytest.fixture(scope="module")
def preprocessing_only(tmp_path_factory):
    """The preprocessing part alone (identity encoder), exported to ONNX."""
    path = tmp_path_factory.mktemp("pre") / "pre.onnx"
    module = PreprocessingEncoder(torch.nn.Identity(), 512).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(300, 400, 3, dtype=torch.uint8),),
            str(path),
            input_names=["image"],
            output_names=["x", "resized_size", "original_size"],
            dynamic_axes={"image": {0: "height", 1: "width"}},
            opset_version=17,
            dynamo=False,
        )
    return module, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_resize_emulates_torch_uint8_bilinear_exactly(preprocessing_only):
    module, session = preprocessing_only
    rng = np.random.default_rng(0)
    for shape in random_shapes(20):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected, resized_hw = preprocess(image, 512, "bilinear")
        eager, _, _ = module(torch.from_numpy(image))
        graph, resized, original = session.run(None, {"image": image})
        np.testing.assert_array_equal(eager.numpy(), expected, err_msg=str(shape))
        np.testing.assert_array_equal(graph, expected, err_msg=str(shape))
        assert tuple(resized) == resized_hw and tuple(original) == shape[:2]


@pytest.mark.slow
def test_l0_export_with_preprocess(tmp_path):
    sd = make_weights.make_state_dict(FIXTURES / "medficientsam_l0.manifest.json")
    ckpt = write_checkpoint(sd, tmp_path / "l0.pt", "raw")
    meta = pipeline.export_onnx(ckpt, tmp_path / "out", parity_cases=(), with_preprocess=True).record
    saved = json.loads((tmp_path / "out" / "export.json").read_text())
    assert saved["options"]["with_preprocess"] and "encoder_preprocess.onnx" in saved["files"]
    check = meta["parity"]["with_preprocess"]
    assert check["passed"] and check["sizes_equal"] and check["worst"]["embeddings_max_abs"] <= 1e-4
    assert saved["graphs"]["encoder_preprocess"]["inputs"] == [
        {"name": "image", "shape": ["height", "width", 3], "dtype": "uint8"}
    ]
    session = ort.InferenceSession(
        str(tmp_path / "out" / "encoder_preprocess.onnx"), providers=["CPUExecutionProvider"]
    )
    encoder = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(5).integers(0, 256, (333, 421, 3), dtype=np.uint8)
    embedding, resized, _ = session.run(None, {"image": image})
    tensor, resized_hw = preprocess(image, 512, "bilinear")
    np.testing.assert_allclose(embedding, encoder.run(None, {"image": tensor})[0], rtol=0, atol=1e-4)
    assert tuple(resized) == resized_hw


def test_area_models_are_refused(tmp_path):
    result = run_cli("onnx", "--default", "--with-preprocess", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "INTER_AREA" in result.stderr
    assert not (tmp_path / "out").exists()
