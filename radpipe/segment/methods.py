"""Classical segmentation of one image: fixed and relative thresholds, Otsu, region growing, watershed.

Every method ends the same way: candidate objects (connected components) are found with SimpleITK, and
the ones holding a seed point are kept (the largest one when there is no seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from skimage.filters import threshold_otsu

from radpipe.errors import CaseError, ConfigError
from radpipe.segment.seeds import Seeds, box_region, seed_indices

#: method → the options it takes; any other option given is refused (as the preprocessing registry does).
METHOD_OPTIONS: dict[str, set[str]] = {
    "threshold": {"threshold"},
    "relative": {"fraction", "radius"},
    "otsu": set(),
    "region_growing": {"threshold"},
    "watershed": {"threshold", "watershed_on", "smoothing"},
    "refine": {"threshold", "fraction", "radius", "refine_with", "watershed_on", "smoothing"},
}
REQUIRED = {"threshold": "threshold", "relative": "fraction"}
#: Above this many candidate objects a QC warning says the threshold fragments the image.
MAX_COMPONENTS = 10


@dataclass(frozen=True)
class SegmentSettings:
    """One segmentation method and its options (a user's choice, checked by :func:`check_settings`)."""

    method: str
    threshold: float | None = None    # a fixed intensity (e.g. SUV 2.5)
    fraction: float | None = None     # of the maximum near the seed (relative), e.g. 0.41
    radius: float = 15.0              # mm around a seed point in which 'relative' looks for the maximum
    refine_with: str | None = None    # the method applied inside the rough mask (refine)
    watershed_on: str = "gradient"    # gradient (from the seed) or distance (splits touching objects)
    smoothing: float | None = None    # mm, Gaussian sigma of the watershed's gradient (default: one voxel)

    def given(self) -> dict[str, object]:
        defaults = SegmentSettings(self.method)
        return {name: getattr(self, name) for name in ("threshold", "fraction", "radius", "refine_with",
                                                       "watershed_on", "smoothing")
                if getattr(self, name) != getattr(defaults, name)}


def check_settings(settings: SegmentSettings) -> SegmentSettings:
    """Refuse unknown methods, missing options and options that do not fit the method (ConfigError)."""
    method = settings.method
    if method not in METHOD_OPTIONS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHOD_OPTIONS)}", key="--method")
    inner = settings.refine_with or ("otsu" if method == "refine" else None)
    allowed = METHOD_OPTIONS[method] | (METHOD_OPTIONS.get(inner, set()) if method == "refine" else set())
    for name in settings.given():
        if name not in allowed:
            raise ConfigError(f"--{name.replace('_', '-')} does not apply to method '{method}' (it takes "
                              f"{', '.join('--' + o.replace('_', '-') for o in sorted(allowed)) or 'no options'})",
                              key=f"--{name.replace('_', '-')}")
    if method == "refine":
        if inner not in METHOD_OPTIONS or inner == "refine":
            raise ConfigError(f"--refine-with must be one of {', '.join(m for m in METHOD_OPTIONS if m != 'refine')}"
                              f", not {inner!r}", key="--refine-with")
        settings = SegmentSettings(**{**settings.__dict__, "refine_with": inner})
    needed = REQUIRED.get(inner if method == "refine" else method)
    if needed and getattr(settings, needed) is None:
        raise ConfigError(f"method '{inner if method == 'refine' else method}' needs --{needed}",
                          key=f"--{needed}")
    if settings.fraction is not None and not 0 < settings.fraction < 1:
        raise ConfigError(f"--fraction is a share of the maximum between 0 and 1, not {settings.fraction}",
                          key="--fraction")
    if settings.smoothing is not None and settings.smoothing <= 0:
        raise ConfigError(f"--smoothing is a Gaussian sigma in mm above 0, not {settings.smoothing}", key="--smoothing")
    if settings.watershed_on not in ("gradient", "distance"):
        raise ConfigError(f"--watershed-on is 'gradient' or 'distance', not {settings.watershed_on!r}",
                          key="--watershed-on")
    return settings


@dataclass
class Segmentation:
    """The mask of one case and what a reviewer needs to judge it."""

    mask: sitk.Image
    threshold: float | None
    candidates: int                                   # objects the method produced before seed selection
    warnings: list[str] = field(default_factory=list)

    @property
    def voxels(self) -> int:
        return int(sitk.GetArrayViewFromImage(self.mask).sum())


