"""The robustness stage: perturbed versions of every case through the extract stage's runner, then ICC per feature.

Perturbed images and masks are written to ``OUT/perturbed/`` and fed to the extract runner as ordinary cases,
so they share its content-addressed cache (a rerun recomputes nothing), its parallel map (``--jobs``, Dask
``--scheduler``) and its QC ledger. The mask perturbations of one perturbed image travel as that image's extra
masks, so the image is read and preprocessed once for all of them (and filtered once where the shared-filter
path applies). With ``extract.reader_masks`` the readers' masks of each case are extracted the same way and
their inter-reader ICC is written to ``reader_icc.csv``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from radpipe._io import atomic_write_text, software_versions
from radpipe.cohort import Cohort
from radpipe.errors import CaseError, ConfigError
from radpipe.extract import qc as mask_qc
from radpipe.extract import tables
from radpipe.extract.discretisation import resolve_discretisation
from radpipe.extract.features import CaseInput, CaseResult, read_case_mask
from radpipe.extract.io import read_image
from radpipe.extract.runner import DigestMemo, ResultCache, case_inputs, run_cases
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import output_lock
from radpipe.extract.survey import summarise, survey_rows
from radpipe.robustness import perturb
from radpipe.robustness.icc import feature_icc
from radpipe.robustness.settings import RobustnessSettings
from radpipe.robustness.table import READER_ICC_FILE, ROBUSTNESS_FILE

PERTURB_FORMAT = 1  # bump when a perturbation changes its output voxels: the perturbed files are then rewritten


@dataclass
class RobustnessResult:
    """What :func:`robustness_cohort` produced: the ICC table (``robustness``), the inter-reader one
    (``reader_icc``, None without reader masks), the QC ledger, the versions and the output folder."""

    robustness: pd.DataFrame | None
    reader_icc: pd.DataFrame | None
    qc: pd.DataFrame
    versions: pd.DataFrame
    out_dir: Path
    computed: int
    cached: int
    wall_seconds: float

    @property
    def n_failed(self) -> int:
        return int(self.qc["case_id"][self.qc["status"] == "failed"].nunique()) if len(self.qc) else 0

    def share_robust(self) -> pd.DataFrame:
        """Share of features whose ICC lower bound reaches the threshold, per image type and family."""
        from radpipe.robustness.report import share_table

        return share_table(self.robustness)

    def __repr__(self) -> str:
        robust = int(self.robustness["robust"].sum()) if self.robustness is not None else 0
        total = len(self.robustness) if self.robustness is not None else 0
        return (f"RobustnessResult({self.out_dir}: {len(self.versions)} versions, {robust}/{total} features robust, "
                f"{self.n_failed} case(s) with failures)")


def version_table(settings: RobustnessSettings) -> pd.DataFrame:
    """One row per perturbed version: its index and the perturbations combined in it.

    Examples
    --------
    >>> from radpipe.robustness.settings import RobustnessSettings
    >>> version_table(RobustnessSettings(rotation=[-15, 0, 15], noise_repeats=2, volume=[-0.1, 0, 0.1])).shape
    (18, 7)
    """
    rows = []
    masks = settings.mask_grid()
    for i, (angle, shift, noise) in enumerate(settings.image_grid()):
        for j, (volume, contour) in enumerate(masks):
            rows.append({"version": i * len(masks) + j, "image": i, "rotation_deg": angle, "shift_voxels": shift,
                         "noise_repeat": noise, "volume_change": volume, "contour_repeat": contour})
    return pd.DataFrame(rows)


def _seed(base: int, *parts) -> int:
    """A per-case, per-version seed: the same case and version get the same noise on every run and machine."""
    digest = hashlib.sha256(json.dumps([base, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def perturb_case(item: CaseInput, settings: ExtractSettings, robustness: RobustnessSettings,
                 folder: Path) -> tuple[list[CaseInput], list[dict]]:
    """Write every perturbed image and mask of one case into ``folder``; return the runner's work items (one
    per perturbed image, its mask versions as extra masks) and QC rows (a case that cannot be read or perturbed
    gets one failed row; nothing is raised)."""
    key = hashlib.sha256(json.dumps([PERTURB_FORMAT, item.image_sha256, item.mask_sha256, item.label,
                                     settings.label, settings.roi_name, settings.min_voxels,
                                     robustness.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "perturbed.json"
    images, masks = robustness.image_grid(), robustness.mask_grid()
    paths = [(folder / f"image_{i:03d}.nii", [folder / f"mask_{i:03d}_{j:02d}.nii" for j in range(len(masks))])
             for i in range(len(images))]
    try:
        done = json.loads(marker.read_text()).get("key") == key if marker.exists() else False
        if not done:
            _write_perturbed(item, settings, robustness, paths)
            atomic_write_text(marker, json.dumps({"key": key}))
    except CaseError as exc:
        return [], [_qc_row(item.case_id, "", "failed", exc.action, exc.reason)]
    except (RuntimeError, ValueError) as exc:  # SimpleITK or a perturbation refusing this case's voxels
        return [], [_qc_row(item.case_id, "", "failed", "error", f"could not perturb this case: {exc}")]
    work = []
    for i, (image_path, mask_paths) in enumerate(paths):
        work.append(CaseInput(
            case_id=f"{item.case_id}#{i:03d}", image=str(image_path), mask=str(mask_paths[0]),
            extra_masks=tuple(str(p) for p in mask_paths[1:]), label=1,
            image_sha256=_digest(image_path), mask_sha256=_digest(mask_paths[0]),
            extra_sha256=tuple(_digest(p) for p in mask_paths[1:])))
    return work, []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_perturbed(item: CaseInput, settings: ExtractSettings, robustness: RobustnessSettings,
                     paths: list[tuple[Path, list[Path]]]) -> None:
    image, _ = read_image(item.image, spacing_2d=item.spacing_2d)
    mask, _ = read_case_mask(Path(item.mask), image, settings.roi_name, item.spacing_2d)
    label = settings.label if settings.label is not None else item.label
    mask, _ = mask_qc.check_mask(image, mask, label=label, min_voxels=settings.min_voxels,
                                 geometry_tolerance=settings.geometry_tolerance)
    image = sitk.Cast(image, sitk.sitkFloat32)
    centre = perturb.roi_centroid(mask)
    sigma = perturb.estimate_noise(image) if robustness.noise_repeats else 0.0
    for (angle, shift, noise), (image_path, mask_paths) in zip(robustness.image_grid(), paths, strict=True):
        moved = perturb.rigid_transform(image, angle=angle, shift=shift, centre=centre)
        moved_mask = perturb.rigid_transform(mask, angle=angle, shift=shift, centre=centre, is_mask=True)
        if noise >= 0:
            moved = perturb.add_noise(moved, sigma, _seed(robustness.seed, item.case_id, angle, shift, noise))
        sitk.WriteImage(moved, str(image_path))  # uncompressed NIfTI: the same voxels give the same bytes (cache)
        for (volume, contour), mask_path in zip(robustness.mask_grid(), mask_paths, strict=True):
            version = perturb.adapt_volume(moved_mask, volume)
            if contour >= 0:
                version = perturb.randomise_contour(
                    moved, version, _seed(robustness.seed, item.case_id, angle, shift, noise, volume, contour),
                    supervoxel_voxels=robustness.supervoxel_voxels)
            sitk.WriteImage(version, str(mask_path))


def _qc_row(case_id: str, version: str, status: str, action: str, reason: str) -> dict:
    return {"case_id": case_id, "version": version, "status": status, "action": action, "reason": reason}


def _reader_items(cohort: Cohort, pattern: str, items: list[CaseInput]) -> tuple[list[CaseInput], list[dict]]:
    """One work item per case with at least two reader masks (the first as the mask, the others as extra
    masks); a case with fewer gets a QC row saying so."""
    work, rows = [], []
    for item in items:
        found = sorted(cohort.spec.root.glob(pattern.format(case_id=item.case_id)))
        if len(found) < 2:
            rows.append(_qc_row(item.case_id, "readers", "failed", "skipped",
                                f"{len(found)} reader mask(s) match '{pattern}' under {cohort.spec.root}; "
                                "an inter-reader ICC needs at least 2"))
            continue
        work.append(CaseInput(case_id=f"{item.case_id}#readers", image=item.image, mask=str(found[0]),
                              extra_masks=tuple(str(p) for p in found[1:]), spacing_2d=item.spacing_2d,
                              label=item.label, image_sha256=item.image_sha256, mask_sha256=_digest(found[0]),
                              extra_sha256=tuple(_digest(p) for p in found[1:])))
    return work, rows


def _long_rows(results: list[CaseResult], rows: list[dict]) -> pd.DataFrame:
    """case_id, version, features: one row per (case, version) from the runner's results."""
    records = []
    for result in results:
        if result.status == "failed":
            continue
        case_id, _, image = result.case_id.rpartition("#")
        for features in result.features:
            roi = features.get("roi") or ""
            mask_index = int(roi.removeprefix("extra_")) if roi.startswith("extra_") else 0
            records.append({"case_id": case_id, "image": image, "mask": mask_index,
                            **{k: v for k, v in features.items() if k not in ("case_id", "roi")}})
    for result in results:
        for row in result.qc:
            if row.status == "failed":
                case_id, _, image = result.case_id.rpartition("#")
                rows.append(_qc_row(case_id, image, "failed", row.action, row.reason))
    return pd.DataFrame(records)


