"""``manifest.json`` of a bundle (schema ``msam-export/bundle@1``): what each artifact is,
how it was verified, and the sha256 of every file."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

from ..artifact import EXPORT_FILE, artifact_name, precision_of
from ..errors import MsamError
from ..files import json_ready, read_json
from ..verify.report import SCHEMA as VERIFY_SCHEMA
from ..version import __version__

SCHEMA = "msam-export/bundle@1"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
VERIFY_FILE = "verify.json"
VERIFY_HTML = "verify.html"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def bundle_name(record: dict[str, Any]) -> str:
    """The bundle subdirectory of an artifact (``artifact.artifact_name``), checked to be a plain name."""
    name = artifact_name(record)
    if not _NAME.match(name):
        raise MsamError(f"export.json kind {record.get('kind')!r} cannot name a bundle directory")
    return name


def read_verify(path: Path) -> dict[str, Any]:
    """A verify.json (schema msam-export/verify@1); MsamError (exit 2) otherwise."""
    if Path(path).is_dir():
        path = Path(path) / VERIFY_FILE
    report = read_json(path, "verify.json")
    if not isinstance(report, dict) or report.get("schema") != VERIFY_SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise MsamError(f"{path}: not a verify report (schema {found!r}, expected {VERIFY_SCHEMA!r})")
    for key in ("candidate", "overall", "verdict"):
        if not isinstance(report.get(key), dict):
            raise MsamError(f"{path}: verify report without a {key!r} section")
    for key, kind in (("data", dict), ("system", dict), ("by_modality", dict), ("cases", list)):
        if key in report and not isinstance(report[key], kind):
            raise MsamError(f"{path}: verify report's {key!r} is not a {kind.__name__}")
    return report


def verify_problems(meta: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """Why ``report`` does not vouch for the artifact of ``meta``: another checkpoint, model or
    kind, or a failed verdict. Empty when it does."""
    cand = report.get("candidate") or {}
    source = meta.get("source") or {}
    model = (meta.get("model") or {}).get("variant")
    problems = []
    if cand.get("source_sha256") != source.get("sha256"):
        problems.append(
            f"verify.json is for checkpoint {str(cand.get('source_sha256'))[:12]}, "
            f"the artifact's is {str(source.get('sha256'))[:12]}"
        )
    if cand.get("model") != model:
        problems.append(f"verify.json is for model {cand.get('model')!r}, the artifact is {model!r}")
    if cand.get("kind") != meta.get("kind"):
        problems.append(f"verify.json is for a {cand.get('kind')!r} candidate, the artifact is {meta.get('kind')!r}")
    verdict = report.get("verdict") or {}
    if verdict.get("passed") is not True:
        failures = verdict.get("failures") or ["no passing verdict"]
        problems.append("verify failed: " + "; ".join(map(str, failures)))
    return problems


def _verify_summary(report: dict[str, Any]) -> dict[str, Any]:
    cand = report.get("candidate") or {}
    system = report.get("system") or {}
    data = report.get("data") or {}
    return {
        "candidate": cand,
        "reference": report.get("reference"),
        "system": {k: system.get(k) for k in ("model", "logical_cpus", "usable_cpus", "isa")},
        "precision": {"requested": cand.get("requested_precision"), "actual": cand.get("actual_precision")},
        "arithmetic": report.get("arithmetic"),
        "propagation": report.get("propagation"),
        "data": {"cases": data.get("cases"), "fingerprint": data.get("fingerprint")},
        "repeats": report.get("repeats"),
        "thresholds": report.get("thresholds"),
        "overall": report.get("overall"),
        "by_modality": report.get("by_modality"),
        "verdict": report.get("verdict"),
    }


def artifact_entry(name: str, meta: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The manifest's record of one artifact: a pure function of its export.json and verify.json,
    so that ``check`` can recompute it from the bundled copies."""
    options = meta.get("options") or {}
    parity = meta.get("parity") or {}
    problems = verify_problems(meta, report)
    return json_ready(
        {
            "kind": meta.get("kind"),
            "dir": name,
            "precision": precision_of(meta),
            "export_json": f"{name}/{EXPORT_FILE}",
            "verify_json": f"{name}/{VERIFY_FILE}",
            "verify_html": f"{name}/{VERIFY_HTML}",
            "options": options,
            "quantization": _compact(meta.get("quantization")),
            "versions": meta.get("versions"),
            "files": {f"{name}/{file}": info for file, info in (meta.get("files") or {}).items()},
            "parity": {k: parity.get(k) for k in ("passed", "precision", "reference", "worst", "tolerance")},
            "verify": _verify_summary(report),
            "accepted": {"by": "--allow-failed" if problems else "verify", "problems": problems},
        }
    )


def _compact(quantization: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quantization record without its per-operation name lists (they stay in export.json)."""
    if quantization is None:
        return None
    return {k: v for k, v in quantization.items() if k != "float_scope_operations"}


def source_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint behind the bundle, without its local path."""
    source = meta.get("source") or {}
    keys = ("sha256", "size_bytes", "format", "variant", "variant_forced", "has_decoder")
    return {"file": Path(str(source.get("path", ""))).name, **{k: source.get(k) for k in keys}}


def build_manifest(
    entries: dict[str, dict[str, Any]], first_meta: dict[str, Any], allow_failed: bool
) -> dict[str, Any]:
    """The manifest without its ``files`` table (added once every file is written)."""
    overridden = [f"{name}: {p}" for name, entry in entries.items() for p in entry["accepted"]["problems"]]
    return {
        "schema": SCHEMA,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "msam-export", "version": __version__},
        "model": first_meta.get("model"),
        "source": source_entry(first_meta),
        "allow_failed": {"used": allow_failed, "overridden": overridden},
        "artifacts": entries,
    }


def _check_files_table(path: Path, files: Any) -> None:
    if not isinstance(files, dict):
        raise MsamError(f"{path}: 'files' is not a table")
    for rel, info in files.items():
        parts = Path(rel).parts
        if not rel or Path(rel).is_absolute() or ".." in parts or rel == MANIFEST_FILE or "\\" in rel:
            raise MsamError(f"{path}: file entry {rel!r} is not a plain relative path")
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise MsamError(f"{path}: file entry {rel!r} has no sha256")
        if not isinstance(info.get("size_bytes"), int):
            raise MsamError(f"{path}: file entry {rel!r} has no size")


def read_manifest(bundle: Path) -> dict[str, Any]:
    """A bundle's manifest, checked for shape; MsamError (exit 2) when unusable."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise MsamError(f"{bundle}: not a bundle directory")
    path = bundle / MANIFEST_FILE
    manifest = read_json(path, MANIFEST_FILE)
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise MsamError(f"{path}: unknown schema {found!r} (expected {SCHEMA!r})")
    _check_files_table(path, manifest.get("files"))
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        raise MsamError(f"{path}: no artifacts")
    for name, entry in artifacts.items():
        if not _NAME.match(name) or not isinstance(entry, dict) or entry.get("dir") != name:
            raise MsamError(f"{path}: malformed artifact entry {name!r}")
    return manifest
