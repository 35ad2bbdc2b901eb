"""``MODEL_CARD.md`` of a bundle: Hugging Face style front matter (model-index with DSC/NSD)
plus readable tables per artifact and how to run it."""

from __future__ import annotations

import json
import math
from typing import Any

KIND_TITLES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "pytorch": "PyTorch"}


def _num(value: Any, digits: int = 4) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _yaml_value(value: Any) -> str:
    """A YAML scalar: JSON is valid YAML for strings, numbers, booleans and null."""
    if isinstance(value, float):
        return json.dumps(round(value, 4) if math.isfinite(value) else None)
    return json.dumps(value)


def _metrics(overall: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        ("dice", "DSC (mean over cases, vs ground truth)", overall.get("candidate_dsc")),
        ("nsd", "NSD (tolerance 2, mean over cases, vs ground truth)", overall.get("candidate_nsd")),
        ("agreement-dsc", "Mask agreement DSC with PyTorch FP32", overall.get("agreement_dsc")),
    ]


def model_index(manifest: dict[str, Any]) -> list[str]:
    """The ``model-index`` block of the front matter: one entry per artifact."""
    title = (manifest.get("model") or {}).get("title", "model")
    lines = ["model-index:"]
    for name, entry in manifest["artifacts"].items():
        verify = entry["verify"]
        data = verify.get("data") or {}
        cases = data.get("cases") or []
        fingerprint = str(data.get("fingerprint") or "unknown")
        lines += [
            f"- name: {_yaml_value(f'{title} ({name})')}",
            "  results:",
            "  - task:",
            "      type: image-segmentation",
            '      name: "Box-prompted medical image segmentation"',
            "    dataset:",
            "      type: challenge-npz",
            f"      name: {_yaml_value(f'{len(cases)} challenge-format cases (fingerprint {fingerprint[:12]})')}",
            f"      revision: {_yaml_value(fingerprint)}",
            "    metrics:",
        ]
        for kind, label, value in _metrics(verify.get("overall") or {}):
            lines += [f"    - type: {kind}", f"      name: {_yaml_value(label)}", f"      value: {_yaml_value(value)}"]
    return lines


def front_matter(manifest: dict[str, Any]) -> str:
    kinds = sorted({str(e.get("kind")) for e in manifest["artifacts"].values()})
    variant = (manifest.get("model") or {}).get("variant", "")
    tags = ["medical-imaging", "segment-anything", "msam-export", variant, *kinds]
    lines = ["---", "library_name: msam-export", "pipeline_tag: image-segmentation", "tags:"]
    lines += [f"- {_yaml_value(tag)}" for tag in tags if tag]
    return "\n".join(["\n".join(lines), *model_index(manifest), "---"]) + "\n"


def modality_table(verify: dict[str, Any]) -> list[str]:
    """Markdown rows: per modality and overall."""
    lines = [
        "| modality | cases | boxes | agreement DSC | DSC ref | DSC | NSD ref | NSD | encoder ms | case ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = list((verify.get("by_modality") or {}).items()) + [("**overall**", verify.get("overall") or {})]
    for modality, s in rows:
        cells = [
            modality,
            str(s.get("cases", "-")),
            str(s.get("boxes", "-")),
            _num(s.get("agreement_dsc")),
            _num(s.get("reference_dsc")),
            _num(s.get("candidate_dsc")),
            _num(s.get("reference_nsd")),
            _num(s.get("candidate_nsd")),
            _num(s.get("encoder_ms_median"), 0),
            _num(s.get("wall_ms_median"), 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def artifact_section(name: str, entry: dict[str, Any]) -> list[str]:
    verify = entry["verify"]
    system = verify.get("system") or {}
    isa = ", ".join(k for k, v in (system.get("isa") or {}).items() if v) or "no AVX2"
    precision = (verify.get("precision") or {}).get("actual") or "?"
    data = verify.get("data") or {}
    verdict = verify.get("verdict") or {}
    files = ", ".join(
        f"`{path.split('/', 1)[-1]}` ({info['size_bytes'] / 1e6:.1f} MB)" for path, info in entry["files"].items()
    )
    accepted = entry["accepted"]
    lines = [
        f"## `{name}/`: {KIND_TITLES.get(entry['kind'], entry['kind'])}, inference precision {precision}",
        "",
        f"- files: {files}",
        f"- options: `{json.dumps(entry.get('options'), sort_keys=True)}`",
        f"- quantization: `{json.dumps(entry.get('quantization'))}`",
        f"- parity with PyTorch f64 at export: {'passed' if (entry.get('parity') or {}).get('passed') else 'FAILED'}",
        f"- verified on: {system.get('model', '?')} ({system.get('usable_cpus', '?')} usable cores; ISA: {isa})",
        f"- data: {len(data.get('cases') or [])} cases, fingerprint `{str(data.get('fingerprint'))[:16]}`",
        f"- verify thresholds: `{json.dumps(verify.get('thresholds'), sort_keys=True)}`;"
        f" verdict: {'passed' if verdict.get('passed') else 'FAILED'}",
    ]
    if accepted["problems"]:
        lines.append("- **published with --allow-failed** despite: " + "; ".join(accepted["problems"]))
    return [*lines, "", *modality_table(verify), ""]


def render_model_card(manifest: dict[str, Any]) -> str:
    """The whole MODEL_CARD.md for a manifest (its ``files`` table is not needed)."""
    model = manifest.get("model") or {}
    source = manifest.get("source") or {}
    names = list(manifest["artifacts"])
    runnable = "openvino" if "openvino" in names else names[0]
    lines = [
        f"# {model.get('title', 'model')}: verified CPU artifacts",
        "",
        f"Exported by msam-export {manifest['tool']['version']} from `{source.get('file')}` "
        f"({source.get('format')}, variant {source.get('variant')}, sha256 `{source.get('sha256')}`). "
        "Each artifact was compared with the PyTorch FP32 model on the same cases: mask agreement, "
        "DSC and NSD against ground truth (reference vs artifact), latency on the verifying machine. "
        "Every file's sha256 is in `manifest.json`.",
        "",
    ]
    if manifest["allow_failed"]["used"] and manifest["allow_failed"]["overridden"]:
        lines += ["**Published with --allow-failed:** " + "; ".join(manifest["allow_failed"]["overridden"]), ""]
    for name, entry in manifest["artifacts"].items():
        lines += artifact_section(name, entry)
    lines += [
        "## Usage",
        "",
        "```bash",
        "msam-export check BUNDLE                  # every file against manifest.json",
        *(f"msam-export segment BUNDLE/{name} IN OUT" for name in [runnable]),
        "```",
        "",
        f"`BUNDLE` is this directory; `IN` holds challenge-format `*.npz` cases (`imgs`, `boxes`), `OUT` receives "
        f"one `segs` npz per case. Any of {', '.join(f'`{n}/`' for n in names)} can be given to `segment`.",
        "",
    ]
    return front_matter(manifest) + "\n" + "\n".join(lines)
