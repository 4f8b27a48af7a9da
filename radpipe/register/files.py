"""``radpipe register FIXED MOVING --out DIR``: register two image files and write the transform, the moved image
and mask, a QC row and an overlay PNG."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from radpipe.errors import ConfigError
from radpipe.register.core import RegistrationResult, register_images, resample_mask
from radpipe.register.settings import RegistrationSettings, registration_settings

#: files written into the output folder
TRANSFORM_FILE = "transform.tfm"
MOVED_IMAGE_FILE = "moved_image.nii.gz"
MOVED_MASK_FILE = "moved_mask.nii.gz"
QC_FILE = "registration_qc.csv"
OVERLAY_FILE = "overlay.png"


@dataclass
class RegisterFilesResult:
    result: RegistrationResult
    out: Path
    qc: pd.DataFrame


def _read(path: str | Path | None, what: str) -> sitk.Image | None:
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}", key=what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ConfigError(f"{what} {path} cannot be read as an image (NIfTI, NRRD, MHA, ...): "
                          f"{str(exc).strip().splitlines()[-1]}", key=what) from None
    if image.GetDimension() != 3:
        raise ConfigError(f"{what} {path} is {image.GetDimension()}D; registration needs 3D volumes", key=what)
    return image


def register_files(fixed: str | Path, moving: str | Path, out: str | Path, *,
                   fixed_mask: str | Path | None = None, moving_mask: str | Path | None = None,
                   settings: RegistrationSettings | dict | None = None) -> RegisterFilesResult:
    """Register the image file ``moving`` to ``fixed`` and write the results into the folder ``out``.

    Writes ``transform.tfm`` (fixed → moving points, readable by ``SimpleITK.ReadTransform`` and 3D Slicer),
    ``moved_image.nii.gz`` (the moving image on the fixed grid), ``moved_mask.nii.gz`` when a moving mask is given,
    ``registration_qc.csv`` (one row: status, reason, metric, iterations, Dice before/after, seconds) and
    ``overlay.png``. All inputs are checked before any work: a missing or unreadable file is a ConfigError.

    Examples
    --------
    >>> import tempfile, SimpleITK as sitk
    >>> folder = tempfile.mkdtemp()
    >>> image = sitk.Image(30, 30, 20, sitk.sitkFloat32); image[10:20, 8:18, 5:15] = 100
    >>> sitk.WriteImage(sitk.SmoothingRecursiveGaussian(image, 2.0), folder + "/a.nii.gz")
    >>> done = register_files(folder + "/a.nii.gz", folder + "/a.nii.gz", folder + "/out", settings={"metric": "ms"})
    >>> done.qc.loc[0, "status"], sorted(p.name for p in done.out.iterdir())
    ('ok', ['moved_image.nii.gz', 'overlay.png', 'registration_qc.csv', 'transform.tfm'])
    """
    settings = registration_settings(settings)
    images = {what: _read(path, what) for what, path in
              (("fixed", fixed), ("moving", moving), ("--fixed-mask", fixed_mask), ("--moving-mask", moving_mask))}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder", key="--out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = register_images(images["fixed"], images["moving"], settings=settings, fixed_mask=images["--fixed-mask"],
                             moving_mask=images["--moving-mask"])
    sitk.WriteTransform(result.transform, str(out / TRANSFORM_FILE))
    moved = sitk.Resample(sitk.Cast(images["moving"], sitk.sitkFloat32), images["fixed"], result.transform,
                          sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    sitk.WriteImage(moved, str(out / MOVED_IMAGE_FILE), useCompression=True)
    if images["--moving-mask"] is not None:
        sitk.WriteImage(resample_mask(images["--moving-mask"], images["fixed"], result.transform,
                                      interpolation=settings.mask_interpolation), str(out / MOVED_MASK_FILE),
                        useCompression=True)
    from radpipe.register.overlay import write_overlay

    write_overlay(out / OVERLAY_FILE, images["fixed"], images["moving"], result.transform,
                  fixed_mask=images["--fixed-mask"], moving_mask=images["--moving-mask"],
                  fixed_name=Path(fixed).name.split(".")[0], moving_name=Path(moving).name.split(".")[0],
                  before=sitk.Transform(3, sitk.sitkIdentity))
    row = {"fixed": str(fixed), "moving": str(moving), **result.qc_row(),
           "total_seconds": round(time.perf_counter() - started, 3)}
    qc = pd.DataFrame([row])
    qc.to_csv(out / QC_FILE, index=False)
    return RegisterFilesResult(result, out, qc)
