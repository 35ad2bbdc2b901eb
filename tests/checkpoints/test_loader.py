"""Checkpoint formats, variant detection and the one-line errors for bad files."""

from __future__ import annotations

import json
import sys
import types
from collections import OrderedDict

import make_weights
import numpy as np
import pytest
import torch
from conftest import FIXTURES
from safetensors.torch import save_file
from torch import nn

from msam_export.checkpoints import DISTILLED, FINETUNED, RAW, load_checkpoint
from msam_export.errors import CheckpointError
from msam_export.files import sha256_of


@pytest.fixture(scope="module")
def l0_state_dict():
    return make_weights.make_state_dict(FIXTURES / "medficientsam_l0.manifest.json")


@pytest.fixture(scope="module")
def l0_raw(l0_state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "l0.pt"
    torch.save(l0_state_dict, path)
    return path


def assert_same_weights(model: nn.Module, sd: dict) -> None:
    ours = model.state_dict()
    for key, value in sd.items():
        assert torch.equal(ours[key], value), key


def test_raw_provenance(l0_raw, l0_state_dict):
    loaded = load_checkpoint(l0_raw)
    prov = loaded.provenance
    assert (prov.format, prov.variant, prov.variant_forced, prov.has_decoder) == (RAW, "l0", False, True)
    assert prov.sha256 == sha256_of(l0_raw) and len(prov.sha256) == 64
    assert prov.ignored_keys == []
    assert_same_weights(loaded.model, l0_state_dict)


def test_lightning_finetuned_ignores_extra_entries(l0_state_dict, tmp_path):
    path = tmp_path / "best.ckpt"
    state = {"model." + k: v for k, v in l0_state_dict.items()}
    state["criterion.weight"] = torch.ones(2)
    torch.save({"state_dict": state, "epoch": 3, "pytorch-lightning_version": "2.2.5"}, path)
    loaded = load_checkpoint(path)
    assert loaded.provenance.format == FINETUNED
    assert loaded.provenance.ignored_keys == ["criterion.weight"]
    assert "epoch" in loaded.provenance.ignored_entries
    assert_same_weights(loaded.model, l0_state_dict)


def test_distilled_is_encoder_only_and_teacher_ignored(l0_state_dict, tmp_path):
    path = tmp_path / "step_400000.ckpt"
    state = {
        "student_encoder." + k.removeprefix("image_encoder."): v
        for k, v in l0_state_dict.items()
        if k.startswith("image_encoder.")
    }
    state["teacher_encoder.patch_embed.proj.weight"] = torch.zeros(768, 3, 16, 16)
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.2.5"}, path)
    loaded = load_checkpoint(path)
    assert loaded.provenance.format == DISTILLED and not loaded.model.has_decoder
    assert loaded.provenance.ignored_keys == ["teacher_encoder.patch_embed.proj.weight"]
    with pytest.raises(CheckpointError, match="encoder-only.*export needs a prompt encoder and mask decoder"):
        load_checkpoint(path, need_decoder="export")


def test_safetensors(l0_state_dict, tmp_path):
    path = tmp_path / "l0.safetensors"
    save_file({k: v.contiguous() for k, v in l0_state_dict.items()}, path)
    loaded = load_checkpoint(path)
    assert loaded.provenance.format == "safetensors" and loaded.spec.name == "l0"
    assert_same_weights(loaded.model, l0_state_dict)


def test_forced_variant_mismatch_names_keys(l0_raw):
    with pytest.raises(CheckpointError, match=r"not a MedficientSAM-L1 checkpoint: missing image_encoder\.backbone"):
        load_checkpoint(l0_raw, variant="l1")
    assert load_checkpoint(l0_raw, variant="L0").provenance.variant_forced


def test_unknown_variant_name(l0_raw):
    with pytest.raises(CheckpointError, match="unknown variant 'l9'"):
        load_checkpoint(l0_raw, variant="l9")


def test_wrong_shape_is_named(l0_state_dict, tmp_path):
    sd = OrderedDict(l0_state_dict)
    sd["image_encoder.neck.output_ops.0.op_list.0.conv.bias"] = torch.zeros(128)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"conv\.bias has shape \[128\], expected \[256\]"):
        load_checkpoint(tmp_path / "bad.pt")


def test_broken_decoder_is_named(l0_state_dict, tmp_path):
    sd = {k: v for k, v in l0_state_dict.items() if not k.startswith("mask_decoder.iou_prediction_head")}
    torch.save(sd, tmp_path / "nodec.pt")
    with pytest.raises(CheckpointError, match="mask_decoder does not match.*missing mask_decoder.iou_prediction_head"):
        load_checkpoint(tmp_path / "nodec.pt")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (bytes(range(7, 256)) * 16, "not a PyTorch checkpoint"),
        (json.dumps({"image_encoder.x": [1, 2]}).encode(), "text/JSON file"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("seed", range(200))
def test_random_bytes_are_refused_cleanly(tmp_path, seed):
    """Garbage trips torch's unpickler in many ways; every one must become a CheckpointError."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "model.pt"
    path.write_bytes(rng.integers(0, 256, size=int(rng.integers(1, 8192)), dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_truncated_file(l0_raw, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(l0_raw.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_non_sam_state_dict(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no image_encoder"):
        load_checkpoint(tmp_path / "other.pt")


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: it must never happen without trust."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.pth"
    torch.save({"state_dict": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="pickled Python object.*--trust-pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def _pickle_whole_module(model: nn.Module, path) -> None:
    """torch.save(model) where the top class lives in a module that won't be importable later,
    as with MedficientSAM's ``src.models.base_sam.BaseSAM``."""
    fake = types.ModuleType("src_models_gone")
    base_sam = type("BaseSAM", (nn.Module,), {"__module__": "src_models_gone"})
    fake.BaseSAM = base_sam
    sys.modules["src_models_gone"] = fake
    try:
        wrapper = base_sam()
        for name, child in model.named_children():
            wrapper.add_module(name, child)
        torch.save(wrapper, path)
    finally:
        del sys.modules["src_models_gone"]


def test_pickled_module_needs_trust(l0_raw, l0_state_dict, tmp_path):
    path = tmp_path / "model.pth"
    _pickle_whole_module(load_checkpoint(l0_raw).model, path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True)
    assert loaded.provenance.format == "pickle" and loaded.spec.name == "l0"
    assert_same_weights(loaded.model, l0_state_dict)
