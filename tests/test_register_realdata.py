"""Registration against a known answer on real images (issue 18).

Each STS MR-T1 already lies in its PET's frame (one contour rasterised on both grids). We move the MR by a known,
seeded random rigid or affine transform (rewriting its header only: no interpolation), register it back to the PET
with mutual information, and measure the target registration error (TRE: mean distance over the PET ROI's voxel
centres between where the recovered and the true transform send them) and the Dice of the moved MR mask against the
PET mask on the PET grid, before and after. The pyradiomics sample images are moved the same way and registered to
their unmoved selves with mean squares. Run by hand for the figures:
``python -m pytest tests/test_register_realdata.py -m "realdata" -s``.

What we found (see also the module's asserts): on the same modality (pyradiomics samples, mean squares; and
each PET registered to a moved copy of itself with mutual information) registration is sub-voxel. MR-T1 to PET with
mutual information is not: even when started from the reference alignment, the MI optimum lies several mm away
from it, because each MR is cropped to the tumour plus 10 mm, so the metric sees only the tumour and its rim. The
TRE after registration is therefore bounded below by that disagreement, and is reported rather than tuned away.

Measured (2 shared cores, 2026-11-30), median (IQR) over the 39 cases; TRE in mm, PET voxels 3.9–5.5 mm in-plane:

- rigid: TRE 5.64 (2.99–7.10) → 8.97 (6.88–12.46), below one PET voxel in 3/39; Dice 0.90 (0.87–0.93) → 0.85
  (0.76–0.88); 2 failed QC; 2.0 s (0.9–7.3) per registration on a loaded machine.
- affine: TRE 6.15 (3.80–8.79) → 11.72 (7.77–17.67), 1/39; Dice 0.86 → 0.76; 8 failed QC (scaling beyond the
  limit, or Dice below 0.5); 4.3 s (1.7–12.4).
- control, PET to a rigidly moved copy of itself (MI): TRE 7.22 → 0.12 (0.07–0.19), 39/39; Dice 1.00.
- started from the reference alignment (no misalignment), rigid MI moves the MR 4–13 mm (median 8.6 mm, first 8
  cases); the MI of the full images along x, y, z shifts peaks 3–6 mm from the reference on STS_001 and STS_003,
  whichever image is fixed. Fewer bins (16), a shorter pyramid ([2, 1]) or the MR as fixed image did no better.
- pyradiomics samples (same modality, mean squares, each image to a moved copy of itself): rigid TRE 2.57 → 0.02
  mm, affine 5.42 → 0.06 mm, 5/5 below one voxel, Dice 1.00; the 512x512 lung images take minutes each.
- mask transfer without registration (PET mask onto the MR grid vs the MR mask): Dice 0.959 (0.942–0.965),
  min 0.866 (STS_035) by nearest neighbour; 0.968 (0.955–0.972) linear-then-0.5.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radpipe.register import (
    dice,
    displace_image,
    register_images,
    resample_mask,
    roi_points,
    target_registration_error,
)

pytestmark = pytest.mark.realdata

IDENTITY = sitk.Transform(3, sitk.sitkIdentity)


def random_transform(rng: np.random.Generator, centre, *, affine: bool) -> sitk.Transform:
    """A rotation of up to 10° about a random axis through ``centre`` and a shift of up to 10 mm; ``affine`` adds
    a scaling of 0.9–1.1 per axis and shears up to 0.05."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0, 10))
    shift = rng.normal(size=3)
    shift *= rng.uniform(0, 10) / np.linalg.norm(shift)
    rigid = sitk.VersorRigid3DTransform()
    rigid.SetCenter(tuple(map(float, centre)))
    rigid.SetRotation(axis.tolist(), float(angle))
    rigid.SetTranslation(shift.tolist())
    if not affine:
        return rigid
    stretch = np.diag(rng.uniform(0.9, 1.1, 3)) + np.triu(rng.uniform(-0.05, 0.05, (3, 3)), 1)
    out = sitk.AffineTransform(3)
    out.SetCenter(tuple(map(float, centre)))
    out.SetMatrix((np.asarray(rigid.GetMatrix()).reshape(3, 3) @ stretch).ravel().tolist())
    out.SetTranslation(shift.tolist())
    return out


def recover(fixed, fixed_mask, moving, moving_mask, truth, settings) -> dict:
    """Move ``moving`` by ``truth``, register it back to ``fixed``; TRE and Dice before and after."""
    moved, moved_mask = displace_image(moving, truth), displace_image(moving_mask, truth)
    points = roi_points(fixed_mask)
    started = time.perf_counter()
    result = register_images(fixed, moved, settings=settings, fixed_mask=fixed_mask, moving_mask=moved_mask)
    return {"tre_before": target_registration_error(IDENTITY, truth, points),
            "tre_after": target_registration_error(result.transform, truth, points),
            "dice_before": result.dice_before, "dice_after": result.dice_after, "status": result.status,
            "reason": result.reason, "iterations": result.iterations, "seconds": time.perf_counter() - started,
            "voxel_mm": max(fixed.GetSpacing())}


