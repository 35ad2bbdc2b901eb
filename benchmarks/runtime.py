"""The torch-free runtime: install size, import time, and one process per case (start to segs
written) against in-process inference, cold and warm compile cache, directly and through a
`package` folder's predict.sh.

    python benchmarks/runtime.py --artifact OPENVINO_DIR --work /tmp/rt [--rounds 5]

Makes two fresh venvs under --work (`pip install .`, and the package folder's requirements) and
prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = ("2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz")


def venv(path: Path, *install: str) -> Path:
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", *install], check=True)
    return path / "bin" / "python"


def size_mb(python: Path) -> float:
    code = "import site; print(site.getsitepackages()[0])"
    root = Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20


def seconds(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def in_process_ms(python: Path, artifact: Path, case: Path, rounds: int) -> float:
    """Inference time of a case in a warm process (model opened and warmed up first)."""
    code = (
        "import sys, time, statistics\n"
        "from msam_export.runtime import open_model\n"
        f"m = open_model({str(artifact)!r}, cache_dir=None); m.segment_case({str(case)!r})\n"
        f"t = []\nfor _ in range({rounds}):\n"
        "    s = time.perf_counter(); m.segment_case(%r); t.append(time.perf_counter() - s)\n"
        "print(statistics.median(t) * 1e3)\n"
    ) % str(case)
    return float(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, required=True, help="an OpenVINO artifact dir")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    runtime = venv(args.work / "runtime-venv", str(REPO))
    from msam_export.package import package

    folder = args.work / "deploy"
    if not folder.is_dir():
        package(args.artifact, folder)
    deploy = venv(args.work / "deploy-venv", "-r", str(folder / "requirements.txt"))
    full = Path(sys.executable)
    samples = REPO / "msam_export" / "samples" / "imgs"
    print("| install | site-packages MB | `import msam_export.cli` s (median) |")
    print("|---|---|---|")
    for name, python in (("full (`scripts/setup.sh`)", full), ("runtime (`pip install .`)", runtime)):
        imports = [seconds([str(python), "-c", "import msam_export.cli"]) for _ in range(args.rounds)]
        print(f"| {name} | {size_mb(python):.0f} | {median(imports):.2f} |")
    print()
    print(
        "| case | in-process ms (warm) | one process, cold cache s | one process, warm cache s | "
        "predict.sh, warm cache s | warm process overhead s |"
    )
    print("|---|---|---|---|---|---|")
    cli = str(args.work / "runtime-venv" / "bin" / "msam-export")
    for name in CASES:
        inputs = args.work / f"in-{name}"
        inputs.mkdir(exist_ok=True)
        shutil.copyfile(samples / name, inputs / name)
        warm_ms = in_process_ms(runtime, args.artifact, inputs / name, args.rounds)
        cache = args.work / "cache"
        cold = []
        for _ in range(args.rounds):
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(seconds([cli, "segment", str(args.artifact), str(inputs), str(args.work / "o"),
                                 "--cache-dir", str(cache)]))  # fmt: skip
        warm = [
            seconds([cli, "segment", str(args.artifact), str(inputs), str(args.work / "o"), "--cache-dir", str(cache)])
            for _ in range(args.rounds)
        ]
        env = os.environ | {"PYTHON": str(deploy)}
        sh = [seconds(["bash", str(folder / "predict.sh"), str(inputs), str(args.work / "o2")], env) for _ in range(2)]
        sh = [seconds(["bash", str(folder / "predict.sh"), str(inputs), str(args.work / "o2")], env)
              for _ in range(args.rounds)]  # fmt: skip
        print(f"| {name} | {warm_ms:.0f} | {median(cold):.2f} | {median(warm):.2f} | {median(sh):.2f} | "
              f"{median(warm) - warm_ms / 1e3:+.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
