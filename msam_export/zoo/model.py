"""The composed SAM: image encoder + prompt encoder + mask decoder, and its two decoder graphs."""

from __future__ import annotations

import torch
from torch import nn

from .sam import MaskDecoder, PromptEncoder


class BoxDecoder(nn.Module):
    """Prompt encoder + mask decoder as one graph.

    ``forward(image_embeddings (1,256,64,64), boxes (N,4))`` with boxes XYXY in
    the S-pixel frame of the model input (already scaled and truncated by the
    contract) returns low-res logits (N,1,256,256) and IoU predictions (N,1).
    """

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(self, image_embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_boxes(boxes)
        return self.mask_decoder(
            image_embeddings,
            self.prompt_encoder.dense_pe(),
            sparse,
            self.prompt_encoder.dense_embedding(),
        )


class PromptDecoder(nn.Module):
    """Prompt encoder + mask decoder with SAM's ONNX interface (points, labels, previous mask).

    ``forward(image_embeddings (1,256,64,64), point_coords (N,P,2), point_labels (N,P),
    mask_input (N,1,256,256), has_mask_input (N,))`` with points XY in the S-pixel frame and
    labels as ``PromptEncoder.embed_points`` takes them returns low-res logits (N,1,256,256)
    and IoU predictions (N,1). A box is its two corners with labels 2 and 3.
    """

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.embed_masks(mask_input, has_mask_input)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.dense_pe(), sparse, dense)


class MedSam(nn.Module):
    """Box-prompted SAM. State-dict keys: ``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*`` (as in MedficientSAM's BaseSAM and LiteMedSAM).

    ``prompt_encoder`` and ``mask_decoder`` are None for an encoder-only
    (distilled) checkpoint.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder | None,
        mask_decoder: MaskDecoder | None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    @property
    def has_decoder(self) -> bool:
        return self.prompt_encoder is not None and self.mask_decoder is not None

    def box_decoder(self) -> BoxDecoder:
        """The decoder half as its own module (shares parameters)."""
        if self.prompt_encoder is None or self.mask_decoder is None:
            raise ValueError("this model has no prompt encoder / mask decoder")
        return BoxDecoder(self.prompt_encoder, self.mask_decoder)

    def prompt_decoder(self) -> PromptDecoder:
        """The decoder half with SAM's full prompt interface (shares parameters)."""
        if self.prompt_encoder is None or self.mask_decoder is None:
            raise ValueError("this model has no prompt encoder / mask decoder")
        return PromptDecoder(self.prompt_encoder, self.mask_decoder)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) preprocessed image -> (1, 256, 64, 64) embedding."""
        return self.image_encoder(image)

    def decode(self, image_embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1,256,64,64) embedding, (N,4) S-frame boxes -> logits (N,1,256,256), IoU (N,1)."""
        return self.box_decoder()(image_embeddings, boxes)

    def decode_prompts(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points, labels and previous masks (see ``PromptDecoder``) -> logits (N,1,256,256), IoU (N,1)."""
        return self.prompt_decoder()(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
