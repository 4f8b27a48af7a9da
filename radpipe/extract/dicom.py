"""Read DICOM inputs (image series, RTSTRUCT, DICOM-SEG) onto SimpleITK grids, with notes of what was done.

Patient identifiers never leave this module: notes, errors and image metadata name series by UID,
modality, instance number and slice position only, and every header-derived metadata key that
SimpleITK attaches to an image is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from radpipe.errors import CaseError
from radpipe.extract.dicom_index import NON_IMAGE_MODALITIES, has_dicom_preamble

__all__ = ["is_dicom_folder", "read_dicom_series", "rasterise_rtstruct", "read_dicom_seg"]


# Metadata keys radpipe sets on images it returns (DICOM tag keys as SimpleITK spells them).
_KEY_MODALITY = "0008|0060"
_KEY_SERIES_UID = "0020|000e"
_KEY_FRAME_OF_REFERENCE = "0020|0052"
KEY_INTENSITY_UNITS = "radpipe_intensity_units"


# --------------------------------------------------------------------------------------------- folders


def is_dicom_folder(path: str | Path, *, max_files: int = 10) -> bool:
    """True when ``path`` is a folder in which one of the first ``max_files`` files is DICOM.

    A DICOM Part 10 file carries ``DICM`` after a 128-byte preamble; only that is checked, so the
    answer is quick even for folders of thousands of slices.
    """
    path = Path(path)
    if not path.is_dir():
        return False
    checked = 0
    for child in sorted(path.iterdir()):
        if not child.is_file() or child.name.startswith("."):
            continue
        if has_dicom_preamble(child):
            return True
        checked += 1
        if checked >= max_files:
            break
    return False


# ---------------------------------------------------------------------------------------- image series


def read_dicom_series(
    folder: str | Path | Sequence[str | Path], *, series_uid: str | None = None
) -> tuple[sitk.Image, list[str]]:
    """Read one DICOM image series from ``folder`` as a 32-bit float SimpleITK image.

    Parameters
    ----------
    folder
        A folder holding the slices of one or more series (not searched recursively), or the list of the
        series' files, which may lie in several folders (as :mod:`radpipe.extract.dicom_index` finds them).
    series_uid
        The ``SeriesInstanceUID`` to read; required when the folder holds several image series.

    Returns
    -------
    image, notes
        ``image`` is in physical units: CT in HU (rescale slope/intercept applied), PET in SUV
        body-weight when the header allows it, otherwise the rescaled stored values. ``notes`` say
        in words what was done. The image carries only these metadata keys: modality, series UID,
        frame-of-reference UID and ``radpipe_intensity_units``.

    Raises
    ------
    CaseError
        No image series, several series and no ``series_uid``, an unknown ``series_uid``, missing
        or duplicated slices, inconsistent slice spacing, orientation or matrix size.
    """
    if not isinstance(folder, str | Path):
        files = [Path(f) for f in folder]
        # no folder name: exports name folders after patients, and this text reaches qc.csv
        return _read_series(f"the {len(files)} file(s) given", _image_series_of(files), series_uid)
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseError(f"DICOM folder not found: {folder}")
    return _read_series(folder, _image_series_in(folder), series_uid)


def _read_series(
    folder: Path | str, series: dict[str, tuple[list[Path], list[pydicom.Dataset]]], series_uid: str | None
) -> tuple[sitk.Image, list[str]]:
    if not series:
        where = f"{folder} (the folder is not searched recursively)" if isinstance(folder, Path) else folder
        raise CaseError(f"No DICOM image series in {where}.")
    if series_uid is None:
        if len(series) > 1:
            raise CaseError(
                f"{folder} holds {len(series)} image series; choose one by SeriesInstanceUID: "
                + _describe_series(series)
            )
        series_uid = next(iter(series))
    elif series_uid not in series:
        raise CaseError(
            f"Series {series_uid} is not in {folder}; the folder holds: " + _describe_series(series)
        )
    files, headers = series[series_uid]
    modality = str(headers[0].get("Modality", "")).upper() or "unknown modality"

    files, headers, slice_notes = _order_and_check_slices(files, headers)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    # Float output because PET (and some CT) slices carry their own rescale slope: an integer
    # output type taken from the first slice would truncate the others.
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CaseError(f"SimpleITK could not read series {series_uid}: {_message_of(exc)}") from None
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)

    notes = [
        f"Read {modality} series {series_uid}: {len(files)} slice(s), "
        f"{'x'.join(str(n) for n in image.GetSize())} voxels, spacing "
        f"{' x '.join(f'{s:.4g}' for s in image.GetSpacing())} mm; stored as 32-bit float."
    ]
    notes += slice_notes
    notes += _check_rescale(image, files, headers)

    units = _rescaled_units(modality, headers[0])
    if modality == "PT":
        factor, pet_notes = suv_body_weight_factor(headers)
        notes += pet_notes
        if factor is not None:
            image = sitk.Cast(image * factor, sitk.sitkFloat32)
            units = "SUVbw g/ml"
    elif modality == "MR":
        notes.append("MR intensities are in arbitrary scanner units; normalise them in the recipe if needed.")

    image.SetMetaData(_KEY_MODALITY, modality)
    image.SetMetaData(_KEY_SERIES_UID, series_uid)
    frame_of_reference = headers[0].get("FrameOfReferenceUID")
    if frame_of_reference:
        image.SetMetaData(_KEY_FRAME_OF_REFERENCE, str(frame_of_reference))
    image.SetMetaData(KEY_INTENSITY_UNITS, units)
    return image, notes


def _image_series_in(folder: Path) -> dict[str, tuple[list[Path], list[pydicom.Dataset]]]:
    """Image series in ``folder``: SeriesInstanceUID -> (files, headers without pixel data)."""
    uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    series = {}
    for uid in uids:
        names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        files, headers = [], []
        for name in names:
            try:
                header = pydicom.dcmread(name, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - an unreadable file is left out and the series checked without it
                continue
            if str(header.get("Modality", "")).upper() in NON_IMAGE_MODALITIES:
                continue
            files.append(Path(name))
            headers.append(header)
        if files:
            series[uid] = (files, headers)
    return series


def _image_series_of(files: list[Path]) -> dict[str, tuple[list[Path], list[pydicom.Dataset]]]:
    """Image series among ``files`` (any folders): SeriesInstanceUID -> (files, headers without pixel data)."""
    series: dict[str, tuple[list[Path], list[pydicom.Dataset]]] = {}
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CaseError(f"{len(missing)} file(s) of the DICOM series are gone since the folder was indexed, "
                        f"e.g. {missing[0].name}; run again on the current folder.")
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - an unreadable file is left out and the series checked without it
            continue
        if str(header.get("Modality", "")).upper() in NON_IMAGE_MODALITIES:
            continue
        uid = str(header.get("SeriesInstanceUID", ""))
        series.setdefault(uid, ([], []))
        series[uid][0].append(path)
        series[uid][1].append(header)
    return series


def _describe_series(series: dict[str, tuple[list[Path], list[pydicom.Dataset]]]) -> str:
    parts = []
    for uid, (files, headers) in series.items():
        modality = str(headers[0].get("Modality", "")) or "unknown modality"
        description = str(headers[0].get("SeriesDescription", "")).strip()
        label = f"{uid} ({modality}, {len(files)} slice(s)"
        parts.append(label + (f", '{description}')" if description else ")"))
    return "; ".join(parts)


def _order_and_check_slices(
    files: list[Path], headers: list[pydicom.Dataset]
) -> tuple[list[Path], list[pydicom.Dataset], list[str]]:
    """Sort slices along the slice normal and fail on anything that would make a wrong volume."""
    if len(files) == 1:
        frames = int(headers[0].get("NumberOfFrames", 1) or 1)
        what = f"one multi-frame file ({frames} frames)" if frames > 1 else "a single slice"
        return files, headers, [f"The series is {what}; slice-position checks do not apply."]

    for name, tag in (("ImageOrientationPatient", "orientation"), ("ImagePositionPatient", "position")):
        missing = [_instance(h) for h in headers if name not in h]
        if missing:
            raise CaseError(f"{len(missing)} slice(s) have no {name} (slice {tag}): instances {_few(missing)}.")
    orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
    for header in headers[1:]:
        if not np.allclose(np.array(header.ImageOrientationPatient, dtype=float), orientation, atol=1e-4):
            raise CaseError(
                "Slice orientation (ImageOrientationPatient) differs within the series, e.g. at instance "
                f"{_instance(header)}; it may mix several acquisitions. Split the series or choose another."
            )
    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    if len(sizes) > 1:
        raise CaseError(f"Slices of the series have different matrix sizes (rows x columns): {sorted(sizes)}.")
    spacings = {tuple(round(float(v), 4) for v in h.get("PixelSpacing", (1, 1))) for h in headers}
    if len(spacings) > 1:
        raise CaseError(f"Slices of the series have different pixel spacings (mm): {sorted(spacings)}.")

    normal = np.cross(orientation[:3], orientation[3:])
    corners = np.array([np.array(h.ImagePositionPatient, dtype=float) for h in headers])
    positions = corners @ normal
    order = np.argsort(positions, kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    positions = positions[order]
    steps = np.diff(positions)

    # Slices must stack straight along their normal; a gantry-tilted (sheared) stack cannot be a
    # SimpleITK image without resampling, and reading it as one would misplace every voxel.
    moves = np.diff(corners[order], axis=0)
    sideways = np.linalg.norm(moves - np.outer(moves @ normal, normal), axis=1)
    if sideways.size and sideways.max() > 0.01:
        raise CaseError(
            f"Slices are shifted sideways by up to {sideways.max():.2f} mm from one to the next (gantry tilt "
            "or a sheared stack); resample the series to an orthogonal grid before radpipe."
        )

    duplicated = np.flatnonzero(steps < 1e-3)
    if duplicated.size:
        examples = ", ".join(
            f"{positions[i]:.2f} mm (instances {_instance(headers[i])} and {_instance(headers[i + 1])})"
            for i in duplicated[:3]
        )
        raise CaseError(
            f"{duplicated.size} slice position(s) occur more than once in the series, e.g. {examples}; "
            "the folder may hold repeated acquisitions or copied files. Keep one slice per position."
        )

    step = float(steps.min())
    tolerance = max(1e-3, 0.01 * step)
    irregular = np.flatnonzero(np.abs(steps - step) > tolerance)
    if irregular.size:
        ratios = steps[irregular] / step
        whole = np.abs(ratios - np.round(ratios)) * step <= tolerance
        if whole.all():
            gaps = ", ".join(
                f"{int(round(r)) - 1} between {positions[i]:.2f} and {positions[i + 1]:.2f} mm"
                for i, r in zip(irregular[:5], ratios[:5], strict=False)
            )
            missing = int(np.round(ratios).sum() - ratios.size)
            raise CaseError(
                f"{missing} slice(s) missing from the series (slice spacing {step:.4g} mm): {gaps}. "
                "Export the complete series again."
            )
        distinct = sorted({round(float(s), 3) for s in steps})
        raise CaseError(
            f"Slice spacing is inconsistent within the series: distances between neighbouring slices "
            f"of {_few(distinct)} mm. Resample the series to a regular grid before radpipe, or check "
            "that it is a single acquisition."
        )

    notes = [f"Slices ordered along the slice normal; regular spacing of {step:.4g} mm, no gaps or duplicates."]
    thickness = headers[0].get("SliceThickness")
    if thickness not in (None, "") and abs(float(thickness) - step) > tolerance:
        notes.append(
            f"SliceThickness ({float(thickness):.4g} mm) differs from the slice spacing ({step:.4g} mm); "
            "the spacing of the slice positions is used."
        )
    return files, headers, notes


def _check_rescale(image: sitk.Image, files: list[Path], headers: list[pydicom.Dataset]) -> list[str]:
    """Say which rescale SimpleITK applied and check it on the middle slice against the stored values."""
    slopes = sorted({float(h.get("RescaleSlope", 1) or 1) for h in headers})
    intercepts = sorted({float(h.get("RescaleIntercept", 0) or 0) for h in headers})
    if len(slopes) == 1 and len(intercepts) == 1:
        rescale = f"rescale slope {slopes[0]:g} and intercept {intercepts[0]:g}"
    else:
        rescale = (
            f"per-slice rescale slopes ({slopes[0]:g} to {slopes[-1]:g}) and intercepts "
            f"({intercepts[0]:g} to {intercepts[-1]:g})"
        )
    if int(headers[0].get("NumberOfFrames", 1) or 1) > 1:
        return [f"Stored values converted with {rescale} by SimpleITK (not re-checked for multi-frame files)."]
    middle = len(files) // 2
    try:
        stored = pydicom.dcmread(files[middle]).pixel_array.astype(np.float64)
    except Exception:  # noqa: BLE001 - pixel decoding may need an optional codec; the check is advisory
        return [f"Stored values converted with {rescale} by SimpleITK (not re-checked: pixel data not decodable by pydicom)."]
    header = headers[middle]
    expected = stored * float(header.get("RescaleSlope", 1) or 1) + float(header.get("RescaleIntercept", 0) or 0)
    read = sitk.GetArrayViewFromImage(image)[middle]
    if expected.shape != read.shape:
        return [f"Stored values converted with {rescale} by SimpleITK (not re-checked: slice shapes differ)."]
    deviation = float(np.max(np.abs(expected - read)))
    if deviation > 1e-3 * max(1.0, float(np.max(np.abs(expected)))):
        raise CaseError(
            f"Reading the series did not apply the DICOM rescale ({rescale}) as expected: values on "
            f"slice {middle} differ by up to {deviation:g} from stored x slope + intercept."
        )
    return [f"Stored values converted with {rescale} by SimpleITK (checked on slice {middle}: exact)."]


def _rescaled_units(modality: str, header: pydicom.Dataset) -> str:
    if modality == "CT":
        return "HU"
    if modality == "PT":
        return str(header.get("Units", "")) or "unknown"
    return str(header.get("RescaleType", "")) or "scanner units"


# ------------------------------------------------------------------------------------------------- PET


def suv_body_weight_factor(headers: list[pydicom.Dataset]) -> tuple[float | None, list[str]]:
    """Factor turning PET activity concentration (Bq/ml) into SUV body-weight (g/ml), and notes.

    SUVbw = concentration x body weight / injected dose decayed to the scan reference time, with
    1 ml of tissue taken as 1 g. Returns ``(None, notes)`` when a needed tag is missing or the
    values do not allow it; the notes then name what is missing, and the caller keeps raw values.
    """
    header = headers[0]
    keep = "PET values kept as stored (rescaled) values, not SUV"
    units = str(header.get("Units", "")).upper()
    if units == "GML":
        return None, ["PET values are already SUV (Units GML); no conversion applied."]
    if units != "BQML":
        shown = units or "missing"
        return None, [f"{keep}: Units is {shown}, but SUV conversion needs activity concentration (BQML)."]

    weight = _positive_float(header.get("PatientWeight"))
    if weight is None:
        return None, [f"{keep}: PatientWeight (0010,1030) is missing or zero."]
    info = header.get("RadiopharmaceuticalInformationSequence")
    if not info:
        return None, [f"{keep}: RadiopharmaceuticalInformationSequence (0054,0016) is missing."]
    info = info[0]
    dose = _positive_float(info.get("RadionuclideTotalDose"))
    if dose is None:
        return None, [f"{keep}: RadionuclideTotalDose (0018,1074) is missing or zero."]
    half_life = _positive_float(info.get("RadionuclideHalfLife"))

    decay = str(header.get("DecayCorrection", "")).upper()
    notes = []
    if decay == "ADMIN":
        decay_factor, when = 1.0, "images are decay-corrected to the administration time (DecayCorrection ADMIN)"
    elif decay == "START":
        if half_life is None:
            return None, [f"{keep}: RadionuclideHalfLife (0018,1075) is missing or zero."]
        injection = _injection_datetime(header, info)
        if injection is None:
            return None, [
                f"{keep}: RadiopharmaceuticalStartTime (0018,1072) or RadiopharmaceuticalStartDateTime "
                "(0018,1078) is missing or unreadable."
            ]
        scan, scan_note = _scan_reference_datetime(headers)
        if scan is None:
            return None, [f"{keep}: SeriesTime (0008,0031) and AcquisitionTime (0008,0032) are missing."]
        if scan_note:
            notes.append(scan_note)
        delay = (scan - injection).total_seconds()
        if delay < 0 and "RadiopharmaceuticalStartDateTime" not in info and "SeriesDate" not in header:
            delay += 86400  # no dates: the injection was the day before (scan after midnight)
        if not 0 <= delay <= 86400:
            return None, [
                f"{keep}: the scan reference time is {delay / 60:.1f} min after the injection "
                "(RadiopharmaceuticalStartTime vs SeriesTime/AcquisitionTime), which is implausible."
            ]
        decay_factor = 2.0 ** (-delay / half_life)
        when = (
            f"injected dose decayed over {delay / 60:.1f} min (half-life {half_life / 60:.1f} min) "
            "to the series start (DecayCorrection START)"
        )
    else:
        shown = decay or "missing"
        return None, [f"{keep}: DecayCorrection is {shown}; SUV conversion supports START and ADMIN."]

    corrected = [str(v).upper() for v in (header.get("CorrectedImage") or [])]
    if corrected and "DECY" not in corrected:
        notes.append("CorrectedImage does not list DECY (decay correction); the DecayCorrection tag was trusted.")
    factor = weight * 1000.0 / (dose * decay_factor)
    notes.append(
        f"PET converted from Bq/ml to SUV body-weight (g/ml): value x body weight / injected dose; "
        f"{when}; scale factor {factor:.6g}."
    )
    return factor, notes


def _positive_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _parse_time(value) -> timedelta | None:
    """DICOM TM (HHMMSS.frac, also the old HH:MM:SS form) as time since midnight."""
    text = str(value or "").strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if not match:
        return None
    hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        hours=int(hours), minutes=int(minutes or 0), seconds=int(seconds or 0) + float(fraction or 0)
    )


def _parse_date(value) -> datetime | None:
    text = str(value or "").strip().replace(".", "")
    try:
        return datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return None


def _combine(date_value, time_value) -> datetime | None:
    time = _parse_time(time_value)
    if time is None:
        return None
    date = _parse_date(date_value) or datetime(1900, 1, 1)
    return date + time


def _injection_datetime(header: pydicom.Dataset, info: pydicom.Dataset) -> datetime | None:
    start = str(info.get("RadiopharmaceuticalStartDateTime", "") or "").strip()
    if len(start) >= 10:
        moment = _combine(start[:8], re.split(r"[+-]", start[8:])[0])  # drop any UTC offset
        if moment is not None:
            return moment
    return _combine(header.get("SeriesDate"), info.get("RadiopharmaceuticalStartTime"))


def _scan_reference_datetime(headers: list[pydicom.Dataset]) -> tuple[datetime | None, str]:
    """Series start, or the earliest acquisition when the series time is later (re-processed series)."""
    header = headers[0]
    series = _combine(header.get("SeriesDate"), header.get("SeriesTime"))
    acquisitions = [
        _combine(h.get("AcquisitionDate") or h.get("SeriesDate"), h.get("AcquisitionTime")) for h in headers
    ]
    acquisitions = [a for a in acquisitions if a is not None]
    earliest = min(acquisitions) if acquisitions else None
    if series is None:
        return earliest, "Series start taken from the earliest AcquisitionTime (SeriesTime missing)."
    if earliest is not None and earliest < series:
        return earliest, (
            "SeriesTime is later than the earliest AcquisitionTime (the series was probably re-processed); "
            "the earliest AcquisitionTime is used as the decay reference."
        )
    return series, ""


# ---------------------------------------------------------------------------------------------- RTSTRUCT


def rasterise_rtstruct(
    rtstruct_path: str | Path, reference: sitk.Image | str | Path, roi: str | None = None
) -> tuple[sitk.Image, list[str]]:
    """Rasterise one RTSTRUCT ROI onto the grid of ``reference`` as a UInt8 mask (0/1).

    Parameters
    ----------
    rtstruct_path
        The RTSTRUCT file.
    reference
        The image grid: a SimpleITK image, a DICOM series folder (the series the RTSTRUCT refers
        to is chosen when the folder holds several) or an image file.
    roi
        An ROI name or a regular expression matched in full, ignoring case. An exact name wins. May be
        omitted when the structure set holds exactly one ROI with contours.

    Notes
    -----
    A voxel is inside when its centre lies inside the contour polygon of its slice (the usual
    convention, which reproduces the IBSI CT phantom's reference mask exactly). Several contours
    on one slice combine by the even-odd rule, so a contour inside another is a hole.
    """
    dataset = _read_dicom_file(rtstruct_path, "RTSTRUCT")
    if str(dataset.get("Modality", "")).upper() != "RTSTRUCT":
        raise CaseError(f"{Path(rtstruct_path).name} is not an RTSTRUCT (Modality {dataset.get('Modality', 'missing')}).")
    names = {int(item.ROINumber): str(item.get("ROIName", "")) for item in dataset.get("StructureSetROISequence", [])}
    if not names:
        raise CaseError(f"The RTSTRUCT {Path(rtstruct_path).name} defines no ROI.")
    chosen_note = []
    if roi is None:
        drawn = {int(item.ReferencedROINumber) for item in dataset.get("ROIContourSequence", [])
                 if item.get("ContourSequence")}
        candidates = {number: name for number, name in names.items() if number in drawn}
        if len(candidates) != 1:
            listed = _list_choices(candidates or names)
            raise CaseError(
                f"The RTSTRUCT holds {len(candidates or names)} structures with contours ({listed}); choose one "
                "with extract.roi_name in the recipe (a name or a regular expression, e.g. roi_name: 'GTV.*')."
            )
        number = next(iter(candidates))
        chosen_note = [f"RTSTRUCT ROI '{names[number]}' used: the only structure with contours (no extract.roi_name given)."]
    else:
        number = _choose_by_name(names, roi, what="ROI", where="the RTSTRUCT")
    name = names[number]

    image, notes = _reference_grid(reference, _referenced_series_uid(dataset))
    notes = chosen_note + notes
    frames = {
        str(item.get("ReferencedFrameOfReferenceUID", ""))
        for item in dataset.get("StructureSetROISequence", [])
        if int(item.ROINumber) == number
    }
    _check_frame_of_reference(image, frames - {""}, "RTSTRUCT")

    contours = [
        item.ContourSequence
        for item in dataset.get("ROIContourSequence", [])
        if int(item.ReferencedROINumber) == number and "ContourSequence" in item
    ]
    contours = [contour for sequence in contours for contour in sequence]
    if not contours:
        raise CaseError(f"ROI '{name}' has no contours in the RTSTRUCT.")

    mask, contour_notes = _fill_contours(contours, image, name)
    result = sitk.GetImageFromArray(mask.astype(np.uint8))
    result.CopyInformation(image)
    voxels = int(mask.sum())
    volume_ml = voxels * float(np.prod(image.GetSpacing())) / 1000.0
    notes += contour_notes
    notes.append(
        f"RTSTRUCT ROI '{name}' rasterised onto the {'x'.join(str(n) for n in image.GetSize())} reference grid "
        "(voxel inside when its centre is inside the contour polygon; contours on one slice combined "
        f"by the even-odd rule): {voxels} voxels, {volume_ml:.2f} ml."
    )
    return result, notes


def _fill_contours(contours, image: sitk.Image, name: str) -> tuple[np.ndarray, list[str]]:
    from skimage.draw import polygon

    size_x, size_y, size_z = image.GetSize()
    mask = np.zeros((size_z, size_y, size_x), dtype=bool)
    to_index = _physical_to_index(image)
    skipped_types: dict[str, int] = {}
    outside_slices = 0
    max_offset = 0.0
    clipped = False
    for contour in contours:
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
        if kind != "CLOSED_PLANAR":
            skipped_types[kind] = skipped_types.get(kind, 0) + 1
            continue
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        if len(points) < 3:
            skipped_types["fewer than 3 points"] = skipped_types.get("fewer than 3 points", 0) + 1
            continue
        index = to_index(points)
        z = index[:, 2]
        if np.ptp(z) > 0.1:
            raise CaseError(
                f"A contour of ROI '{name}' is not parallel to the slices of the reference image "
                "(oblique contour or a reference series with another orientation)."
            )
        plane = float(z.mean())
        k = int(round(plane))
        offset = abs(plane - k)
        if offset > 0.25:
            raise CaseError(
                f"A contour of ROI '{name}' lies between two slices of the reference image "
                f"({offset * image.GetSpacing()[2]:.2f} mm from the nearest); is the reference the series "
                "the RTSTRUCT was drawn on?"
            )
        max_offset = max(max_offset, offset)
        if not 0 <= k < size_z:
            outside_slices += 1
            continue
        columns, rows = index[:, 0], index[:, 1]
        if columns.min() < -0.5 or rows.min() < -0.5 or columns.max() > size_x - 0.5 or rows.max() > size_y - 0.5:
            clipped = True
        rr, cc = polygon(rows, columns, shape=(size_y, size_x))
        fill = np.zeros((size_y, size_x), dtype=bool)
        fill[rr, cc] = True
        mask[k] ^= fill

    notes = []
    for kind, count in skipped_types.items():
        notes.append(f"{count} contour(s) of ROI '{name}' skipped ({kind}); only closed planar contours enclose voxels.")
    if outside_slices:
        notes.append(f"{outside_slices} contour(s) of ROI '{name}' lie outside the reference image's slices and were left out.")
    if clipped:
        notes.append(f"ROI '{name}' extends beyond the reference image in-plane; the mask is clipped to the image.")
    if max_offset > 0.01:
        notes.append(f"Contour planes were up to {max_offset:.2f} slice(s) off the reference slices and were snapped to the nearest.")
    if not mask.any():
        raise CaseError(f"ROI '{name}' covers no voxel centre of the reference image (empty mask).")
    return mask, notes


def _physical_to_index(image: sitk.Image):
    """A vectorised physical-point (mm) to continuous (x, y, z) index map for ``image``."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = direction @ np.diag(image.GetSpacing())
    inverse = np.linalg.inv(matrix)
    origin = np.array(image.GetOrigin(), dtype=float)
    return lambda points: (np.asarray(points, dtype=float) - origin) @ inverse.T


def _referenced_series_uid(dataset: pydicom.Dataset) -> str | None:
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uid = series.get("SeriesInstanceUID")
                if uid:
                    return str(uid)
    return None


# -------------------------------------------------------------------------------------------- DICOM-SEG


def read_dicom_seg(
    seg_path: str | Path, reference: sitk.Image | str | Path, segment: str | int | None = None
) -> tuple[sitk.Image, list[str]]:
    """Read one segment of a DICOM-SEG (with highdicom) as a UInt8 mask (0/1) on ``reference``'s grid.

    Parameters
    ----------
    seg_path
        The DICOM-SEG file (binary or fractional; fractional values are thresholded at 0.5).
    reference
        A SimpleITK image, a DICOM series folder (the referenced series is chosen when the folder
        holds several) or an image file.
    segment
        Segment number, or label (exact, else a regular expression matched in full, ignoring case).
        May be omitted when the SEG holds a single segment.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(seg_path))
    except FileNotFoundError:
        raise CaseError(f"DICOM-SEG file not found: {seg_path}") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is one unusable input
        raise CaseError(f"{Path(seg_path).name} is not a readable DICOM-SEG: {_message_of(exc)}") from None
    labels = {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence}
    if segment is None:
        if len(labels) > 1:
            raise CaseError(
                f"The DICOM-SEG holds {len(labels)} segments ({_list_choices(labels)}); choose one with "
                "extract.roi_name in the recipe (a segment label or a regular expression)."
            )
        number = next(iter(labels))
    elif isinstance(segment, int | np.integer):
        if int(segment) not in labels:
            raise CaseError(f"The DICOM-SEG has no segment number {segment}; it holds: " + _list_choices(labels))
        number = int(segment)
    else:
        number = _choose_by_name(labels, segment, what="segment", where="the DICOM-SEG")
    label = labels[number]

    referenced = None
    for item in seg.get("ReferencedSeriesSequence", []):
        referenced = str(item.get("SeriesInstanceUID", "")) or None
        break
    image, notes = _reference_grid(reference, referenced)
    frame = str(seg.get("FrameOfReferenceUID", "") or "")
    _check_frame_of_reference(image, {frame} - {""}, "DICOM-SEG")

    try:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - highdicom refuses irregular frame layouts; say so
        raise CaseError(
            f"Segment '{label}' of the DICOM-SEG cannot be arranged as a volume: {_message_of(exc)}"
        ) from None
    array = np.asarray(volume.array, dtype=np.float32)
    if array.ndim == 4:
        array = array[..., 0]
    binary = volume.with_array((array >= 0.5).astype(np.uint8))
    seg_image = binary.to_simpleitk()
    inside = int(sitk.GetArrayViewFromImage(seg_image).sum())

    aligned = _same_lattice(seg_image, image)
    mask = sitk.Resample(seg_image, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    voxels = int(sitk.GetArrayViewFromImage(mask).sum())
    kind = str(seg.get("SegmentationType", "BINARY")).upper()
    notes.append(
        f"DICOM-SEG segment {number} '{label}' ({kind.lower()}"
        + (", thresholded at 0.5" if kind == "FRACTIONAL" else "")
        + ") placed on the reference grid "
        + ("(its frames lie on the reference voxels)" if aligned else "by nearest-neighbour resampling (grids differ)")
        + f": {voxels} voxels."
    )
    if aligned and voxels != inside:
        notes.append(f"{inside - voxels} segment voxel(s) fall outside the reference image and were left out.")
    if voxels == 0:
        raise CaseError(f"Segment '{label}' of the DICOM-SEG covers no voxel of the reference image (empty mask).")
    return mask, notes


def _same_lattice(moving: sitk.Image, fixed: sitk.Image) -> bool:
    """True when every voxel centre of ``moving`` is a voxel centre of ``fixed`` (axes may be permuted or flipped)."""
    def index_matrix(image: sitk.Image) -> np.ndarray:
        return np.array(image.GetDirection(), dtype=float).reshape(3, 3) @ np.diag(image.GetSpacing())

    steps = np.linalg.solve(index_matrix(fixed), index_matrix(moving))
    whole = np.round(steps)
    if not np.allclose(steps, whole, atol=1e-3) or abs(round(np.linalg.det(whole))) != 1:
        return False
    index = fixed.TransformPhysicalPointToContinuousIndex(moving.GetOrigin())
    return bool(np.allclose(index, np.round(index), atol=1e-3))


# ------------------------------------------------------------------------------------------------ shared


def _read_dicom_file(path: str | Path, what: str) -> pydicom.Dataset:
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{what} file not found: {path}")
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one unusable input
        raise CaseError(f"{path.name} is not a readable DICOM file: {_message_of(exc)}") from None


def _reference_grid(reference: sitk.Image | str | Path, series_uid: str | None) -> tuple[sitk.Image, list[str]]:
    """The reference image: given, read from a DICOM folder (preferring ``series_uid``) or from a file."""
    if isinstance(reference, sitk.Image):
        return reference, []
    path = Path(reference)
    if path.is_dir():
        series = _image_series_in(path)
        return _read_series(path, series, series_uid if series_uid in series else None)
    if not path.is_file():
        raise CaseError(f"Reference image not found: {path}")
    try:
        return sitk.ReadImage(str(path)), [f"Reference grid read from {path.name}."]
    except RuntimeError as exc:
        raise CaseError(f"Reference image {path.name} cannot be read: {_message_of(exc)}") from None


def _check_frame_of_reference(image: sitk.Image, frames: set[str], what: str) -> None:
    if not frames or not image.HasMetaDataKey(_KEY_FRAME_OF_REFERENCE):
        return
    own = image.GetMetaData(_KEY_FRAME_OF_REFERENCE)
    if own not in frames:
        raise CaseError(
            f"The {what} was drawn in frame of reference {sorted(frames)[0]}, but the reference image is in "
            f"{own}; they do not belong together."
        )


def _choose_by_name(names: dict[int, str], wanted: str, *, what: str, where: str) -> int:
    """Number of the one entry whose name is ``wanted`` (ignoring case) or matches it as a full regex."""
    exact = [n for n, name in names.items() if name.strip().lower() == wanted.strip().lower()]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        try:
            pattern = re.compile(wanted, re.IGNORECASE)
        except re.error:
            pattern = None
        exact = [n for n, name in names.items() if pattern is not None and pattern.fullmatch(name.strip())]
    if not exact:
        raise CaseError(f"No {what} named or matching '{wanted}' in {where}; available: " + _list_choices(names))
    if len(exact) > 1:
        raise CaseError(
            f"'{wanted}' matches {len(exact)} {what}s in {where}: "
            + _list_choices({n: names[n] for n in exact})
            + ". Give an exact name or a narrower pattern."
        )
    return exact[0]


def _list_choices(names: dict[int, str]) -> str:
    return ", ".join(f"'{name}' (number {number})" for number, name in sorted(names.items()))


def _instance(header: pydicom.Dataset) -> str:
    return str(header.get("InstanceNumber", "?"))


def _few(values, limit: int = 8) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _message_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
