"""Preprocessing steps checked against SimpleITK called directly, and the filter-aware crop against pyradiomics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from pydantic import TypeAdapter, ValidationError

from radpipe.errors import CaseError, ConfigError
from radpipe.extract.preprocess import (
    CropToMask,
    Denoise,
    Equalise,
    Normalise,
    PreprocessStep,
    Resample,
    apply_preprocessing,
    crop_for_filters,
    filter_margin_mm,
    resample_grid,
)

STEP = TypeAdapter(PreprocessStep)


@pytest.fixture
def image():
    rng = np.random.default_rng(3)
    array = rng.normal(100, 20, size=(10, 24, 20)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 2.5))
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


@pytest.fixture
def mask(image):
    array = np.zeros((10, 24, 20), dtype=np.uint8)
    array[3:7, 8:16, 6:14] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return mask


def _a(image):
    return sitk.GetArrayFromImage(image)


# --- step models -------------------------------------------------------------------------------------------


def test_steps_are_parsed_by_their_step_key():
    steps = [STEP.validate_python(s) for s in (
        {"step": "resample", "spacing": [1, 1, 1]},
        {"step": "normalise", "method": "clip", "lower": -1000, "upper": 400},
        {"step": "resegment", "range": [-100, None]},
        {"step": "n4"},
        {"step": "denoise", "method": "median", "radius": 2},
        {"step": "equalise"},
        {"step": "crop_to_mask", "pad": [5, 5, 10]},
    )]
    assert [type(s).__name__ for s in steps] == [
        "Resample", "Normalise", "Resegment", "N4", "Denoise", "Equalise", "CropToMask"]


@pytest.mark.parametrize(("raw", "words"), [
    ({"step": "resample", "spacing": [1, 1, 1], "interpolater": "linear"}, "Extra inputs are not permitted"),
    ({"step": "denoise", "method": "median", "sigma": 2}, "option sigma does not apply to method 'median'"),
    ({"step": "normalise", "method": "window", "lower": 10}, "needs both 'lower' and 'upper'"),
    ({"step": "resegment", "range": [400, -100]}, "lower bound 400.0 is above upper bound"),
    ({"step": "sharpen"}, "does not match any of the expected tags"),
])
def test_bad_steps_are_rejected_with_a_reason(raw, words):
    with pytest.raises(ValidationError, match=words):
        STEP.validate_python(raw)


# --- resample ----------------------------------------------------------------------------------------------


def test_resample_grid_keeps_extent_and_centre():
    image = sitk.Image([10, 9], sitk.sitkUInt8)
    image.SetOrigin((2.0, 3.0))
    grid = resample_grid(image, (2.0, 1.0))
    assert grid.GetSize() == (5, 9)
    # old centre 2 + 4.5 = 6.5; new first centre 6.5 - 2 * 2 = 2.5
    assert grid.GetOrigin() == pytest.approx((2.5, 3.0))
    assert grid.GetSpacing() == (2.0, 1.0)


@pytest.mark.parametrize(("name", "interpolator"), [
    ("bspline", sitk.sitkBSpline), ("linear", sitk.sitkLinear), ("nearest", sitk.sitkNearestNeighbor)])
def test_resample_equals_sitk_resample(image, mask, name, interpolator):
    out_image, out_mask, records = apply_preprocessing(
        image, mask, [Resample(spacing=[1.0, 1.0, 0], interpolator=name)])
    size = [round(20 * 0.7), round(24 * 0.7), 10]
    origin = np.array(image.GetOrigin()) + [(19 * 0.7 - (size[0] - 1)) / 2, (23 * 0.7 - (size[1] - 1)) / 2, 0]
    pixel = sitk.sitkInt16 if name == "nearest" else sitk.sitkFloat32
    low = float(_a(image).min())
    expected = sitk.Resample(image, size, sitk.Transform(), interpolator, origin.tolist(), (1.0, 1.0, 2.5),
                             image.GetDirection(), low, pixel)
    np.testing.assert_array_equal(_a(out_image), _a(expected))
    assert out_image.GetOrigin() == pytest.approx(expected.GetOrigin())
    expected_mask = sitk.Resample(mask, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin.tolist(),
                                  (1.0, 1.0, 2.5), mask.GetDirection(), 0, sitk.sitkUInt8)
    np.testing.assert_array_equal(_a(out_mask), _a(expected_mask))
    assert records[0]["step"] == "resample"
    assert records[0]["result"].startswith("spacing (1, 1, 2.5), size (14, 17, 10)")


def test_resample_partial_volume_mask_is_thresholded_fraction(image, mask):
    _, out_mask, _ = apply_preprocessing(
        image, mask, [Resample(spacing=[2.0, 2.0, 2.0], mask_interpolator="partial_volume", mask_threshold=0.3)])
    grid = resample_grid(image, (2.0, 2.0, 2.0))
    fraction = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    np.testing.assert_array_equal(_a(out_mask), (_a(fraction) >= 0.3).astype(np.uint8))


def test_resample_losing_the_whole_roi_is_a_case_error(image):
    tiny = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    tiny.CopyInformation(image)
    tiny[1, 1, 1] = 1
    with pytest.raises(CaseError, match="no voxel left after resampling"):
        apply_preprocessing(image, tiny, [{"step": "resample", "spacing": [7, 7, 7]}])


# --- intensity steps ---------------------------------------------------------------------------------------


def test_normalise_methods_against_numpy(image, mask):
    values = _a(image).astype(np.float64)
    roi = _a(mask) > 0
    out, _, rec = apply_preprocessing(image, mask, [Normalise(method="zscore")])
    np.testing.assert_allclose(_a(out), (values - values.mean()) / values.std(), rtol=1e-5, atol=1e-5)
    assert out.GetPixelID() == sitk.sitkFloat32 and rec[0]["result"].startswith("mean ")
    out, _, _ = apply_preprocessing(image, mask, [Normalise(method="zscore", region="mask")])
    assert _a(out)[roi].mean() == pytest.approx(0, abs=1e-5) and _a(out)[roi].std() == pytest.approx(1, rel=1e-5)
    out, _, _ = apply_preprocessing(image, mask, [Normalise(method="percentile", low=5, high=95)])
    lo, hi = np.percentile(values, [5, 95])
    np.testing.assert_allclose(_a(out), (np.clip(values, lo, hi) - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    out, _, _ = apply_preprocessing(image, mask, [Normalise(method="window", lower=80, upper=120)])
    np.testing.assert_allclose(_a(out), (np.clip(values, 80, 120) - 80) / 40, atol=1e-6)
    out, _, _ = apply_preprocessing(image, mask, [Normalise(method="clip", lower=80, upper=120)])
    np.testing.assert_array_equal(_a(out), np.clip(values, 80, 120).astype(np.float32))


def test_resegment_removes_roi_voxels_outside_range(image, mask):
    out_image, out_mask, records = apply_preprocessing(image, mask, [{"step": "resegment", "range": [90, None]}])
    expected = (_a(mask) > 0) & (_a(image) >= 90)
    np.testing.assert_array_equal(_a(out_mask), expected.astype(np.uint8))
    np.testing.assert_array_equal(_a(out_image), _a(image))
    assert records[0]["result"] == f"256 -> {int(expected.sum())} ROI voxels"
    with pytest.raises(CaseError, match="removed every voxel of the mask"):
        apply_preprocessing(image, mask, [{"step": "resegment", "range": [5000, 6000]}])


@pytest.mark.parametrize(("step", "direct"), [
    (Denoise(method="gaussian", sigma=1.5),
     lambda im: sitk.SmoothingRecursiveGaussian(sitk.Cast(im, sitk.sitkFloat32), 1.5)),
    (Denoise(method="median", radius=[1, 2, 1]), lambda im: sitk.Median(im, [1, 2, 1])),
    (Denoise(method="curvature_flow", iterations=3, time_step=0.05),
     lambda im: sitk.CurvatureFlow(sitk.Cast(im, sitk.sitkFloat32), 0.05, 3)),
    (Equalise(alpha=0.5, beta=0.2, radius=3),
     lambda im: sitk.AdaptiveHistogramEqualization(sitk.Cast(im, sitk.sitkFloat32), [3, 3, 3], 0.5, 0.2)),
])
def test_filters_equal_sitk_called_directly(image, mask, step, direct):
    out, out_mask, _ = apply_preprocessing(image, mask, [step])
    np.testing.assert_array_equal(_a(out), _a(direct(image)))
    np.testing.assert_array_equal(_a(out_mask), _a(mask))


def test_n4_removes_a_smooth_multiplicative_bias():
    z, y, x = np.mgrid[0:8, 0:40, 0:40]
    tissue = np.where((x - 20) ** 2 + (y - 20) ** 2 < 17**2, 100.0, 0.0)
    bias = 1 + 0.4 * (x / 40.0)
    image = sitk.GetImageFromArray((tissue * bias).astype(np.float32))
    mask = sitk.GetImageFromArray(((x - 20) ** 2 + (y - 20) ** 2 < 10**2).astype(np.uint8))
    out, _, records = apply_preprocessing(image, mask, [{"step": "n4", "shrink_factor": 2,
                                                         "iterations": [20, 20]}])
    inside = _a(mask) > 0

    def cv(a):
        return a[inside].std() / a[inside].mean()

    assert cv(_a(out)) < 0.5 * cv(_a(image))
    assert records[0]["result"].startswith("bias field range")


# --- cropping ----------------------------------------------------------------------------------------------


def test_crop_to_mask_pads_in_mm_per_axis_and_keeps_positions(image, mask):
    out_image, out_mask, records = apply_preprocessing(image, mask, [CropToMask(pad=[1.4, 0, 100])])
    # mask bbox x 6..13, y 8..15, z 3..6; pad 2 voxels in x, 0 in y, clamped to the image in z
    assert out_image.GetSize() == (12, 8, 10)
    assert out_image.GetOrigin() == pytest.approx(image.TransformIndexToPhysicalPoint((4, 8, 0)))
    np.testing.assert_array_equal(_a(out_image), _a(image)[:, 8:16, 4:16])
    assert int(_a(out_mask).sum()) == int(_a(mask).sum())
    assert records[0]["result"] == "size (20, 24, 10) -> (12, 8, 10)"


def test_crop_with_infinite_margin_returns_inputs(image, mask):
    out_image, out_mask = crop_for_filters(image, mask, math.inf)
    assert out_image is image and out_mask is mask


def test_filter_margin_for_log_and_wavelet():
    spacing = (0.5, 0.5, 5.0)
    log = {"imageType": {"LoG": {"sigma": [1.0, 2.0, 3.0]}}}
    assert filter_margin_mm(log, spacing) == pytest.approx((25.0, 25.0, 34.0))
    wavelet = {"imageType": {"Original": {}, "Wavelet": {}}}  # coif1: 6 taps, level 1
    assert filter_margin_mm(wavelet, spacing) == pytest.approx((6.5, 6.5, 65.0))
    both = {"imageType": {"LoG": {"sigma": [1.0, 2.0, 3.0]}, "Wavelet": {"level": 2}}}
    assert filter_margin_mm(both, spacing) == pytest.approx((25.0, 25.0, 125.0))
    assert filter_margin_mm({"imageType": {"Original": {}}}, spacing) == (0.0, 0.0, 0.0)


def test_filter_margin_is_infinite_when_pyradiomics_normalises_or_resamples():
    for setting in ({"normalize": True}, {"resampledPixelSpacing": [1, 1, 1]}):
        margin = filter_margin_mm({"imageType": {"Original": {}}, "setting": setting}, (1, 1, 1))
        assert margin == (math.inf,) * 3


def test_filter_margin_is_infinite_for_filters_scaled_by_the_image_maximum():
    # pyradiomics scales Square/SquareRoot/Logarithm/Exponential by max |intensity| of the image it is given
    for name in ("Square", "SquareRoot", "Logarithm", "Exponential"):
        margin = filter_margin_mm({"imageType": {"Original": {}, name: {}}}, (1, 1, 1))
        assert margin == (math.inf,) * 3


def test_filter_margin_unknown_filter_is_a_config_error():
    with pytest.raises(ConfigError, match="image type 'Sharpen' has no known filter footprint"):
        filter_margin_mm({"imageType": {"Sharpen": {}}}, (1, 1, 1))


def _features(image, mask, params):
    import logging

    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    return {k: float(v) for k, v in extractor.execute(image, mask).items()}


def _lung1(data_dir):
    folder = data_dir / "pyradiomics_samples"
    return (sitk.ReadImage(str(folder / "lung1_image.nrrd")), sitk.ReadImage(str(folder / "lung1_label.nrrd")))


def _worst(full, cropped):
    assert full.keys() == cropped.keys()
    return max((abs(full[k] - cropped[k]) / max(abs(full[k]), 1e-12), k) for k in full)


@pytest.mark.realdata
def test_log_features_on_crop_match_uncropped_lung1(data_dir):
    image, mask = _lung1(data_dir)
    params = {"imageType": {"LoG": {"sigma": [1.0, 2.0, 3.0]}}, "setting": {"additionalInfo": False}}
    cropped_image, cropped_mask = crop_for_filters(image, mask, filter_margin_mm(params, image.GetSpacing()))
    assert np.prod(cropped_image.GetSize()) < np.prod(image.GetSize()) / 50
    full, cropped = _features(image, mask, params), _features(cropped_image, cropped_mask, params)
    assert sum(k.startswith("log-sigma") for k in full) == 3 * 93
    worst, name = _worst(full, cropped)
    assert worst < 1e-4, name


@pytest.mark.realdata
@pytest.mark.slow
def test_wavelet_features_on_crop_are_identical_lung1(data_dir):
    image, mask = _lung1(data_dir)
    params = {"imageType": {"Original": {}, "Wavelet": {}}, "setting": {"additionalInfo": False}}
    cropped_image, cropped_mask = crop_for_filters(image, mask, filter_margin_mm(params, image.GetSpacing()))
    full, cropped = _features(image, mask, params), _features(cropped_image, cropped_mask, params)
    assert sum(k.startswith("wavelet-") for k in full) == 8 * 93
    assert {k for k in full if full[k] != cropped[k]} == set()
