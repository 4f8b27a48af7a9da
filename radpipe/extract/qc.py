"""Mask quality control: make a mask a binary ROI on its image's grid, recording every fix, or reject the case
with a reason a radiologist can act on; and split multi-lesion masks into one ROI per label or per lesion.

Each fix is a :class:`QCRecord`; the runner writes them to ``qc.csv`` (``case_id, roi, status, action, reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk

from radpipe.errors import CaseError

__all__ = ["QCRecord", "check_mask", "split_rois"]


@dataclass(frozen=True)
class QCRecord:
    """One fix applied to a mask: ``action`` is a short code (``binarised``, ``selected_label``,
    ``resampled_mask``), ``reason`` a sentence saying what was found and what was done."""

    action: str
    reason: str


def check_mask(
    image: sitk.Image,
    mask: sitk.Image,
    *,
    label: int | None = None,
    min_voxels: int = 1,
    geometry_tolerance: float = 1e-3,
    keep_labels: bool = False,
) -> tuple[sitk.Image, list[QCRecord]]:
    """Return a binary UInt8 ROI (value 1) on ``image``'s grid and the fixes applied to get it.

    With ``keep_labels=True`` (for ``split_rois(..., "per_label" | "per_component")``), a mask with several
    labels is not an error: the geometry is checked and fixed as below, the labels are kept as they are
    (UInt8, or UInt16 above 255) and the size rules apply to all labels together; a mask with a single label
    is binarised as usual. ``label`` must then be None.

    Rules, in order:

    1. **Geometry.** Size, spacing, origin and direction are compared with the image. Differences within
       ``geometry_tolerance`` (relative for spacing, mm for origin, absolute for direction cosines) are fixed
       by resampling the mask onto the image grid (nearest neighbour), recorded as ``resampled_mask``. A mask
       of a different size is accepted only when it is a sub-grid of the image (same spacing and direction, its
       voxels on image voxel centres, inside the image), as tools that save cropped label maps produce; larger
       mismatches are rejected, naming each differing property and both values.
    2. **Label.** ``label`` if given (rejected, listing the labels present, when absent); otherwise the only
       non-zero value; several values are rejected asking for ``label:`` in the recipe. A mask whose only
       value is not 1 (0/255 PNG masks, boolean masks saved as 0/1 are already fine) is ``binarised``; a label
       chosen among several is recorded as ``selected_label``.
    3. **Size.** Empty masks, masks with fewer than ``min_voxels`` voxels and masks covering every voxel of
       the image are rejected.

    Raises
    ------
    CaseError
        With the reason, for every rejection above.
    """
    records: list[QCRecord] = []
    mask, fix = _adopt_raster_geometry(image, mask)
    if fix:
        records.append(fix)
    mask, fix = _onto_image_grid(image, mask, geometry_tolerance)
    if fix:
        records.append(fix)
    array = sitk.GetArrayViewFromImage(mask)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise CaseError("mask is not integer-valued; threshold it before use")
    present = _labels_present(array)
    if not present:
        raise CaseError("mask is empty: no voxel has a non-zero value")
    if keep_labels and len(present) > 1:
        if label is not None:
            raise ValueError("check_mask: give either `label` or `keep_labels=True`, not both")
        _check_size(int(np.count_nonzero(array)), array.size, min_voxels, f"labels {_list(present)}")
        kept = np.asarray(array).astype(np.uint8 if present[-1] <= 255 else np.uint16)
        result = sitk.GetImageFromArray(kept)
        result.CopyInformation(image)
        return result, records
    if label is not None:
        if label not in present:
            raise CaseError(
                f"label {label} chosen in the recipe is not in the mask; labels present: {_list(present)}"
            )
        chosen = label
    elif len(present) == 1:
        chosen = present[0]
    else:
        raise CaseError(f"mask has several labels ({_list(present)}); choose one with `label:` in the recipe")
    if len(present) > 1:
        others = [v for v in present if v != chosen]
        records.append(QCRecord(
            "selected_label",
            f"label {chosen} selected from labels {_list(present)}; voxels of label {_list(others)} left out",
        ))
    elif chosen != 1:
        records.append(QCRecord("binarised", f"mask values {{0, {chosen}}} mapped to {{0, 1}}"))

    binary = (np.asarray(array) == chosen).astype(np.uint8)
    _check_size(int(binary.sum()), binary.size, min_voxels, f"label {chosen}")
    result = sitk.GetImageFromArray(binary)
    result.CopyInformation(image)
    return result, records


def _check_size(count: int, total: int, min_voxels: int, what: str) -> None:
    if count < min_voxels:
        raise CaseError(
            f"mask has {count} voxel{'s' if count != 1 else ''} with {what}, fewer than the minimum "
            f"of {min_voxels} set by `min_voxels`; too small for texture features"
        )
    if count == total:
        raise CaseError(
            f"mask covers the whole image (all {count} voxels): it does not delineate a region; "
            f"check that the right mask file was given"
        )


def split_rois(
    mask: sitk.Image,
    mode: Literal["single", "per_label", "per_component"],
    *,
    labels: list[int] | None = None,
    min_voxels: int = 1,
) -> list[tuple[str, sitk.Image]]:
    """Split a mask into named binary UInt8 ROIs for per-lesion extraction.

    Parameters
    ----------
    mask
        A label image on the image grid (after :func:`check_mask` for ``single``; for the other modes the
        label image itself, geometry already checked).
    mode
        ``single``: ``[("roi", mask > 0)]``. ``per_label``: one ROI per non-zero label (or per label in
        ``labels``), named ``label_<value>`` in increasing label order. ``per_component``: one ROI per
        connected component of the non-zero voxels (of ``labels`` only, when given), named ``lesion_1``,
        ``lesion_2``, ... by decreasing size; ties are ordered by the component's first voxel in z, y, x
        order, so the numbering is deterministic. Components are fully connected (8-neighbourhood in 2D,
        26 in 3D): lesions touching by a corner are one lesion.
    labels
        Labels to keep; a label not in the mask is an error listing those present.
    min_voxels
        ROIs with fewer voxels are left out (specks left by a drawing tool); if none remains, the case is
        rejected.

    Returns
    -------
    list of (roi_name, binary UInt8 image) with the mask's geometry.
    """
    array = np.asarray(sitk.GetArrayViewFromImage(mask))
    present = _labels_present(array)
    if labels is not None:
        missing = [v for v in labels if v not in present]
        if missing:
            raise CaseError(
                f"label {_list(missing)} requested for per-ROI extraction is not in the mask; "
                f"labels present: {_list(present) or 'none'}"
            )
        keep = sorted(set(labels))
    else:
        keep = present
    if not keep:
        raise CaseError("mask is empty: no voxel has a non-zero value")

    if mode == "single" and keep == [1] and array.dtype == np.uint8:
        # the common case, a checked binary mask: use it as it is instead of rebuilding the volume
        if int(np.count_nonzero(array)) < min_voxels:
            raise CaseError(f"no ROI has at least {min_voxels} voxels (min_voxels) after splitting by {mode}")
        return [("roi", mask)]
    if mode == "single":
        rois = [("roi", np.isin(array, keep))]
    elif mode == "per_label":
        rois = [(f"label_{value}", array == value) for value in keep]
    elif mode == "per_component":
        rois = [(f"lesion_{i}", component) for i, component in enumerate(_components(mask, array, keep), 1)]
    else:
        raise ValueError(f"unknown ROI mode {mode!r}; expected 'single', 'per_label' or 'per_component'")

    kept = [(name, roi) for name, roi in rois if int(roi.sum()) >= min_voxels]
    if not kept:
        raise CaseError(f"no ROI has at least {min_voxels} voxels (min_voxels) after splitting by {mode}")
    if mode == "per_component" and len(kept) < len(rois):
        # renumber so names stay lesion_1..n without gaps
        kept = [(f"lesion_{i}", roi) for i, (_, roi) in enumerate(kept, 1)]
    return [(name, _binary_like(roi, mask)) for name, roi in kept]


def _components(mask: sitk.Image, array: np.ndarray, keep: list[int]) -> list[np.ndarray]:
    foreground = sitk.GetImageFromArray(np.isin(array, keep).astype(np.uint8))
    foreground.CopyInformation(mask)
    labelled = sitk.GetArrayFromImage(sitk.ConnectedComponent(foreground, True)).ravel()
    where = np.flatnonzero(labelled)  # increasing, so the first hit of each id is its first voxel in z, y, x
    ids, first_hit, sizes = np.unique(labelled[where], return_index=True, return_counts=True)
    order = sorted(
        ((int(size), int(where[first]), int(i)) for i, first, size in zip(ids, first_hit, sizes, strict=True)),
        key=lambda t: (-t[0], t[1]),
    )
    shape = array.shape
    return [(labelled == i).reshape(shape) for _, _, i in order]


def _labels_present(array: np.ndarray) -> list[int]:
    """Sorted non-zero values. Only the (few) non-zero voxels are sorted: a whole-volume bincount or
    unique on a 512x512x61 CT mask costs seconds and a 64-bit copy of the volume."""
    return [int(v) for v in np.unique(array[array != 0])]


def _binary_like(roi: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(roi.astype(np.uint8))
    image.CopyInformation(reference)
    return image


# --- geometry ----------------------------------------------------------------------------------------------


def _adopt_raster_geometry(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, QCRecord | None]:
    """A PNG/JPG mask has no geometry of its own: lay it pixel for pixel on a same-size image."""
    from radpipe.extract.io import RASTER_WITHOUT_SPACING

    if not mask.HasMetaDataKey(RASTER_WITHOUT_SPACING) or mask.GetSize() != image.GetSize():
        return mask, None
    if (mask.GetSpacing(), mask.GetOrigin(), mask.GetDirection()) == (
        image.GetSpacing(), image.GetOrigin(), image.GetDirection()
    ):
        return mask, None
    adopted = sitk.Image(mask)
    adopted.CopyInformation(image)
    return adopted, QCRecord(
        "adopted_image_geometry",
        f"the mask file has no spacing (a 2D raster file); it takes the image's spacing "
        f"{_vec(image.GetSpacing())} and origin, pixel for pixel",
    )


def _onto_image_grid(image: sitk.Image, mask: sitk.Image, tolerance: float) -> tuple[sitk.Image, QCRecord | None]:
    if image.GetDimension() != mask.GetDimension():
        raise CaseError(
            f"mask is {mask.GetDimension()}D (size {_vec(mask.GetSize(), 0)}) but the image is "
            f"{image.GetDimension()}D (size {_vec(image.GetSize(), 0)})"
        )
    i_sp, m_sp = np.array(image.GetSpacing()), np.array(mask.GetSpacing())
    i_or, m_or = np.array(image.GetOrigin()), np.array(mask.GetOrigin())
    i_dir, m_dir = np.array(image.GetDirection()), np.array(mask.GetDirection())
    spacing_diff = float(np.max(np.abs(m_sp - i_sp) / i_sp))
    origin_diff = float(np.max(np.abs(m_or - i_or)))
    direction_diff = float(np.max(np.abs(m_dir - i_dir)))
    same_size = image.GetSize() == mask.GetSize()
    if same_size and spacing_diff == 0 and origin_diff == 0 and direction_diff == 0:
        return mask, None

    found = []  # (property, description of the difference, within tolerance?)
    if spacing_diff:
        found.append((
            "spacing",
            f"mask spacing {_vec(m_sp)} differs from image spacing {_vec(i_sp)} by {spacing_diff:.3g} relative",
            spacing_diff <= tolerance,
            f"the tolerance {tolerance:g} (relative)",
        ))
    if direction_diff:
        found.append((
            "direction",
            f"mask direction {_vec(m_dir)} differs from image direction {_vec(i_dir)} by {direction_diff:.3g}",
            direction_diff <= tolerance,
            f"the tolerance {tolerance:g}",
        ))
    if not same_size:
        offset = _subgrid_offset(image, mask, tolerance) if spacing_diff <= tolerance and \
            direction_diff <= tolerance else None
        found.append((
            "size",
            f"mask size {_vec(mask.GetSize(), 0)} differs from image size {_vec(image.GetSize(), 0)}"
            + (f" (the mask is a sub-region starting at image voxel {_vec(offset, 0)})" if offset else ""),
            offset is not None,
            "the image (the mask is not a sub-region lying on the image grid)",
        ))
    elif origin_diff:
        found.append((
            "origin",
            f"mask origin {_vec(m_or)} differs from image origin {_vec(i_or)} by {origin_diff:.3g} mm",
            origin_diff <= tolerance,
            f"the tolerance {tolerance:g} mm",
        ))
    too_far = [(what, text, limit) for what, text, ok, limit in found if not ok]
    if too_far:
        raise CaseError(
            "mask and image geometry differ: "
            + "; ".join(f"{text}, more than {limit}" for _, text, limit in too_far)
            + ". Check that the mask belongs to this image"
        )
    resampled = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
    before = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    after = int(np.count_nonzero(sitk.GetArrayViewFromImage(resampled)))
    reason = "; ".join(text for _, text, _, _ in found) + (
        f"; mask resampled onto image grid (nearest neighbour), {before} -> {after} non-zero voxels"
    )
    return resampled, QCRecord("resampled_mask", reason)


def _subgrid_offset(image: sitk.Image, mask: sitk.Image, tolerance: float) -> tuple[int, ...] | None:
    """Index of the mask's first voxel in the image when the mask is a sub-grid lying inside the image."""
    position = image.TransformPhysicalPointToContinuousIndex(mask.GetOrigin())
    offset = np.round(position)
    spacing = np.array(image.GetSpacing())
    if np.max(np.abs(position - offset) * spacing) > tolerance:
        return None
    end = offset + np.array(mask.GetSize()) - 1
    if np.any(offset < 0) or np.any(end > np.array(image.GetSize()) - 1):
        return None
    return tuple(int(v) for v in offset)


def _list(values) -> str:
    return ", ".join(str(v) for v in values)


def _vec(values, digits: int = 4) -> str:
    if digits == 0:
        return "(" + ", ".join(str(int(v)) for v in values) + ")"
    return "(" + ", ".join(f"{float(v):.{digits}g}" for v in values) + ")"
