"""One spec per model: everything export, runtime and verify need to know.

A spec is data; importing it needs no torch (the runtime reads specs to pre/post-process).
Its ``build*`` methods import the PyTorch modules when called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .model import MedSam
    from .sam import MaskDecoder, PromptEncoder

EMBEDDING_SHAPE = (1, 256, 64, 64)
LOW_RES_SIZE = 256
PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


@dataclass(frozen=True)
class KeyLayout:
    """Where a model's tensors live in the checkpoint formats seen in the wild."""

    finetuned_prefix: str = "model."
    distilled_prefix: str = "student_encoder."
    teacher_prefix: str = "teacher_encoder."
    encoder_part: str = "image_encoder"


KEY_LAYOUT = KeyLayout()


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo.

    Attributes:
        name: short id used on the command line ("l0", "litemedsam", ...).
        title: human-readable name.
        input_size: S, the square encoder input (boxes live in this frame).
        resize: preprocessing resize rule, "bilinear" (torch, uint8) or "area"
            (OpenCV INTER_AREA), see ``msam_export.contract``.
        build_encoder: constructs the image encoder (random weights).
        decoder_norm_eps: LayerNorm eps inside the mask decoder's transformer.
        propagation: the 3D rule that prompts a slice from its neighbour's mask
            (``msam_export.contract.Propagation``): each model's own original rule.
        keys: checkpoint key layout.
        int8_float_modules: (regex over ONNX module paths, reason) of modules INT8
            quantization keeps in float from the start (architecture-aware ignored scope).
    """

    name: str
    title: str
    input_size: int
    resize: str
    build_encoder: Callable[[], nn.Module]
    decoder_norm_eps: float
    propagation: str = "tight"
    keys: KeyLayout = KEY_LAYOUT
    int8_float_modules: tuple[tuple[str, str], ...] = ()

    def int8_float_reason(self, module_path: str) -> str | None:
        """Why INT8 keeps the module at ``module_path`` ("layers.0/blocks.1/conv1/c") in float, or None."""
        for pattern, reason in self.int8_float_modules:
            if re.search(pattern, module_path):
                return reason
        return None

    def build_prompt_encoder(self) -> PromptEncoder:
        from .sam import PromptEncoder

        s = self.input_size
        return PromptEncoder(256, EMBEDDING_SHAPE[2:], (s, s), mask_in_chans=16)

    def build_mask_decoder(self) -> MaskDecoder:
        from .sam import MaskDecoder, TwoWayTransformer

        transformer = TwoWayTransformer(2, 256, 8, 2048, norm_eps=self.decoder_norm_eps)
        return MaskDecoder(256, transformer, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256)

    def build(self, with_decoder: bool = True, device: str | torch.device | None = None) -> MedSam:
        """The composed model with random weights (``device="meta"`` for shapes only)."""
        import torch

        from .model import MedSam

        with torch.device(device or "cpu"):
            encoder = self.build_encoder()
            prompt = self.build_prompt_encoder() if with_decoder else None
            decoder = self.build_mask_decoder() if with_decoder else None
        return MedSam(encoder, prompt, decoder).eval()


def _efficientvit_encoder(variant: str) -> Any:
    from .efficientvit import build_efficientvit_encoder

    return build_efficientvit_encoder(variant)


def _tinyvit_encoder() -> Any:
    from .tinyvit import build_litemedsam_encoder

    return build_litemedsam_encoder()


def _medficientsam(variant: str) -> ModelSpec:
    return ModelSpec(
        name=variant,
        title=f"MedficientSAM-{variant.upper()}",
        input_size=512,
        resize="bilinear",
        build_encoder=lambda: _efficientvit_encoder(variant),
        decoder_norm_eps=1e-6,
        # MedficientSAM's infer_scripts/infer_torch.py: tight bbox in original pixels
        propagation="tight",
        int8_float_modules=(
            (r"^backbone/stages\.[01]/", "input stem at full resolution: errors here grow through the network"),
            (r"/depth_conv/", "MBConv depthwise 3x3: few weights per channel, little INT8 gain"),
            (r"^neck/output_ops/", "last neck conv writes the image embeddings the decoder reads"),
        ),
    )


ZOO: dict[str, ModelSpec] = {
    "l0": _medficientsam("l0"),
    "l1": _medficientsam("l1"),
    "l2": _medficientsam("l2"),
    "litemedsam": ModelSpec(
        name="litemedsam",
        title="LiteMedSAM",
        input_size=256,
        resize="area",
        build_encoder=_tinyvit_encoder,
        decoder_norm_eps=1e-5,
        # the challenge's official CVPR24_LiteMedSAM_infer.py: neighbour's bbox in the 256 frame, +3 px
        propagation="margin:3",
        int8_float_modules=(
            (r"^patch_embed/", "input stem at full resolution: errors here grow through the network"),
            (r"^layers\.0/", "MBConv stage: most sensitive to INT8 weights (embedding error 0.09 alone)"),
            (r"/downsample/", "patch merging convs: next most sensitive (0.02-0.05 each), few weights"),
            (r"/local_conv/", "depthwise 3x3: sensitive (up to 0.03), few weights, little INT8 gain"),
        ),
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name`` (case-insensitive); ValueError lists the choices."""
    key = name.lower()
    if key not in ZOO:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(ZOO)}")
    return ZOO[key]
