"""What an artifact is: a directory of graphs plus ``export.json`` (schema ``msam-export/export@1``).

Export and quantize write artifacts with :func:`write_record`; the runtime, verify and publish
read them with :func:`open_artifact` and ask the record, not the directory name, what the
artifact is (:func:`precision_of`, :func:`is_int8`). The record's sections are described in
``docs/FORMATS.md``.

Graphs and their tensors (the same names in ONNX and OpenVINO IR):

* encoder: ``image`` float32 (1,3,S,S) -> ``image_embeddings`` float32 (1,256,64,64);
* decoder, box interface (``options.prompts`` "box", the default): ``image_embeddings``
  (1,256,64,64), ``boxes`` float32 (N,4) XYXY in the S frame -> ``low_res_logits``
  (N,1,256,256), ``iou_predictions`` (N,1); N dynamic;
* decoder, full interface (``options.prompts`` "full", SAM's ONNX interface):
  ``image_embeddings``, ``point_coords`` float32 (N,P,2) XY in the S frame, ``point_labels``
  float32 (N,P) (1 foreground, 0 background, 2/3 box corners, -1 padding), ``mask_input``
  float32 (N,1,256,256), ``has_mask_input`` float32 (N,) -> the same two outputs; N, P dynamic.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MsamError
from .files import PathLike, describe_file, read_json, write_json

EXPORT_FILE = "export.json"
SCHEMA = "msam-export/export@1"
KINDS = ("onnx", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "boxes")
DECODER_OUTPUTS = ("low_res_logits", "iou_predictions")
PROMPT_DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
# the decoder interfaces an export can have, and each one's inputs
PROMPT_INTERFACES = {"box": DECODER_INPUTS, "full": PROMPT_DECODER_INPUTS}

# graph file of each part, per kind (an OpenVINO graph's weights are the .bin beside its .xml)
GRAPH_FILES = {
    "onnx": {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "encoder_preprocess": "encoder_preprocess.onnx"},
    "openvino": {"encoder": "encoder.xml", "decoder": "decoder.xml"},
}
PACKAGES = ("msam-export", "torch", "numpy", "onnx", "onnxruntime", "onnxsim", "openvino", "nncf")


def graph_file(kind: str, part: str) -> str:
    """File name of ``part`` ("encoder", "decoder") in an artifact of ``kind``."""
    return GRAPH_FILES[kind][part]


def files_of(kind: str, parts: list[str]) -> list[str]:
    """Every file the graphs of ``parts`` consist of (OpenVINO: .xml and .bin)."""
    names = [graph_file(kind, part) for part in parts]
    if kind == "openvino":
        names = [n for xml in names for n in (xml, xml.replace(".xml", ".bin"))]
    return names


def library_versions() -> dict[str, str | None]:
    """Python and the versions of the packages that make and run artifacts (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_info(spec: Any) -> dict[str, Any]:
    """The record's ``model`` section: what the runtime needs to pre/post-process for the model."""
    return {
        "variant": spec.name,
        "title": spec.title,
        "input_size": spec.input_size,
        "resize": spec.resize,
        "propagation": spec.propagation,
    }


def new_record(
    kind: str,
    *,
    model: dict[str, Any],
    source: dict[str, Any],
    options: dict[str, Any],
    graphs: dict[str, Any],
    folder: Path,
    parity: dict[str, Any],
    timings: dict[str, float],
    **sections: Any,
) -> dict[str, Any]:
    """An export.json for the graphs in ``folder``: the files of ``graphs``' parts are hashed.

    ``options["precision"]`` ("fp32", "fp16" or "int8") says what the weights are; INT8
    records also carry a ``quantization`` section (in ``sections``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    if options.get("precision") not in PRECISIONS:
        raise ValueError(f"options.precision must be one of {PRECISIONS}, got {options.get('precision')!r}")
    files = files_of(kind, list(graphs))
    return {
        "schema": SCHEMA,
        "kind": kind,
        "model": model,
        "source": source,
        "options": options,
        "versions": library_versions(),
        "graphs": graphs,
        "files": {name: describe_file(folder / name) for name in files},
        "parity": parity,
        "timings_s": timings,
        **sections,
    }


def write_record(folder: PathLike, record: dict[str, Any]) -> Path:
    """Writes ``folder/export.json`` atomically; returns its path."""
    path = Path(folder) / EXPORT_FILE
    write_json(path, record)
    return path


def read_record(folder: PathLike) -> dict[str, Any]:
    """``folder/export.json``, checked for schema and kind; MsamError when it is not an artifact."""
    folder = Path(folder)
    path = folder / EXPORT_FILE
    if not path.is_file():
        raise MsamError(f"{folder}: no {EXPORT_FILE}; not an msam-export artifact directory")
    record = read_json(path, EXPORT_FILE)
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise MsamError(f"{path}: unknown schema {found!r} (expected {SCHEMA!r})")
    if record.get("kind") not in KINDS:
        raise MsamError(f"{path}: unknown artifact kind {record.get('kind')!r}")
    return record


def precision_of(record: dict[str, Any]) -> str:
    """What the artifact's weights are: "fp32", "fp16" or "int8"."""
    precision = (record.get("options") or {}).get("precision", "fp32")
    return precision if precision in PRECISIONS else "fp32"


def prompts_of(record: dict[str, Any]) -> str:
    """The decoder's prompt interface: "box" (boxes only) or "full" (points, labels, a mask)."""
    prompts = (record.get("options") or {}).get("prompts", "box")
    return prompts if prompts in PROMPT_INTERFACES else "box"


def is_int8(record: dict[str, Any]) -> bool:
    return precision_of(record) == "int8"


def artifact_name(record: dict[str, Any]) -> str:
    """A bundle directory name for the artifact: its kind, plus ``-int8`` or ``-fp16``."""
    precision = precision_of(record)
    return str(record["kind"]) + ("" if precision == "fp32" else f"-{precision}")


@dataclass(frozen=True)
class Artifact:
    """An artifact directory and its record."""

    path: Path
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.record["kind"])

    @property
    def precision(self) -> str:
        return precision_of(self.record)

    @property
    def prompts(self) -> str:
        return prompts_of(self.record)

    @property
    def variant(self) -> str:
        return str(self.record["model"]["variant"])

    def graph(self, part: str) -> Path | None:
        """Path of a part's graph, or None when the artifact has none (encoder-only)."""
        if part not in (self.record.get("graphs") or {}):
            return None
        return self.path / graph_file(self.kind, part)


def open_artifact(path: PathLike) -> Artifact:
    """The artifact at ``path`` (a directory with export.json)."""
    path = Path(path)
    return Artifact(path, read_record(path))