def segment_image(image: sitk.Image, settings: SegmentSettings, seeds: Seeds | None = None,
                  rough: sitk.Image | None = None) -> Segmentation:
    """Segment one image with a classical method; the mask is UInt8 (0/1) on the image's grid.

    Parameters
    ----------
    image
        A scalar 2D or 3D image (e.g. PET in SUV).
    settings
        The method and its options (see :func:`check_settings`).
    seeds
        Seed points (the object containing them is kept) and boxes (the mask stays inside them), in mm.
    rough
        For ``refine``: a rough mask on the image's grid that the result must stay inside.

    Raises
    ------
    CaseError
        A seed outside the image, or an empty result (the seed lies outside any object).

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> z, y, x = np.mgrid[:30, :30, :30]
    >>> suv = np.where((x - 15) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 36, 10.0, 1.0)
    >>> image = sitk.GetImageFromArray(suv)
    >>> result = segment_image(image, SegmentSettings("relative", fraction=0.41), Seeds(points=[(15, 15, 15)]))
    >>> result.voxels, round(result.threshold, 2)
    (925, 4.1)
    """
    seeds = seeds or Seeds()
    settings = check_settings(settings)
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    region = box_region(image, seeds.boxes)
    method = settings.method
    if method == "refine":
        if rough is None and region is None:
            raise CaseError("refine needs a rough mask (the cohort's mask) or a seed box, and this case has neither")
        if rough is not None:
            inside = sitk.GetArrayFromImage(rough) > 0
            region = inside if region is None else region & inside
        method = settings.refine_with
    anchors = [tuple(reversed(i)) for i in seed_indices(image, seeds.points)]  # numpy order (z, y, x)
    warnings: list[str] = []

    if method in ("threshold", "relative", "otsu") or (method == "watershed" and settings.watershed_on == "distance"):
        threshold, foreground, anchors = _foreground(array, image, method, settings, region, anchors)
        if method == "watershed":
            labels = _distance_watershed(foreground, image)
        else:
            labels = _components(foreground)
    elif method == "region_growing":
        threshold, labels = _region_growing(image, array, settings, region, anchors)
        anchors = anchors or [_argmax(array, region)]
    else:  # watershed on the gradient, flooded from the seeds
        if not anchors:
            raise CaseError("the gradient watershed floods from seed points, and this case has none "
                            "(give --seeds, or use --watershed-on distance)")
        threshold, labels = None, _gradient_watershed(image, anchors, region, settings.smoothing)

    if region is not None:
        labels = labels * region
    candidates = len(np.unique(labels[labels > 0]))
    if anchors:
        keep = {int(labels[a]) for a in anchors} - {0}
        if not keep:
            where = "inside the rough mask" if settings.method == "refine" else "above the threshold"
            raise CaseError(f"empty mask: the seed lies outside any object {where}"
                            + (f" ({threshold:.4g})" if threshold is not None else ""))
    else:
        if candidates == 0:
            raise CaseError("empty mask: no voxel passes the threshold"
                            + (f" ({threshold:.4g})" if threshold is not None else ""))
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = {int(sizes.argmax())}
        if candidates > 1:
            warnings.append(f"no seed: kept the largest of {candidates} objects")
    mask = np.isin(labels, sorted(keep)).astype(np.uint8)
    if candidates > MAX_COMPONENTS:
        warnings.append(f"more than {MAX_COMPONENTS} components ({candidates}) before the seed chose one")
    warnings += _shape_warnings(mask)
    result = sitk.GetImageFromArray(mask)
    result.CopyInformation(image)
    return Segmentation(result, threshold, candidates, warnings)


def _foreground(array, image, method, settings, region, anchors):
    """Threshold the image (fixed, relative to the local maximum, or Otsu) into candidate foreground."""
    values = array if region is None else array[region]
    if method == "threshold":
        threshold = float(settings.threshold)
    elif method == "relative":
        # the maximum near the seed, then the maximum of the object grown from it: the level is a share of the
        # lesion's own SUVmax, and a cold (necrotic) centre under the seed does not set it
        near = _near(array.shape, image, anchors, settings.radius, region)
        peak = float(array[near].max())
        labels = _components(_filled(array >= settings.fraction * peak, image) & (True if region is None else region))
        first = _anchors_or_peak(labels, anchors, array, near)
        kept = np.isin(labels, [labels[a] for a in first if labels[a]])
        top = _argmax(array, kept)
        threshold = settings.fraction * float(array[top])
        anchors = [*anchors, top]  # the object holding the lesion's maximum is kept even if the seed is cold
    elif method == "otsu" or method == "watershed":
        threshold = float(settings.threshold) if settings.threshold is not None else float(threshold_otsu(values))
    else:
        raise AssertionError(method)
    foreground = array >= threshold
    # the seed says which side of an Otsu split is the object: ultrasound lesions are the dark class
    if method == "otsu" and anchors and not any(foreground[a] for a in anchors):
        foreground = array < threshold
    if region is not None:
        foreground &= region
    foreground = _filled(foreground, image)
    return threshold, foreground, anchors


def _anchors_or_peak(labels, anchors, array, near):
    """Seeds inside an object stay; when none is (a cold centre), the hottest voxel near them is the anchor."""
    if any(labels[a] for a in anchors):
        return anchors
    return [_argmax(array, near)]


