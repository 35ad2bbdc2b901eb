"""Quantization-aware distillation (``openvino --int8 --qat``), opt-in.

Starts from the post-training recipe carried into the PyTorch encoder: NNCF's ``quantize`` on
the torch model (same preset, float scope and target as the OpenVINO recipe, plus the modules
accuracy control kept in float), GELU outputs quantized from GELU's minimum, and every weight
seeded so that its quantizer rounds it to GPTQ's codes (``rounding.gptq_codes``). Modules that
compute a weight at run time (TinyViT's q, k and v, cut from the packed qkv) expose it as a
parameter first, so the same layers are quantized as in the OpenVINO recipe. Then it fine-tunes
weights and quantizer ranges against the FP32 model on the calibration file's training slices:
the loss is the image embeddings' mean squared error plus the FP32 mask decoder's low-res mask
logits on the slice's boxes (the decoder is frozen; gradients flow through it into the
encoder). On a CUDA GPU when torch sees one, else the CPU; deterministic for a seed on the CPU.
Every ``eval_every`` steps, from step 0, and after the last, the student is converted to an
OpenVINO IR with INT8 kernels (``ov.convert_model``) and measured like any candidate on the
validation cases; the best of these is returned, so distillation never ends below its start.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..calibrate import CalibrationSet
from ..zoo import ModelSpec
from .rounding import DAMPING, gptq_codes, gram_slices, strided_rows
from .validation import Drift


@dataclass(frozen=True)
class QatOptions:
    """Steps (one slice each), a wall-time limit, learning rate, logit loss weight, seed, and how
    often the student is scored on the validation cases (every ``eval_every`` steps from step 0;
    0: at the end only)."""

    steps: int = 100
    max_seconds: float = 900.0
    learning_rate: float = 1e-6  # 1e-5 lost agreement on held-out cases (0.839 vs 0.964 at 60 steps)
    logit_weight: float = 0.01
    seed: int = 0
    eval_every: int = 20


def evaluation_steps(steps: int, every: int) -> list[int]:
    """Steps after which the student is scored: 0, every, 2 * every, ... and the last (``steps``)."""
    scheduled = list(range(0, steps, every)) if every > 0 else []
    return scheduled + [steps]


def to_openvino(student: Any, input_size: int) -> Any:
    """A CPU torch student -> an OpenVINO model with INT8 (FakeQuantize) operations and the
    FP32 encoder's tensor names (``image`` -> ``image_embeddings``)."""
    import openvino as ov
    import torch

    from ..export.activations import traceable_activations

    example = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), traceable_activations(student):
        converted = ov.convert_model(student, example_input=example)
    converted.outputs[0].get_tensor().set_names({"image_embeddings"})
    converted.inputs[0].get_tensor().set_names({"image"})
    return converted


def onnx_path(torch_name: str) -> str:
    """A torch module name as the module path of its ONNX operations ("layers.0.blocks.1.attn"
    -> "layers.0/blocks.1/attn"): a numeric part belongs to the container before it."""
    parts: list[str] = []
    for part in torch_name.split("."):
        if part.isdigit() and parts:
            parts[-1] += f".{part}"
        else:
            parts.append(part)
    return "/".join(parts)


def float_modules(encoder: Any, spec: ModelSpec, kept: list[str]) -> list[str]:
    """Torch names of the encoder's modules INT8 keeps in float: the spec's float scope, the
    module paths (``kept``) accuracy control restored, and every hand-written ``LayerNorm2d``.

    The OpenVINO recipe sees those layer norms as one MVN operation and never quantizes inside
    them; traced from PyTorch they are separate mean/sub/pow/add/sqrt operations, and a
    quantizer on ``var + eps`` rounds small variances to zero, which OpenVINO then divides by
    (the embeddings come out infinite)."""
    from ..zoo.common import LayerNorm2d

    names = []
    for name, module in encoder.named_modules():
        if not name or next(module.children(), None) is not None:
            continue
        path = onnx_path(name)
        if (
            isinstance(module, LayerNorm2d)
            or spec.int8_float_reason(path + "/") is not None
            or any(path.startswith(k + "/") or path == k for k in kept)
        ):
            names.append(name)
    return names


