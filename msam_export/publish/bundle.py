"""``msam-export publish ARTIFACT_DIR... --verify verify.json... -o BUNDLE``: verified artifacts
into one self-describing directory that appears complete or not at all."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import read_record
from ..errors import MsamError, RefusedError
from ..files import check_output_dir, describe_file, staged_output, write_json
from .card import render_model_card
from .check import bundle_files
from .manifest import (
    CARD_FILE,
    MANIFEST_FILE,
    VERIFY_FILE,
    VERIFY_HTML,
    artifact_entry,
    build_manifest,
    bundle_name,
    read_verify,
)


@dataclass
class Candidate:
    """One artifact directory and the verify report offered for it."""

    directory: Path
    verify_path: Path
    meta: dict[str, Any]
    report: dict[str, Any]
    name: str
    entry: dict[str, Any]


def artifact_pairs(dirs: Sequence[Path], verify_files: Sequence[Path] | None) -> list[tuple[Path, Path]]:
    """(artifact dir, verify.json) pairs: ``verify_files`` in the order of ``dirs``, or each
    directory's own verify.json when none are given."""
    if not dirs:
        raise MsamError("nothing to publish: give artifact directories (or a checkpoint with --formats)")
    if verify_files:
        if len(verify_files) != len(dirs):
            raise MsamError(f"{len(dirs)} artifact dir(s) but {len(verify_files)} --verify file(s): give one each")
        return list(zip(dirs, verify_files, strict=True))
    for d in dirs:
        if d.is_dir() and not (d / VERIFY_FILE).is_file():
            raise MsamError(f"{d}: no {VERIFY_FILE} in it; pass --verify FILE (`msam-export verify {d} ... -o FILE`)")
    return [(d, d / VERIFY_FILE) for d in dirs]


def check_bundle_output(out_dir: Path, overwrite: bool) -> None:
    """Raises MsamError unless ``out_dir`` is absent, empty, or ``overwrite`` is set."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise MsamError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    check_output_dir(out_dir, overwrite)


def prepare(directory: Path, verify_path: Path) -> Candidate:
    """Reads an artifact's export.json and the offered verify.json."""
    if not directory.is_dir():
        raise MsamError(f"{directory}: not an artifact directory")
    meta = read_record(directory)
    report = read_verify(verify_path)
    name = bundle_name(meta)
    return Candidate(directory, verify_path, meta, report, name, artifact_entry(name, meta, report))


def _check_together(candidates: list[Candidate]) -> None:
    names = [c.name for c in candidates]
    for name in set(names):
        if names.count(name) > 1:
            raise MsamError(f"two artifacts would both be published as {name}/; give each format once")
    sources = {c.meta["source"]["sha256"] for c in candidates}
    if len(sources) > 1:
        raise MsamError("the artifacts come from different checkpoints; a bundle holds one model")


def refusals(candidates: list[Candidate]) -> list[str]:
    """Why artifacts would be refused: a failed verdict or a verify.json not their own."""
    return [f"{c.name}: {p}" for c in candidates for p in c.entry["accepted"]["problems"]]


def copy_artifact(candidate: Candidate, dest: Path) -> None:
    """Copies the artifact dir (its own verify.json and verify.html replaced by the offered ones:
    the page beside the offered verify.json, with the same name) and checks each file listed in
    export.json against its recorded sha256 and size."""
    top = candidate.directory.resolve()
    own = [VERIFY_FILE, VERIFY_HTML]
    shutil.copytree(top, dest, ignore=lambda d, names: own if Path(d).resolve() == top else [])
    shutil.copyfile(candidate.verify_path, dest / VERIFY_FILE)
    page = candidate.verify_path.with_suffix(".html")
    if page.is_file():
        shutil.copyfile(page, dest / VERIFY_HTML)
    for file, recorded in (candidate.meta.get("files") or {}).items():
        if not (dest / file).is_file():
            raise MsamError(f"{candidate.directory / file}: listed in export.json but missing")
        actual = describe_file(dest / file)
        if actual != {"sha256": recorded.get("sha256"), "size_bytes": recorded.get("size_bytes")}:
            raise MsamError(
                f"{candidate.directory / file} changed since export (sha256 {actual['sha256'][:12]}, "
                f"export.json says {str(recorded.get('sha256'))[:12]}); re-export it"
            )


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``folder`` but the manifest."""
    return {rel: describe_file(folder / rel) for rel in bundle_files(folder)}


def publish_bundle(
    artifacts: Sequence[tuple[Path, Path]], out_dir: Path, allow_failed: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Writes the bundle ``out_dir``: one subdirectory per artifact (named by kind and
    quantization/precision) with its export.json and verify.json, MODEL_CARD.md and
    manifest.json. Raises RefusedError (exit 1) for an artifact whose verify failed or is not
    its own unless ``allow_failed``; nothing is written on any error. Returns the manifest."""
    out_dir = Path(out_dir)
    check_bundle_output(out_dir, overwrite)
    candidates = [prepare(Path(d), Path(v)) for d, v in artifacts]
    if not candidates:
        raise MsamError("nothing to publish")
    _check_together(candidates)
    refused = refusals(candidates)
    if refused and not allow_failed:
        raise RefusedError("refused " + "; ".join(refused) + " (--allow-failed publishes anyway, and says so)")
    with staged_output(out_dir, overwrite) as stage:
        for candidate in candidates:
            copy_artifact(candidate, stage / candidate.name)
        manifest = build_manifest({c.name: c.entry for c in candidates}, candidates[0].meta, allow_failed)
        (stage / CARD_FILE).write_text(render_model_card(manifest))
        manifest["files"] = file_table(stage)
        write_json(stage / MANIFEST_FILE, manifest)
    return manifest
