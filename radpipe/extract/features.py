"""The pyradiomics adapter: one case in, one row of features (per ROI) and one of diagnostics out.

``extract_case`` never raises. A case that cannot be processed comes back with status ``failed``
and a reason a person can act on; the cohort runner records it in the QC ledger and goes on.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from radpipe.errors import CaseError
from radpipe.extract import io, preprocess, qc
from radpipe.extract.settings import ExtractSettings


@dataclass
class QCRow:
    case_id: str
    roi: str
    status: str  # ok | fixed | failed
    action: str
    reason: str


@dataclass
class CaseResult:
    """What extraction produced for one case: feature rows and diagnostics per ROI, and the QC ledger rows."""

    case_id: str
    status: str = "ok"
    features: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    qc: list[QCRow] = field(default_factory=list)
    cacheable: bool = True

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id, "status": self.status, "features": self.features,
            "diagnostics": self.diagnostics, "qc": [asdict(row) for row in self.qc],
        }

    @classmethod
    def from_dict(cls, data: dict) -> CaseResult:
        return cls(data["case_id"], data["status"], data["features"], data["diagnostics"],
                   [QCRow(**row) for row in data["qc"]])

    @classmethod
    def failure(cls, case_id: str, reason: str, *, roi: str = "", action: str = "rejected",
                cacheable: bool = True) -> CaseResult:
        return cls(case_id, "failed", qc=[QCRow(case_id, roi, "failed", action, reason)], cacheable=cacheable)


@dataclass(frozen=True)
class CaseInput:
    """Everything a worker needs for one case: paths and plain values only (picklable, cluster-friendly)."""

    case_id: str
    image: str
    mask: str
    extra_masks: tuple[str, ...] = ()
    spacing_2d: tuple[float, float] | None = None
    label: int | None = None
    image_sha256: str = ""
    mask_sha256: str = ""
    extra_sha256: tuple[str, ...] = ()


_EXTRACTORS: dict[str, Any] = {}


def quiet_pyradiomics() -> None:
    """pyradiomics warns on stderr for every case ("GLCM is symmetrical…"); radpipe reports problems itself."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)


def build_extractor(params: dict):
    """A pyradiomics extractor for these parameters, built once per worker process."""
    from radiomics import featureextractor

    quiet_pyradiomics()

    key = repr(sorted((k, repr(v)) for k, v in params.items()))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = featureextractor.RadiomicsFeatureExtractor(params)
    return _EXTRACTORS[key]


def extract_case(case: CaseInput, settings: ExtractSettings) -> CaseResult:
    """Read, check, preprocess and extract one case; failures are returned, never raised."""
    try:
        return _extract_case(case, settings)
    except CaseError as exc:
        return CaseResult.failure(case.case_id, exc.reason, action=exc.action)
    except MemoryError:
        return CaseResult.failure(case.case_id, "ran out of memory while extracting this case", cacheable=False)
    except Exception as exc:  # a bug or an input we did not foresee: say so, keep the details
        last = traceback.extract_tb(exc.__traceback__)[-1]
        reason = (f"unexpected error {type(exc).__name__}: {exc} "
                  f"(at {Path(last.filename).name}:{last.lineno}; please report it)")
        return CaseResult.failure(case.case_id, reason, action="error", cacheable=False)


