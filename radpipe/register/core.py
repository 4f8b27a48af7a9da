"""Register one image to another with SimpleITK (ITKv4) and carry the moving image and its mask onto the fixed grid.

A registration that diverges or misplaces the mask is reported as a failed QC row with a reason, never passed on
as a silently bad fusion.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from radpipe.register.settings import RegistrationSettings, registration_settings

#: columns of a registration QC row, in order (``registration_qc.csv``; extraction's per-modality QC rows)
QC_COLUMNS = ("status", "reason", "transform", "metric", "metric_value", "iterations", "stop_condition", "converged",
              "rotation_deg", "max_shift_mm", "dice_before", "dice_after", "seconds")


@dataclass
class RegistrationResult:
    """What :func:`register_images` found: the transform (fixed → moving physical points) and how it got there.

    ``status`` is ``"ok"`` or ``"failed"``; ``reason`` says in words why a registration failed. ``dice_before`` and
    ``dice_after`` are the moving mask's overlap with the fixed mask on the fixed grid, before (images as they lie
    in the scanner frame) and after registration, when both masks were given.
    """

    transform: sitk.Transform
    metric_value: float
    iterations: int
    stop_condition: str
    converged: bool
    settings: RegistrationSettings
    status: str = "ok"
    reason: str = ""
    rotation_deg: float = float("nan")
    max_shift_mm: float = float("nan")
    dice_before: float | None = None
    dice_after: float | None = None
    seconds: float = 0.0
    levels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def qc_row(self) -> dict[str, Any]:
        """One row for a QC table (columns :data:`QC_COLUMNS`)."""
        values = {"status": self.status, "reason": self.reason, "transform": self.settings.transform,
                  "metric": self.settings.metric, "metric_value": self.metric_value, "iterations": self.iterations,
                  "stop_condition": self.stop_condition, "converged": self.converged,
                  "rotation_deg": self.rotation_deg, "max_shift_mm": self.max_shift_mm,
                  "dice_before": self.dice_before, "dice_after": self.dice_after, "seconds": round(self.seconds, 3)}
        return {column: values[column] for column in QC_COLUMNS}

    def __repr__(self) -> str:
        dice = "" if self.dice_after is None else f", Dice {self.dice_before:.3f} → {self.dice_after:.3f}"
        why = f" ({self.reason})" if self.reason else ""
        return (f"RegistrationResult({self.settings.transform}/{self.settings.metric}: {self.status}{why}, "
                f"metric {self.metric_value:.4g} after {self.iterations} iterations{dice})")


def dice(a: sitk.Image, b: sitk.Image) -> float:
    """Dice overlap of two masks on the same grid (1 = identical; NaN when both are empty).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> a = sitk.Image(10, 10, 10, sitk.sitkUInt8); a[2:6, 2:6, 2:6] = 1
    >>> b = sitk.Image(10, 10, 10, sitk.sitkUInt8); b[4:8, 2:6, 2:6] = 1
    >>> round(dice(a, b), 3)
    0.5
    """
    x = sitk.GetArrayViewFromImage(a) > 0
    y = sitk.GetArrayViewFromImage(b) > 0
    total = int(x.sum()) + int(y.sum())
    return float("nan") if total == 0 else 2.0 * int(np.logical_and(x, y).sum()) / total


def resample_mask(mask: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None, *,
                  interpolation: str = "nearest") -> sitk.Image:
    """``mask`` on ``reference``'s grid through ``transform`` (reference point → mask point), as uint8 0/1.

    ``interpolation`` is ``nearest`` (nearest neighbour) or ``linear`` (linear interpolation of the 0/1 mask,
    then voxels at 0.5 or more are inside).
    """
    transform = transform or sitk.Transform(3, sitk.sitkIdentity)
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if interpolation == "nearest":
        return sitk.Resample(binary, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    fraction = sitk.Resample(sitk.Cast(binary, sitk.sitkFloat32), reference, transform, sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    return sitk.Cast(fraction >= 0.5, sitk.sitkUInt8)


def roi_points(mask: sitk.Image) -> np.ndarray:
    """Physical (x, y, z) points of a mask's foreground voxels, shape (n, 3)."""
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1].astype(float)  # (z, y, x) → (x, y, z)
    spacing = np.asarray(mask.GetSpacing())
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    return np.asarray(mask.GetOrigin()) + (index * spacing) @ direction.T


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """``transform`` applied to each row of ``points`` (n, 3)."""
    return np.array([transform.TransformPoint(tuple(map(float, p))) for p in points]).reshape(-1, 3)


