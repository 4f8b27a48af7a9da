"""Registration on synthetic images with a known answer: recovery, determinism, QC failures, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.errors import ConfigError
from radpipe.register import (
    RegistrationSettings,
    dice,
    displace_image,
    map_modality,
    mask_to_moving,
    register_images,
    registration_settings,
    roi_points,
    target_registration_error,
)

SPACING = (1.5, 1.5, 2.5)


def blobs(size=(48, 48, 28)) -> tuple[sitk.Image, sitk.Image]:
    """Three Gaussian blobs of different sizes and brightness (no symmetry, so rotations are identifiable) and a
    mask of the largest one."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in size[::-1]), indexing="ij")
    values = np.zeros(size[::-1])
    for (cx, cy, cz), sigma, height in (((20, 22, 13), 6.0, 100), ((33, 18, 10), 3.5, 60), ((26, 34, 17), 4.0, 80)):
        values += height * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2))
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(SPACING)
    mask = sitk.Cast(sitk.BinaryThreshold(image, 50, 1e9), sitk.sitkUInt8)
    return image, mask


def rigid(centre, angles=(0.08, -0.05, 0.1), shift=(4.0, -3.0, 2.0)) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(tuple(map(float, centre)))
    transform.SetRotation(*angles)
    transform.SetTranslation(shift)
    return transform


@pytest.fixture(scope="module")
def pair():
    image, mask = blobs()
    truth = rigid(roi_points(mask).mean(axis=0))
    return image, mask, truth, displace_image(image, truth), displace_image(mask, truth)


def test_rigid_transform_is_recovered_to_within_a_voxel(pair):
    image, mask, truth, moved, moved_mask = pair
    points = roi_points(mask)
    before = target_registration_error(sitk.Transform(3, sitk.sitkIdentity), truth, points)
    result = register_images(image, moved, settings={"metric": "ms"}, fixed_mask=mask, moving_mask=moved_mask)
    after = target_registration_error(result.transform, truth, points)
    assert before > 4 and after < 0.5 * min(SPACING)  # well under one voxel
    assert result.ok and result.converged and result.iterations > 0
    assert result.dice_before < 0.8 and result.dice_after > 0.95
    # mutual information (the multimodal metric) on an intensity-inverted copy finds it too
    inverted = displace_image(sitk.Cast(200 - image, sitk.sitkFloat32), truth)
    result_mi = register_images(image, inverted, settings={"metric": "mi"})
    assert target_registration_error(result_mi.transform, truth, points) < min(SPACING)


def test_same_inputs_give_identical_transforms(pair):
    image, _, _, moved, _ = pair
    first = register_images(image, moved, settings={"metric": "mi"})
    second = register_images(image, moved, settings={"metric": "mi"})
    assert first.transform.GetParameters() == second.transform.GetParameters()
    assert first.metric_value == second.metric_value
    # another seed draws another sample: close, but not the same numbers
    other = register_images(image, moved, settings={"metric": "mi", "seed": 1})
    assert other.transform.GetParameters() != first.transform.GetParameters()


def test_affine_recovers_a_scaled_image(pair):
    image, mask, _, _, _ = pair
    truth = sitk.AffineTransform(3)
    truth.SetCenter(tuple(roi_points(mask).mean(axis=0)))
    truth.SetMatrix((1.08, 0.03, 0, 0, 0.95, 0, 0, 0, 1.04))
    truth.SetTranslation((2.0, 1.0, -1.0))
    result = register_images(image, displace_image(image, truth), settings={"transform": "affine", "metric": "ms"})
    assert target_registration_error(result.transform, truth, roi_points(mask)) < 0.5 * min(SPACING)


def test_bspline_starts_from_the_affine_and_improves_the_metric(pair):
    image, _, _, moved, _ = pair
    quick = {"metric": "ms", "shrink_factors": [2], "smoothing_sigmas_mm": [1.0], "iterations": 15}  # ~1 s
    affine = register_images(image, moved, settings={"transform": "affine", **quick})
    bspline = register_images(image, moved, settings={"transform": "bspline", **quick})
    assert bspline.ok and bspline.transform.GetName() == "CompositeTransform"
    assert bspline.metric_value <= affine.metric_value


