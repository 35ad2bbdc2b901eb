"""The HTML verify report: exact disagreement pixels, saved slices, rebuilt and side-by-side pages,
a real verify run's page, and that page rendered by headless Chromium."""

from __future__ import annotations

import base64
import io
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, crop_3d
from PIL import Image

from msam_export.data import Case
from msam_export.errors import MsamError
from msam_export.files import write_json
from msam_export.limits import FLOAT_LIMITS
from msam_export.report import CAND_ONLY, LABEL_SWAP, MAX_SIDE, REF_ONLY, PageBuilder, downscale_factor, report
from msam_export.report.html import fmt
from msam_export.runtime import Segmentation, Timings
from msam_export.verify.report import CaseResult, box_agreement, group_summaries, slice_agreement, summarize

SAMPLES = REPO / "msam_export" / "samples"
CASE_2D, CASE_3D = "2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz"


# ----------------------------------------------------------------------------- reading a page back


class Overlays(HTMLParser):
    """Collects the attributes of every ``<img class="overlay">`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "img" and "overlay" in found.get("class", "").split():
            self.images.append(found)
        self.scripts += tag == "script"


def overlays(html: str) -> list[dict[str, str]]:
    parser = Overlays()
    parser.feed(html)
    assert parser.scripts == 0, "the page must need no JavaScript"
    return parser.images


def decode(img: dict[str, str]) -> np.ndarray:
    """(h, w, 3) uint8 of an overlay's data: URI."""
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(img["src"][len(prefix) :]))).convert("RGB"))


def colour_mask(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(rgb == np.array(colour, dtype=np.uint8), axis=-1)


def assert_exact_disagreement(rgb: np.ndarray, ref: np.ndarray, cand: np.ndarray) -> None:
    """The PNG's exactly red/blue/magenta pixels are ref-only, candidate-only and label swaps."""
    f = downscale_factor(ref.shape)
    r, c = ref[::f, ::f], cand[::f, ::f]
    assert rgb.shape == (*r.shape, 3)
    np.testing.assert_array_equal(colour_mask(rgb, REF_ONLY), (r > 0) & (c == 0))
    np.testing.assert_array_equal(colour_mask(rgb, CAND_ONLY), (c > 0) & (r == 0))
    np.testing.assert_array_equal(colour_mask(rgb, LABEL_SWAP), (r > 0) & (c > 0) & (r != c))


# ----------------------------------------------------------------------------- synthetic runs (fast tier)


def _segmentation(segs: np.ndarray, labels: int) -> Segmentation:
    return Segmentation(segs, [segs == k + 1 for k in range(labels)], [(0, 0)] * labels, Timings(encoder_ms=5.0))


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.ogrid[: shape[0], : shape[1]]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def synthetic_2d(rng: np.random.Generator, name: str = "2DBox_US_synthetic.npz") -> CaseResult:
    """A 700x600 colour image (longest side > 512: shown downscaled) with two boxes that drift."""
    shape = (600, 700)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    image[:10, :10] = (255, 0, 0)  # pure red in the image itself must not read as disagreement
    ref = np.zeros(shape, np.uint16)
    ref[_ellipse(shape, 300, 250, 120, 160)] = 1
    ref[_ellipse(shape, 200, 520, 60, 80)] = 2
    cand = np.zeros(shape, np.uint16)
    cand[_ellipse(shape, 305, 262, 118, 150)] = 1
    cand[_ellipse(shape, 200, 520, 60, 80)] = 2
    cand[190:200, 500:505] = 1  # a label swap inside box 2
    gts = np.zeros(shape, np.uint16)
    gts[_ellipse(shape, 302, 255, 119, 158)] = 1
    case = Case(name, Path(name), False, image, np.array([[90, 180, 410, 420], [440, 140, 600, 260]]))
    return _result(case, ref, cand, gts, 2)


def synthetic_3d(name: str = "3DBox_CT_synthetic.npz") -> CaseResult:
    """(6, 64, 80): the candidate loses a corner of the mask on slice 4 only."""
    shape = (6, 64, 80)
    image = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (6, 64, 1))
    ref = np.zeros(shape, np.uint16)
    ref[1:5, 16:48, 20:60] = 1
    cand = ref.copy()
    cand[4, 16:30, 20:34] = 0
    cand[2, 40:50, 55:65] = 1
    case = Case(name, Path(name), True, image, np.array([[20, 16, 1, 59, 47, 4]]), (2.0, 1.0, 1.0))
    return _result(case, ref, cand, None, 1)