def _extract_case(case: CaseInput, settings: ExtractSettings) -> CaseResult:
    result = CaseResult(case.case_id)
    image, image_notes = io.read_image(case.image, spacing_2d=case.spacing_2d)
    mask, mask_notes = read_case_mask(Path(case.mask), image, settings.roi_name, case.spacing_2d)
    label = settings.label if settings.label is not None else case.label
    split = settings.roi_mode != "single"
    mask, fixes = qc.check_mask(image, mask, label=None if split else label, keep_labels=split,
                                min_voxels=settings.min_voxels, geometry_tolerance=settings.geometry_tolerance)
    masks = [(None, mask)]
    # extra lesion masks are checked against the image as read, before any step changes its grid
    for index, extra in enumerate(case.extra_masks, start=1):
        extra_mask, _ = io.read_mask(extra, spacing_2d=case.spacing_2d)
        extra_mask, extra_fixes = qc.check_mask(image, extra_mask, min_voxels=settings.min_voxels,
                                                geometry_tolerance=settings.geometry_tolerance)
        fixes += [qc.QCRecord(r.action, f"extra mask {Path(extra).name}: {r.reason}") for r in extra_fixes]
        masks.append((f"extra_{index}", extra_mask))
    for record in fixes:
        result.qc.append(QCRow(case.case_id, "", "fixed", record.action, record.reason))

    original = image
    image, mask, prep_records = preprocess.apply_preprocessing(original, mask, settings.preprocessing)
    rois = qc.split_rois(mask, settings.roi_mode, min_voxels=settings.min_voxels)
    for roi_name, extra_mask in masks[1:]:
        if settings.preprocessing:
            _, extra_mask, _ = preprocess.apply_preprocessing(original, extra_mask, settings.preprocessing)
        rois.append((roi_name, extra_mask))

    params = settings.pyradiomics_params()
    notes = image_notes + mask_notes
    if image.GetDimension() == 2 and not params["setting"].get("force2D"):
        params["setting"]["force2D"] = True
        notes.append("2D image: extracted with force2D")
    extractor = build_extractor(params)
    # Crop to the ROI box plus the margin the enabled filters need (zero for Original only; no crop at all
    # when a setting makes values depend on the whole image, e.g. normalize): everything after this point,
    # pyradiomics' own checks included, then works on the box instead of a 512x512x61 volume.
    margin = preprocess.filter_margin_mm(params, image.GetSpacing()) if settings.crop_for_filters else None

    for roi_name, roi_mask in rois:
        roi_image, roi_mask_cropped = image, roi_mask
        if margin is not None:
            roi_image, roi_mask_cropped = preprocess.crop_for_filters(image, roi_mask, margin)
        try:
            values = extractor.execute(roi_image, roi_mask_cropped, label=1)
        except ValueError as exc:  # pyradiomics' own checks (e.g. ROI too small in one dimension)
            raise CaseError(f"pyradiomics refused ROI '{roi_name}': {exc}") from None
        row = {"case_id": case.case_id, "roi": roi_name}
        row.update({name: _to_float(value) for name, value in values.items() if not name.startswith("diagnostics_")})
        result.features.append(row)
        result.diagnostics.append(_diagnostics(case, roi_name, image, roi_image, roi_mask_cropped, notes,
                                               prep_records))
        if not fixes:
            result.qc.append(QCRow(case.case_id, roi_name, "ok", "", ""))
    if fixes:
        result.status = "fixed"
    return result


def read_case_mask(path: Path, image: sitk.Image, roi_name: str | None,
                   spacing_2d: tuple[float, float] | None = None) -> tuple[sitk.Image, list[str]]:
    """A mask file, or a DICOM RTSTRUCT / SEG rasterised onto the case's image grid."""
    modality = _dicom_modality(path) if path.is_file() else None
    if modality in {"RTSTRUCT", "SEG"}:
        from radpipe.extract import dicom

        if modality == "RTSTRUCT":
            if not roi_name:
                raise CaseError(f"{path.name} is an RTSTRUCT: name the structure with extract.roi_name in the recipe")
            return dicom.rasterise_rtstruct(path, image, roi=roi_name)
        return dicom.read_dicom_seg(path, image, segment=roi_name)
    return io.read_mask(path, spacing_2d=spacing_2d)


def _dicom_modality(path: Path) -> str | None:
    with open(path, "rb") as handle:
        handle.seek(128)
        if handle.read(4) != b"DICM":
            return None
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", ""))


def _to_float(value: Any) -> float:
    array = np.asarray(value)
    return float(array) if array.size == 1 else float("nan")


def _diagnostics(case: CaseInput, roi: str, image: sitk.Image, roi_image: sitk.Image, roi_mask: sitk.Image,
                 notes: list[str], prep_records: list[dict]) -> dict[str, Any]:
    """Provenance computed once by radpipe (pyradiomics' additionalInfo would hash the image again).

    ROI statistics come from the cropped pair, which holds every ROI voxel; sizes from the whole image.
    """
    stats = sitk.LabelStatisticsImageFilter()
    stats.Execute(roi_image, roi_mask)
    bbox = stats.GetBoundingBox(1)
    dim = image.GetDimension()
    return {
        "case_id": case.case_id,
        "roi": roi,
        "image_file": Path(case.image).name,
        "mask_file": Path(case.mask).name,
        "image_sha256": case.image_sha256,
        "mask_sha256": case.mask_sha256,
        "dimension": dim,
        "image_size": "x".join(str(s) for s in image.GetSize()),
        "image_spacing_mm": "x".join(f"{s:.6g}" for s in image.GetSpacing()),
        "roi_voxels": int(stats.GetCount(1)),
        "roi_volume_mm3": float(stats.GetCount(1) * np.prod(image.GetSpacing())),
        "roi_bbox_size": "x".join(str(bbox[2 * i + 1] - bbox[2 * i] + 1) for i in range(dim)),
        "roi_intensity_min": float(stats.GetMinimum(1)),
        "roi_intensity_max": float(stats.GetMaximum(1)),
        "roi_intensity_mean": float(stats.GetMean(1)),
        "conversions": "; ".join(notes),
        "preprocessing": "; ".join(f"{r.get('step')}: {r.get('result', '')}" for r in prep_records),
    }
