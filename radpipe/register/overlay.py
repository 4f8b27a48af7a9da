"""A registration overlay a clinician can read: the fixed image in colour over the moved image in grey (as PET is
fused with MR or CT) with the two masks outlined, beside a checkerboard of the two images, at the region of
interest's central slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _display_grid(fixed: sitk.Image, slice_index: int, moving: sitk.Image) -> sitk.Image:
    """One axial slice of the fixed image's field of view at the finer of the two in-plane spacings."""
    spacing = min(min(fixed.GetSpacing()[:2]), min(moving.GetSpacing()[:2]))
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(fixed.GetSize()[:2], fixed.GetSpacing()[:2],
                                                                 strict=True)]
    grid = sitk.Image(size[0], size[1], 1, sitk.sitkFloat32)
    grid.SetSpacing((spacing, spacing, fixed.GetSpacing()[2]))
    grid.SetDirection(fixed.GetDirection())
    corner = fixed.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, float(slice_index)))
    # the first display pixel centre sits half a display pixel inside the fixed image's corner
    half = np.asarray(fixed.GetDirection()).reshape(3, 3) @ np.array([spacing / 2, spacing / 2, 0.0])
    grid.SetOrigin(tuple(np.asarray(corner) + half))
    return grid


def _window(values: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """Grey levels 0–1 between the 1st and 99th percentiles (of the image's non-zero part)."""
    pool = values[inside] if inside is not None and inside.any() else values[values != 0]
    if pool.size == 0:
        return np.zeros_like(values)
    low, high = np.percentile(pool, [1, 99])
    return np.clip((values - low) / (high - low or 1.0), 0, 1)


def _crop(roi: np.ndarray | None, shape: tuple[int, ...], spacing: float, margin_mm: float = 25.0):
    """The display window: the region of interest plus a margin, or the whole slice without one."""
    if roi is None or not roi.any():
        return (slice(None), slice(None))
    rows, cols = np.nonzero(roi)
    pad = int(round(margin_mm / spacing))
    return (slice(max(0, rows.min() - pad), min(shape[0], rows.max() + pad + 1)),
            slice(max(0, cols.min() - pad), min(shape[1], cols.max() + pad + 1)))


def central_slice(mask: sitk.Image | None, image: sitk.Image) -> int:
    """Axial index of the mask's central slice (its centroid), or the image's middle slice without a mask."""
    if mask is not None:
        z = np.nonzero(sitk.GetArrayViewFromImage(mask))[0]
        if z.size:
            return int(round(float(np.median(z))))
    return image.GetSize()[2] // 2


def write_overlay(path: str | Path, fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, *,
                  fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None,
                  fixed_name: str = "fixed", moving_name: str = "moving", title: str = "",
                  before: sitk.Transform | None = None) -> Path:
    """Write a PNG: per row (before/after), the fixed image in colour over the moved image in grey with both mask
    outlines, and a checkerboard of the two images; at the fixed mask's central axial slice.

    ``transform`` maps fixed points to moving points (a :class:`~radpipe.register.RegistrationResult`'s
    ``transform``). ``before``, when given, adds a first row with the images as they lay before registration
    (usually the identity).

    Examples
    --------
    >>> import tempfile, SimpleITK as sitk
    >>> image = sitk.Image(30, 30, 10, sitk.sitkFloat32); image[10:20, 10:20, 3:7] = 100
    >>> identity = sitk.Transform(3, sitk.sitkIdentity)
    >>> write_overlay(tempfile.mkdtemp() + "/overlay.png", image, image, identity).suffix
    '.png'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    index = central_slice(fixed_mask, fixed)
    grid = _display_grid(fixed, index, moving)
    fixed_view = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(fixed, sitk.sitkFloat32), grid, sitk.Transform(),
                                                      sitk.sitkLinear, 0.0))[0]
    fixed_roi = (sitk.GetArrayFromImage(sitk.Resample(fixed_mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                      0, sitk.sitkUInt8))[0] > 0 if fixed_mask is not None else None)
    # a 0/1 image of the moving image's field of view tells "outside the moving image" from a dark voxel
    inside_moving = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    inside_moving.CopyInformation(moving)
    rows = [("before registration", before)] if before is not None else []
    rows.append(("after registration", transform))
    spacing = grid.GetSpacing()[0]
    view = _crop(fixed_roi, fixed_view.shape, spacing)
    fixed_view = fixed_view[view]
    fixed_roi = fixed_roi[view] if fixed_roi is not None else None
    figure, axes = plt.subplots(len(rows), 2, figsize=(10, 4.6 * len(rows)), squeeze=False)
    extent = (0, fixed_view.shape[1] * spacing, fixed_view.shape[0] * spacing, 0)  # mm, origin at top left
    grey_fixed = _window(fixed_view, fixed_roi)
    tile = max(3, int(round(10 / spacing)))  # 10 mm squares
    checker = ((np.arange(fixed_view.shape[0])[:, None] // tile + np.arange(fixed_view.shape[1])[None, :] // tile) % 2
               ).astype(bool)
    # the fixed image in colour over the moving one in grey, as PET is shown over CT or MR in a clinic
    colour = plt.get_cmap("hot").with_extremes(under=(0, 0, 0, 0))  # below the floor: transparent
    for row, (label, tx) in enumerate(rows):
        moved = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), grid, tx, sitk.sitkLinear,
                                                     0.0))[0][view]
        covered = sitk.GetArrayFromImage(sitk.Resample(inside_moving, grid, tx, sitk.sitkNearestNeighbor, 0))[0][view] > 0
        moved_roi = (sitk.GetArrayFromImage(sitk.Resample(moving_mask, grid, tx, sitk.sitkNearestNeighbor, 0,
                                                          sitk.sitkUInt8))[0][view] > 0
                     if moving_mask is not None else None)
        grey_moved = _window(moved, covered & (moved != 0))
        left, right = axes[row]
        left.imshow(np.where(covered, grey_moved, 0), cmap="gray", extent=extent, interpolation="nearest")
        left.imshow(np.where(grey_fixed > 0.15, grey_fixed, -1), cmap=colour, vmin=0, vmax=1, alpha=0.45,
                    extent=extent, interpolation="nearest")
        handles = []
        if fixed_roi is not None and fixed_roi.any():
            for axis in (left, right):
                axis.contour(fixed_roi, levels=[0.5], colors="deepskyblue", linewidths=1.5, extent=extent,
                             origin="upper")
            handles.append(Line2D([], [], color="deepskyblue", lw=2, label=f"{fixed_name} mask"))
        if moved_roi is not None and moved_roi.any():
            for axis in (left, right):
                axis.contour(moved_roi, levels=[0.5], colors="lime", linewidths=1.5, linestyles="--", extent=extent,
                             origin="upper")
            handles.append(Line2D([], [], color="lime", lw=2, ls="--", label=f"{moving_name} mask, moved"))
        left.set_title(f"{label}: {moving_name} (grey), {fixed_name} (colour)", fontsize=10)
        if handles:
            left.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
        right.imshow(np.where(checker & covered, grey_moved, grey_fixed), cmap="gray", extent=extent,
                     interpolation="nearest")
        right.set_title(f"{label}: checkerboard, 10 mm squares", fontsize=10)
        for axis in (left, right):
            axis.set_xlabel("mm")
            axis.set_ylabel("mm")
    figure.suptitle(title or f"{moving_name} registered to {fixed_name}: axial slice {index} through the centre "
                    "of the region of interest", fontsize=11)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
