"""The gate's checks as JUnit XML: one testcase per check, for CI test reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..files import atomic_file
from .gate import Check

SUITE = "msam-export gate"


def junit_tree(checks: list[Check], error: str | None = None) -> ET.ElementTree:
    """<testsuites><testsuite> with a <testcase> per check (<failure>/<skipped> as needed); an
    ``error`` (unusable input) becomes one <testcase name="input"> with an <error>."""
    suite = ET.Element("testsuite", name=SUITE)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{check.artifact}", name=check.name, time="0")
        text = f"value {check.value or '-'}, limit {check.limit or '-'}: {check.detail}"
        if check.status == "fail":
            ET.SubElement(case, "failure", message=text, type="GateFailure").text = text
        elif check.status == "skip":
            ET.SubElement(case, "skipped", message=check.detail)
        else:
            ET.SubElement(case, "system-out").text = text
    if error is not None:
        case = ET.SubElement(suite, "testcase", classname="gate", name="input", time="0")
        ET.SubElement(case, "error", message=error, type="UnusableInput").text = error
    counts = {
        "tests": len(suite),
        "failures": sum(c.status == "fail" for c in checks),
        "errors": int(error is not None),
        "skipped": sum(c.status == "skip" for c in checks),
    }
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", name=SUITE, **{k: str(v) for k, v in counts.items() if k != "skipped"})
    root.append(suite)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, checks: list[Check], error: str | None = None) -> None:
    """Writes the JUnit XML atomically."""
    with atomic_file(Path(path), "wb") as f:
        junit_tree(checks, error).write(f, encoding="utf-8", xml_declaration=True)