def sts_cases(data_dir):
    root = data_dir / "sts_pet"
    for case in pd.read_csv(root / "mr_t1" / "geometry.csv")["case_id"]:
        yield (case, sitk.ReadImage(str(root / "images" / f"{case}.nii.gz")),
               sitk.ReadImage(str(root / "masks" / f"{case}.nii.gz")),
               sitk.ReadImage(str(root / "mr_t1" / "images" / f"{case}.nii.gz")),
               sitk.ReadImage(str(root / "mr_t1" / "masks" / f"{case}.nii.gz")))


def summary(table: pd.DataFrame) -> str:
    lines = []
    for (kind,), part in table.groupby(["kind"]):
        cells = [f"{kind}: n={len(part)}"]
        for column in ("tre_before", "tre_after", "dice_before", "dice_after", "seconds"):
            q1, median, q3 = part[column].quantile([0.25, 0.5, 0.75])
            cells.append(f"{column} {median:.2f} ({q1:.2f}–{q3:.2f})")
        cells.append(f"TRE < 1 voxel {int((part.tre_after < part.voxel_mm).sum())}/{len(part)}")
        cells.append(f"failed QC {int((part.status == 'failed').sum())}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def test_mask_transfer_without_registration(data_dir):
    """The PET mask resampled onto the MR grid against the MR's own mask: one contour on two grids, so this is the
    cost of resampling alone (nearest neighbour and linear-then-0.5)."""
    rows = []
    for case, _pet, pet_mask, mr, mr_mask in sts_cases(data_dir):
        rows.append({"case": case, **{mode: dice(resample_mask(pet_mask, mr, interpolation=mode), mr_mask)
                                      for mode in ("nearest", "linear")}})
    table = pd.DataFrame(rows)
    print("\nmask transfer PET → MR grid, Dice median (IQR):", {
        mode: f"{table[mode].median():.3f} ({table[mode].quantile(0.25):.3f}–{table[mode].quantile(0.75):.3f}), "
              f"min {table[mode].min():.3f} ({table.loc[table[mode].idxmin(), 'case']})"
        for mode in ("nearest", "linear")})
    assert len(table) == 39
    # a ~5 mm PET voxel carried onto a 1 mm grid gives staircase edges: overlap high but well below 1
    assert 0.8 < table["nearest"].median() < 0.99 and table["nearest"].min() > 0.5
    assert 0.8 < table["linear"].median() < 0.99


@pytest.mark.slow
def test_registration_recovers_known_transforms_sts(data_dir):
    rng = np.random.default_rng(18)
    rows = []
    for case, pet, pet_mask, mr, mr_mask in sts_cases(data_dir):
        centre = roi_points(pet_mask).mean(axis=0)
        for kind in ("rigid", "affine"):
            truth = random_transform(rng, centre, affine=kind == "affine")
            rows.append({"case": case, "kind": kind,
                         **recover(pet, pet_mask, mr, mr_mask, truth, {"transform": kind, "metric": "mi"})})
        # control: the PET against a moved copy of itself, same metric and settings
        truth = random_transform(rng, centre, affine=False)
        rows.append({"case": case, "kind": "pet_to_pet_control",
                     **recover(pet, pet_mask, pet, pet_mask, truth, {"transform": "rigid", "metric": "mi"})})
    table = pd.DataFrame(rows)
    print("\nSTS MR-T1 → PET, mutual information; TRE mm and Dice, median (IQR):\n" + summary(table))
    print(table.to_string())
    control = table[table.kind == "pet_to_pet_control"]
    # the machinery is right: the same image is found again to well under a voxel
    assert (control.tre_after < 0.5).mean() > 0.9
    for kind in ("rigid", "affine"):
        part = table[table.kind == kind]
        assert len(part) == 39 and part.tre_before.median() > 3
        # every registration ended with a transform and a QC verdict; a failed one says why
        assert part.tre_after.notna().all() and (part.reason != "").eq(part.status == "failed").all()
        # what MR → PET mutual information achieves on these tumour-only crops (see the module docstring)
        assert part.dice_after.median() > 0.7


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rigid", "affine"])
def test_registration_recovers_known_transforms_pyradiomics(data_dir, kind):
    rng = np.random.default_rng(7)
    rows = []
    for case in ("brain1", "brain2", "breast1", "lung1", "lung2"):
        image = sitk.ReadImage(str(data_dir / "pyradiomics_samples" / f"{case}_image.nrrd"))
        mask = sitk.ReadImage(str(data_dir / "pyradiomics_samples" / f"{case}_label.nrrd"))
        truth = random_transform(rng, roi_points(mask).mean(axis=0), affine=kind == "affine")
        rows.append({"case": case, "kind": kind,
                     **recover(image, mask, image, mask, truth, {"transform": kind, "metric": "ms"})})
    table = pd.DataFrame(rows)
    print(f"\npyradiomics samples, mean squares, {kind}:\n" + summary(table))
    print(table.to_string())
    assert (table.tre_after < table.voxel_mm).sum() >= 4
    assert table.dice_after.median() > table.dice_before.median()