def expose_weights(model: Any) -> None:
    """Weights that modules compute at run time become parameters NNCF's torch backend quantizes
    (each module's ``expose_weights``; same outputs)."""
    for module in list(model.modules()):
        if hasattr(module, "expose_weights"):
            module.expose_weights()


def _is_list(module: Any) -> bool:
    """A container torch iterates but never calls."""
    import torch.nn as nn

    return isinstance(module, (nn.ModuleList, nn.ModuleDict))


def _children_and_list_items(module: Any) -> Any:
    """``named_children`` of a module that holds lists: its children, each followed by the items
    of its (nested) lists under their dotted names ("layers", "layers.0", "layers.1", ...)."""
    import torch.nn as nn

    def walk(prefix: str, holder: Any) -> Any:
        for key, child in nn.Module.named_children(holder):
            yield prefix + key, child
            if _is_list(child):
                yield from walk(f"{prefix}{key}.", child)

    yield from walk("", module)


def expose_list_items(model: Any) -> None:
    """Makes each module that holds a ``ModuleList``/``ModuleDict`` list the items as its own
    children too ("layers.0" on the encoder). NNCF names a traced operation by the chain of
    modules that were *called*, looking each one up among its caller's children; a list is
    iterated, never called, so without this its items' operations lose their path
    ("layers.0.blocks.1.conv1.c" would trace as "conv1/c", shared by every block). Only
    ``named_children`` changes (by a subclass per holder); registration, the state dict and the
    computation do not."""
    for module in list(model.modules()):
        if not _is_list(module) and any(_is_list(c) for c in module._modules.values()):
            cls = type(module)
            module.__class__ = type(cls.__name__, (cls,), {"named_children": _children_and_list_items})


def nncf_path(model: Any, torch_name: str) -> str:
    """The path NNCF gives the operations of module ``torch_name`` once ``expose_list_items``
    has run: one "/" part per called module ("layers.0.blocks.1.conv1.c" ->
    "layers.0/blocks.1/conv1/c", "neck.1" -> "neck/1")."""
    parts: list[str] = []
    module = model
    for part in torch_name.split("."):
        if _is_list(module):
            parts[-1] += f".{part}"
        else:
            parts.append(part)
        module = module._modules[part]
    return "/".join(parts)


def ignored_patterns(model: Any, modules: list[str]) -> list[str]:
    """NNCF ignored-scope patterns for every operation of the torch modules ``modules``."""
    return [f"^{re.escape(nncf_path(model, name))}/" for name in modules]


def weight_quantizers(model: Any) -> dict[str, Any]:
    """Torch module name -> the NNCF quantizer of its weight, for the modules GPTQ can round:
    ``Linear`` and ungrouped, undilated, zero-padded ``Conv2d``. NNCF 3 quantizes a weight with a
    pre-hook on the port 1 of the module's operation, keyed "<nncf path>/linear/0__1"."""
    import torch.nn as nn
    from nncf.torch.function_hook.wrapper import get_hook_storage

    by_path = {nncf_path(model, name): (name, module) for name, module in model.named_modules() if name}
    out = {}
    for key, hooks in get_hook_storage(model).pre_hooks.items():
        op_name, port = key.replace(":", ".").rsplit("__", 1)
        path, function, _ = op_name.rsplit("/", 2)
        if port != "1" or function not in ("linear", "conv2d") or path not in by_path or len(hooks) != 1:
            continue
        name, module = by_path[path]
        roundable = isinstance(module, nn.Linear) or (
            isinstance(module, nn.Conv2d)
            and module.groups == 1
            and all(d == 1 for d in module.dilation)
            and isinstance(module.padding, tuple)
            and module.padding_mode == "zeros"
        )
        if roundable:
            out[name] = next(iter(hooks.values()))
    return out


