"""Agreement between an automatic mask and an expert mask: Dice, 95th-percentile Hausdorff, volume difference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

AGREEMENT_COLUMNS = ["case_id", "dice", "hd95_mm", "hausdorff_mm", "volume_auto_mm3", "volume_expert_mm3",
                     "volume_diff_mm3", "volume_diff_pct"]


def _binary(mask: sitk.Image) -> sitk.Image:
    return sitk.Cast(mask > 0, sitk.sitkUInt8)


def dice(auto: sitk.Image, expert: sitk.Image) -> float:
    """Dice overlap of two masks on the same grid (every non-zero voxel is the object), with SimpleITK.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> a = sitk.Image([10, 10], sitk.sitkUInt8); a[0:4, 0:5] = 1
    >>> b = sitk.Image([10, 10], sitk.sitkUInt8); b[2:6, 0:5] = 1
    >>> dice(a, b)
    0.5
    """
    measures = sitk.LabelOverlapMeasuresImageFilter()
    measures.Execute(_binary(auto), _binary(expert))
    return float(measures.GetDiceCoefficient())


def surface_distances(a: sitk.Image, b: sitk.Image, *, surface_only: bool = True) -> np.ndarray:
    """Distances (mm) from the voxels of ``a`` (its outline when ``surface_only``) to the nearest voxel of ``b``.

    Read from b's signed Maurer distance map in physical units, so anisotropic voxels count in mm.
    """
    a, b = _binary(a), _binary(b)
    distance = sitk.Abs(sitk.SignedMaurerDistanceMap(b, insideIsPositive=False, squaredDistance=False,
                                                     useImageSpacing=True))
    inside_b = sitk.GetArrayViewFromImage(b) > 0
    where = sitk.LabelContour(a, fullyConnected=False) if surface_only else a
    points = sitk.GetArrayViewFromImage(where) > 0
    values = sitk.GetArrayFromImage(distance)
    values[inside_b] = 0.0  # a voxel inside b is at distance 0 from it (the map's inner outline is not)
    return values[points]


def hausdorff_95(auto: sitk.Image, expert: sitk.Image) -> float:
    """95th percentile of the outline-to-mask distances in both directions, pooled (mm).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> z, y, x = np.mgrid[:40, :40, :40]
    >>> r2 = (x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2
    >>> small, big = (sitk.GetImageFromArray((r2 <= r * r).astype(np.uint8)) for r in (10, 12))
    >>> round(hausdorff_95(small, big), 1)  # the bigger sphere's outline lies ~2 voxels outside the smaller one
    2.2
    """
    pooled = np.concatenate([surface_distances(auto, expert), surface_distances(expert, auto)])
    return float(np.percentile(pooled, 95)) if pooled.size else float("nan")


def hausdorff(auto: sitk.Image, expert: sitk.Image) -> float:
    """The (maximum) Hausdorff distance (mm) from the same distance maps; equals SimpleITK's filter."""
    pooled = np.concatenate([surface_distances(auto, expert, surface_only=False),
                             surface_distances(expert, auto, surface_only=False)])
    return float(pooled.max()) if pooled.size else float("nan")


def agreement_row(case_id: str, auto: sitk.Image, expert: sitk.Image) -> dict[str, object]:
    """One row of agreement.csv: Dice, HD95, Hausdorff, volumes and their difference (auto − expert)."""
    voxel = float(np.prod(auto.GetSpacing()))
    v_auto = float((sitk.GetArrayViewFromImage(auto) > 0).sum()) * voxel
    v_expert = float((sitk.GetArrayViewFromImage(expert) > 0).sum()) * voxel
    empty = v_auto == 0 or v_expert == 0
    return {
        "case_id": case_id,
        "dice": dice(auto, expert),
        "hd95_mm": float("nan") if empty else hausdorff_95(auto, expert),
        "hausdorff_mm": float("nan") if empty else hausdorff(auto, expert),
        "volume_auto_mm3": v_auto,
        "volume_expert_mm3": v_expert,
        "volume_diff_mm3": v_auto - v_expert,
        "volume_diff_pct": 100 * (v_auto - v_expert) / v_expert if v_expert else float("nan"),
    }


def summarise(agreement: pd.DataFrame) -> pd.DataFrame:
    """Median, first and third quartile of each agreement measure, and the number of cases."""
    measures = [c for c in AGREEMENT_COLUMNS[1:] if c in agreement.columns]  # failed cases count (Dice 0)
    table = agreement[measures].astype(float)
    return pd.DataFrame({
        "measure": measures,
        "n": [int(table[c].notna().sum()) for c in measures],
        "median": table.median().values,
        "q1": table.quantile(0.25).values,
        "q3": table.quantile(0.75).values,
    })
