"""The pyradiomics adapter: one case in, one row of features (per ROI) and one of diagnostics out.

``extract_case`` never raises. A case that cannot be processed comes back with status ``failed``
and a reason a person can act on; the cohort runner records it in the QC ledger and goes on.

A case with several ROIs (lesions, labels, extra masks) and a neighbourhood filter enabled (LoG,
Wavelet, Gradient, LBP2D) has each filtered image computed once, on a crop covering every ROI, and
every ROI's features computed from it (see :func:`_shared_filter_crop` for when, and why that gives
the values of filtering each ROI alone).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from radpipe.errors import CaseError
from radpipe.extract import io, preprocess, qc
from radpipe.extract.settings import ExtractSettings, quiet_pyradiomics


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
    image: str | tuple[str, ...]  # a file or folder, or the files of one DICOM series (radpipe.extract.dicom_index)
    mask: str
    extra_masks: tuple[str, ...] = ()
    spacing_2d: tuple[float, float] | None = None
    label: int | None = None
    image_sha256: str = ""
    mask_sha256: str = ""
    extra_sha256: tuple[str, ...] = ()


_EXTRACTORS: dict[str, Any] = {}


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
        if settings.engine == "mirp":
            from radpipe.extract.mirp_engine import extract_case_mirp

            return extract_case_mirp(case, settings)
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


def _extract_case(case: CaseInput, settings: ExtractSettings, *, share_filters: bool | None = None) -> CaseResult:
    """``share_filters``: None decides by :func:`_shared_filter_crop`'s rule; False filters per ROI (for
    benchmarks and tests)."""
    result = CaseResult(case.case_id)
    image, image_notes = io.read_image(case.image, spacing_2d=case.spacing_2d)
    modality = io.image_modality(image)  # before preprocessing, which may not keep the DICOM metadata
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

    crops = [(roi_name, *(preprocess.crop_for_filters(image, roi_mask, margin) if margin is not None
                          else (image, roi_mask)))
             for roi_name, roi_mask in rois]
    shared = None
    if share_filters is not False:
        shared = _shared_filter_crop(extractor, image, [mask for _, mask in rois], crops)
    if shared is None:
        extracted = (_execute(extractor, roi_name, roi_image, roi_mask) for roi_name, roi_image, roi_mask in crops)
    else:
        extracted = _execute_shared_filters(extractor, *shared, crops)

    for (roi_name, roi_image, roi_mask_cropped), values in zip(crops, extracted, strict=True):
        row = {"case_id": case.case_id, "roi": roi_name}
        row.update({name: _to_float(value) for name, value in values.items() if not name.startswith("diagnostics_")})
        result.features.append(row)
        result.diagnostics.append(_diagnostics(case, roi_name, image, roi_image, roi_mask_cropped, notes,
                                               prep_records, modality=modality))
        if not fixes:
            result.qc.append(QCRow(case.case_id, roi_name, "ok", "", ""))
    if fixes:
        result.status = "fixed"
    return result


def _execute(extractor, roi_name: str, image: sitk.Image, mask: sitk.Image) -> dict[str, Any]:
    """pyradiomics' ``execute`` on one ROI's crop: the per-ROI path."""
    with _refused(roi_name):  # pyradiomics' own checks (e.g. ROI too small in one dimension)
        return extractor.execute(image, mask, label=1)


# --- filtering once for several ROIs -----------------------------------------------------------------------

#: Image types whose filtered value at a voxel depends only on the image within the filter margin around it
#: (``preprocess.filter_margin_mm``), so one filtered crop serves every ROI it covers. The others stay per ROI:
#: Square, SquareRoot, Logarithm and Exponential rescale by the largest |intensity| of the image they are given
#: (so by the crop's), LBP3D is computed at the mask's voxels only, and Original has nothing to filter.
_SHAREABLE_IMAGE_TYPES = {"log", "wavelet", "gradient", "lbp2d"}


def _shared_filter_crop(extractor, image: sitk.Image, roi_masks: list[sitk.Image],
                        crops: list[tuple[str, sitk.Image, sitk.Image]],
                        ) -> tuple[sitk.Image, sitk.Image, list[np.ndarray]] | None:
    """The crop on which to filter once for all ROIs, a mask on it for pyradiomics' loading, and where each ROI's
    crop starts in it; or None to filter per ROI.

    The shared crop is the bounding box of the per-ROI crops, i.e. the union of the ROIs' boxes plus the same
    per-axis margin, clamped to the image (the whole image when radpipe does not crop). Every ROI's crop is a
    sub-box of it, and a filter whose value at a voxel depends only on the image within the margin gives there
    the same value on either: Wavelet and Gradient bit for bit (the stationary wavelet transform is translation
    equivariant, and wrap-padding odd sizes only touches the crop's edge), LoG within the accuracy the margin
    already buys (its recursive Gaussian reaches the crop edge, now further away). Both paths yield the same
    images: pyradiomics skips a LoG sigma on an image under ``ceil(sigma / spacing) + 1`` (or 4) voxels along an
    axis, and a per-ROI crop with the LoG margin (``8 sigma`` + 2 voxels each side) is only that small where it
    is the whole image's extent, as the shared crop then is too.

    Rule: share when there are several ROIs, at least one image type in ``_SHAREABLE_IMAGE_TYPES`` is enabled,
    pyradiomics itself does not resample or pre-crop per ROI (``resampledPixelSpacing``, ``preCrop``), every ROI
    mask is on the image's grid, and the shared crop has no more voxels than the per-ROI crops together. Filtering
    costs about the same per voxel, so sharing then never filters more voxels than per-ROI filtering; ROIs far
    apart in a large image (a box mostly between them) stay per ROI.
    """
    if len(crops) < 2 or not any(t.lower() in _SHAREABLE_IMAGE_TYPES for t in extractor.enabledImagetypes):
        return None
    general = extractor.settings
    if general.get("resampledPixelSpacing") or general.get("preCrop"):
        return None
    grid = (image.GetSize(), image.GetOrigin(), image.GetSpacing())
    if any((m.GetSize(), m.GetOrigin(), m.GetSpacing()) != grid for m in roi_masks):
        return None
    starts = [np.array(image.TransformPhysicalPointToIndex(roi_image.GetOrigin())) for _, roi_image, _ in crops]
    sizes = [np.array(roi_image.GetSize()) for _, roi_image, _ in crops]
    low = np.min(starts, axis=0)
    high = np.max([start + size for start, size in zip(starts, sizes, strict=True)], axis=0)
    if np.prod(high - low) > sum(np.prod(size) for size in sizes):
        return None
    size, index = [int(v) for v in high - low], [int(v) for v in low]
    shared_image = image
    if np.any(low > 0) or np.any(high < np.array(image.GetSize())):
        shared_image = sitk.RegionOfInterest(image, size, index)
    # loadImage only needs label 1 somewhere (no resampling or pre-crop here) and the shareable filters do not
    # read the mask: the first ROI's, which lies inside the box, serves
    loading_mask = sitk.RegionOfInterest(roi_masks[0], size, index)
    return shared_image, loading_mask, [start - low for start in starts]


@dataclass
class _PreparedROI:
    """One ROI after steps 1-5 of pyradiomics' ``execute`` on its own crop."""

    name: str
    image: sitk.Image
    mask: sitk.Image
    bounding_box: np.ndarray
    start: np.ndarray  # where this ROI's crop starts in the shared crop
    values: dict[str, Any]  # shape, then each image type's features, in execute's order


def _execute_shared_filters(extractor, shared_image: sitk.Image, shared_mask: sitk.Image, starts: list[np.ndarray],
                            crops: list[tuple[str, sitk.Image, sitk.Image]]) -> list[dict[str, Any]]:
    """pyradiomics' ``execute(roi_image, roi_mask, label=1)`` for every ROI crop, with each image type in
    ``_SHAREABLE_IMAGE_TYPES`` filtered once on ``shared_image`` instead of once per ROI.

    Everything except those filters runs on each ROI's own crop, exactly as ``execute`` would: loading
    (normalisation included), the mask checks and bounding box, re-segmentation, shape, Original and the
    per-ROI image types. Each filtered image is then cut to every ROI's crop (with the crop's geometry) and
    goes through ``cropToTumorMask`` and ``computeFeatures`` as in ``execute``; it is dropped before the next
    one is computed, so at most one filtered image (or one wavelet level's set) is held. Feature names and
    order are ``execute``'s: shape, then each image type in its enabled order.
    """
    from radiomics import featureextractor, imageoperations

    settings = extractor.settings.copy()
    settings["label"] = 1
    if featureextractor.geometryTolerance != settings.get("geometryTolerance"):
        extractor._setTolerance()  # as execute does, in case another extractor changed SimpleITK's tolerance

    prepared = []
    for (roi_name, roi_image, roi_mask), start in zip(crops, starts, strict=True):
        with _refused(roi_name):
            image, mask, bounding_box, shape = _prepare_roi(extractor, roi_image, roi_mask, settings)
        prepared.append(_PreparedROI(roi_name, image, mask, bounding_box, start, dict(shape)))

    loaded = None
    for image_type, custom in extractor.enabledImagetypes.items():
        args = {**settings, **custom}
        generate = getattr(imageoperations, f"get{image_type}Image")
        if image_type.lower() not in _SHAREABLE_IMAGE_TYPES:
            for roi in prepared:
                with _refused(roi.name):
                    roi.values.update(_features(extractor, roi, generate(roi.image, roi.mask, **args)))
            continue
        if loaded is None:
            # the shared crop loaded as execute loads an image (normalised, if enabled: the crop is then the whole
            # image); the shareable filters do not read the mask
            loaded, loaded_mask = extractor.loadImage(shared_image, shared_mask, None, **settings)
        for filtered, image_name, kwargs in generate(loaded, loaded_mask, **args):
            for roi in prepared:
                piece = sitk.RegionOfInterest(filtered, list(roi.image.GetSize()), [int(v) for v in roi.start])
                piece.CopyInformation(roi.image)
                with _refused(roi.name):
                    roi.values.update(_features(extractor, roi, [(piece, image_name, kwargs)]))
            del filtered, piece  # before the generator makes the next one: one filtered image held at a time

    return [roi.values for roi in prepared]


def _prepare_roi(extractor, image: sitk.Image, mask: sitk.Image,
                 settings: dict) -> tuple[sitk.Image, sitk.Image, np.ndarray, dict[str, Any]]:
    """Steps 1-5 of pyradiomics' ``execute`` (segment-based, no provenance): load, check, re-segment, shape."""
    from radiomics import imageoperations

    image, mask = extractor.loadImage(image, mask, None, **settings)
    bounding_box, corrected = imageoperations.checkMask(image, mask, **settings)
    if corrected is not None:
        mask = corrected
    resegmented = None
    if settings.get("resegmentRange", None) is not None:
        resegmented = imageoperations.resegmentMask(image, mask, **settings)
        bounding_box, _ = imageoperations.checkMask(image, resegmented, **settings)
    resegment_shape = settings.get("resegmentShape", False)
    if resegment_shape and resegmented is not None:
        mask = resegmented
    shape = extractor.computeShape(image, mask, bounding_box, **settings)
    if not resegment_shape and resegmented is not None:
        mask = resegmented
    return image, mask, bounding_box, shape


def _features(extractor, roi: _PreparedROI, images) -> dict[str, Any]:
    """Step 6 of ``execute`` for one ROI: each (image, name, settings) cropped to the ROI and its features."""
    from radiomics import imageoperations

    values: dict[str, Any] = {}
    for image, image_name, kwargs in images:
        image, mask = imageoperations.cropToTumorMask(image, roi.mask, roi.bounding_box, padDistance=0)
        values.update(extractor.computeFeatures(image, mask, image_name, **kwargs))
    return values


@contextmanager
def _refused(roi_name: str) -> Iterator[None]:
    """pyradiomics' ValueError for one ROI becomes the CaseError the per-ROI path raises."""
    try:
        yield
    except ValueError as exc:
        raise CaseError(f"pyradiomics refused ROI '{roi_name}': {exc}") from None


def read_case_mask(path: Path, image: sitk.Image, roi_name: str | None,
                   spacing_2d: tuple[float, float] | None = None) -> tuple[sitk.Image, list[str]]:
    """A mask file, or a DICOM RTSTRUCT / SEG (or a folder holding one) rasterised onto the case's image grid.

    Without ``roi_name`` an RTSTRUCT with one drawn structure (a SEG with one segment) needs no choice; with
    several, the case fails listing them."""
    if path.is_dir():
        from radpipe.extract.dicom_index import segmentation_file_in

        path = segmentation_file_in(path) or path
    modality = _dicom_modality(path) if path.is_file() else None
    if modality in {"RTSTRUCT", "SEG"}:
        from radpipe.extract import dicom

        if modality == "RTSTRUCT":
            return dicom.rasterise_rtstruct(path, image, roi=roi_name or None)
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
    if array.size != 1:
        return float("nan")
    if np.iscomplexobj(array):
        # pyradiomics' shape axes come from eigenvalues, which round-off makes complex (1-4e-17j) on
        # symmetric masks: keep the real part when the imaginary one is round-off, else there is no value
        real, imag = float(array.real), float(array.imag)
        return real if abs(imag) <= 1e-9 * max(1.0, abs(real)) else float("nan")
    return float(array)


def _diagnostics(case: CaseInput, roi: str, image: sitk.Image, roi_image: sitk.Image, roi_mask: sitk.Image,
                 notes: list[str], prep_records: list[dict], *, modality: str = "") -> dict[str, Any]:
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
        "modality": modality,  # CT, MR, PT... for DICOM input; empty for files that do not record it
        "image_file": io.input_name(case.image),
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
