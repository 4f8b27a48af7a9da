"""One 2D slice of a case's image and mask for pictures: the slice where the lesion is largest.

Reports show the lesion the features were computed from; this reads it with the extract stage's own readers
(:mod:`radpipe.extract.io`), so a file that extraction accepted is shown the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radpipe.extract.io import read_image, read_mask

__all__ = ["read_lesion_slice"]


def read_lesion_slice(image_path: str | Path, mask_path: str | Path
                      ) -> tuple[np.ndarray, np.ndarray, tuple[float, float], str]:
    """The 2D slice with the largest mask area: (image rows x cols, boolean mask, (row, col) spacing, description).

    Colour images become grey (luminance, as extraction reads them); the mask is binarised (> 0, so 0/255
    masks work) and resampled onto the image grid when the two differ. A 2D image is returned as it is.

    Parameters
    ----------
    image_path, mask_path : the case's image and mask files (any format :func:`radpipe.extract.io.read_image`
        reads).

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
    image, _ = read_image(Path(image_path))
    mask, _ = read_mask(Path(mask_path))
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
