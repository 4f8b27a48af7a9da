"""Tiny synthetic cohorts written at test time (nothing large is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def write_case(folder: Path, case_id: str, *, seed: int, radius: float = 5.0, size=(16, 24, 24),
               spacing=(1.0, 1.0, 2.0), mask_array: np.ndarray | None = None) -> None:
    """A noisy bright sphere in a 3D image, with its mask, as NIfTI under images/ and masks/."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in size), indexing="ij")
    centre = np.array(size) / 2
    distance = np.sqrt(((zz - centre[0]) * spacing[2] / spacing[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    mask = (distance <= radius).astype(np.uint8) if mask_array is None else mask_array
    image = rng.normal(50, 10, size) + (distance <= radius) * rng.normal(100, 5) + rng.normal(0, 8, size)
    for array, sub in ((image.astype(np.float32), "images"), (mask, "masks")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(spacing)
        (folder / sub).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(itk, str(folder / sub / f"{case_id}.nii.gz"))


def make_cohort(folder: Path, n: int = 6, *, labels: bool = True) -> Path:
    """``n`` good cases, alternating labels a/b, radius varying by class."""
    rows = ["case_id,label"]
    for index in range(n):
        case_id = f"case{index:02d}"
        write_case(folder, case_id, seed=index, radius=4.0 + 2.0 * (index % 2) + 0.3 * index)
        rows.append(f"{case_id},{'b' if index % 2 else 'a'}")
    if labels:
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder
