"""The Ray cluster: segment, verify and calibrate's embeddings on real local clusters (started in
this process, and a head started with ``ray start``), compared with local runs; a worker killed
mid-run; Ctrl-C; bad inputs; the missing extra.

Fixtures live here rather than in a tests/cluster/conftest.py: a second ``conftest`` module
would shadow tests/conftest.py for the test files that import from it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, crop_3d

from msam_export.checkpoints import default_checkpoint_path
from msam_export.cluster.transfer import FileRef, Probe, probe_for
from msam_export.errors import MsamError
from msam_export.limits import DEFAULT_LIMITS
from msam_export.runtime import open_model
from msam_export.runtime.segment import segment
from msam_export.verify.report import run_verify

SAMPLES = REPO / "msam_export" / "samples"
CASES_2D = ("2DBox_US_HC18-000.npz", "2DBox_US_HC18-010.npz")
CASE_3D = "3DBox_CT_MSDSpleen-spleen2.npz"
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter
# per-case accuracy fields of a verify row: a cluster run must give exactly a local run's
ACCURACY = (
    "case",
    "modality",
    "dims",
    "boxes",
    "agreement_dsc",
    "agreement_per_box",
    "teacher_forced_agreement_dsc",
    "agreement_per_slice",
    "worst_slice",
    "reference",
    "candidate",
)


def segs_of(folder: Path) -> dict[str, bytes]:
    """{case: dtype, shape and bytes of its segs array} of a segment output."""
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as f:
            out[path.name] = f"{f['segs'].dtype}{f['segs'].shape}".encode() + f["segs"].tobytes()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray():
    return pytest.importorskip("ray")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A challenge root: two 2D sample cases and a 3D one cropped to 5 slices, with ground truth."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("imgs", "gts"):
        (root / sub).mkdir()
        for name in CASES_2D:
            shutil.copy(SAMPLES / sub / name, root / sub / name)
    crop_3d(CASE_3D, root)
    return root


@pytest.fixture(scope="module")
def local_segs(litemedsam_exports, data, tmp_path_factory) -> dict[str, bytes]:
    """The OpenVINO artifact's segs of ``data``, segmented in this process with one thread."""
    out = tmp_path_factory.mktemp("local-segs")
    segment(open_model(litemedsam_exports["openvino"], threads=1), data / "imgs", out)
    return segs_of(out)


@pytest.fixture(scope="module")
def local_report(litemedsam_exports, data) -> dict:
    """verify of the OpenVINO artifact against the checkpoint, in this process with one thread."""
    candidate = open_model(litemedsam_exports["openvino"], threads=1)
    reference = open_model(default_checkpoint_path(), threads=1)
    cases = sorted((data / "imgs").glob("*.npz"))
    return run_verify(candidate, reference, cases, data / "gts", DEFAULT_LIMITS.for_precision(candidate.precision))


def assert_same_accuracy(report: dict, local: dict) -> None:
    assert [r["case"] for r in report["cases"]] == [r["case"] for r in local["cases"]]
    for row, expected in zip(report["cases"], local["cases"], strict=True):
        assert {k: row.get(k) for k in ACCURACY} == {k: expected.get(k) for k in ACCURACY}
    accuracy = [k for k in local["overall"] if "ms" not in k]
    assert {k: report["overall"][k] for k in accuracy} == {k: local["overall"][k] for k in accuracy}
    assert report["verdict"] == local["verdict"]
    assert report["data"] == local["data"]


# ----------------------------------------------------------------------------- without a cluster


def test_missing_extra_is_one_line_exit_2(tmp_path):
    """``--ray`` without ray installed: exit 2, one line naming the extra."""
    argv = ["msam-export", "segment", "model", str(SAMPLES / "imgs"), str(tmp_path), "--ray", "local"]
    code = f"import sys; sys.modules['ray'] = None\nfrom msam_export.cli import main\nsys.argv = {argv!r}\nmain()\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "msam-export[ray]" in lines[0] and "--ray" in lines[0], result.stderr


def test_probe_tells_other_files_apart(tmp_path):
    """A worker shares the driver's files only with the same sizes, sampled sha256 and token."""
    (tmp_path / "a.npz").write_bytes(b"abc")
    (tmp_path / "b.npz").write_bytes(b"defg")
    files = [tmp_path / "a.npz", tmp_path / "b.npz"]
    with probe_for(files, tmp_path) as probe:
        assert probe.seen()
        token = Path(probe.token[0])
        assert token.is_file()
        assert not Probe(probe.files, (probe.digest[0], "0" * 64), probe.token).seen()  # same size, other bytes
        assert not Probe((FileRef(str(files[0]), 4),), None).seen()  # other size
        assert not Probe(probe.files, probe.digest, (probe.token[0], "other")).seen()  # another run's token
    assert not token.exists()  # the token lives for the run only
    assert not Probe((FileRef(str(tmp_path / "gone.npz"), 3),), None).seen()


