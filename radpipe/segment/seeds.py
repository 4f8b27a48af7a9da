"""Seed points and boxes in physical coordinates (mm), so one seed file serves an image at any resampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from radpipe.errors import CaseError, ConfigError

POINT_COLUMNS = ("x", "y", "z")
BOX_COLUMNS = ("x0", "y0", "z0", "x1", "y1", "z1")


@dataclass
class Seeds:
    """The seed points and boxes of one case, in physical coordinates (x, y[, z]) in mm."""

    points: list[tuple[float, ...]] = field(default_factory=list)
    boxes: list[tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.points or self.boxes)

    def describe(self) -> str:
        parts = [f"point ({_fmt(p)})" for p in self.points]
        parts += [f"box ({_fmt(lo)})-({_fmt(hi)})" for lo, hi in self.boxes]
        return "; ".join(parts)


def _fmt(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def read_seeds(path: str | Path) -> dict[str, Seeds]:
    """Read a seed CSV: ``case_id,x,y,z`` (points) or ``case_id,x0,y0,z0,x1,y1,z1`` (boxes), in mm.

    A case may have several rows. ``z`` (``z0``, ``z1``) may be left empty for 2D images.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> csv = pathlib.Path(tempfile.mkdtemp()) / "seeds.csv"
    >>> _ = csv.write_text("case_id,x,y,z\\nSTS_001,10.5,-3,40\\n")
    >>> read_seeds(csv)["STS_001"].points
    [(10.5, -3.0, 40.0)]
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"seed file {path} does not exist", key="--seeds")
    table = pd.read_csv(path, dtype={"case_id": str}, encoding="utf-8-sig")
    table.columns = [str(c).strip() for c in table.columns]
    is_box = set(BOX_COLUMNS) <= set(table.columns)
    needed = ["case_id", *(BOX_COLUMNS if is_box else POINT_COLUMNS[:2])]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ConfigError(f"seed file needs columns case_id,x,y,z (points) or case_id,x0,y0,z0,x1,y1,z1 (boxes); "
                          f"missing {missing}, found {list(table.columns)}", file=str(path), key="--seeds")
    coords = list(BOX_COLUMNS if is_box else POINT_COLUMNS)
    for column in coords:
        if column not in table.columns:
            table[column] = np.nan
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(bad.idxmax())
            raise ConfigError(f"row {row + 2}, column '{column}' is not a number: {table.loc[row, column]!r}",
                              file=str(path), key="--seeds")
        table[column] = values
    seeds: dict[str, Seeds] = {}
    for row in table.itertuples(index=False):
        values = [getattr(row, c) for c in coords]
        case = seeds.setdefault(str(row.case_id).strip(), Seeds())
        if is_box:
            lo, hi = _drop_missing_z(values[:3]), _drop_missing_z(values[3:])
            case.boxes.append((lo, hi))
        else:
            case.points.append(_drop_missing_z(values))
    return seeds


def _drop_missing_z(values) -> tuple[float, ...]:
    values = [float(v) for v in values]
    return tuple(values[:2]) if np.isnan(values[2]) else tuple(values)


def seeds_from_masks(masks: dict[str, sitk.Image], kind: str = "centroid") -> pd.DataFrame:
    """Seed table from existing masks: each mask's centroid (``kind="centroid"``) or bounding box (``"box"``).

    Makes segmentation runs against expert masks reproducible: the seeds a reader would click, derived from
    the masks the result is then compared with. Every non-zero voxel counts as the object.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> mask = sitk.Image([20, 20, 10], sitk.sitkUInt8)
    >>> mask[5:10, 5:10, 2:4] = 1
    >>> seeds_from_masks({"c1": mask}).round(1).values.tolist()
    [['c1', 7.0, 7.0, 2.5]]
    """
    if kind not in ("centroid", "box"):
        raise ConfigError(f"seeds from masks are 'centroid' or 'box', not {kind!r}", key="--seeds-from-masks")
    rows = []
    for case_id, mask in masks.items():
        binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(binary)
        if 1 not in stats.GetLabels():
            continue
        pad = (np.nan,) if mask.GetDimension() == 2 else ()
        if kind == "centroid":
            rows.append((case_id, *stats.GetCentroid(1), *pad))
        else:
            box = stats.GetBoundingBox(1)
            dim = mask.GetDimension()
            start, size = box[:dim], box[dim:]
            corners = [binary.TransformIndexToPhysicalPoint([s + o * (n - 1) for s, n in zip(start, size, strict=True)])
                       for o in (0, 1)]
            lo = np.minimum(corners[0], corners[1])
            hi = np.maximum(corners[0], corners[1])
            rows.append((case_id, *lo, *pad, *hi, *pad))
    columns = ["case_id", *(POINT_COLUMNS if kind == "centroid" else BOX_COLUMNS)]
    return pd.DataFrame(rows, columns=columns)


def seed_indices(image: sitk.Image, points) -> list[tuple[int, ...]]:
    """Physical points → voxel indices (x, y[, z]) of ``image``; a point outside the image is a CaseError."""
    dim = image.GetDimension()
    out = []
    for point in points:
        if len(point) < dim:
            raise CaseError(f"seed ({_fmt(point)}) has {len(point)} coordinates; the image is {dim}D")
        index = tuple(int(round(v)) for v in image.TransformPhysicalPointToContinuousIndex(point[:dim]))
        if any(i < 0 or i >= n for i, n in zip(index, image.GetSize(), strict=True)):
            raise CaseError(f"seed ({_fmt(point)}) lies outside the image (voxel index {index}, image size "
                            f"{image.GetSize()}): are the seed coordinates in mm, in the image's physical space?")
        out.append(index)
    return out


def box_region(image: sitk.Image, boxes) -> np.ndarray | None:
    """Boolean array (numpy order) of the voxels inside any box, or None when there is no box."""
    if not boxes:
        return None
    dim = image.GetDimension()
    region = np.zeros(image.GetSize()[::-1], dtype=bool)
    for lo, hi in boxes:
        a = np.array(image.TransformPhysicalPointToContinuousIndex(lo[:dim]))
        b = np.array(image.TransformPhysicalPointToContinuousIndex(hi[:dim]))
        start = np.clip(np.round(np.minimum(a, b)).astype(int), 0, np.array(image.GetSize()) - 1)
        stop = np.clip(np.round(np.maximum(a, b)).astype(int), 0, np.array(image.GetSize()) - 1)
        region[tuple(slice(s, e + 1) for s, e in zip(start[::-1], stop[::-1], strict=True))] = True
    if not region.any():
        raise CaseError("the seed box does not overlap the image")
    return region