def _result(case: Case, ref: np.ndarray, cand: np.ndarray, gts: np.ndarray | None, labels: int) -> CaseResult:
    """A CaseResult whose row holds the real agreement numbers of the two label maps."""
    reference, candidate = _segmentation(ref, labels), _segmentation(cand, labels)
    agreement = box_agreement(reference, candidate)
    row = {
        "case": case.name,
        "modality": case.modality,
        "dims": "3D" if case.is_3d else "2D",
        "boxes": labels,
        "agreement_dsc": float(np.mean(agreement)),
        "agreement_per_box": agreement,
        "teacher_forced_agreement_dsc": float(np.mean(agreement)),
        "latency": {
            "encoder_ms_median": 5.0,
            "decoder_ms_per_box": 1.0,
            "wall_ms_median": 9.0,
            "reference_wall_ms": 12.0,
            "stages_ms": candidate.timings.to_dict(),
            "reference_stages_ms": reference.timings.to_dict(),
        },
    }
    if case.is_3d:
        per_slice = slice_agreement(reference, candidate)
        row |= {"agreement_per_slice": per_slice, "worst_slice": int(np.nanargmin(per_slice))}
    else:
        row["reference_pixels_per_box"] = [int(np.count_nonzero(m)) for m in reference.box_masks]
    if gts is not None:
        nan = {"dsc": 0.9, "nsd": math.nan, "challenge_dsc": 0.9, "challenge_nsd": None}
        row |= {"reference": nan, "candidate": nan | {"dsc": 0.89}}
    return CaseResult(row, case, reference, candidate, gts)


def synthetic_report(results: list[CaseResult], kind: str = "onnx") -> dict:
    """A verify.json document of the synthetic rows, summarised by the verify code itself."""
    rows = [r.row for r in results] + [{"case": "2DBox_US_broken.npz", "error": "bad <file> & worse"}]
    overall = summarize(rows)
    return {
        "schema": "msam-export/verify@1",
        "candidate": {
            "kind": kind,
            "backend": kind,
            "model": "litemedsam",
            "weights": "fp32",
            "actual_precision": "f32",
        },
        "reference": {"kind": "pytorch", "model": "litemedsam", "weights": "fp32"},
        "arithmetic": {"int8": False, "cpu": "amx", "target": None, "exact": True},
        "data": {"cases": [r["case"] for r in rows], "fingerprint": "0" * 64},
        "system": {"model": "Test <CPU>", "isa": {"avx2": True, "amx_int8": False}},
        "cold_start": {"open_ms": 10.0, "first_encoder_call_ms": 7.0},
        "thresholds": FLOAT_LIMITS.to_dict(),
        "overall": overall,
        "by_dims": group_summaries(rows, "dims"),
        "by_modality": group_summaries(rows, "modality"),
        "cases": rows,
        "verdict": {"passed": False, "failures": ["mean agreement DSC < 0.99"]},
    }


def write_run(directory: Path, results: list[CaseResult], kind: str = "onnx") -> Path:
    """What ``verify`` writes: the page and slices through PageBuilder, then verify.json."""
    builder = PageBuilder()
    for result in results:
        builder.add(result)
    json_path = directory / f"{kind}.json"
    document = synthetic_report(results, kind)
    assert builder.write(json_path, document) == directory / f"{kind}.html"
    write_json(json_path, document)
    return json_path


@pytest.fixture()
def synthetic(tmp_path):
    results = [synthetic_2d(np.random.default_rng(0)), synthetic_3d()]
    return results, write_run(tmp_path, results)


def test_overlay_pixels_are_the_exact_xor_of_the_masks(synthetic):
    results, json_path = synthetic
    images = {img["data-case"]: img for img in overlays(json_path.with_suffix(".html").read_text())}
    assert sorted(images) == sorted(r.case.name for r in results)  # one per case; none for the failed case
    two, three = results
    assert images[two.case.name]["data-scale"] == "2" and max(two.reference.segs.shape) > MAX_SIDE
    assert_exact_disagreement(decode(images[two.case.name]), two.reference.segs, two.candidate.segs)
    assert images[three.case.name]["data-slice"] == "4"  # the slice where they disagree most
    assert_exact_disagreement(decode(images[three.case.name]), three.reference.segs[4], three.candidate.segs[4])