def test_connect_rejects_bad_addresses(ray):
    from msam_export.cluster import Cluster

    with pytest.raises(MsamError, match="expected local, auto, HOST:PORT"):
        Cluster.connect("http://somewhere")
    with pytest.raises(MsamError, match="no Ray head answers there"):  # at once, not after ray.init's minutes
        Cluster.connect(f"127.0.0.1:{free_port()}")
    assert not ray.is_initialized()


# ----------------------------------------------------------------------------- a cluster started here


@pytest.mark.slow
class TestLocalCluster:
    """``Cluster.connect("local")`` on this machine: 2 CPUs, one thread per worker (2 actors)."""

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls, ray):
        from msam_export.cluster import Cluster

        with Cluster.connect("local", threads=1) as cluster:
            assert cluster.started and ray.cluster_resources()["CPU"] >= 1
            yield cluster
        assert not ray.is_initialized()
        assert not list(Path(tempfile.gettempdir()).glob("msam-cluster-*"))  # workers removed their shipped files

    def test_segment_matches_local(self, cluster, litemedsam_exports, data, local_segs, tmp_path):
        done: list[str] = []
        run = segment(litemedsam_exports["openvino"], data / "imgs", tmp_path, on_case=done.append, cluster=cluster)
        names = sorted(local_segs)
        assert [r["case"] for r in run.rows] == names and sorted(done) == names
        assert all(r["status"] == "ok" and r["transfer"] == "path" and r["host"] and r["cpu"] for r in run.rows)
        assert segs_of(tmp_path) == local_segs
        assert {w["models"] for w in cluster.workers} == {"path"}
        assert (tmp_path / "timings.csv").is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "timings.csv"]  # no probe or temp file left

    def test_segment_by_bytes_matches_local(self, cluster, litemedsam_exports, data, local_segs, tmp_path):
        """Workers that do not share the driver's files get the model and the cases as bytes."""
        cluster.transfer = "bytes"
        try:
            rows = cluster.segment(litemedsam_exports["openvino"], sorted((data / "imgs").glob("*.npz")), tmp_path)
        finally:
            cluster.transfer = "auto"
        assert [r["transfer"] for r in rows] == ["bytes"] * len(local_segs)
        assert {w["models"] for w in cluster.workers} == {"bytes"}  # the artifact too, opened from a copy
        assert segs_of(tmp_path) == local_segs

    def test_bad_case_is_reported_once(self, cluster, litemedsam_exports, data, tmp_path):
        inputs = tmp_path / "imgs"
        inputs.mkdir()
        shutil.copy(data / "imgs" / CASES_2D[0], inputs)
        (inputs / "2DBox_US_broken.npz").write_bytes(b"not an npz")
        local = segment(open_model(litemedsam_exports["openvino"], threads=1), inputs, tmp_path / "local")
        run = segment(litemedsam_exports["openvino"], inputs, tmp_path / "ray", cluster=cluster)
        assert [r["case"] for r in run.rows] == [r["case"] for r in local.rows]
        assert [r["status"] for r in run.rows] == [r["status"] for r in local.rows]
        status = {r["case"]: r["status"] for r in run.rows}
        assert status["2DBox_US_broken.npz"].startswith("error:") and status[CASES_2D[0]] == "ok"

    def test_verify_matches_local(self, cluster, litemedsam_exports, data, local_report):
        reference = open_model(default_checkpoint_path(), threads=1)  # an opened checkpoint knows its path
        cases = sorted((data / "imgs").glob("*.npz"))
        seen, results = [], []
        report = cluster.verify(
            litemedsam_exports["openvino"],
            reference,
            cases,
            data / "gts",
            DEFAULT_LIMITS.for_precision("fp32"),
            on_case=seen.append,
            on_result=results.append,
        )
        assert_same_accuracy(report, local_report)
        assert sorted(seen) == sorted(p.name for p in cases)
        assert sorted(r.row["case"] for r in results) == sorted(seen)
        assert all(r.case.path.parent == data / "imgs" for r in results)
        assert report["latency_hosts"] == local_report["latency_hosts"]
        assert report["cluster"]["transfer"] == {"path": 2, "bytes": 0}

    def test_verify_by_bytes_matches_local(self, cluster, litemedsam_exports, data, local_report):
        """Cases and their ground truth shipped as bytes score exactly as read in place."""
        cases = sorted((data / "imgs").glob("*.npz"))
        cluster.transfer = "bytes"
        try:
            report = cluster.verify(
                litemedsam_exports["openvino"],
                default_checkpoint_path(),
                cases,
                data / "gts",
                DEFAULT_LIMITS.for_precision("fp32"),
            )
        finally:
            cluster.transfer = "auto"
        assert_same_accuracy(report, local_report)
        assert report["cluster"]["transfer"] == {"path": 0, "bytes": 2}

    def test_worker_killed_mid_run(self, cluster, litemedsam_exports, data, local_report):
        """SIGKILL to every worker while a case runs on it: Ray restarts them and reruns their
        cases; the report has each case once, with the accuracy of a local run."""
        reference = open_model(default_checkpoint_path(), threads=1)
        cases = sorted((data / "imgs").glob("*.npz"))
        args = (litemedsam_exports["openvino"], reference, cases, data / "gts", DEFAULT_LIMITS.for_precision("fp32"))
        cluster.verify(*args[:2], cases[:1], *args[3:])  # warm pool: its workers' process ids are known
        before = [w["pid"] for w in cluster.worker_info()]
        timers: list[threading.Timer] = []

        killed: list[float] = []

        def kill_workers() -> None:
            for pid in before:
                os.kill(pid, signal.SIGKILL)
            killed.append(time.monotonic())

        def on_case(name: str) -> None:
            if not timers:  # 2 s after the first case: the 3D case (several seconds) is running then
                timers.append(threading.Timer(2.0, kill_workers))
                timers[0].start()

        report = cluster.verify(*args, on_case=on_case)
        finished = time.monotonic()
        timers[0].join()
        assert killed and killed[0] < finished  # the workers died during the run
        assert_same_accuracy(report, local_report)
        assert [r["case"] for r in report["cases"]] == [p.name for p in cases]
        assert not [r for r in report["cases"] if "error" in r]
        after = cluster.worker_info()
        assert all(w["restarted"] and w["pid"] not in before for w in after)

    def test_encoder_matches_local(self, cluster):
        """calibrate's FP32 embeddings computed on the workers equal this process's."""
        import torch

        from msam_export.checkpoints import load_checkpoint

        images = np.random.default_rng(0).standard_normal((2, 3, 256, 256)).astype(np.float32)
        encode = cluster.encoder(default_checkpoint_path())
        remote = encode(images)
        model = load_checkpoint(default_checkpoint_path()).model
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                local = np.concatenate([model.encode(torch.from_numpy(images[i : i + 1])).numpy() for i in range(2)])
        finally:
            torch.set_num_threads(threads)
        assert remote.shape == (2, 256, 64, 64) and remote.dtype == np.float32
        np.testing.assert_array_equal(remote, local)


