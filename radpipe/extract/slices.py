"""One 2D slice of a case's image and mask for pictures: the slice where the lesion is largest.

Reports show the lesion the features were computed from; this reads it with the extract stage's own readers
(:func:`radpipe.extract.io.read_image` and :func:`radpipe.extract.features.read_case_mask`), so a case that
extraction accepted (a file, a DICOM folder, the files of a DICOM series, an RTSTRUCT or SEG) is shown the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radpipe.extract.features import read_case_mask
from radpipe.extract.io import read_image

__all__ = ["read_lesion_slice"]


def read_lesion_slice(image_path: str | Path | tuple[str | Path, ...], mask_path: str | Path, *,
                      roi_name: str | None = None, spacing_2d: tuple[float, float] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, tuple[float, float], str]:
    """The 2D slice with the largest mask area: (image rows x cols, boolean mask, (row, col) spacing, description).

    Colour images become grey (luminance, as extraction reads them); the mask is binarised (> 0, so 0/255
    masks work) and resampled onto the image grid when the two differ. A 2D image is returned as it is.

    Parameters
    ----------
    image_path : the case's image as a :class:`~radpipe.cohort.Case` holds it: a file, a DICOM folder, or a
        tuple of the files of one DICOM series (any input :func:`radpipe.extract.io.read_image` reads).
    mask_path : the case's mask: a mask file, or a DICOM RTSTRUCT / SEG (or a folder holding one), rasterised
        onto the image grid as extraction does.
    roi_name : the RTSTRUCT structure (SEG segment) to show when the file holds several, as the recipe's
        ``extract.roi_name``; not needed for one.
    spacing_2d : in-plane spacing for raster images, as the dataset's ``spacing_2d``.

    Returns
    -------
    tuple
        ``(image, mask, spacing, description)``; ``description`` says which slice was chosen, e.g.
        ``"axial slice 7 of 10 (largest mask area, 52 voxels)"`` or ``"2D image"``.

    Examples
    --------
    >>> import tempfile, numpy as np, SimpleITK as sitk
    >>> folder = Path(tempfile.mkdtemp())
    >>> volume = np.zeros((5, 8, 8), np.float32); lesion = np.zeros((5, 8, 8), np.uint8)
    >>> lesion[1, 2:4, 2:4] = 1; lesion[3, 1:6, 1:6] = 1
    >>> sitk.WriteImage(sitk.GetImageFromArray(volume), str(folder / "image.nii.gz"))
    >>> sitk.WriteImage(sitk.GetImageFromArray(lesion), str(folder / "mask.nii.gz"))
    >>> image, mask, spacing, where = read_lesion_slice(folder / "image.nii.gz", folder / "mask.nii.gz")
    >>> image.shape, int(mask.sum()), where
    ((8, 8), 25, 'axial slice 4 of 5 (largest mask area, 25 voxels)')
    """
    source = tuple(str(p) for p in image_path) if isinstance(image_path, tuple | list) else Path(image_path)
    image, _ = read_image(source, spacing_2d=spacing_2d)
    mask, _ = read_case_mask(Path(mask_path), image, roi_name, spacing_2d)
    img = sitk.GetArrayFromImage(image).astype(float)
    msk = sitk.GetArrayFromImage(mask) > 0
    if img.shape != msk.shape:
        resampled = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        msk = sitk.GetArrayFromImage(resampled) > 0
    spacing = image.GetSpacing()
    if img.ndim == 3 and img.shape[0] == 1:
        img, msk = img[0], msk[0]
    if img.ndim == 2:
        return img, msk, (float(spacing[1]), float(spacing[0])), "2D image"
    areas = msk.reshape(msk.shape[0], -1).sum(axis=1)
    z = int(np.argmax(areas))
    return img[z], msk[z], (float(spacing[1]), float(spacing[0])), (
        f"axial slice {z + 1} of {img.shape[0]} (largest mask area, {int(areas[z])} voxels)")