def test_divergence_is_a_failed_qc_row_with_a_reason(pair):
    image, mask, _, moved, moved_mask = pair
    # images that do not overlap at all: the optimizer cannot start
    far = sitk.Image(moved)
    far.SetOrigin((1000.0, 1000.0, 1000.0))
    result = register_images(image, far, settings={"metric": "ms"})
    assert result.status == "failed" and "do not overlap" in result.reason
    assert result.qc_row()["status"] == "failed"
    # a transform beyond the plausible shift
    result = register_images(image, moved, settings={"metric": "ms", "max_shift_mm": 1.0}, fixed_mask=mask)
    assert result.status == "failed" and "moved the region of interest" in result.reason
    # a mask that lands elsewhere: the overlap check fails the registration
    wrong = sitk.Image(moved_mask.GetSize(), sitk.sitkUInt8)
    wrong.CopyInformation(moved_mask)
    wrong[2:8, 2:8, 2:6] = 1
    image_on_grid, mask_on_grid, row = map_modality(image, moved, wrong, {"metric": "ms"}, fixed_mask=mask)
    assert row["status"] == "failed" and "Dice" in row["reason"] and row["dice_after"] < 0.5


def test_map_modality_puts_image_and_mask_on_the_fixed_grid(pair):
    image, mask, _, moved, moved_mask = pair
    image_on_grid, mask_on_grid, row = map_modality(image, moved, moved_mask, {"metric": "ms",
                                                                               "mask_interpolation": "linear"},
                                                    fixed_mask=mask)
    assert image_on_grid.GetSize() == image.GetSize() and image_on_grid.GetSpacing() == image.GetSpacing()
    assert row["status"] == "ok" and dice(mask_on_grid, mask) > 0.95
    inside = sitk.GetArrayViewFromImage(mask) > 0
    assert np.abs(sitk.GetArrayViewFromImage(image_on_grid)[inside] - sitk.GetArrayViewFromImage(image)[inside]
                  ).mean() < 1.0  # intensities 50–100 inside the mask
    # mask transfer the other way: the fixed mask onto the moving grid
    result = register_images(image, moved, settings={"metric": "ms"})
    assert dice(mask_to_moving(mask, moved, result.transform), moved_mask) > 0.95


def test_settings_refuse_unknown_keys_and_mismatched_levels():
    with pytest.raises(ConfigError, match="trasnform"):
        registration_settings({"trasnform": "rigid"})
    with pytest.raises(ConfigError, match="one value per pyramid level"):
        registration_settings({"shrink_factors": [4, 2, 1], "smoothing_sigmas_mm": [2, 0]})
    assert RegistrationSettings().threads == 1


def test_cli_registers_files_and_exits_2_on_a_missing_file(tmp_path, pair):
    image, mask, truth, moved, moved_mask = pair
    for name, item in {"fixed": image, "moving": moved, "fixed_mask": mask, "moving_mask": moved_mask}.items():
        sitk.WriteImage(item, str(tmp_path / f"{name}.nii.gz"))
    runner = CliRunner()
    result = runner.invoke(app, ["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"),
                                 "--out", str(tmp_path / "out"), "--metric", "ms",
                                 "--fixed-mask", str(tmp_path / "fixed_mask.nii.gz"),
                                 "--moving-mask", str(tmp_path / "moving_mask.nii.gz")])
    assert result.exit_code == 0, result.output
    qc = pd.read_csv(tmp_path / "out" / "registration_qc.csv")
    assert qc.loc[0, "status"] == "ok" and qc.loc[0, "dice_after"] > 0.95
    written = sitk.ReadTransform(str(tmp_path / "out" / "transform.tfm"))
    assert target_registration_error(written, truth, roi_points(mask)) < 0.5 * min(SPACING)
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 10_000
    assert dice(sitk.ReadImage(str(tmp_path / "out" / "moved_mask.nii.gz")), mask) > 0.95

    missing = runner.invoke(app, ["register", str(tmp_path / "nope.nii.gz"), str(tmp_path / "moving.nii.gz"),
                                  "--out", str(tmp_path / "out2")])
    assert missing.exit_code == 2 and "nope.nii.gz" in missing.output and not (tmp_path / "out2").exists()
    wrong = runner.invoke(app, ["register", str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz"),
                                "--out", str(tmp_path / "out3"), "--transform", "rigd"])
    assert wrong.exit_code == 2 and "--transform" in wrong.output