def target_registration_error(recovered: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> float:
    """Mean distance (mm) between where ``recovered`` and ``truth`` send each of ``points``.

    Examples
    --------
    >>> import numpy as np, SimpleITK as sitk
    >>> shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    >>> target_registration_error(shift, sitk.Transform(3, sitk.sitkIdentity), np.zeros((4, 3)))
    1.0
    """
    if len(points) == 0:
        return float("nan")
    return float(np.linalg.norm(transform_points(recovered, points) - transform_points(truth, points), axis=1).mean())


def _as_float(image: sitk.Image) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkFloat32)


def _start_transform(fixed: sitk.Image, moving: sitk.Image, how: str) -> sitk.Euler3DTransform:
    if how == "identity":
        centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
        start = sitk.Euler3DTransform()
        start.SetCenter(centre)
        return start
    mode = (sitk.CenteredTransformInitializerFilter.GEOMETRY if how == "geometry"
            else sitk.CenteredTransformInitializerFilter.MOMENTS)
    return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode))


def _method(settings: RegistrationSettings, fixed_metric_mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    if settings.metric == "mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    else:
        method.SetMetricAsMeanSquares()
    # a fixed seed makes the random sample, and so the whole registration, repeatable
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_percentage, settings.seed)
    if fixed_metric_mask is not None:
        method.SetMetricFixedMask(fixed_metric_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(settings.shrink_factors)
    method.SetSmoothingSigmasPerLevel(settings.smoothing_sigmas_mm)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetNumberOfThreads(settings.threads)
    return method


def _run(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
         levels: list[dict[str, Any]]) -> sitk.Transform:
    counter = {"n": 0}
    method.AddCommand(sitk.sitkIterationEvent, lambda: counter.__setitem__("n", counter["n"] + 1))
    transform = method.Execute(fixed, moving)
    levels.append({"iterations": counter["n"], "last_level_iterations": method.GetOptimizerIteration(),
                   "metric_value": method.GetMetricValue(), "stop": method.GetOptimizerStopConditionDescription()})
    return transform


def _step_optimizer(method: sitk.ImageRegistrationMethod, settings: RegistrationSettings) -> None:
    # Regular-step descent moves by a set length and halves it when the direction turns back. Plain gradient
    # descent re-estimates its learning rate per level from the gradient, which near the optimum is tiny: the
    # estimate blew up and threw the image out of the field of view on a synthetic cube (measured).
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=settings.learning_rate, minStep=1e-3,
                                                    numberOfIterations=settings.iterations, relaxationFactor=0.5,
                                                    gradientMagnitudeTolerance=1e-8)


def _rigid_stage(fixed, moving, settings, metric_mask, levels) -> sitk.Euler3DTransform:
    method = _method(settings, metric_mask)
    _step_optimizer(method, settings)
    # rotations (radians) and translations (mm) put on one scale: the shift each parameter causes in the image
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(_start_transform(fixed, moving, settings.initialise), inPlace=False)
    return sitk.Euler3DTransform(_composite_last(_run(method, fixed, moving, levels)))


def _affine_stage(fixed, moving, rigid, settings, metric_mask, levels) -> sitk.AffineTransform:
    start = sitk.AffineTransform(3)
    start.SetCenter(rigid.GetCenter())
    start.SetMatrix(rigid.GetMatrix())
    start.SetTranslation(rigid.GetTranslation())
    method = _method(settings, metric_mask)
    _step_optimizer(method, settings)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(start, inPlace=False)
    return sitk.AffineTransform(_composite_last(_run(method, fixed, moving, levels)))


def _bspline_stage(fixed, moving, affine, settings, metric_mask, levels) -> sitk.Transform:
    physical = [n * s for n, s in zip(fixed.GetSize(), fixed.GetSpacing(), strict=True)]
    mesh = [max(1, round(extent / settings.bspline_grid_mm)) for extent in physical]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    method = _method(settings, metric_mask)
    # L-BFGS-B handles the many control-point parameters better than plain gradient descent
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=settings.iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * settings.iterations)
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    _run(method, fixed, moving, levels)
    return sitk.CompositeTransform([affine, bspline])  # applied last to first: bspline, then the affine


