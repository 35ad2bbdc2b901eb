"""Tracing the encoder and the decoder (box or full prompt interface) to ONNX, simplifying and checking them."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ..artifact import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, PROMPT_DECODER_INPUTS
from ..zoo import EMBEDDING_SHAPE, MedSam, ModelSpec
from .activations import traceable_activations

DEFAULT_OPSET = 17


def _export(module: nn.Module, args: tuple, path: Path, opset: int, names: dict, dynamic: dict) -> None:
    with warnings.catch_warnings(), torch.no_grad(), traceable_activations(module):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=names["inputs"],
            output_names=names["outputs"],
            opset_version=opset,
            dynamic_axes=dynamic or None,
            do_constant_folding=True,
            dynamo=False,
        )


def trace_encoder(model: MedSam, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """``image`` float32 (1,3,S,S) -> ``image_embeddings`` (1,256,64,64)."""
    image = torch.zeros(1, 3, spec.input_size, spec.input_size)
    names = {"inputs": [ENCODER_INPUT], "outputs": [ENCODER_OUTPUT]}
    _export(model.image_encoder, (image,), path, opset, names, {})


def trace_preprocessing_encoder(model: MedSam, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """``image`` uint8 (H,W,3), H and W dynamic -> ``image_embeddings`` (1,256,64,64),
    ``resized_size`` int64 (2,), ``original_size`` int64 (2,); preprocessing inside."""
    from .preprocess_graph import PreprocessingEncoder

    module = PreprocessingEncoder(model.image_encoder, spec.input_size)
    image = torch.zeros(300, 400, 3, dtype=torch.uint8)
    names = {"inputs": [ENCODER_INPUT], "outputs": [ENCODER_OUTPUT, "resized_size", "original_size"]}
    _export(module, (image,), path, opset, names, {ENCODER_INPUT: {0: "height", 1: "width"}})


def trace_decoder(model: MedSam, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """``image_embeddings`` (1,256,64,64), ``boxes`` float32 (N,4) in the S frame
    -> ``low_res_logits`` (N,1,256,256), ``iou_predictions`` (N,1); N dynamic."""
    embeddings = torch.zeros(EMBEDDING_SHAPE)
    boxes = torch.tensor([[10.0, 20.0, 100.0, 120.0], [30.0, 40.0, 200.0, 220.0]])
    names = {"inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)}
    dynamic = {name: {0: "num_boxes"} for name in (DECODER_INPUTS[1], *DECODER_OUTPUTS)}
    _export(model.box_decoder(), (embeddings, boxes), path, opset, names, dynamic)


def trace_prompt_decoder(model: MedSam, spec: ModelSpec, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """SAM's ONNX interface: ``image_embeddings`` (1,256,64,64), ``point_coords`` float32 (N,P,2),
    ``point_labels`` float32 (N,P), ``mask_input`` float32 (N,1,256,256), ``has_mask_input``
    float32 (N,) -> ``low_res_logits`` (N,1,256,256), ``iou_predictions`` (N,1); N and P dynamic."""
    embeddings = torch.zeros(EMBEDDING_SHAPE)
    coords = torch.tensor([[[50.0, 60.0], [10.0, 20.0], [100.0, 120.0]], [[70.0, 80.0], [30.0, 40.0], [200.0, 220.0]]])
    labels = torch.tensor([[1.0, 2.0, 3.0], [0.0, 2.0, 3.0]])
    mask_input = torch.zeros(2, 1, 4 * EMBEDDING_SHAPE[2], 4 * EMBEDDING_SHAPE[3])
    has_mask = torch.tensor([1.0, 0.0])
    names = {"inputs": list(PROMPT_DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)}
    dynamic = {name: {0: "num_prompts"} for name in (*PROMPT_DECODER_INPUTS[1:], *DECODER_OUTPUTS)}
    dynamic["point_coords"] = dynamic["point_labels"] = {0: "num_prompts", 1: "num_points"}
    args = (embeddings, coords, labels, mask_input, has_mask)
    _export(model.prompt_decoder(), args, path, opset, names, dynamic)


TRACERS = {"box": trace_decoder, "full": trace_prompt_decoder}


def simplify(path: Path) -> str:
    """onnxsim in place; returns "ok", or why the unsimplified graph was kept."""
    from onnxsim import simplify as onnxsim_simplify

    model = onnx.load(str(path))
    try:
        simplified, check_ok = onnxsim_simplify(model)
    except Exception as exc:  # onnxsim raises many kinds; keep the traced graph then
        return f"kept unsimplified graph: onnxsim failed ({type(exc).__name__}: {str(exc)[:120]})"
    if not check_ok:
        return "kept unsimplified graph: onnxsim's check did not pass"
    onnx.save(simplified, str(path))
    return "ok"


def check(path: Path) -> None:
    """``onnx.checker`` with full checking (shape inference included)."""
    onnx.checker.check_model(str(path), full_check=True)


def io_spec(path: Path) -> dict[str, list[dict]]:
    """Names, shapes (symbolic dims as strings) and dtypes of a graph's inputs and outputs."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> list[dict]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            out.append({"name": v.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
        return out

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}
