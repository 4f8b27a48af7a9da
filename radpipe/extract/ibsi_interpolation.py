"""IBSI-conformant interpolation for the pyradiomics path (``extract.interpolation: ibsi``).

What the IBSI reference manual asks of interpolation (chapter "Image processing", section "Interpolation",
and the CT phantom configurations B–E), and what this module does:

- **Grid**: the new grid's centre coincides with the old grid's centre, and its size is the old extent
  divided by the new spacing, rounded *up* (so the new grid covers the old one). The origin moves.
- **Image**: spline interpolation of the given order (1 linear, 3 cubic; 0 nearest). Points of the new grid
  outside the old one take the nearest voxel's value (as MIRP's ``mode="nearest"``), not a constant.
- **Mask**: interpolated linearly as a fraction and kept where the fraction is >= 0.5.
- **Rounding**: intensities that were integers before (CT in HU) are rounded to integers afterwards.

Discretisation (the fifth point of the issue) needs no change of intensities: pyradiomics' fixed bin width
puts bin edges on multiples of the width counted from 0, and IBSI's fixed bin size puts them on the lower
re-segmentation bound plus multiples of the width. Both give the same edges whenever that bound is a multiple
of the width (-500 and -1000 HU with 25 HU bins, as in the IBSI configurations); :func:`bin_edges_aligned`
checks it. Shifting intensities to align other bounds would change every intensity feature, so radpipe refuses
instead (:func:`check_bin_alignment`). What remains different is the *numbering*: pyradiomics numbers bins from
the ROI's lowest intensity, IBSI from the re-segmentation bound, so features that use the grey-level number
itself (joint average, grey-level emphases) differ when the ROI does not reach the bound's first bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from radpipe.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

__all__ = ["ibsi_grid", "ibsi_resample", "bin_edges_aligned", "check_bin_alignment"]

_ORDERS = {0: "sitkNearestNeighbor", 1: "sitkLinear", 3: "sitkBSpline"}


def ibsi_grid(image: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An empty image on the IBSI grid for ``spacing`` (0 keeps an axis): size ``ceil(extent / spacing)``,
    centre on ``image``'s centre.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> image = sitk.Image([5, 4, 4], sitk.sitkFloat32)
    >>> image.SetSpacing([2.0, 2.0, 2.0])
    >>> grid = ibsi_grid(image, [3.0, 3.0, 0])
    >>> grid.GetSize(), grid.GetOrigin(), grid.GetSpacing()
    ((4, 3, 4), (-0.5, 0.0, 0.0), (3.0, 3.0, 2.0))
    """
    import SimpleITK as sitk

    old_spacing = np.array(image.GetSpacing(), dtype=float)
    new_spacing = np.where(np.array(spacing, dtype=float) > 0, np.array(spacing, dtype=float), old_spacing)
    old_size = np.array(image.GetSize())
    # ceil, with a tolerance so that an exact multiple (e.g. 0.977 * 204 / 2 mm) is not pushed up by round-off
    new_size = np.maximum(1, np.ceil(old_size * old_spacing / new_spacing - 1e-6)).astype(int)
    # centre of the old grid = origin + (size - 1) * spacing / 2 in index space; same centre for the new one
    shift = ((old_size - 1) * old_spacing - (new_size - 1) * new_spacing) / 2
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    reference = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    reference.SetSpacing([float(s) for s in new_spacing])
    reference.SetOrigin([float(o) for o in np.array(image.GetOrigin()) + direction @ shift])
    reference.SetDirection(image.GetDirection())
    return reference


def ibsi_resample(image: sitk.Image, mask: sitk.Image, spacing: Sequence[float], *, order: int = 1,
                  mask_threshold: float = 0.5, round_intensities: bool | None = None,
                  ) -> tuple[sitk.Image, sitk.Image, str]:
    """Resample image and mask as the IBSI prescribes; return them and a one-line summary.

    ``round_intensities``: None rounds when every input intensity is an integer (CT in HU).

    Examples
    --------
    >>> import SimpleITK as sitk, numpy as np
    >>> image = sitk.GetImageFromArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((3, 3, 3), np.uint8), ((0, 1), (0, 1), (0, 1))))
    >>> new_image, new_mask, note = ibsi_resample(image, mask, [2, 2, 2])
    >>> sitk.GetArrayFromImage(new_image).ravel().tolist()  # trilinear means (x.5), rounded half to even
    [10.0, 12.0, 18.0, 20.0, 42.0, 44.0, 50.0, 52.0]
    >>> sitk.GetArrayFromImage(new_mask).ravel().tolist()  # ROI fractions 1, 0.5, 0.5, 0.25, 0.5, ...
    [1, 1, 1, 0, 1, 0, 0, 0]
    """
    import SimpleITK as sitk

    if order not in _ORDERS:
        raise ConfigError(f"interpolation order {order} is not available (use 0, 1 or 3)",
                          key="extract.preprocessing.resample.interpolator")
    reference = ibsi_grid(image, spacing)
    values = sitk.GetArrayViewFromImage(image)
    if round_intensities is None:
        round_intensities = bool(np.all(np.equal(np.mod(values, 1), 0)))
    interpolator = getattr(sitk, _ORDERS[order])
    pixel = image.GetPixelID() if order == 0 else sitk.sitkFloat32
    new_image = sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, pixel,
                              useNearestNeighborExtrapolator=True)
    if round_intensities and order != 0:
        rounded = sitk.GetImageFromArray(np.round(sitk.GetArrayViewFromImage(new_image)).astype(np.float32))
        rounded.CopyInformation(new_image)
        new_image = rounded
    fraction = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear,
                             0.0, sitk.sitkFloat32)
    new_mask = sitk.Cast(fraction >= mask_threshold, sitk.sitkUInt8)
    note = (f"IBSI grid: spacing {_fmt(new_image.GetSpacing())}, size {_fmt(new_image.GetSize())}, centres aligned; "
            f"image order {order}{', rounded' if round_intensities and order else ''}; "
            f"mask linear >= {mask_threshold:g}: {int(np.count_nonzero(sitk.GetArrayViewFromImage(new_mask)))} "
            "ROI voxels")
    return new_image, new_mask, note


def bin_edges_aligned(lower_bound: float, bin_width: float) -> bool:
    """Whether pyradiomics' fixed-bin-width edges (multiples of the width) include IBSI's first edge.

    Examples
    --------
    >>> bin_edges_aligned(-1000, 25), bin_edges_aligned(-990, 25), bin_edges_aligned(0.5, 0.25)
    (True, False, True)
    """
    ratio = lower_bound / bin_width
    return abs(ratio - round(ratio)) < 1e-9


def check_bin_alignment(setting: dict, source: str | None = None) -> None:
    """ConfigError when ``binWidth`` and an absolute ``resegmentRange`` give bins that IBSI would place elsewhere."""
    width, reseg = setting.get("binWidth"), setting.get("resegmentRange")
    if setting.get("binCount") is not None or width is None or not reseg or setting.get("resegmentMode",
                                                                                          "absolute") != "absolute":
        return
    if not bin_edges_aligned(float(reseg[0]), float(width)):
        raise ConfigError(
            f"with interpolation: ibsi, the lower re-segmentation bound ({reseg[0]:g}) must be a multiple of binWidth "
            f"({width:g}): pyradiomics starts bins at multiples of the width, IBSI at that bound. Choose such a bound, "
            "or use engine: mirp", file=source, key="extract.setting.resegmentRange")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
