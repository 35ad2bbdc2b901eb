"""``msam-export check``: re-hash a bundle against its manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MsamError
from ..files import PathLike, describe_file
from .manifest import MANIFEST_FILE, artifact_entry, read_json, read_manifest


@dataclass
class FileStatus:
    """One row of the check: a file (or a manifest section) and what was found."""

    path: str
    status: str  # "ok", "changed", "missing", "extra" or "inconsistent"
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def bundle_files(bundle: Path) -> list[str]:
    """Every file under ``bundle`` (relative POSIX paths, sorted), the manifest excluded."""
    found = []
    for path in sorted(Path(bundle).rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(bundle).as_posix()
            if rel != MANIFEST_FILE:
                found.append(rel)
    return found


def _file_rows(bundle: Path, files: dict[str, dict[str, Any]]) -> list[FileStatus]:
    rows = []
    for rel, expected in sorted(files.items()):
        path = bundle / rel
        if not path.is_file() or path.is_symlink():
            rows.append(FileStatus(rel, "missing", expected))
            continue
        actual = describe_file(path)
        same = actual["sha256"] == expected["sha256"] and actual["size_bytes"] == expected["size_bytes"]
        rows.append(FileStatus(rel, "ok" if same else "changed", expected, actual))
    for rel in bundle_files(bundle):
        if rel not in files:
            path = bundle / rel
            rows.append(FileStatus(rel, "extra", None, describe_file(path) if path.is_file() else None))
    return rows


def _read_object(path: Path) -> dict[str, Any]:
    value = read_json(path, path.name)
    if not isinstance(value, dict):
        raise MsamError(f"{path}: not a JSON object")
    return value


def _consistency_rows(bundle: Path, manifest: dict[str, Any], ok_files: set[str]) -> list[FileStatus]:
    """The manifest's artifact records must be what their bundled export.json and verify.json say."""
    rows = []
    for name, entry in manifest["artifacts"].items():
        sources = (entry.get("export_json"), entry.get("verify_json"))
        where = f"{MANIFEST_FILE}: artifacts.{name}"
        if not all(isinstance(s, str) and s in ok_files for s in sources):
            rows.append(FileStatus(where, "inconsistent", {"from": list(map(str, sources))}))
            continue
        try:
            expected = artifact_entry(name, _read_object(bundle / sources[0]), _read_object(bundle / sources[1]))
        except (MsamError, AttributeError, TypeError):
            expected = None
        stored = json.loads(json.dumps(entry))
        rows.append(FileStatus(where, "ok" if expected == stored else "inconsistent"))
    return rows


@dataclass
class BundleCheck:
    """The bundle's manifest and one row per file and per artifact record."""

    bundle: Path
    manifest: dict[str, Any]
    rows: list[FileStatus]

    @property
    def problems(self) -> list[FileStatus]:
        return problems(self.rows)

    @property
    def passed(self) -> bool:
        return not self.problems


def check_bundle(bundle: PathLike) -> BundleCheck:
    """Every listed file re-hashed (pages, graphs, JSON alike), unlisted files reported as extra,
    and each artifact's manifest record recomputed from its bundled JSON. Raises MsamError
    (exit 2) when the manifest is unreadable."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    rows = _file_rows(bundle, manifest["files"])
    ok_files = {r.path for r in rows if r.ok}
    return BundleCheck(bundle, manifest, rows + _consistency_rows(bundle, manifest, ok_files))


def problems(rows: list[FileStatus]) -> list[FileStatus]:
    return [r for r in rows if not r.ok]