# ----------------------------------------------------------------------------- a head started with `ray start`


@pytest.fixture
def head(ray, tmp_path):
    """A head node on 127.0.0.1 with 2 CPUs, in its own session; stopped through its own
    ``ray start`` process (``ray stop`` would stop every Ray instance on the machine)."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    log = (tmp_path / "head.log").open("w")
    args = ["start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--block"]
    args.append(f"--temp-dir={temp}")  # its session files (and `ray_current_cluster`) stay out of /tmp/ray
    process = subprocess.Popen([*RAY, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (tmp_path / "head.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()  # `ray start --block` stops the processes it started (2 s; SIGTERM to all: 30 s)
        try:
            process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything of that session still there
                os.killpg(process.pid, signal.SIGKILL)
            log.close()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_segment_on_a_started_head(head, ray, litemedsam_exports, data, local_segs, tmp_path):
    from msam_export.cluster import Cluster

    with Cluster.connect(head, threads=1) as cluster:
        assert not cluster.started and len(ray.nodes()) == 1
        run = segment(litemedsam_exports["openvino"], data / "imgs", tmp_path, cluster=cluster)
    assert not ray.is_initialized()
    assert all(r["status"] == "ok" and r["transfer"] == "path" for r in run.rows)
    assert segs_of(tmp_path) == local_segs


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_and_leaves_no_partial_output(ray, litemedsam_exports, data, tmp_path):
    """Ctrl-C (SIGINT to the command's process group) while ``segment --ray local`` runs: exit
    130, every process it started ends, and the output holds only complete segs files."""
    psutil = pytest.importorskip("psutil")

    # many copies of the cases, so that work is still queued when the first output appears
    # (three cases finish within seconds once the compiled model is cached)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for copy in range(16):
        for case in sorted((data / "imgs").glob("*.npz")):
            os.symlink(case, imgs / f"{case.stem}-{copy:02d}.npz")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "msam_export", "segment", str(litemedsam_exports["openvino"])]
    command += [str(imgs), str(out), "--ray", "local", "--threads", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("*.npz")):  # the first case is written: the workers are running
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    started = psutil.Process(process.pid).children(recursive=True)
    assert started
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) == 130, process.stderr.read()
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive
    for path in out.iterdir():
        assert not path.name.startswith("."), path  # no probe token, no temporary file
        with np.load(path) as f:
            assert f["segs"].shape
