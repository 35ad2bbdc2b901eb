"""The PyTorch eager model as a backend (needs the ``export`` extra: torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class TorchBackend:
    """FP32 (what users run) or FP64 (the exact reference parity uses)."""

    name = "pytorch"
    interface = "full"  # the PyTorch model takes every prompt

    def __init__(self, model: Any, threads: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.model = model.eval().to(dtype)
        self.dtype = dtype
        self.precision = {torch.float32: "f32", torch.float64: "f64"}[dtype]
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.model.encode(torch.from_numpy(image).to(self.dtype)).numpy()

    @torch.no_grad()
    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, iou = self.model.decode(
            torch.from_numpy(embeddings).to(self.dtype), torch.from_numpy(np.asarray(boxes)).to(self.dtype)
        )
        return logits.numpy(), iou.numpy()

    @torch.no_grad()
    def decode_prompts(self, embeddings: np.ndarray, prompts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Points, labels and previous masks (``contract.PromptArrays``) -> logits, IoU."""
        tensors = (torch.from_numpy(np.asarray(a)).to(self.dtype) for a in (embeddings, *prompts.arrays()))
        logits, iou = self.model.decode_prompts(*tensors)
        return logits.numpy(), iou.numpy()