def _annotate(table: pd.DataFrame) -> pd.DataFrame:
    parts = [tables.split_feature_name(name) for name in table["feature"]]
    table.insert(1, "image_type", [p[0] for p in parts])
    table.insert(2, "family", [p[1] for p in parts])
    return table


def robustness_cohort(cohort: Cohort, settings: ExtractSettings, robustness: RobustnessSettings,
                      out_dir: str | Path, *, jobs: int = 1, scheduler: str | None = None,
                      cache_dir: str | Path | None = None,
                      on_result: Callable[[CaseResult, bool], None] | None = None) -> RobustnessResult:
    """Perturb every case of ``cohort``, extract every version with ``settings`` and write the ICC per feature.

    Writes ``robustness.csv`` (one row per feature: image_type, family, the chosen ICC with its 95% CI,
    ``robust`` = CI lower bound >= ``robustness.threshold``, and all three ICCs), ``versions.csv`` (what each
    version combines), ``perturbed_features.csv`` (case_id, version, features), ``qc.csv``, ``robustness.html``
    and ``manifest.json``; with ``settings.reader_masks`` also ``reader_icc.csv``. Features with a missing value
    in any version, and cases lacking a version, are left out of the ICC and named in ``qc.csv``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radpipe.cohort import load_cohort
    >>> from radpipe.demo import make_demo_cohort
    >>> work = Path(tempfile.mkdtemp())
    >>> cohort = load_cohort(str(make_demo_cohort(work / "cohort", n_cases=6)))
    >>> result = robustness_cohort(cohort, ExtractSettings(featureClass={"shape": ["VoxelVolume", "Sphericity"]}),
    ...                            RobustnessSettings(rotation=[-10, 10]), work / "robustness")
    >>> result.robustness[["feature", "n_cases", "n_versions"]].values.tolist()
    [['original_shape_VoxelVolume', 6, 2], ['original_shape_Sphericity', 6, 2]]
    >>> bool(result.robustness.set_index("feature").loc["original_shape_VoxelVolume", "icc"] > 0.95)
    True
    """
    out_dir = Path(out_dir)
    versions = version_table(robustness)
    readers = settings.reader_masks
    if len(versions) < 2 and not readers:
        raise ConfigError("the robustness section gives a single version per case: add rotation angles, "
                          "translations, noise repeats, volume changes or contour repeats (or set "
                          "extract.reader_masks)", key="robustness")
    started, clock = datetime.now(UTC), time.perf_counter()
    settings = settings.model_copy(update={"roi_mode": "single", "extra_masks": None})
    lock = output_lock(out_dir)
    try:
        cache_folder = Path(cache_dir) if cache_dir else out_dir / ".cache"
        memo = DigestMemo(cache_folder)
        items = case_inputs(cohort, settings, memo)
        memo.save()
        # one bin width for every version: the unperturbed cohort's, as the extract stage would choose it
        survey = summarise(survey_rows(items, settings, jobs=jobs, cache_dir=cache_folder), settings)
        settings, discretisation, warnings = resolve_discretisation(
            settings, survey.ok["roi_min"], survey.ok["roi_max"], unit=survey.intensity_unit)
        qc_rows = [_qc_row(p.case_id, "", p.status, p.action, p.reason) for p in cohort.problems
                   if p.status == "failed"]
        work: list[CaseInput] = []
        if len(versions) >= 2:
            for case_items, rows in _perturb_all(items, settings, robustness, out_dir / "perturbed", jobs):
                work += case_items
                qc_rows += rows
        reader_work, reader_rows = _reader_items(cohort, readers, items) if readers else ([], [])
        summary = run_cases(work + reader_work, settings, ResultCache(cache_folder), jobs=jobs, scheduler=scheduler,
                            on_result=on_result)
        perturbed_results = [r for r in summary.results if not r.case_id.endswith("#readers")]
        reader_results = [r for r in summary.results if r.case_id.endswith("#readers")]

        icc_table, long = None, pd.DataFrame()
        if len(versions) >= 2:
            long = _long_rows(perturbed_results, qc_rows)
            if len(long):
                n_masks = len(robustness.mask_grid())
                long.insert(1, "version", long.pop("image").astype(int) * n_masks + long.pop("mask"))
                long = long.sort_values(["case_id", "version"], kind="stable").reset_index(drop=True)
                icc_table = _annotate(feature_icc(long, icc=robustness.icc, threshold=robustness.threshold))
                qc_rows += _incomplete_rows(long, len(versions))
        reader_table = None
        if readers:
            reader_long = _long_rows(reader_results, reader_rows)
            qc_rows += reader_rows
            if len(reader_long):
                reader_long = reader_long.drop(columns="image").rename(columns={"mask": "version"})
                if reader_long["case_id"].nunique() >= 2:
                    reader_table = _annotate(feature_icc(reader_long, icc=robustness.icc,
                                                         threshold=robustness.threshold))
        for item in items:
            if not any(row["case_id"] == item.case_id and row["status"] == "failed" for row in qc_rows):
                qc_rows.append(_qc_row(item.case_id, "", "ok", "", ""))
        qc = pd.DataFrame(qc_rows, columns=["case_id", "version", "status", "action", "reason"])
        qc = qc.sort_values(["case_id", "version"], kind="stable").reset_index(drop=True)
        tables.write_csv(qc, out_dir / "qc.csv")
        tables.write_csv(versions, out_dir / "versions.csv")
        if icc_table is not None:
            tables.write_csv(icc_table, out_dir / ROBUSTNESS_FILE)
            tables.write_csv(long, out_dir / "perturbed_features.csv")
        if reader_table is not None:
            tables.write_csv(reader_table, out_dir / READER_ICC_FILE)
        result = RobustnessResult(icc_table, reader_table, qc, versions, out_dir, summary.computed, summary.cached,
                                  time.perf_counter() - clock)
        from radpipe.robustness.report import write_report

        write_report(result, robustness, cohort.name)
        manifest = {
            "stage": "robustness", "cohort": cohort.name, "n_cases": len(items), "n_versions": len(versions),
            "computed": summary.computed, "cached": summary.cached, "failed": result.n_failed,
            "robustness": robustness.model_dump(mode="json"),
            "settings": json.loads(settings.model_dump_json()), "pyradiomics_params": settings.pyradiomics_params(),
            "discretisation": discretisation, "warnings": warnings + survey.warnings,
            "reference": "Zwanenburg A et al. Assessing robustness of radiomic features by image perturbation. "
                         "Sci Rep 2019;9:614",
            "versions": software_versions(), "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - clock, 3),
        }
        atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    finally:
        lock.release()
    return result


def _perturb_all(items: list[CaseInput], settings: ExtractSettings, robustness: RobustnessSettings, folder: Path,
                 jobs: int):
    """``perturb_case`` for every case, in parallel over cases (joblib) when ``jobs`` > 1."""
    folders = [folder / item.case_id.replace("/", "_") for item in items]
    if jobs == 1 or len(items) < 2:
        return [perturb_case(item, settings, robustness, f) for item, f in zip(items, folders, strict=True)]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, backend="loky")(
        delayed(perturb_case)(item, settings, robustness, f) for item, f in zip(items, folders, strict=True))


def _incomplete_rows(long: pd.DataFrame, n_versions: int) -> list[dict]:
    """QC rows for cases left out of the ICC because some of their versions failed."""
    counts = long.groupby("case_id")["version"].nunique()
    return [_qc_row(case_id, "", "failed", "left out of the ICC",
                    f"only {count} of {n_versions} perturbed versions could be extracted (see the rows above)")
            for case_id, count in counts.items() if count < n_versions]
