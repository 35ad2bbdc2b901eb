"""``verify``: open the candidate and its reference, verify every case, write verify.json."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import data_dirs, list_cases
from ..errors import MsamError
from ..files import PathLike, sha256_of, write_json
from ..limits import DEFAULT_LIMITS, Limits
from ..runtime import Model, open_model
from .clicks import click_report, parse_prompts
from .report import run_verify


@dataclass
class VerifyResult:
    """The report, where it was written (None: not written) and its verdict."""

    report: dict[str, Any]
    path: Path | None = None
    html: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.report["verdict"]["passed"])


def verify(
    candidate: Model | PathLike,
    data: PathLike,
    *,
    reference: Model | PathLike | None = None,
    output: PathLike | None = None,
    gts: PathLike | None = None,
    cases: Sequence[str] | None = None,
    limits: Limits | None = None,
    repeats: int = 1,
    threads: int | None = None,
    precision: str = "f32",
    propagation: str | None = None,
    prompts: str = "box",
    trust_pickle: bool = False,
    html: bool = True,
    on_case: Callable[[str], None] | None = None,
    reference_cache: dict | None = None,
    cluster: Any = None,
) -> VerifyResult:
    """Compares ``candidate`` (an artifact dir, a checkpoint or an opened :class:`Model`) with
    the PyTorch FP32 ``reference`` (default: the checkpoint the artifact was exported from) on
    the challenge cases in ``data`` (a root with ``imgs/`` and ``gts/``, or an ``imgs/`` dir;
    ``cases`` names a subset).

    ``limits`` default to the artifact's own (``limits.DEFAULT_LIMITS`` for its weights: INT8
    or float). With ``output``, writes verify.json there (and verify.html beside it unless
    ``html`` is False). ``cluster`` (``msam_export.cluster``) spreads the cases over Ray.

    ``prompts`` "clicks" or "clicks:K" (default K 5) adds the ``clicks`` section: K rounds of
    simulated click refinement on the 2D cases, both sides, per round (``verify.clicks``; in this
    process; it needs a decoder with the full prompt interface and does not change the verdict)."""
    imgs, gts_dir = data_dirs(data, gts)
    paths = list_cases(imgs)
    if cases is not None:
        paths = [p for p in paths if p.name in set(cases)]
        missing = sorted(set(cases) - {p.name for p in paths})
        if missing:
            raise MsamError(f"{imgs}: no case {', '.join(missing)}")
    if repeats < 1:
        raise MsamError("repeats must be >= 1")
    rounds = parse_prompts(prompts)
    if not isinstance(candidate, Model):
        candidate = open_model(
            candidate, threads=threads, precision=precision, trust_pickle=trust_pickle, need="verify"
        )
    if not isinstance(reference, Model):
        reference_path = reference if reference is not None else reference_of_model(candidate)
        reference = open_model(reference_path, threads=threads, trust_pickle=trust_pickle, need="verify")
    if rounds and candidate.backend.interface != "full":
        raise MsamError(
            f"--prompts {prompts} needs a decoder with the full prompt interface; this {candidate.kind} artifact "
            "takes boxes only (export it with --prompts full)"
        )
    limits = limits or DEFAULT_LIMITS.for_precision(candidate.precision)
    pages = _page_builder(html and output is not None)
    options = {"repeats": repeats, "on_case": on_case, "on_result": pages.add if pages else None,
               "propagation": propagation}  # fmt: skip
    if cluster is not None:
        report = cluster.verify(candidate, reference, paths, gts_dir, limits, **options)
    else:
        report = run_verify(candidate, reference, paths, gts_dir, limits, reference_cache=reference_cache, **options)
    if rounds:
        report["clicks"] = click_report(
            reference.predictor(propagation), candidate.predictor(propagation), paths, gts_dir, rounds
        )
    result = VerifyResult(report)
    if output is not None:
        result.path = Path(output)
        if pages:
            result.html = pages.write(result.path, report)
        write_json(result.path, report)
    return result


def reference_of_model(model: Model) -> Path:
    """The reference checkpoint of an opened model (itself when it is a checkpoint)."""
    path = Path(str(model.source.get("path", "")))
    if model.kind == "pytorch":
        return path
    if path.is_file() and sha256_of(path) == model.source.get("sha256"):
        return path
    raise MsamError("the candidate's source checkpoint is not available; pass the reference checkpoint")


def _page_builder(wanted: bool) -> Any:
    """The HTML report's collector (keeps the slices it shows), or None."""
    if not wanted:
        return None
    from ..report import PageBuilder

    return PageBuilder()
