"""2D and 3D segmentation on top of any backend: boxes, and in 2D also clicks and a previous mask.

Pre/post-processing comes from ``msam_export.contract``; the backend only runs
the two graphs. 3D follows the challenge's propagation (docs/PIPELINE.md): each box
starts at its middle slice with the given box and walks up through z_max, then
down from z_mid-1 through z_min; every other slice is prompted with a box taken
from the neighbouring slice's mask (towards z_mid) by the model's propagation rule
(``contract.Propagation``), or with the given box when that mask gives none. A
box's walk depends only on its own masks, so all boxes walk together, slice by
slice: each slice is encoded exactly once and the boxes active on a slice share
one decoder call, with the same result as propagating one box at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..contract import (
    PromptArrays,
    Propagation,
    paint_labels,
    postprocess,
    preprocess,
    prompt_arrays,
    transform_boxes,
    transform_points,
)
from ..data import Case
from ..zoo import ModelSpec
from .backends import Backend

DECODER_CHUNK = 32  # boxes per decoder call; bounds the (N,1,S,S) upsampling memory


@dataclass
class Timings:
    """Milliseconds spent per stage, and how often each graph ran."""

    encoder_ms: float = 0.0
    decoder_ms: float = 0.0
    pre_ms: float = 0.0
    post_ms: float = 0.0
    encoder_calls: int = 0
    decoder_calls: int = 0
    decoded_boxes: int = 0
    encoder_call_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | int]:
        d = {k: v for k, v in self.__dict__.items() if k != "encoder_call_ms"}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


@dataclass
class Segmentation:
    """A case's label map plus each box's own mask (for per-box agreement).

    ``box_masks[i]`` is a bool array: (H, W) for 2D; for 3D, the masks of the
    slices ``box_slices[i]`` (a (z_min, z_max) range), shape (dz, H, W).
    ``prompts[i]`` (3D) maps each slice to the S-frame box it was decoded with.
    ``logits`` (2D) are the low-res logits (N,1,256,256): the ``mask`` prompt of a next call.
    """

    segs: np.ndarray
    box_masks: list[np.ndarray]
    box_slices: list[tuple[int, int]]
    timings: Timings
    wall_ms: float = 0.0
    prompts: list[dict[int, np.ndarray]] = field(default_factory=list)
    logits: np.ndarray | None = None


class Predictor:
    """Segments challenge cases with one backend and one model spec.

    ``propagation`` overrides the spec's 3D rule (``"tight"``, ``"margin:N"``)."""

    def __init__(self, backend: Backend, spec: ModelSpec, propagation: Propagation | str | None = None) -> None:
        self.backend = backend
        self.spec = spec
        rule = propagation if propagation is not None else spec.propagation
        self.propagation = rule if isinstance(rule, Propagation) else Propagation.parse(rule)
        self.timings = Timings()

    def _encode(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        t0 = time.perf_counter()
        tensor, resized_hw = preprocess(image, self.spec.input_size, self.spec.resize)
        t1 = time.perf_counter()
        embedding = self.backend.encode(tensor)
        t2 = time.perf_counter()
        self.timings.pre_ms += (t1 - t0) * 1e3
        self.timings.encoder_ms += (t2 - t1) * 1e3
        self.timings.encoder_call_ms.append((t2 - t1) * 1e3)
        self.timings.encoder_calls += 1
        return embedding, resized_hw

    def _decode(
        self,
        embedding: np.ndarray,
        resized_hw: tuple[int, int],
        original_hw: tuple[int, int],
        prompts: np.ndarray | PromptArrays,
        logits_out: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """(N,4) S-frame boxes, or full-interface prompts -> (N,H,W) bool masks; the low-res
        logits are appended to ``logits_out`` when given."""
        masks = []
        for start in range(0, len(prompts), DECODER_CHUNK):
            stop = start + DECODER_CHUNK
            t1 = time.perf_counter()
            if isinstance(prompts, PromptArrays):
                chunk = prompts.rows(start, stop)
                logits, _ = self.backend.decode_prompts(embedding, chunk)
            else:
                chunk = np.ascontiguousarray(prompts[start:stop], dtype=np.float32)
                logits, _ = self.backend.decode(embedding, chunk)
            t2 = time.perf_counter()
            masks.append(postprocess(logits, resized_hw, original_hw, self.spec.input_size))
            t3 = time.perf_counter()
            if logits_out is not None:
                logits_out.append(np.asarray(logits, dtype=np.float32))
            self.timings.decoder_ms += (t2 - t1) * 1e3
            self.timings.post_ms += (t3 - t2) * 1e3
            self.timings.decoder_calls += 1
            self.timings.decoded_boxes += len(chunk)
        return np.concatenate(masks)

    def segment_2d(
        self,
        image: np.ndarray,
        boxes: np.ndarray | None = None,
        *,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        embedding: tuple[np.ndarray, tuple[int, int]] | None = None,
        keep_logits: bool = True,
    ) -> Segmentation:
        """image uint8 (H,W,3) or (H,W); N prompts: boxes (N,4) XYXY original pixels, and/or clicks
        ``points`` (N,P,2) XY original pixels with ``labels`` (N,P) (1 foreground, 0 background, -1
        padding), and/or ``masks`` (N,1,256,256) low-res logits of a previous call (``.logits``; a
        NaN row: none). Boxes alone use the backend's box path; anything else needs a decoder with
        the full prompt interface. ``embedding`` (an earlier ``encode_2d``) skips the encoder;
        ``keep_logits`` False leaves ``.logits`` None (saves N x 256 KiB)."""
        start = time.perf_counter()
        self.timings = Timings()
        embedding, resized_hw = embedding if embedding is not None else self._encode(image)
        hw, size = image.shape[:2], self.spec.input_size
        model_boxes = None if boxes is None else transform_boxes(np.asarray(boxes, dtype=np.float64), hw, size)
        prompts: np.ndarray | PromptArrays | None = model_boxes
        if points is not None or masks is not None:
            clicks = None if points is None else transform_points(points, hw, size)
            prompts = prompt_arrays(model_boxes, clicks, labels, masks)
        if prompts is None:
            raise ValueError("segment_2d needs boxes or points")
        logits: list[np.ndarray] = []
        found = self._decode(embedding, resized_hw, hw, prompts, logits if keep_logits else None)
        segs = paint_labels(found, hw)
        wall = (time.perf_counter() - start) * 1e3
        low_res = np.concatenate(logits) if logits else None
        return Segmentation(segs, list(found), [(0, 0)] * len(found), self.timings, wall, logits=low_res)

    def encode_2d(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """A 2D image's embedding and resized size, for several ``segment_2d`` calls on it."""
        return self._encode(image)

    def segment_3d(
        self,
        volume: np.ndarray,
        boxes: np.ndarray,
        forced_prompts: list[dict[int, np.ndarray]] | None = None,
        embeddings: dict[int, tuple[np.ndarray, tuple[int, int]]] | None = None,
    ) -> Segmentation:
        """volume uint8 (D,H,W); boxes (N,6) x_min,y_min,z_min,x_max,y_max,z_max (z inclusive).

        ``forced_prompts`` (box -> slice -> S-frame box, e.g. another run's ``prompts``) replaces
        the propagation: each slice is decoded with the given prompt ("teacher forcing").
        ``embeddings`` (slice -> embedding) is a cache shared between runs on the same volume."""
        start = time.perf_counter()
        self.timings = Timings()
        boxes = np.asarray(boxes, dtype=np.float64)
        z_lo = boxes[:, 2].astype(int)
        z_hi = boxes[:, 5].astype(int)
        z_mid = (z_lo + z_hi) // 2
        size = self.spec.input_size
        given = transform_boxes(boxes[:, [0, 1, 3, 4]], volume.shape[1:], size)
        per_box: list[dict[int, np.ndarray]] = [{} for _ in boxes]
        used: list[dict[int, np.ndarray]] = [{} for _ in boxes]
        cache = embeddings if embeddings is not None else {}

        def prompt(i: int, z: int, neighbour: int) -> np.ndarray:
            if forced_prompts is not None:
                return forced_prompts[i][z]
            if z == z_mid[i]:
                return given[i]
            t0 = time.perf_counter()
            found = self.propagation.next_box(per_box[i][neighbour], i + 1, size, self.spec.resize)
            self.timings.pre_ms += (time.perf_counter() - t0) * 1e3
            return given[i] if found is None else found

        def run_slice(z: int, active: list[int], neighbour: int) -> None:
            if not active:
                return
            if z not in cache:
                cache[z] = self._encode(volume[z])
            embedding, resized_hw = cache[z]
            prompts = np.stack([prompt(i, z, neighbour) for i in active])
            masks = self._decode(embedding, resized_hw, volume.shape[1:], prompts)
            for i, mask, box in zip(active, masks, prompts, strict=True):
                per_box[i][z], used[i][z] = mask, box

        for z in range(int(z_mid.min()), int(z_hi.max()) + 1):  # upward sweep
            run_slice(z, [i for i in range(len(boxes)) if z_mid[i] <= z <= z_hi[i]], z - 1)
        for z in range(int(z_mid.max()) - 1, int(z_lo.min()) - 1, -1):  # downward sweep
            run_slice(z, [i for i in range(len(boxes)) if z_lo[i] <= z < z_mid[i]], z + 1)

        segs = np.zeros(volume.shape, dtype=np.uint16)
        box_masks = []
        for i, masks in enumerate(per_box):
            stack = np.stack([masks[z] for z in range(z_lo[i], z_hi[i] + 1)])
            segs[z_lo[i] : z_hi[i] + 1][stack] = i + 1
            box_masks.append(stack)
        wall = (time.perf_counter() - start) * 1e3
        ranges = list(zip(z_lo.tolist(), z_hi.tolist(), strict=True))
        return Segmentation(segs, box_masks, ranges, self.timings, wall, used)

    def segment(self, case: Case) -> Segmentation:
        """A challenge case: 2D, or 3D by propagation."""
        if case.is_3d:
            return self.segment_3d(case.image, case.boxes)
        return self.segment_2d(case.image, case.boxes, keep_logits=False)