def _composite_last(transform: sitk.Transform) -> sitk.Transform:
    """The optimised transform out of the composite that ``Execute`` returns when the start was not in place."""
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        return composite.GetNthTransform(composite.GetNumberOfTransforms() - 1)
    return transform


def _rotation_deg(matrix: np.ndarray) -> float:
    """Rotation angle of the rotation nearest to ``matrix`` (its polar decomposition)."""
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    return math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def _linear_part(transform: sitk.Transform) -> np.ndarray | None:
    if transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        transform = composite.GetNthTransform(0)
    if hasattr(transform, "GetMatrix"):
        return np.asarray(transform.GetMatrix()).reshape(3, 3)
    try:
        return np.asarray(sitk.AffineTransform(transform).GetMatrix()).reshape(3, 3)
    except (RuntimeError, TypeError):
        return None


def _check_points(fixed: sitk.Image, fixed_mask: sitk.Image | None) -> np.ndarray:
    """Points where the transform is checked: the fixed ROI, else the fixed image's corners and centre."""
    if fixed_mask is not None:
        points = roi_points(fixed_mask)
        if len(points) > 2000:  # an even subsample keeps the check fast on large masks
            points = points[:: len(points) // 2000 + 1]
        if len(points):
            return points
    size = fixed.GetSize()
    corners = [[i * (n - 1) for i, n in zip(bits, size, strict=True)]
               for bits in np.ndindex(2, 2, 2)] + [[(n - 1) / 2 for n in size]]
    return np.array([fixed.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in corners])


def _failure(transform: sitk.Transform, start: sitk.Transform, metric_value: float, points: np.ndarray,
             settings: RegistrationSettings) -> tuple[str, float, float]:
    """The reason a finished registration is not believable ('' when it is), its rotation and largest ROI shift."""
    matrix = _linear_part(transform)
    rotation = _rotation_deg(matrix) if matrix is not None else float("nan")
    try:
        shift = float(np.linalg.norm(transform_points(transform, points) - transform_points(start, points), axis=1).max())
    except RuntimeError:
        shift = float("nan")
    if not math.isfinite(metric_value) or abs(metric_value) > 1e300:  # ITK reports no overlap as the largest double
        return ("the images do not overlap (no point of the fixed image falls inside the moving image at the "
                "end): check that both are in the same scanner frame, or start with initialise: geometry",
                rotation, shift)
    if not math.isfinite(shift):
        return "the transform could not be evaluated on the region of interest", rotation, shift
    if matrix is not None and rotation > settings.max_rotation_deg:
        return (f"the registration rotated the image by {rotation:.0f}° (limit {settings.max_rotation_deg:g}°): it "
                "probably diverged", rotation, shift)
    if matrix is not None:
        stretch = np.linalg.svd(matrix, compute_uv=False)
        if stretch.max() > settings.max_scale or stretch.min() < 1 / settings.max_scale:
            return (f"the registration scaled the image by {stretch.min():.2f}–{stretch.max():.2f} along its axes "
                    f"(limit {1 / settings.max_scale:.2f}–{settings.max_scale:g}): it probably diverged",
                    rotation, shift)
    if shift > settings.max_shift_mm:
        return (f"the registration moved the region of interest by up to {shift:.0f} mm from its start position "
                f"(limit {settings.max_shift_mm:g} mm): it probably diverged", rotation, shift)
    return "", rotation, shift


def register_images(fixed: sitk.Image, moving: sitk.Image, *, settings: RegistrationSettings | dict | None = None,
                    fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Register ``moving`` to ``fixed``: find the transform that maps fixed-image points onto moving-image points.

    Rigid first (a centred Euler transform), then affine and B-spline when asked, each over a multi-resolution
    pyramid with a seeded random metric sample, so the same inputs give the same transform. The masks are not used
    to drive the registration; when both are given they measure it (Dice before and after on the fixed grid), and an
    overlap below ``settings.min_dice`` fails the registration. A registration that cannot run or diverges
    (metric not a number, implausible rotation, scaling or shift) is returned with ``status="failed"`` and a
    ``reason``; it never raises for a bad image pair.

    Parameters
    ----------
    fixed, moving : SimpleITK.Image
        3D images; ``moving`` is the one that is moved onto ``fixed``.
    settings : RegistrationSettings or dict, optional
        Transform, metric, pyramid, seed and QC limits; the defaults are rigid with mutual information.
    fixed_mask, moving_mask : SimpleITK.Image, optional
        Region-of-interest masks on each image's own grid.

    Returns
    -------
    RegistrationResult
        ``transform``, ``metric_value``, ``iterations``, ``stop_condition``, ``converged``, ``status``/``reason``,
        ``dice_before``/``dice_after``; ``qc_row()`` gives a QC-table row.

    Examples
    --------
    A bright cube moved by 3 mm along x is found again:

    >>> import SimpleITK as sitk
    >>> fixed = sitk.Image(40, 40, 40, sitk.sitkFloat32); fixed[12:28, 10:26, 14:30] = 100
    >>> fixed = sitk.SmoothingRecursiveGaussian(fixed, 2.0)
    >>> moving = sitk.Resample(fixed, sitk.TranslationTransform(3, (-3.0, 0.0, 0.0)))
    >>> result = register_images(fixed, moving, settings={"metric": "ms"})
    >>> result.status, [round(t, 1) + 0.0 for t in result.transform.GetTranslation()]
    ('ok', [3.0, 0.0, 0.0])
    """
    settings = registration_settings(settings)
    # ITK's metric and pyramid filters follow the global thread count, not only the method's own: with 2 threads
    # two runs on STS_003 differed in the 9th digit, with 1 they were bit-identical (measured)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(settings.threads)
    # ITK prints "No valid points were found" on stderr for every step that leaves the moving image; the QC row
    # says it once, in words
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return _register(fixed, moving, settings, fixed_mask, moving_mask)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)


def _register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, fixed_mask: sitk.Image | None,
              moving_mask: sitk.Image | None) -> RegistrationResult:
    started = time.perf_counter()
    fixed_f, moving_f = _as_float(fixed), _as_float(moving)
    levels: list[dict[str, Any]] = []
    start = _start_transform(fixed_f, moving_f, settings.initialise)
    try:
        transform: sitk.Transform = _rigid_stage(fixed_f, moving_f, settings, None, levels)
        if settings.transform in ("affine", "bspline"):
            transform = _affine_stage(fixed_f, moving_f, transform, settings, None, levels)
        if settings.transform == "bspline":
            transform = _bspline_stage(fixed_f, moving_f, transform, settings, None, levels)
    except RuntimeError as exc:  # ITK stops when too few sample points fall inside the moving image, among others
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        result = RegistrationResult(start, float("nan"), sum(level["iterations"] for level in levels), message,
                                    False, settings, status="failed",
                                    reason=f"the optimizer failed: {message.split(': ')[-1]}")
        result.seconds = time.perf_counter() - started
        return _with_dice(result, fixed, fixed_mask, moving_mask)
    last = levels[-1]
    iterations = sum(level["iterations"] for level in levels)
    converged = last["last_level_iterations"] < settings.iterations
    reason, rotation, shift = _failure(transform, start, float(last["metric_value"]),
                                       _check_points(fixed, fixed_mask), settings)
    result = RegistrationResult(transform, float(last["metric_value"]), iterations, last["stop"], converged, settings,
                                status="failed" if reason else "ok", reason=reason, rotation_deg=rotation,
                                max_shift_mm=shift, levels=levels)
    result.seconds = time.perf_counter() - started
    return _with_dice(result, fixed, fixed_mask, moving_mask)


def _with_dice(result: RegistrationResult, fixed: sitk.Image, fixed_mask: sitk.Image | None,
               moving_mask: sitk.Image | None) -> RegistrationResult:
    if fixed_mask is None or moving_mask is None:
        return result
    mode = result.settings.mask_interpolation
    result.dice_before = dice(resample_mask(moving_mask, fixed_mask, None, interpolation=mode), fixed_mask)
    result.dice_after = dice(resample_mask(moving_mask, fixed_mask, result.transform, interpolation=mode), fixed_mask)
    if result.ok and not result.dice_after >= result.settings.min_dice:
        result.status = "failed"
        result.reason = (f"the moved mask overlaps the fixed mask with Dice {result.dice_after:.2f}, below the "
                         f"limit {result.settings.min_dice:g} (it was {result.dice_before:.2f} before registration)")
    return result


def map_modality(fixed_image: sitk.Image, moving_image: sitk.Image, moving_mask: sitk.Image | None,
                 settings: RegistrationSettings | dict | None = None, *, fixed_mask: sitk.Image | None = None,
                 ) -> tuple[sitk.Image, sitk.Image | None, dict[str, Any]]:
    """Register ``moving_image`` to ``fixed_image`` and carry it and its mask onto the fixed image's grid.

    The image is resampled linearly (0 outside the moving image's field of view); the mask by nearest neighbour or
    linear-then-0.5 (``settings.mask_interpolation``). The QC row says ``status`` ``ok`` or ``failed`` with a
    ``reason``; a failed registration still returns the resampled images so a person can look at them, but they
    must not be used for features.

    Parameters
    ----------
    fixed_image : SimpleITK.Image
        The reference modality (its grid is the output grid).
    moving_image, moving_mask : SimpleITK.Image
        The modality to map, and its mask (or None when it has none).
    settings : RegistrationSettings or dict, optional
    fixed_mask : SimpleITK.Image, optional
        The reference modality's mask, used to measure the mapped mask's overlap (Dice) and to fail it when low.

    Returns
    -------
    image_on_fixed_grid, mask_on_fixed_grid, qc_row

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> fixed = sitk.Image(40, 40, 40, sitk.sitkFloat32); fixed[12:28, 10:26, 14:30] = 100
    >>> fixed = sitk.SmoothingRecursiveGaussian(fixed, 2.0)
    >>> mask = sitk.Cast(fixed > 50, sitk.sitkUInt8)
    >>> shift = sitk.TranslationTransform(3, (-2.0, 1.0, 0.0))
    >>> moving = sitk.Resample(fixed, shift)
    >>> moving_mask = sitk.Resample(mask, shift, sitk.sitkNearestNeighbor)
    >>> image, moved_mask, qc = map_modality(fixed, moving, moving_mask, {"metric": "ms"}, fixed_mask=mask)
    >>> qc["status"], qc["dice_before"] < 0.95, qc["dice_after"] > 0.99, image.GetSize() == fixed.GetSize()
    ('ok', True, True, True)
    """
    result = register_images(fixed_image, moving_image, settings=settings, fixed_mask=fixed_mask,
                             moving_mask=moving_mask)
    image = sitk.Resample(_as_float(moving_image), fixed_image, result.transform, sitk.sitkLinear, 0.0,
                          sitk.sitkFloat32)
    mask = None
    if moving_mask is not None:
        mask = resample_mask(moving_mask, fixed_image, result.transform,
                             interpolation=result.settings.mask_interpolation)
    row = result.qc_row()
    if mask is not None and row["status"] == "ok" and not sitk.GetArrayViewFromImage(mask).any():
        row.update(status="failed", reason="the mask is empty after it was mapped onto the fixed image's grid")
    return image, mask, row


def mask_to_moving(fixed_mask: sitk.Image, moving_image: sitk.Image, transform: sitk.Transform, *,
                   interpolation: str = "nearest") -> sitk.Image:
    """Carry a mask drawn on the fixed image onto the moving image's grid (mask transfer, ``mask_from:``).

    ``transform`` maps fixed points to moving points (a :class:`RegistrationResult`'s ``transform``); its inverse
    is used, so rigid and affine transforms only.
    """
    try:
        inverse = transform.GetInverse()
    except RuntimeError as exc:
        raise ValueError(f"a {transform.GetName()} cannot be inverted; transfer masks with a rigid or affine "
                         "registration") from exc
    return resample_mask(fixed_mask, moving_image, inverse, interpolation=interpolation)


def displace_image(image: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """``image`` moved in space by a known linear ``transform``, by rewriting its origin and direction only.

    The voxel values are untouched (no interpolation), so registering the result back to the original should
    recover ``transform`` itself: a point ``p`` of the original sits at ``transform.TransformPoint(p)`` in the
    moved image. Used to validate registration against a known answer.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> image = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    >>> moved = displace_image(image, sitk.TranslationTransform(3, (5.0, 0.0, -2.0)))
    >>> moved.GetOrigin(), moved[0, 0, 0] == image[0, 0, 0]
    ((5.0, 0.0, -2.0), True)
    """
    # the linear map read off the transform: where it sends the origin and the three unit vectors
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.column_stack([np.asarray(transform.TransformPoint(tuple(p))) - origin for p in np.eye(3)])
    linear = sitk.AffineTransform(matrix.ravel().tolist(), origin.tolist())
    matrix = np.asarray(linear.GetMatrix()).reshape(3, 3)
    moved = sitk.Image(image)
    moved.SetOrigin(linear.TransformPoint(image.GetOrigin()))
    moved.SetDirection((matrix @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    return moved