def test_slices_npz_keeps_only_what_the_page_drew(synthetic):
    results, json_path = synthetic
    with np.load(json_path.with_suffix(".slices.npz"), allow_pickle=False) as saved:
        assert [str(n) for n in saved["names"]] == [r.case.name for r in results]
        assert saved["0.image"].shape == (300, 350, 3) and saved["0.gt"].shape == (300, 350)
        np.testing.assert_array_equal(saved["0.reference"], results[0].reference.segs[::2, ::2])
        np.testing.assert_array_equal(saved["1.candidate"], results[1].candidate.segs[4])
        assert "1.gt" not in saved.files and list(saved["1.meta"]) == [1, 4]


def test_page_is_worst_first_escaped_and_prints_nan_as_dash(synthetic):
    _, json_path = synthetic
    html = json_path.with_suffix(".html").read_text()
    assert "bad &lt;file&gt; &amp; worse" in html and "Test &lt;CPU&gt;" in html and "<file>" not in html
    names = ("2DBox_US_broken.npz", "2DBox_US_synthetic.npz", "3DBox_CT_synthetic.npz")
    order = [html.index(f"<h3>{n} <span") for n in names]
    assert order == sorted(order)  # failed first, then 2D (agreement ~0.92), then 3D (~0.96)
    assert "<td>nan</td>" not in html.lower() and "<td>-</td>" in html
    assert html.count("<svg") >= 3  # modality chart, stage chart, slice chart


def test_page_shows_2d_agreement_by_object_size(synthetic):
    results, json_path = synthetic
    html = json_path.with_suffix(".html").read_text()
    section = html[html.index("<h2>2D agreement by object size</h2>") :]
    section = section[: section.index("</table>")]
    pixels = results[0].row["reference_pixels_per_box"]
    assert all(p >= 10_000 for p in pixels)  # both synthetic 2D objects are large ellipses
    mean = fmt(float(np.mean(results[0].row["agreement_per_box"])), 4)
    assert "<th>&gt;= 10,000 px</th>" in section and f"<td>{mean} (2)</td>" in section
    assert f"<td>{pixels[0]:,}</td>" in html  # the case's box table lists each object's pixels


def test_report_rebuilds_the_same_page(synthetic, tmp_path):
    _, json_path = synthetic
    again = report([json_path], tmp_path / "again" / "page.html")
    assert again.read_text() == json_path.with_suffix(".html").read_text()


def test_side_by_side_shows_one_overlay_per_candidate_per_case(synthetic, tmp_path):
    results, first = synthetic
    (tmp_path / "b").mkdir()
    drifted = [synthetic_2d(np.random.default_rng(1)), synthetic_3d()]
    second = write_run(tmp_path / "b", drifted, kind="openvino")
    page = report([first, second], tmp_path / "both.html")
    images = overlays(page.read_text())
    assert len(images) == 2 * len(results)
    for name in (r.case.name for r in results):
        assert sorted(img["data-candidate"] for img in images if img["data-case"] == name) == ["0", "1"]
    assert "2 candidates of litemedsam side by side" in page.read_text()


def test_missing_or_unreadable_files_are_one_line_errors(synthetic, tmp_path):
    _, json_path = synthetic
    with pytest.raises(MsamError, match=r"no such verify\.json") as missing:
        report([tmp_path / "nope.json"], tmp_path / "out.html")
    assert "\n" not in str(missing.value)
    (tmp_path / "other.json").write_text('{"schema": "msam-export/bundle@1"}')
    with pytest.raises(MsamError, match="not a verify report"):
        report([tmp_path / "other.json"], tmp_path / "out.html")
    json_path.with_suffix(".slices.npz").write_bytes(b"not a zip")
    with pytest.raises(MsamError, match="unreadable slices file") as broken:
        report([json_path], tmp_path / "out.html")
    assert "\n" not in str(broken.value)
    json_path.with_suffix(".slices.npz").unlink()
    with pytest.raises(MsamError, match="no such slices file"):
        report([json_path], tmp_path / "out.html")
    assert not (tmp_path / "out.html").exists()


