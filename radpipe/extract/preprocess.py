"""SimpleITK preprocessing steps declared in a recipe, applied in order and recorded in the manifest; and the
filter-aware crop that lets LoG/wavelet run on the tumour's neighbourhood instead of the whole scan.

A recipe lists steps, each a mapping with a ``step`` key::

    preprocessing:
      - {step: resample, spacing: [1, 1, 1], interpolator: bspline, mask_interpolator: partial_volume}
      - {step: normalise, method: clip, lower: -1000, upper: 400}
      - {step: resegment, range: [-100, 400]}

Adding a step touches one place: a model below with an ``apply(image, mask)`` method, added to
:data:`PreprocessStep`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from radpipe.errors import CaseError, ConfigError

__all__ = [
    "Resample", "Normalise", "Resegment", "N4", "Denoise", "Equalise", "CropToMask", "PreprocessStep",
    "apply_preprocessing", "filter_margin_mm", "crop_for_filters", "resample_grid",
]

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk
else:
    class _SimpleITKOnFirstUse:
        """SimpleITK, imported when a step first runs: the step models are recipe settings, and
        ``import radpipe.config`` (every CLI command, ``radpipe validate``) should not pay ~0.3 s for it."""

        def __getattr__(self, name: str):
            module = importlib.import_module("SimpleITK")
            globals()["sitk"] = module  # later lookups go straight to the module
            return getattr(module, name)

    sitk = _SimpleITKOnFirstUse()

#: interpolator option -> SimpleITK constant name (looked up when resampling)
_INTERPOLATORS = {
    "bspline": "sitkBSpline",
    "linear": "sitkLinear",
    "nearest": "sitkNearestNeighbor",
}


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def apply(self, image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image, str]:
        """Return the new image and mask and a one-line result for the manifest."""
        raise NotImplementedError

    def _only_for(self, method: str, allowed: dict[str, set[str]]) -> None:
        """Reject options that do not belong to the chosen method (a silent no-op would mislead)."""
        extra = self.model_fields_set - allowed.get(method, set()) - {"step", "method"}
        if extra:
            raise ValueError(
                f"option {', '.join(sorted(extra))} does not apply to method '{method}' "
                f"(it takes: {', '.join(sorted(allowed.get(method, ()))) or 'no options'})"
            )


class Resample(_Step):
    """Resample image and mask to a target voxel spacing (mm).

    ``spacing`` has one value per axis (x, y[, z]); 0 keeps that axis' spacing (as in pyradiomics'
    ``resampledPixelSpacing``). The new grid keeps the physical extent and is centred on the old grid's centre
    (IBSI "align grid centres"); its size is ``round(size * old_spacing / new_spacing)``. The image is
    interpolated with ``interpolator`` into float32 (nearest keeps the pixel type); voxels outside the old grid
    take the image's minimum. The mask uses nearest neighbour, or ``partial_volume``: the mask interpolated
    linearly as a fraction, then kept where the fraction >= ``mask_threshold``.

    ``mode: ibsi`` (set on every resample step by ``extract.interpolation: ibsi``) follows the IBSI instead:
    size rounded up, nearest-value extrapolation, the mask always as a partial volume, and intensities rounded
    to integers when they were integers (``round_intensities``: None decides so; true/false forces it). See
    :mod:`radpipe.extract.ibsi_interpolation`.
    """

    step: Literal["resample"] = "resample"
    spacing: list[float] = Field(min_length=1, max_length=3)
    interpolator: Literal["bspline", "linear", "nearest"] = "bspline"
    mask_interpolator: Literal["nearest", "partial_volume"] = "nearest"
    mask_threshold: float = Field(0.5, gt=0, le=1)
    mode: Literal["radpipe", "ibsi"] = "radpipe"
    round_intensities: bool | None = None

    @field_validator("spacing")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("spacing values must be >= 0 mm (0 keeps an axis' spacing)")
        return value

    def apply(self, image, mask):
        spacing = _per_axis(self.spacing, image, "resample spacing")
        spacing = tuple(float(new) if new > 0 else old for new, old in zip(spacing, image.GetSpacing(), strict=True))
        if self.mode == "ibsi":
            from radpipe.extract.ibsi_interpolation import ibsi_resample

            order = {"nearest": 0, "linear": 1, "bspline": 3}[self.interpolator]
            new_image, new_mask, note = ibsi_resample(image, mask, spacing, order=order, mask_threshold=self.mask_threshold,
                                                      round_intensities=self.round_intensities)
            _require_roi(new_mask, "after resampling")
            return new_image, new_mask, note
        reference = resample_grid(image, spacing)
        interpolator = getattr(sitk, _INTERPOLATORS[self.interpolator])
        pixel = image.GetPixelID() if self.interpolator == "nearest" else sitk.sitkFloat32
        low = float(sitk.GetArrayViewFromImage(image).min())
        new_image = sitk.Resample(image, reference, sitk.Transform(), interpolator, low, pixel)
        if self.mask_interpolator == "nearest":
            new_mask = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        else:
            fraction = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkFloat32), reference, sitk.Transform(),
                                     sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            new_mask = sitk.Cast(fraction >= self.mask_threshold, sitk.sitkUInt8)
        _require_roi(new_mask, "after resampling")
        return new_image, new_mask, (
            f"spacing {_fmt(new_image.GetSpacing())}, size {_fmt(new_image.GetSize())}, "
            f"{_count(new_mask)} ROI voxels"
        )


class Normalise(_Step):
    """Intensity normalisation.

    - ``zscore``: ``(x - mean) / std``, statistics over the whole image or, with ``region: mask``, the ROI.
    - ``percentile``: the ``low``..``high`` percentiles (of the image or ROI) mapped to 0..1, values beyond
      clipped.
    - ``window``: ``lower``..``upper`` mapped to 0..1, values beyond clipped (a display window).
    - ``clip``: values clipped to ``lower``..``upper`` and kept in their units (a fixed HU clip).

    Output is float32.
    """

    step: Literal["normalise"] = "normalise"
    method: Literal["zscore", "percentile", "window", "clip"]
    region: Literal["image", "mask"] = "image"
    low: float = Field(1.0, ge=0, le=100)
    high: float = Field(99.0, ge=0, le=100)
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _check(self):
        self._only_for(self.method, {
            "zscore": {"region"}, "percentile": {"region", "low", "high"},
            "window": {"lower", "upper"}, "clip": {"lower", "upper"},
        })
        if self.method in ("window", "clip"):
            if self.lower is None or self.upper is None:
                raise ValueError(f"method '{self.method}' needs both 'lower' and 'upper'")
            if self.lower >= self.upper:
                raise ValueError(f"'lower' ({self.lower}) must be below 'upper' ({self.upper})")
        if self.method == "percentile" and self.low >= self.high:
            raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
        return self

    def apply(self, image, mask):
        values = sitk.GetArrayFromImage(image).astype(np.float64)
        stats = values[sitk.GetArrayViewFromImage(mask) > 0] if self.region == "mask" else values
        if self.method == "zscore":
            mean, std = float(stats.mean()), float(stats.std())
            if std == 0:
                raise CaseError(f"z-score normalisation impossible: the {self.region} has constant intensity {mean:g}")
            out, result = (values - mean) / std, f"mean {mean:.6g}, std {std:.6g}"
        elif self.method == "percentile":
            lo, hi = (float(v) for v in np.percentile(stats, [self.low, self.high]))
            if hi <= lo:
                raise CaseError(f"percentile normalisation impossible: percentiles {self.low:g} and "
                                f"{self.high:g} of the {self.region} are equal ({lo:g})")
            out, result = (np.clip(values, lo, hi) - lo) / (hi - lo), f"p{self.low:g} = {lo:.6g}, p{self.high:g} = {hi:.6g}"
        elif self.method == "window":
            out = (np.clip(values, self.lower, self.upper) - self.lower) / (self.upper - self.lower)
            result = f"window {self.lower:g}..{self.upper:g} mapped to 0..1"
        else:
            out, result = np.clip(values, self.lower, self.upper), f"clipped to {self.lower:g}..{self.upper:g}"
        return _like(out.astype(np.float32), image), mask, result


class Resegment(_Step):
    """Re-segmentation: ROI voxels whose intensity lies outside ``range`` ([lo, hi], inclusive; ``null`` for an
    open end) leave the ROI. The image is unchanged."""

    step: Literal["resegment"] = "resegment"
    range: tuple[float | None, float | None]

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.range
        if lo is None and hi is None:
            raise ValueError("range needs at least one bound")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"range lower bound {lo} is above upper bound {hi}")
        return self

    def apply(self, image, mask):
        values = sitk.GetArrayViewFromImage(image)
        roi = sitk.GetArrayViewFromImage(mask) > 0
        keep = roi.copy()
        lo, hi = self.range
        if lo is not None:
            keep &= values >= lo
        if hi is not None:
            keep &= values <= hi
        before, after = int(roi.sum()), int(keep.sum())
        if after == 0:
            raise CaseError(f"re-segmentation range [{lo}, {hi}] removed every voxel of the mask ({before} voxels)")
        return image, _like(keep.astype(np.uint8), mask), f"{before} -> {after} ROI voxels"


class N4(_Step):
    """N4 bias-field correction (MR). Fitted on an image shrunk by ``shrink_factor`` for speed, inside an Otsu
    foreground mask (``foreground: otsu``), the ROI (``roi``) or the whole image (``all``); the bias field is
    then evaluated at full resolution and divided out. Output is float32."""

    step: Literal["n4"] = "n4"
    shrink_factor: int = Field(4, ge=1)
    iterations: list[int] = Field(default_factory=lambda: [50, 50, 50, 50], min_length=1)
    convergence_threshold: float = Field(1e-3, gt=0)
    foreground: Literal["otsu", "roi", "all"] = "otsu"

    def apply(self, image, mask):
        image = sitk.Cast(image, sitk.sitkFloat32)
        if self.foreground == "otsu":
            region = sitk.OtsuThreshold(image, 0, 1, 200)
        elif self.foreground == "roi":
            region = sitk.Cast(mask > 0, sitk.sitkUInt8)
        else:
            region = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
            region.CopyInformation(image)
        shrink = [min(self.shrink_factor, max(1, s // 4)) for s in image.GetSize()]
        small, small_region = sitk.Shrink(image, shrink), sitk.Shrink(region, shrink)
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations(self.iterations)
        corrector.SetConvergenceThreshold(self.convergence_threshold)
        corrector.Execute(small, small_region)
        log_bias = corrector.GetLogBiasFieldAsImage(image)
        corrected = image / sitk.Exp(log_bias)
        bias = sitk.GetArrayViewFromImage(sitk.Exp(log_bias))
        return sitk.Cast(corrected, sitk.sitkFloat32), mask, (
            f"bias field range {float(bias.min()):.4g}..{float(bias.max()):.4g}, "
            f"{len(self.iterations)} levels, shrink {_fmt(shrink)}"
        )


class Denoise(_Step):
    """Denoising: ``gaussian`` (``sigma`` in mm, recursive Gaussian), ``median`` (``radius`` in voxels per
    axis), ``curvature_flow`` (``iterations`` and ``time_step``; edge-preserving). Output is float32 except for
    median, which keeps the pixel type."""

    step: Literal["denoise"] = "denoise"
    method: Literal["gaussian", "median", "curvature_flow"]
    sigma: float = Field(1.0, gt=0)
    radius: int | list[int] = 1
    iterations: int = Field(5, ge=1)
    time_step: float = Field(0.0625, gt=0)

    @model_validator(mode="after")
    def _check(self):
        self._only_for(self.method, {
            "gaussian": {"sigma"}, "median": {"radius"}, "curvature_flow": {"iterations", "time_step"},
        })
        return self

    def apply(self, image, mask):
        if self.method == "gaussian":
            out = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), self.sigma)
            result = f"gaussian sigma {self.sigma:g} mm"
        elif self.method == "median":
            radius = [int(r) for r in _per_axis(self.radius, image, "median radius")]
            out, result = sitk.Median(image, radius), f"median radius {_fmt(radius)} voxels"
        else:
            out = sitk.CurvatureFlow(sitk.Cast(image, sitk.sitkFloat32), self.time_step, self.iterations)
            result = f"curvature flow, {self.iterations} iterations, time step {self.time_step:g}"
        return out, mask, result


class Equalise(_Step):
    """Adaptive histogram equalisation (SimpleITK ``AdaptiveHistogramEqualization``): ``alpha`` 0 is classical
    equalisation, 1 unsharp masking; ``beta`` 0..1 moves towards the identity; ``radius`` in voxels.
    ``alpha: 0, beta: 0`` with a radius covering the image is global histogram equalisation. Output is float32."""

    step: Literal["equalise"] = "equalise"
    alpha: float = Field(0.3, ge=0, le=1)
    beta: float = Field(0.3, ge=0, le=1)
    radius: int | list[int] = 5

    def apply(self, image, mask):
        radius = [int(r) for r in _per_axis(self.radius, image, "equalise radius")]
        out = sitk.AdaptiveHistogramEqualization(sitk.Cast(image, sitk.sitkFloat32), radius, self.alpha, self.beta)
        return out, mask, f"alpha {self.alpha:g}, beta {self.beta:g}, radius {_fmt(radius)} voxels"


class CropToMask(_Step):
    """Crop image and mask to the mask's bounding box plus ``pad`` mm per axis (one value for all axes, or one
    per axis x, y[, z]), clamped to the image. Physical positions are kept."""

    step: Literal["crop_to_mask"] = "crop_to_mask"
    pad: float | list[float] = 0.0

    def apply(self, image, mask):
        margin = _per_axis(self.pad, image, "crop pad")
        if any(m < 0 for m in margin):
            raise CaseError(f"crop pad {self.pad} must be >= 0 mm")
        new_image, new_mask = crop_for_filters(image, mask, margin)
        return new_image, new_mask, f"size {_fmt(image.GetSize())} -> {_fmt(new_image.GetSize())}"


PreprocessStep = Annotated[
    Union[Resample, Normalise, Resegment, N4, Denoise, Equalise, CropToMask],  # noqa: UP007
    Field(discriminator="step"),
]


def apply_preprocessing(
    image: sitk.Image, mask: sitk.Image, steps: Sequence[PreprocessStep]
) -> tuple[sitk.Image, sitk.Image, list[dict]]:
    """Apply ``steps`` in order; return ``(image, mask, records)``.

    Each record is ``{"step": name, "params": {...}, "result": "..."}`` for the manifest. ``steps`` may be step
    models or plain mappings (validated here). The mask is expected binary (see
    :func:`radpipe.extract.qc.check_mask`); steps that change it return UInt8 0/1.
    """
    from pydantic import TypeAdapter

    adapter = TypeAdapter(PreprocessStep)
    records = []
    for raw in steps:
        step = adapter.validate_python(raw) if isinstance(raw, Mapping) else raw
        image, mask, result = step.apply(image, mask)
        records.append({"step": step.step, "params": step.model_dump(exclude={"step"}), "result": result})
    return image, mask, records


def resample_grid(image: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An empty reference image with ``spacing`` covering ``image``'s extent, centred on its centre."""
    old_spacing = np.array(image.GetSpacing())
    new_spacing = np.array(spacing, dtype=float)
    old_size = np.array(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    shift = ((old_size - 1) * old_spacing - (new_size - 1) * new_spacing) / 2
    direction = np.array(image.GetDirection()).reshape(image.GetDimension(), -1)
    origin = np.array(image.GetOrigin()) + direction @ shift
    reference = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    reference.SetSpacing([float(s) for s in new_spacing])
    reference.SetOrigin([float(o) for o in origin])
    reference.SetDirection(image.GetDirection())
    return reference


# --- filter-aware cropping ---------------------------------------------------------------------------------

#: Filters that map each voxel on its own: no neighbourhood, no margin.
_POINTWISE = {"original"}
#: Voxel-wise, but pyradiomics scales them by the largest |intensity| of the image it is given, so a crop
#: with a different maximum changes every value (brain2 square Mean: 223.8 cropped vs 107.1 whole image).
_WHOLE_IMAGE = {"square", "squareroot", "logarithm", "exponential"}


def filter_margin_mm(settings: Mapping, spacing: Sequence[float]) -> tuple[float, ...]:
    """Per-axis margin (mm, in image axis order x, y[, z]) around the mask that pyradiomics' enabled filters need
    so that features computed on a crop equal those on the whole image.

    ``settings`` is a pyradiomics parameter mapping (``imageType``, ``setting``, ``featureClass``; a params file
    as loaded from YAML). ``spacing`` is the voxel spacing the filters run at.

    - LoG: ``8 * max(sigma)`` mm plus 2 voxels. SimpleITK's recursive (IIR) Gaussian has an infinite footprint
      and extends the crop's edge, so a margin of ``4 * sigma`` still moves filtered values near the ROI by a
      fraction of a HU, enough to flip voxels across a bin edge (up to 8e-3 relative on a texture feature of
      pyradiomics' lung1). Measured on the five pyradiomics sample cases with sigma 1, 2, 3 mm: 6 sigma gives
      at worst 7e-5 relative, 8 sigma 8e-6.
    - Wavelet: pyradiomics' stationary wavelet transform applies the undecimated filter bank
      ``start_level + level`` times, so the footprint is ``(start_level + level) * (filter length - 1)``
      voxels; we take the brief's conservative ``filter length * 2**(start_level + level)`` voxels, then add one
      voxel for the wrap padding pyradiomics adds to odd sizes.
    - Gradient: 2 voxels. LBP2D/LBP3D: ``(radius + 1) * levels`` voxels (LBP3D also on its icosphere radius).
    - Original: 0.
    - Square, SquareRoot, Logarithm, Exponential: the whole image (``inf``). They map voxels one by one but
      scale by the image's largest absolute intensity, which a crop changes.

    Cropping is *unsafe* when pyradiomics normalises the whole image (``normalize: true``: the statistics would
    change) or resamples (``resampledPixelSpacing``: its grid is derived from the crop's origin); the margin is
    then ``inf`` on every axis and :func:`crop_for_filters` returns the full image. Resample with radpipe's
    ``resample`` step instead, which runs before the crop.

    Raises
    ------
    ConfigError
        For an image type radpipe does not know the footprint of.
    """
    spacing = np.array(spacing, dtype=float)
    image_types = settings.get("imageType") or {"Original": {}}
    general = dict(settings.get("setting") or {})
    if (general.get("normalize") or any(general.get("resampledPixelSpacing") or [])
            or any(name.lower() in _WHOLE_IMAGE for name in image_types)):
        return tuple(math.inf for _ in spacing)
    margin = np.zeros_like(spacing)
    for name, custom in image_types.items():
        options = {**general, **(custom or {})}
        kind = name.lower()
        if kind in _POINTWISE:
            continue
        if kind == "log":
            sigmas = [float(s) for s in options.get("sigma", [])]
            need = 8 * max(sigmas) + 2 * spacing if sigmas else np.zeros_like(spacing)
        elif kind == "wavelet":
            import pywt

            length = pywt.Wavelet(options.get("wavelet", "coif1")).dec_len
            levels = int(options.get("start_level", 0)) + int(options.get("level", 1))
            need = (length * 2**levels + 1) * spacing
        elif kind == "gradient":
            need = 2 * spacing
        elif kind == "lbp2d":
            need = (float(options.get("lbp2DRadius", 1)) + 1) * spacing
        elif kind == "lbp3d":
            radius = max(float(options.get("lbp3DIcosphereRadius", 1)), 1.0)
            need = (radius + 1) * int(options.get("lbp3DLevels", 2)) * spacing
        else:
            raise ConfigError(
                f"image type '{name}' has no known filter footprint; radpipe knows Original, LoG, Wavelet, "
                "Square, SquareRoot, Logarithm, Exponential, Gradient, LBP2D, LBP3D",
                key="imageType",
            )
        margin = np.maximum(margin, need)
    return tuple(float(m) for m in margin)


def crop_for_filters(
    image: sitk.Image, mask: sitk.Image, margin_mm: float | Sequence[float]
) -> tuple[sitk.Image, sitk.Image]:
    """Crop image and mask to the mask's bounding box plus ``margin_mm`` per axis (x, y[, z] order; a scalar for
    all axes), rounded up to whole voxels and clamped to the image. Physical positions are kept, so features
    and the manifest's coordinates are unchanged. An infinite margin returns the inputs unchanged."""
    margin = np.array(_per_axis(margin_mm, image, "crop margin"), dtype=float)
    if np.all(np.isinf(margin)):
        return image, mask
    roi = sitk.GetArrayViewFromImage(mask) != 0
    if not roi.any():
        raise CaseError("cannot crop to the mask: the mask is empty")
    # numpy axes are (z, y, x); SimpleITK's are (x, y, z)
    nonzero = [np.flatnonzero(roi.any(axis=tuple(a for a in range(roi.ndim) if a != axis)))
               for axis in range(roi.ndim)]
    low = np.array([n[0] for n in nonzero][::-1])
    high = np.array([n[-1] for n in nonzero][::-1])
    pad = np.where(np.isinf(margin), np.iinfo(np.int32).max,
                   np.ceil(margin / np.array(image.GetSpacing()) - 1e-9)).astype(np.int64)
    size = np.array(image.GetSize())
    start = np.maximum(low - pad, 0)
    stop = np.minimum(high + pad, size - 1)
    if np.all(start == 0) and np.all(stop == size - 1):
        return image, mask
    index, extent = [int(v) for v in start], [int(v) for v in stop - start + 1]
    return sitk.RegionOfInterest(image, extent, index), sitk.RegionOfInterest(mask, extent, index)


# --- helpers -----------------------------------------------------------------------------------------------


def _per_axis(value, image: sitk.Image, what: str) -> list:
    values = [value] if np.ndim(value) == 0 else list(np.asarray(value).tolist())
    dim = image.GetDimension()
    if len(values) == 1:
        return values * dim
    if len(values) != dim:
        raise CaseError(f"{what} {value} has {len(values)} values but the image is {dim}D")
    return values


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _count(mask: sitk.Image) -> int:
    return int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))


def _require_roi(mask: sitk.Image, when: str) -> None:
    if _count(mask) == 0:
        raise CaseError(f"the mask has no voxel left {when}: the ROI is smaller than the new voxel size")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
