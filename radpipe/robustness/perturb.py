"""Image and mask perturbations for robustness testing, after Zwanenburg et al., Sci Rep 2019;9:614.

Every function is pure: SimpleITK images in, a new SimpleITK image out, on the input's grid. Randomised ones
take a seed, so the same call gives the same voxels. Other stages (negative controls) may reuse them.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk


def roi_centroid(mask: sitk.Image) -> tuple[float, ...]:
    """The ROI's centroid in physical coordinates (mm).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> mask = sitk.Image([9, 9, 9], sitk.sitkUInt8)
    >>> mask[4, 4, 4] = 1
    >>> roi_centroid(mask)
    (4.0, 4.0, 4.0)
    """
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        raise ValueError("the mask is empty: no centroid to rotate about")
    return tuple(float(v) for v in stats.GetCentroid(1))


def rigid_transform(image: sitk.Image, *, angle: float = 0.0, shift: float = 0.0,
                    centre: tuple[float, ...] | None = None, is_mask: bool = False) -> sitk.Image:
    """Rotate ``image`` by ``angle`` degrees about the axial (z) axis through ``centre`` and shift it by
    ``shift`` voxel spacings along every axis, resampled onto its own grid.

    Images are interpolated linearly (values outside the original extent repeat the nearest edge voxel);
    masks are interpolated linearly and thresholded at 0.5, as IBSI prescribes, so a mask neither grows nor
    shrinks systematically. ``centre`` defaults to the image centre; pass the ROI centroid to rotate the ROI
    in place. A 2D image rotates in its plane.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> image = sitk.GaussianSource(sitk.sitkFloat32, [16, 16, 8], sigma=[4, 4, 4], mean=[8, 8, 4])
    >>> same = rigid_transform(image, angle=0.0)
    >>> float(abs(sitk.GetArrayFromImage(same) - sitk.GetArrayFromImage(image)).max()) < 1e-4
    True
    """
    dimension = image.GetDimension()
    if centre is None:
        centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    offset = [shift * spacing for spacing in image.GetSpacing()]
    if dimension == 3:
        transform = sitk.Euler3DTransform()
        transform.SetCenter(tuple(centre))
        transform.SetRotation(0.0, 0.0, math.radians(angle))
    else:
        transform = sitk.Euler2DTransform()
        transform.SetCenter(tuple(centre))
        transform.SetAngle(math.radians(angle))
    transform.SetTranslation(tuple(offset))
    # Resample maps each output point through the transform to an input point: the inverse moves the content
    transform = transform.GetInverse()
    if is_mask:
        moved = sitk.Resample(sitk.Cast(image > 0, sitk.sitkFloat32), image, transform, sitk.sitkLinear, 0.0)
        result = sitk.Cast(moved >= 0.5, sitk.sitkUInt8)
        result.CopyInformation(image)
        return result
    return sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0, image.GetPixelID(), True)


def estimate_noise(image: sitk.Image) -> float:
    """The image's noise standard deviation, by scikit-image's wavelet estimator (``estimate_sigma``: the median
    absolute deviation of the finest diagonal wavelet coefficients, Donoho & Johnstone 1994), as MIRP estimates
    it for its noise perturbation.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> noise = np.random.default_rng(0).normal(0, 2.0, (32, 64, 64))
    >>> abs(estimate_noise(sitk.GetImageFromArray(noise)) - 2.0) < 0.1
    True
    """
    from skimage.restoration import estimate_sigma

    array = sitk.GetArrayViewFromImage(image).astype(np.float64)
    return float(estimate_sigma(array, channel_axis=None))


def add_noise(image: sitk.Image, sigma: float, seed: int) -> sitk.Image:
    """``image`` plus Gaussian noise of standard deviation ``sigma`` (seeded), as a float32 image.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> image = sitk.Image([32, 32, 32], sitk.sitkFloat32)
    >>> noisy = add_noise(image, 3.0, seed=1)
    >>> round(float(sitk.GetArrayViewFromImage(noisy).std()), 1)
    3.0
    """
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    array += np.random.default_rng(seed).normal(0.0, sigma, array.shape)
    noisy = sitk.GetImageFromArray(array.astype(np.float32))
    noisy.CopyInformation(image)
    return noisy


def adapt_volume(mask: sitk.Image, fraction: float) -> sitk.Image:
    """Grow (``fraction`` > 0) or shrink (< 0) the ROI by ``fraction`` of its volume.

    The new ROI is the target number of voxels (``round(n * (1 + fraction))``) nearest the ROI by signed
    distance to its surface (mm, negative inside), so it grows or shrinks evenly in every direction.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> z, y, x = np.mgrid[:40, :40, :40]
    >>> sphere = sitk.GetImageFromArray(((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= 100).astype(np.uint8))
    >>> grown = adapt_volume(sphere, 0.1)
    >>> n0 = int(sitk.GetArrayViewFromImage(sphere).sum()); n1 = int(sitk.GetArrayViewFromImage(grown).sum())
    >>> n1 == round(n0 * 1.1)
    True
    """
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    inside = sitk.GetArrayViewFromImage(binary).astype(bool)
    count = int(inside.sum())
    if count == 0:
        raise ValueError("the mask is empty: no volume to adapt")
    target = int(round(count * (1.0 + fraction)))
    if fraction == 0 or target == count:
        return binary
    target = min(max(target, 1), inside.size)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        binary, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    # voxel distances come in few distinct values (a whole layer shares one), so ties are broken by a smoothed
    # copy of the mask (more inside first): the count is then exactly the target, and the shape stays even
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Cast(binary, sitk.sitkFloat32),
                                                                    min(mask.GetSpacing())))
    order = np.lexsort((-smooth.ravel(), distance.ravel()))
    chosen = np.zeros(inside.size, dtype=np.uint8)
    chosen[order[:target]] = 1
    adapted = sitk.GetImageFromArray(chosen.reshape(inside.shape))
    adapted.CopyInformation(mask)
    return adapted


def randomise_contour(image: sitk.Image, mask: sitk.Image, seed: int, *, supervoxel_voxels: int = 30,
                      margin: int = 3) -> sitk.Image:
    """Randomise the ROI's contour with supervoxels: each SLIC supervoxel (scikit-image) around the ROI joins
    the new ROI with a probability equal to the share of its voxels inside the original ROI, so supervoxels
    wholly inside are kept, those wholly outside never join, and those on the boundary sometimes do.
    The largest connected component is kept, so the ROI stays one piece.

    Supervoxels are computed on the ROI's bounding box plus ``margin`` voxels, with ``supervoxel_voxels`` voxels
    each on average, on intensities rescaled to [0, 1].

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> z, y, x = np.mgrid[:30, :30, :30]
    >>> ball = ((x - 15) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 64)
    >>> mask = sitk.GetImageFromArray(ball.astype(np.uint8))
    >>> image = sitk.GetImageFromArray(ball * 10.0 + np.random.default_rng(0).normal(0, 1, ball.shape))
    >>> new = randomise_contour(image, mask, seed=3)
    >>> bool(0.6 < sitk.GetArrayViewFromImage(new).sum() / ball.sum() < 1.4)
    True
    """
    from skimage.segmentation import slic

    binary = sitk.GetArrayFromImage(sitk.Cast(mask > 0, sitk.sitkUInt8)).astype(bool)
    if not binary.any():
        raise ValueError("the mask is empty: no contour to randomise")
    array = sitk.GetArrayViewFromImage(image).astype(np.float64)
    where = np.nonzero(binary)
    box = tuple(slice(max(int(w.min()) - margin, 0), min(int(w.max()) + margin + 1, n))
                for w, n in zip(where, binary.shape, strict=True))
    crop, roi = array[box], binary[box]
    low, high = float(crop.min()), float(crop.max())
    scaled = (crop - low) / (high - low) if high > low else np.zeros_like(crop)
    n_segments = max(8, int(round(crop.size / supervoxel_voxels)))
    spacing = np.array(image.GetSpacing()[::-1], dtype=float)
    labels = slic(scaled, n_segments=n_segments, compactness=0.1, channel_axis=None, start_label=1,
                  spacing=spacing / spacing.min(), enforce_connectivity=True)
    inside = np.bincount(labels.ravel(), weights=roi.ravel(), minlength=labels.max() + 1)
    total = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    share = np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)
    chosen = np.random.default_rng(seed).random(share.shape) < share
    new_crop = chosen[labels]
    if not new_crop.any():  # every boundary draw failed on a tiny ROI: keep the most-inside supervoxel
        new_crop = labels == int(np.argmax(share))
    new = np.zeros_like(binary)
    new[box] = new_crop
    result = sitk.GetImageFromArray(new.astype(np.uint8))
    result.CopyInformation(mask)
    return largest_component(result)


def largest_component(mask: sitk.Image) -> sitk.Image:
    """The largest connected component of a binary mask (only face neighbours connect, the strictest sense of one piece)."""
    components = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(mask > 0, sitk.sitkUInt8), False))
    result = sitk.Cast(components == 1, sitk.sitkUInt8)
    result.CopyInformation(mask)
    return result