def start_gelu_ranges_at_minimum(model: Any) -> int:
    """``graph.start_gelu_ranges_at_minimum`` on the NNCF torch model: each symmetric quantizer
    of a GELU output becomes an asymmetric one from GELU's minimum to its old high end, as the
    OpenVINO recipe has it. Returns how many quantizers changed."""
    import torch
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import AsymmetricQuantizer, PTQuantizerSpec, SymmetricQuantizer

    from .graph import GELU_MINIMUM

    changed = 0
    for key, hooks in get_hook_storage(model).post_hooks.items():
        if "/gelu/" not in key:
            continue
        for hook_id, quantizer in list(hooks.items()):
            if not isinstance(quantizer, SymmetricQuantizer):
                continue
            high = quantizer.scale.detach().abs()
            spec = PTQuantizerSpec(
                num_bits=quantizer.num_bits,
                mode=QuantizationScheme.ASYMMETRIC,
                signedness_to_force=None,
                narrow_range=False,
                half_range=False,
                scale_shape=tuple(high.shape),
                logarithm_scale=False,
            )
            replacement = AsymmetricQuantizer(spec)
            with torch.no_grad():
                replacement.input_low.fill_(GELU_MINIMUM)
                replacement.input_range.copy_(high - GELU_MINIMUM)
            hooks[hook_id] = replacement
            changed += 1
    return changed


def _input_rows(module: Any, value: Any) -> Any:
    """A layer's input as the rows its weight multiplies (``rounding.layer_rows`` in torch):
    (tokens, in) for a Linear, (positions, in_channels * kh * kw) patches for a Conv2d."""
    import torch
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return value.reshape(-1, value.shape[-1])
    patches = torch.nn.functional.unfold(value, module.kernel_size, stride=module.stride, padding=module.padding)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def seed_gptq_codes(student: Any, fp32: Any, images: Any, damping: float = DAMPING) -> int:
    """Sets each roundable weight of the NNCF-quantized ``student`` so that its quantizer rounds
    it to GPTQ's codes (``rounding.gptq_codes``) rather than to the nearest level: distillation
    then refines the post-training recipe's weights instead of restarting from nearest rounding.
    Grams come from the layer inputs of the FP32 encoder ``fp32`` (same module names) on
    ``images`` (N, 3, S, S). Returns the number of weights seeded."""
    import torch

    quantizers = weight_quantizers(student)
    modules = dict(fp32.named_modules())
    grams: dict[str, Any] = {}

    def collect(name: str) -> Callable[..., None]:
        def hook(module: Any, inputs: tuple, _: Any) -> None:
            rows = _input_rows(module, inputs[0].detach())
            rows = strided_rows(rows).float()
            grams[name] = grams[name] + rows.T @ rows if name in grams else rows.T @ rows

        return hook

    handles = [modules[name].register_forward_hook(collect(name)) for name in quantizers]
    with torch.no_grad():
        for i in range(len(images)):
            fp32(images[i : i + 1])
    for handle in handles:
        handle.remove()
    student_modules = dict(student.named_modules())
    with torch.no_grad():
        for name, quantizer in quantizers.items():
            weight = student_modules[name].weight
            rows = weight.detach().reshape(weight.shape[0], -1).double().numpy()
            step = (quantizer.scale.detach().abs().double() / quantizer.level_high).reshape(-1).numpy()
            step = np.broadcast_to(step, (rows.shape[0],))
            codes = gptq_codes(
                rows, grams[name].double().numpy(), step, quantizer.level_low, quantizer.level_high, damping
            )
            weight.copy_(torch.from_numpy(codes * step[:, None]).reshape(weight.shape).to(weight.dtype))
    return len(quantizers)


