"""The three negative-control images: voxels shuffled inside the ROI, the ROI moved elsewhere in the body,
and the image replaced by noise with the ROI's mean and SD.

Each function takes a SimpleITK image (and the case's ROI) and returns new images on exactly the same grid
(size, spacing, origin, direction). The idea follows bhklab's READII negative controls (Kazmierski et al.,
"READII: reproducible evaluation of radiomics ...", github.com/bhklab/readii); the code here is our own.
"""

from __future__ import annotations

import hashlib

import numpy as np
import SimpleITK as sitk
from scipy.signal import fftconvolve

from radpipe.errors import CaseError

#: The controls radpipe can make, in the order they are reported.
CONTROLS = ("shuffled", "moved", "noise")


def case_rng(seed: int, case_id: str, control: str) -> np.random.Generator:
    """A generator seeded by (seed, case id, control): the same case gets the same control on every run and
    on every worker, whatever the order the cases are processed in."""
    digest = hashlib.sha256(f"{case_id}\0{control}".encode()).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _roi(mask: sitk.Image) -> np.ndarray:
    roi = sitk.GetArrayFromImage(mask) != 0
    if not roi.any():
        raise CaseError("the ROI is empty: no negative control can be made from it")
    return roi


def shuffle_roi(image: sitk.Image, mask: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    """The image with its ROI voxel values randomly permuted among the ROI voxels; voxels outside are unchanged.

    The ROI's intensity histogram and its shape are kept exactly, so first-order and shape features do not
    change; only the spatial arrangement (what texture features measure) is destroyed.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> image = sitk.GetImageFromArray(np.arange(16, dtype=np.float32).reshape(4, 4))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((2, 2), np.uint8), 1))
    >>> out = sitk.GetArrayFromImage(shuffle_roi(image, mask, np.random.default_rng(0)))
    >>> sorted(out[1:3, 1:3].ravel().tolist()), out[0].tolist()
    ([5.0, 6.0, 9.0, 10.0], [0.0, 1.0, 2.0, 3.0])
    """
    array = sitk.GetArrayFromImage(image)
    roi = _roi(mask)
    array[roi] = rng.permutation(array[roi])
    return _like(array, image)


def body_mask(image: sitk.Image, roi: sitk.Image | None = None, closing_mm: float = 5.0) -> sitk.Image:
    """The patient's body: Otsu threshold, plus the ROI, closed over ``closing_mm``, largest connected component,
    holes filled (UInt8, 1 = body).

    Otsu separates air (or the black frame around an ultrasound sector) from tissue. On ultrasound it also drops
    dark tissue and anechoic lesions, so the ROI is added (it is in the body by definition) and small gaps are
    closed; filling holes keeps dark structures inside the body (the lungs, a cyst) in it. Measured on 36 BUSI
    images: a moved lesion-sized ROI fitted in 22 with Otsu alone, 30 with the ROI added, 33 with a 6-pixel
    closing as well. (A three-class Otsu did better there, 35, but split the noisy air of a CT-like phantom.)
    Images without a physical spacing count 1 mm per pixel.
    """
    scalar = sitk.Cast(image, sitk.sitkFloat32)
    foreground = sitk.OtsuThreshold(scalar, 0, 1)
    if roi is not None:
        foreground = sitk.Or(foreground, sitk.Cast(roi != 0, sitk.sitkUInt8))
    if closing_mm > 0:
        radius = [max(1, round(closing_mm / spacing)) for spacing in image.GetSpacing()]
        foreground = sitk.BinaryMorphologicalClosing(foreground, radius)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True)
    largest = sitk.Cast(components == 1, sitk.sitkUInt8)
    return sitk.BinaryFillhole(largest, fullyConnected=False, foregroundValue=1)


def move_roi(image: sitk.Image, mask: sitk.Image, rng: np.random.Generator,
             body: sitk.Image | None = None) -> sitk.Image:
    """The ROI translated by a random whole-voxel shift to a place where it lies inside the body and the image.

    Places where the moved ROI does not overlap the original are preferred; when there are none, any other
    place inside the body is used. The image is left as it is: the control extracts features from tissue that
    is not the lesion, with the lesion's size and shape.

    Raises
    ------
    CaseError
        When the ROI fits nowhere else inside the body (a lesion filling most of the image).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> image = sitk.GetImageFromArray(np.pad(np.full((20, 20), 100, np.float32), 5))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((3, 3), np.uint8), ((6, 21), (6, 21))))
    >>> moved = sitk.GetArrayFromImage(move_roi(image, mask, np.random.default_rng(1)))
    >>> int(moved.sum()), bool((sitk.GetArrayFromImage(image)[moved == 1] == 100).all())
    (9, True)
    """
    roi = _roi(mask)
    inside = sitk.GetArrayFromImage(body if body is not None else body_mask(image, mask)) != 0
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(roi))
    footprint = roi[box].astype(np.float32)
    n = footprint.sum()
    # overlap[k] = body voxels under the ROI footprint placed with its box corner at k ("valid" mode keeps
    # every placement inside the image)
    overlap = fftconvolve(inside.astype(np.float32), footprint[(slice(None, None, -1),) * roi.ndim], mode="valid")
    fits = overlap > n - 0.5
    start = np.array([s.start for s in box])
    size = np.array(footprint.shape)
    corners = np.argwhere(fits)
    corners = corners[np.any(corners != start, axis=1)]  # a control must move the ROI
    if not len(corners):
        raise CaseError(f"the ROI ({int(n)} voxels) fits nowhere else inside the image body, so no moved-ROI "
                        "control can be made for this case", action="control_not_made")
    apart = np.any((corners + size <= start) | (corners >= start + size), axis=1)  # boxes do not overlap
    pool = corners[apart] if apart.any() else corners
    corner = pool[rng.integers(len(pool))]
    moved = np.zeros(roi.shape, np.uint8)
    moved[tuple(slice(int(c), int(c) + int(s)) for c, s in zip(corner, size, strict=True))] = footprint > 0
    return _like(moved, mask)


def noise_image(image: sitk.Image, mask: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    """Gaussian noise with the ROI's mean and standard deviation over the whole image (float32, same grid).

    Nothing of the patient is left but two numbers, so a model that still separates the classes on this control
    learns them from the ROI's mean and spread (and from its size and shape, which the mask keeps).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> image = sitk.GetImageFromArray(np.random.default_rng(0).normal(50, 5, (64, 64)).astype(np.float32))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((32, 32), np.uint8), 16))
    >>> out = sitk.GetArrayFromImage(noise_image(image, mask, np.random.default_rng(1)))
    >>> round(float(out.mean())), round(float(out.std()))
    (50, 5)
    """
    values = sitk.GetArrayViewFromImage(image)[_roi(mask)].astype(np.float64)
    noise = rng.normal(values.mean(), values.std(), size=sitk.GetArrayViewFromImage(image).shape)
    return _like(noise.astype(np.float32), image)