# ----------------------------------------------------------------------------- a real verify run (slow tier)


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    """The bundled 2D ultrasound case and the spleen CT case cut to 5 slices, with ground truth."""
    root = tmp_path_factory.mktemp("report-data")
    for sub in ("imgs", "gts"):
        (root / sub).mkdir()
        shutil.copy(SAMPLES / sub / CASE_2D, root / sub / CASE_2D)
    crop_3d(CASE_3D, root)
    return root


def _verify_openvino(openvino: Path, data: Path, json_path: Path, precision: str) -> tuple[Path, list[CaseResult]]:
    """Verifies the OpenVINO artifact run at ``precision`` the way ``verify`` does (run_verify,
    PageBuilder.add per case, write, write_json) and keeps each case's real segmentations."""
    from msam_export.checkpoints import default_checkpoint_path
    from msam_export.limits import DEFAULT_LIMITS
    from msam_export.runtime import open_model
    from msam_export.verify import run_verify

    candidate = open_model(openvino, precision=precision)
    builder, results = PageBuilder(), []

    def keep(result: CaseResult) -> None:
        results.append(result)
        builder.add(result)

    cases = sorted((data / "imgs").glob("*.npz"))
    limits = DEFAULT_LIMITS.for_precision(candidate.precision)
    document = run_verify(candidate, open_model(default_checkpoint_path()), cases, data / "gts", limits, on_result=keep)
    html = builder.write(json_path, document)
    write_json(json_path, document)
    return html, results


@pytest.fixture(scope="module")
def verified(litemedsam_exports, sample_data, tmp_path_factory) -> dict:
    """Two real verify runs on the same data.

    "onnx": ``verify`` of the ONNX artifact, as the CLI runs it (writes onnx.json and onnx.html;
    ``reference``: its reference run). "openvino": the OpenVINO artifact run in bf16 (AMX: visible
    drift), with each case's real segmentations ("results") to check the page against. Through
    the tests' shared compile cache, where the same artifact's f32 blob may already be."""
    from msam_export.verify import verify

    out, cache = tmp_path_factory.mktemp("verified"), {}
    onnx = verify(litemedsam_exports["onnx"], sample_data, output=out / "onnx.json", reference_cache=cache)
    json_path = out / "openvino" / "verify.json"
    html, results = _verify_openvino(litemedsam_exports["openvino"], sample_data, json_path, "bf16")
    return {"onnx": onnx, "openvino": {"path": json_path, "html": html, "results": results}, "reference": cache}


def _reference_segs(verified: dict, name: str) -> np.ndarray:
    return next(seg.segs for key, seg in verified["reference"].items() if key.split("|")[0].endswith(name))


@pytest.mark.slow
def test_verify_writes_the_page_and_its_slices(verified):
    result = verified["onnx"]
    assert result.html == result.path.with_suffix(".html") and result.html.is_file()  # onnx.json -> onnx.html
    images = {img["data-case"]: img for img in overlays(result.html.read_text())}
    assert sorted(images) == [CASE_2D, CASE_3D]
    with np.load(result.path.with_suffix(".slices.npz")) as saved:
        for i, name in enumerate(str(n) for n in saved["names"]):  # the page draws the saved slices
            assert_exact_disagreement(decode(images[name]), saved[f"{i}.reference"], saved[f"{i}.candidate"])
            reference = _reference_segs(verified, name)
            z, f = int(saved[f"{i}.meta"][1]), int(saved[f"{i}.meta"][0])
            reference = reference[z] if z >= 0 else reference
            np.testing.assert_array_equal(saved[f"{i}.reference"], reference[::f, ::f])  # the real reference


@pytest.mark.slow
def test_overlays_are_the_xor_of_the_real_segmentations(verified):
    run = verified["openvino"]
    images = {img["data-case"]: img for img in overlays(run["html"].read_text())}
    assert sorted(images) == sorted(r.case.name for r in run["results"]) == [CASE_2D, CASE_3D]
    for result in run["results"]:
        ref, cand, img = result.reference.segs, result.candidate.segs, images[result.case.name]
        if result.case.is_3d:
            z, per_slice = int(img["data-slice"]), result.row["agreement_per_slice"]
            assert z == result.row["worst_slice"] or min(per_slice) == 1.0  # the worst slice, when there is one
            ref, cand = ref[z], cand[z]
        else:
            assert img["data-scale"] == str(downscale_factor(ref.shape)) == "2"  # 540x800: every 2nd pixel
        assert_exact_disagreement(decode(img), ref, cand)


