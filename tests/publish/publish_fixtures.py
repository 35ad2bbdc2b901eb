"""Shared, session-cached inputs for the publish/check/gate tests: real verify reports of the
real LiteMedSAM exports on two small bundled 2D cases, and bundles published from them.

(Not a conftest.py: test modules import ``conftest`` by name, and a second conftest module
would shadow the root one.) The caches are module-level so every test module shares one
verify run and one set of bundles."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import REPO

CASES = ("2DBox_US_HC18-000.npz", "2DBox_Fundus_CHASEDB1-Image01L.npz")
_CACHE: dict[str, Any] = {}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def invoke(*args: object) -> Result:
    """Runs ``msam-export ARGS`` in this process through ``cli.main`` (errors -> one line + code)."""
    from msam_export.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["msam-export", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


def make_data(root: Path, cases: tuple[str, ...] = CASES, gts: bool = True) -> Path:
    """A challenge data dir (imgs/, gts/) with copies of bundled sample cases."""
    for sub in ("imgs", "gts") if gts else ("imgs",):
        (root / sub).mkdir(parents=True)
        for name in cases:
            shutil.copyfile(REPO / "msam_export" / "samples" / sub / name, root / sub / name)
    return root


def verified(tmp_path_factory, exports: dict[str, Path]) -> dict[str, Path]:
    """{"data": dir, "onnx": verify.json, "openvino": verify.json}: real run_verify of both
    exports against the PyTorch checkpoint, held to the float limits."""
    if "verified" not in _CACHE:
        from msam_export.checkpoints import default_checkpoint_path
        from msam_export.data import list_cases
        from msam_export.files import write_json
        from msam_export.limits import FLOAT_LIMITS
        from msam_export.runtime import open_model
        from msam_export.verify import run_verify

        root = tmp_path_factory.mktemp("verified")
        data = make_data(root / "data")
        reference = open_model(default_checkpoint_path())
        out = {"data": data}
        for kind in ("onnx", "openvino"):
            report = run_verify(
                open_model(exports[kind]), reference, list_cases(data / "imgs"), data / "gts", FLOAT_LIMITS
            )
            out[kind] = root / f"{kind}.verify.json"
            write_json(out[kind], report)
        _CACHE["verified"] = out
    return _CACHE["verified"]


def bundles(tmp_path_factory, exports: dict[str, Path]) -> dict[str, Path]:
    """{"both": bundle, "onnx": bundle, "openvino": bundle} published through the library."""
    if "bundles" not in _CACHE:
        from msam_export.publish import publish_bundle

        reports = verified(tmp_path_factory, exports)
        root = tmp_path_factory.mktemp("bundles")
        out = {}
        for name, kinds in (("both", ("onnx", "openvino")), ("onnx", ("onnx",)), ("openvino", ("openvino",))):
            out[name] = root / name
            publish_bundle([(exports[k], reports[k]) for k in kinds], out[name])
        _CACHE["bundles"] = out
    return _CACHE["bundles"]


def edited_report(src: Path, dest: Path, edit) -> Path:
    """A copy of a verify.json with ``edit(report)`` applied (NaN written as the JSON literal)."""
    report = json.loads(src.read_text())
    edit(report)
    dest.write_text(json.dumps(report, indent=2))
    return dest


def flip_byte(path: Path) -> None:
    """Changes one byte in the middle of ``path`` (same size)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