def distill(
    checkpoint: Path,
    calib: CalibrationSet,
    spec: ModelSpec,
    options: QatOptions,
    *,
    target: str,
    kept_float: list[str],
    measure: Callable[[Any], Drift],
    rank: Callable[[Drift], Any] = lambda drift: drift.agreement,
    note: Callable[[str], None] = lambda _: None,
) -> tuple[Any, Drift, dict[str, Any]]:
    """Returns (the best-scoring OpenVINO INT8 encoder model, its drift, a record of what was
    done); ``measure`` scores an OpenVINO encoder model on the validation cases, ``rank`` orders
    the scores (larger is better; default: mean agreement)."""
    import nncf
    import torch

    from ..checkpoints import load_checkpoint
    from .openvino import needs_overflow_fix

    nncf.set_log_level(logging.WARNING)
    torch.manual_seed(options.seed)
    np.random.seed(options.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_checkpoint(checkpoint)
    teacher = loaded.model.eval()
    student = load_checkpoint(checkpoint).model.image_encoder.eval()
    for model in (teacher, student):  # same module names in both: GPTQ reads the teacher's layer inputs
        expose_weights(model)
    images = torch.from_numpy(calib.train_images)
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    ignored = float_modules(student, spec, kept_float)
    expose_list_items(student)
    advanced = nncf.AdvancedQuantizationParameters(
        overflow_fix=nncf.OverflowFix.ENABLE if needs_overflow_fix(target) else nncf.OverflowFix.DISABLE,
        disable_bias_correction=True,
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(convolution=-1, matmul=-1),
    )
    student = nncf.quantize(
        student,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(images),
        ignored_scope=nncf.IgnoredScope(patterns=ignored_patterns(student, ignored), validate=True),
        advanced_parameters=advanced,
    )
    gelu = start_gelu_ranges_at_minimum(student)
    seeded = seed_gptq_codes(student, teacher.image_encoder, images[gram_slices(len(images))])
    note(f"qat: {gelu} GELU ranges start at its minimum; {seeded} weights start from GPTQ's codes")
    student, teacher = student.to(device), teacher.to(device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    train_boxes = torch.from_numpy(calib.boxes[~calib.validation])
    counts = calib.box_counts[~calib.validation]
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=options.learning_rate)
    order = np.random.default_rng(options.seed).permutation(len(images))
    # The student stays in eval mode so that its BatchNorm layers keep their running statistics:
    # in train mode, one slice per step replaces them with that slice's, and the masks no longer
    # match FP32 at all. Gradients still reach every weight and quantizer range.
    student.eval()
    schedule = set(evaluation_steps(options.steps, options.eval_every))
    scores: list[tuple[int, float]] = []
    best: tuple[int, Any, Drift] | None = None

    def score(done: int) -> None:
        nonlocal best
        converted = to_openvino(student.cpu(), spec.input_size)
        student.to(device)
        drift = measure(converted)
        scores.append((done, round(drift.agreement, 6)))
        if best is None or rank(drift) > rank(best[2]):
            best = (done, converted, drift)
        note(f"qat after {done} steps: agreement {drift.agreement:.4f} (best: step {best[0]})")

    start, losses = time.perf_counter(), []
    for step in range(options.steps):
        if step in schedule:
            score(step)
        if time.perf_counter() - start > options.max_seconds:
            break
        i = int(order[step % len(order)])
        image = images[i : i + 1].to(device)
        boxes = train_boxes[i, : max(1, int(counts[i]))].to(device)
        with torch.no_grad():
            target_embedding = teacher.encode(image)
            target_logits, _ = teacher.decode(target_embedding, boxes)
        embedding = student(image)
        logits, _ = teacher.decode(embedding, boxes)
        loss = (embedding - target_embedding).pow(2).mean()
        loss = loss + options.logit_weight * (logits - target_logits).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (options.steps - step - 1)
            note(f"qat step {step + 1}/{options.steps}: loss {np.mean(losses[-10:]):.5f}, ETA {eta:.0f} s")
    if not scores or scores[-1][0] != len(losses):
        score(len(losses))
    assert best is not None
    best_step, converted, drift = best
    record = {
        "steps": len(losses),
        "best_step": best_step,
        "scores": [list(pair) for pair in scores],
        "seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
        "seed": options.seed,
        "learning_rate": options.learning_rate,
        "logit_weight": options.logit_weight,
        "loss_first": round(losses[0], 6) if losses else None,
        "loss_last10": round(float(np.mean(losses[-10:])), 6) if losses else None,
        "float_modules": len(ignored),
        "gptq_seeded_weights": seeded,
    }
    return converted, drift, record