def _near(shape, image, anchors, radius_mm, region) -> np.ndarray:
    if not anchors:
        return np.ones(shape, dtype=bool) if region is None else region
    near = np.zeros(shape, dtype=bool)
    spacing = np.array(image.GetSpacing())[::-1]
    reach = np.maximum(1, np.round(radius_mm / spacing)).astype(int)
    for a in anchors:
        near[tuple(slice(max(0, i - r), i + r + 1) for i, r in zip(a, reach, strict=True))] = True
    return near if region is None else (near & region if (near & region).any() else region)


def _argmax(array, region) -> tuple[int, ...]:
    masked = np.where(region, array, -np.inf) if region is not None else array
    return tuple(int(i) for i in np.unravel_index(np.argmax(masked), array.shape))


def _filled(foreground: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Fill enclosed holes: a tumour's necrotic core belongs to the tumour."""
    mask = sitk.GetImageFromArray(foreground.astype(np.uint8))
    mask.CopyInformation(image)
    return sitk.GetArrayFromImage(sitk.BinaryFillhole(mask, fullyConnected=False, foregroundValue=1)) > 0


def _components(foreground: np.ndarray) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(foreground.astype(np.uint8))))


def _region_growing(image, array, settings, region, anchors):
    """ConnectedThreshold from the seeds above a fixed level, else ConfidenceConnected (mean ± 2.5 SD)."""
    seeds = [tuple(reversed(a)) for a in (anchors or [_argmax(array, region)])]
    seeds = [tuple(int(i) for i in s) for s in seeds]
    if settings.threshold is not None:
        grown = sitk.ConnectedThreshold(image, seedList=seeds, lower=float(settings.threshold),
                                        upper=float(array.max()), replaceValue=1)
        threshold = float(settings.threshold)
    else:
        grower = sitk.ConfidenceConnectedImageFilter()
        grower.SetSeedList(seeds)
        grower.SetNumberOfIterations(4)
        grower.SetMultiplier(2.5)
        grower.SetInitialNeighborhoodRadius(1)
        grower.SetReplaceValue(1)
        # on the unsmoothed image: smoothing narrows the band to the lesion's core (BUSI, 40 cases from the
        # centroid: median Dice 0.60 raw, 0.56 after curvature flow, 0.52 after a Gaussian)
        grown = grower.Execute(image)
        threshold = float(grower.GetMean() - 2.5 * np.sqrt(grower.GetVariance()))
    grown_array = sitk.GetArrayFromImage(grown) > 0
    grown_array = _filled(grown_array, image)
    return threshold, _components(grown_array)


def _gradient_watershed(image, anchors, region, smoothing) -> np.ndarray:
    """Flood the gradient magnitude from the seeds (label 1) and from the image or box border (label 2)."""
    # speckle needs a wider gradient and a seed marker of a few voxels (BUSI, 42 cases from the centroid: median
    # Dice 0.58 with sigma 1 pixel and a 1-pixel marker, 0.85 with sigma 3 pixels and a 7-pixel-wide marker);
    # a small PET sphere (radius 6 voxels) loses its rim with sigma 3 voxels (Dice 0.75 against 0.97 with 1)
    gradient = sitk.GradientMagnitudeRecursiveGaussian(image, smoothing or min(image.GetSpacing()))
    markers = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint32)
    outer = np.ones_like(markers, dtype=bool) if region is None else region
    border = outer & ~_eroded(outer)
    markers[border] = 2
    for a in anchors:
        markers[tuple(slice(max(0, i - 3), i + 4) for i in a)] = 1
    marker_image = sitk.GetImageFromArray(markers)
    marker_image.CopyInformation(image)
    flooded = sitk.MorphologicalWatershedFromMarkers(gradient, marker_image, markWatershedLine=False,
                                                     fullyConnected=False)
    inside = sitk.GetArrayFromImage(flooded) == 1
    return _components(_filled(inside, image))


def _eroded(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)  # the image edge counts as outside
    image = sitk.GetImageFromArray(padded.astype(np.uint8))
    eroded = sitk.GetArrayFromImage(sitk.BinaryErode(image, [1] * mask.ndim)) > 0
    return eroded[tuple(slice(1, -1) for _ in range(mask.ndim))]


def _distance_watershed(foreground: np.ndarray, image: sitk.Image) -> np.ndarray:
    """Split touching objects: watershed of the distance map, whose basins are the objects' centres."""
    mask = sitk.GetImageFromArray(foreground.astype(np.uint8))
    mask.CopyInformation(image)
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    # a basin shallower than two voxels is noise on the object's outline, not a second object
    basins = sitk.MorphologicalWatershed(distance, level=2 * min(image.GetSpacing()), markWatershedLine=False,
                                         fullyConnected=False)
    return sitk.GetArrayFromImage(basins).astype(np.int64) * foreground


def _shape_warnings(mask: np.ndarray) -> list[str]:
    warnings = []
    edges = [np.take(mask, i, axis=axis).any() for axis in range(mask.ndim) for i in (0, -1)]
    if any(edges):
        warnings.append("touches the image border")
    share = mask.mean()
    if share > 0.25:
        warnings.append(f"covers {share:.0%} of the image: the region probably leaked into the background")
    return warnings