@pytest.mark.slow
def test_report_rebuilds_the_verify_page_and_compares_side_by_side(verified, tmp_path):
    from test_cli import run_cli

    onnx, bf16 = verified["onnx"], verified["openvino"]
    for json_path, page in ((onnx.path, onnx.html), (bf16["path"], bf16["html"])):
        again = report([json_path], tmp_path / "again.html")
        assert again.read_text() == page.read_text()
    both = tmp_path / "both.html"
    cli = run_cli("report", str(bf16["path"]), str(onnx.path), "-o", str(both))
    assert cli.returncode == 0, cli.stderr
    images = overlays(both.read_text())
    assert sorted((img["data-case"], img["data-candidate"]) for img in images) == [
        (CASE_2D, "0"),
        (CASE_2D, "1"),
        (CASE_3D, "0"),
        (CASE_3D, "1"),
    ]
    missing = run_cli("report", str(tmp_path / "none.json"), "-o", str(tmp_path / "x.html"))
    assert missing.returncode == 2 and "no such verify.json" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- headless Chromium (slow tier)


def _install_chromium() -> str | None:
    """Debian's chromium via apt-get (root only); None when that fails (no network, no apt)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for steps in ([install], [["apt-get", "update", "-q"], install]):
        try:
            for step in steps:
                subprocess.run(step, env=env, capture_output=True, timeout=900, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return shutil.which("chromium")
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of headless-capable Chromium, installed with apt-get when missing; skips when it cannot be."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or _install_chromium()
    if not found:
        pytest.skip("chromium is not installed and `apt-get install -y chromium` failed (not root, or no network)")
    return found


def _chromium(binary: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run([binary, *flags, page.as_uri()], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def rendered(chromium, verified, tmp_path_factory) -> dict:
    """The bf16 run's page in headless Chromium: a screenshot and the rendered DOM (two launches)."""
    tmp = tmp_path_factory.mktemp("chromium")
    page, png = verified["openvino"]["html"], tmp / "page.png"
    shot = _chromium(chromium, page, tmp / "profile-shot", f"--screenshot={png}", "--window-size=1280,4000")
    dom = _chromium(chromium, page, tmp / "profile-dom", "--dump-dom")
    return {"png": png, "shot": shot, "dom": dom}


@pytest.mark.slow
def test_page_renders_in_headless_chromium_without_errors(rendered, verified):
    shot, dom = rendered["shot"], rendered["dom"]
    assert shot.returncode == 0 and dom.returncode == 0, shot.stderr[-2000:] + dom.stderr[-2000:]
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []  # no script errors, no blocked (network) loads
    rendered_images = overlays(dom.stdout)
    assert sorted(img["data-case"] for img in rendered_images) == [CASE_2D, CASE_3D]
    screenshot = np.asarray(Image.open(rendered["png"]).convert("RGB"))
    assert screenshot.shape == (4000, 1280, 3) and screenshot.std() > 10
    # the overlays are drawn at an integer zoom (1:1 here) with pixelated scaling, so their exact
    # colours reach the screen: at least the overlays' own red/blue pixels and GT contours show
    drawn = {"disagreement": 0, "contour": 0}
    for img in overlays(verified["openvino"]["html"].read_text()):
        rgb, zoom = decode(img), int(img["width"]) // decode(img).shape[1]
        drawn["disagreement"] += (colour_mask(rgb, REF_ONLY) | colour_mask(rgb, CAND_ONLY)).sum() * zoom**2
        drawn["contour"] += colour_mask(rgb, (255, 255, 0)).sum() * zoom**2
    assert drawn["contour"] > 400
    assert colour_mask(screenshot, (255, 255, 0)).sum() >= drawn["contour"]
    assert (colour_mask(screenshot, REF_ONLY) | colour_mask(screenshot, CAND_ONLY)).sum() >= drawn["disagreement"]
