"""``extract.interpolation: ibsi``: the IBSI grid, mask and rounding rules, checked by hand on small images and
against the IBSI-1 CT phantom diagnostics (image and ROI after interpolation, configurations B-E)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radpipe.errors import ConfigError
from radpipe.extract.ibsi_interpolation import bin_edges_aligned, ibsi_grid, ibsi_resample
from radpipe.extract.preprocess import Resample, apply_preprocessing
from radpipe.extract.settings import ExtractSettings


def _image(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_grid_centre_is_kept_and_size_rounded_up():
    image = _image(np.zeros((60, 201, 204), np.float32), spacing=(0.977, 0.977, 3.0), origin=(-10.0, 5.0, 2.0))
    grid = ibsi_grid(image, [2.0, 2.0, 2.0])
    # IBSI CT phantom, configuration C: 100 x 99 x 90 voxels after interpolation (diagnostics table)
    assert grid.GetSize() == (100, 99, 90)

    def centre(img):
        return np.array(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))

    np.testing.assert_allclose(centre(grid), centre(image), atol=1e-9)
    # radpipe's default grid rounds instead: 100 x 98 x 90, also centred
    from radpipe.extract.preprocess import resample_grid

    assert resample_grid(image, [2.0, 2.0, 2.0]).GetSize() == (100, 98, 90)


def test_zero_spacing_keeps_an_axis():
    image = _image(np.zeros((4, 5, 6), np.float32), spacing=(1.0, 1.0, 3.0))
    grid = ibsi_grid(image, [2.0, 2.0, 0.0])
    assert grid.GetSpacing() == (2.0, 2.0, 3.0)
    assert grid.GetSize() == (3, 3, 4)
    assert grid.GetOrigin()[2] == 0.0


def test_linear_values_rounding_and_mask_fraction_by_hand():
    values = np.arange(64, dtype=np.float32).reshape(4, 4, 4)  # value = 16 z + 4 y + x
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[:3, :3, :3] = 1
    image, roi, note = ibsi_resample(_image(values), _image(mask), [2, 2, 2])
    # new voxel centres at old indices 0.5 and 2.5: trilinear = the value there, x.5 rounded half to even
    expected = np.array([[[10.5, 12.5], [18.5, 20.5]], [[42.5, 44.5], [50.5, 52.5]]])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.round(expected))
    # ROI fraction per axis is 1 at 0.5 and 0.5 at 2.5: kept where the product is >= 0.5
    np.testing.assert_array_equal(sitk.GetArrayFromImage(roi).ravel(), [1, 1, 1, 0, 1, 0, 0, 0])
    assert "rounded" in note
    unrounded, _, _ = ibsi_resample(_image(values), _image(mask), [2, 2, 2], round_intensities=False)
    np.testing.assert_allclose(sitk.GetArrayFromImage(unrounded), expected)


def test_non_integer_images_are_not_rounded_and_outside_takes_nearest_value():
    values = np.array([[[0.25, 7.75]]], np.float32)  # two voxels of 1 mm along x
    image, _, _ = ibsi_resample(_image(values), _image(np.ones((1, 1, 2), np.uint8)), [1.5, 0, 0])
    # ceil(2 / 1.5) = 2 voxels of 1.5 mm centred on the old centre (index 0.5): at indices -0.25 and 1.25, both
    # outside the old grid, so they take the nearest voxel's value (not 0 or the minimum), and stay unrounded
    np.testing.assert_allclose(sitk.GetArrayFromImage(image)[0, 0], [0.25, 7.75])
    assert image.GetOrigin()[0] == pytest.approx(-0.25)


def test_recipe_key_switches_every_resample_step():
    settings = ExtractSettings(interpolation="ibsi", preprocessing=[{"step": "resample", "spacing": [2, 2, 2]}])
    assert settings.preprocessing[0].mode == "ibsi"
    assert ExtractSettings(preprocessing=[{"step": "resample", "spacing": [2]}]).preprocessing[0].mode == "radpipe"
    step = Resample(spacing=[2, 2, 2], interpolator="linear", mode="ibsi")
    values = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[:3, :3, :3] = 1
    image, roi, records = apply_preprocessing(_image(values), _image(mask), [step])
    assert int(sitk.GetArrayFromImage(roi).sum()) == 4
    assert records[0]["params"]["mode"] == "ibsi"


def test_bin_alignment_and_pyradiomics_resampling_are_refused_with_ibsi():
    assert bin_edges_aligned(-500, 25) and not bin_edges_aligned(-510, 25)
    with pytest.raises(ConfigError, match="multiple of binWidth"):
        ExtractSettings(interpolation="ibsi", setting={"binWidth": 25, "resegmentRange": [-510, 400]}
                        ).resolve_paths(Path("."))
    with pytest.raises(ConfigError, match="resampledPixelSpacing"):
        ExtractSettings(interpolation="ibsi", setting={"resampledPixelSpacing": [2, 2, 2]}).resolve_paths(Path("."))
    ExtractSettings(interpolation="ibsi", setting={"binWidth": 25, "resegmentRange": [-1000, 400]}
                    ).resolve_paths(Path("."))


@pytest.mark.realdata
@pytest.mark.parametrize("config", ["config_B", "config_C", "config_D", "config_E"])
def test_ct_phantom_after_interpolation_matches_ibsi_diagnostics(data_dir: Path, config: str):
    """Image size, ROI voxel count and ROI intensities after interpolation, within the diagnostics' tolerances."""
    from radpipe.extract.ibsi_check import CONFIGS, read_phantom

    diagnostics = pd.read_csv(data_dir / "ibsi" / "ibsi1_ct_phantom_diagnostics.csv")
    expected = diagnostics[diagnostics.data_set == config].set_index("diagnostic")
    spec = CONFIGS[config]
    image, mask = read_phantom(config, data_dir / "ibsi")
    image, mask, _ = ibsi_resample(image, mask, spec.spacing, order=spec.order)
    values = sitk.GetArrayFromImage(image)
    roi = sitk.GetArrayFromImage(mask) > 0
    measured = {
        "img_dim_x_interp_img": image.GetSize()[0], "img_dim_y_interp_img": image.GetSize()[1],
        "img_dim_z_interp_img": image.GetSize()[2],
        "morph_mask_vox_count_interp_roi": int(roi.sum()),
        "int_mask_mean_int_interp_roi": float(values[roi].mean()),
        "int_mask_min_int_interp_roi": float(values[roi].min()),
        "int_mask_max_int_interp_roi": float(values[roi].max()),
    }
    for name, value in measured.items():
        reference, tolerance = expected.loc[name, "reference_value"], expected.loc[name, "tolerance"]
        rounded = float(f"{value:.3g}")
        assert abs(rounded - reference) <= tolerance + 1e-9, (name, value, reference, tolerance)
