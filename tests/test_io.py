"""Reading images and masks: every odd input becomes a plain image plus a note, or a CaseError with a reason."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import SimpleITK as sitk

from radpipe.errors import CaseError
from radpipe.extract.io import read_image, read_mask


def _write(array, path, *, spacing=None, is_vector=False):
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def ct(tmp_path):
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 1000, size=(6, 8, 10)).astype(np.int16)


# --- good files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_volume_formats_read_unchanged_with_native_type_and_no_notes(tmp_path, ct, suffix):
    path = _write(ct, tmp_path / f"ct{suffix}", spacing=(0.7, 0.7, 2.5))
    image, notes = read_image(path)
    assert notes == []
    assert image.GetPixelID() == sitk.sitkInt16
    assert image.GetSpacing() == pytest.approx((0.7, 0.7, 2.5))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct)


def test_grey_rgb_png_keeps_exact_values_from_first_channel(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    path = _write(np.stack([grey] * 3, axis=-1), tmp_path / "us.png", is_vector=True)
    image, notes = read_image(path)
    assert image.GetDimension() == 2 and image.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), grey)
    assert any("equal R, G and B" in n for n in notes)
    assert any("no spacing" in n and "1 x 1" in n for n in notes)


def test_colour_rgba_png_to_luminance_with_alpha_dropped_and_recipe_spacing(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 128
    path = _write(rgba, tmp_path / "derm.png", is_vector=True)
    image, notes = read_image(path, spacing_2d=(0.1, 0.1))
    assert image.GetPixelID() == sitk.sitkFloat32
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), expected, rtol=1e-6)
    assert "alpha channel dropped" in notes
    assert "RGB image converted to greyscale by luminance (0.299R+0.587G+0.114B), float32" in notes
    assert "2D file has no spacing; using 0.1 x 0.1 mm from the recipe" in notes
    assert image.GetSpacing() == (0.1, 0.1)


def test_4d_with_trailing_singleton_is_read_as_3d_with_a_note(tmp_path, ct):
    volume = sitk.GetImageFromArray(ct)
    path = tmp_path / "one_volume.mha"
    sitk.WriteImage(sitk.JoinSeries([volume]), str(path))
    image, notes = read_image(path)
    assert image.GetDimension() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct)
    assert "trailing dimensions of size 1" in notes[0]


# --- rejected files ----------------------------------------------------------------------------------------


def test_zero_byte_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "case7.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(CaseError, match=r"case7\.nii\.gz is empty \(0 bytes\).*could not be read as an image"):
        read_image(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(CaseError, match="file not found"):
        read_image(tmp_path / "nope.nrrd")


def test_text_named_nifti_is_rejected_without_raw_itk_noise(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("patient notes, not an image\n")
    with pytest.raises(CaseError) as info:
        read_image(path)
    assert "notes.nii.gz could not be read as an image" in info.value.reason
    assert "Exception thrown" not in info.value.reason and ".cxx" not in info.value.reason


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".jpg"])
def test_truncated_files_are_rejected(tmp_path, suffix):
    array = (np.random.default_rng(1).random((40, 60)) * 255).astype(np.uint8)
    if suffix in (".png", ".jpg"):
        path = _write(array, tmp_path / f"cut{suffix}")
    else:
        path = _write(np.stack([array] * 8).astype(np.float32), tmp_path / f"cut{suffix}")
    _truncate(path)
    with pytest.raises(CaseError) as info:
        read_image(path)
    assert f"cut{suffix}" in info.value.reason
    assert "could not be read as an image" in info.value.reason


def test_truncated_nifti_reason_gives_expected_and_actual_bytes(tmp_path, ct):
    path = _truncate(_write(ct, tmp_path / "ct.nii"))
    with pytest.raises(CaseError, match=r"truncated \(the NIfTI header announces \d+ bytes, the file holds \d+\)"):
        read_image(path)


def test_4d_series_is_rejected(tmp_path, ct):
    volumes = [sitk.GetImageFromArray(ct) for _ in range(3)]
    path = tmp_path / "dce.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(volumes), str(path))
    with pytest.raises(CaseError, match=r"4D image of size 10 x 8 x 6 x 3"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_nan_and_inf_voxels_are_counted(tmp_path, suffix):
    # ITK's NIfTI reader silently turns NaN into 0, so NIfTI files are scanned before reading
    array = np.ones((3, 4, 5), dtype=np.float32)
    array[0, 0, :2] = np.nan
    array[1, 1, 1] = np.inf
    path = _write(array, tmp_path / f"pet{suffix}")
    with pytest.raises(CaseError, match=r"has 2 NaN and 1 infinite voxels out of 60"):
        read_image(path)


def test_vector_field_is_not_taken_for_colour(tmp_path):
    field = np.zeros((3, 4, 5, 3), dtype=np.float32)
    path = _write(field, tmp_path / "deformation.nrrd", is_vector=True)
    with pytest.raises(CaseError, match=r"3 values per voxel.*scalar images and RGB/RGBA"):
        read_image(path)


def test_dicom_folder_without_dicom_module_says_support_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "radpipe.extract.dicom", None)
    with pytest.raises(CaseError, match="DICOM support is not available"):
        read_image(tmp_path)


def test_dicom_folder_dispatches_to_read_dicom_series(tmp_path, monkeypatch, ct):
    calls = []

    def read_dicom_series(folder):
        calls.append(folder)
        return sitk.GetImageFromArray(ct), ["CT rescaled to HU"]

    monkeypatch.setitem(sys.modules, "radpipe.extract.dicom",
                        types.SimpleNamespace(read_dicom_series=read_dicom_series))
    image, notes = read_image(tmp_path)
    assert calls == [tmp_path] and notes == ["CT rescaled to HU"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct)


# --- masks -------------------------------------------------------------------------------------------------


def test_uint8_0_255_mask_keeps_its_values_for_qc_to_binarise(tmp_path):
    array = np.zeros((10, 12), dtype=np.uint8)
    array[2:5, 3:7] = 255
    mask, notes = read_mask(_write(array, tmp_path / "m.png"), spacing_2d=(0.2, 0.3))
    assert notes == ["2D file has no spacing; using 0.2 x 0.3 mm from the recipe"]
    assert mask.GetPixelID() == sitk.sitkUInt8 and mask.GetSpacing() == (0.2, 0.3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), array)


def test_float_mask_with_whole_values_is_cast_with_a_note(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 1:3, 1:4] = 1.0
    mask, notes = read_mask(_write(array, tmp_path / "m.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), array.astype(np.uint8))
    assert notes == ["float mask with whole-number values {0, 1} cast to 8-bit unsigned integer"]


def test_float_mask_with_fractional_values_is_rejected_listing_them(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 1, 1], array[1, 2, 2] = 0.7, 1.0
    with pytest.raises(CaseError, match=r"not integer-valued \(distinct values 0, 0\.7, 1\)"):
        read_mask(_write(array, tmp_path / "prob.nii.gz"))


def test_negative_labels_are_rejected(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[0, 0, 0] = -1
    with pytest.raises(CaseError, match="negative labels"):
        read_mask(_write(array, tmp_path / "m.nrrd"))


def test_signed_label_map_becomes_unsigned_with_same_labels(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[0, 0, 0], array[1, 1, 1] = 3, 300
    mask, _ = read_mask(_write(array, tmp_path / "m.nrrd"))
    assert mask.GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), array)


def test_rgba_mask_with_opaque_alpha_uses_first_channel(tmp_path):
    rgba = np.zeros((6, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[2:4, 2:5, :3] = 255
    mask, notes = read_mask(_write(rgba, tmp_path / "m.png", is_vector=True))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), rgba[..., 0])
    assert notes[0] == "RGBA mask with equal colour channels: the first channel used"


def test_coloured_mask_is_any_nonzero_channel(tmp_path):
    rgb = np.zeros((6, 7, 3), dtype=np.uint8)
    rgb[1, 1, 0] = 255  # red
    rgb[4, 5, 2] = 255  # blue
    mask, notes = read_mask(_write(rgb, tmp_path / "m.png", is_vector=True))
    expected = np.zeros((6, 7), dtype=np.uint8)
    expected[1, 1] = expected[4, 5] = 1
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), expected)
    assert "any channel is non-zero" in notes[0]


def test_mask_drawn_in_alpha_channel_uses_alpha(tmp_path):
    rgba = np.zeros((6, 7, 4), dtype=np.uint8)
    rgba[2:4, 2:5, 3] = 255
    mask, notes = read_mask(_write(rgba, tmp_path / "m.png", is_vector=True))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), rgba[..., 3])
    assert "alpha channel used as the mask" in notes[0]


# --- real data ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_busi_rgb_ultrasound_and_0_255_mask(data_dir):
    from radpipe.extract.qc import check_mask

    busi = data_dir / "busi"
    raw_rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(busi / "images/busi_0001.png")))
    raw_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(busi / "masks/busi_0001.png")))
    image, notes = read_image(busi / "images/busi_0001.png", spacing_2d=(0.1, 0.1))
    assert image.GetDimension() == 2 and image.GetNumberOfComponentsPerPixel() == 1
    assert image.GetSize() == (raw_rgb.shape[1], raw_rgb.shape[0])
    assert image.GetSpacing() == (0.1, 0.1)
    grey = sitk.GetArrayFromImage(image)
    if (raw_rgb[..., 0] == raw_rgb[..., 1]).all() and (raw_rgb[..., 1] == raw_rgb[..., 2]).all():
        np.testing.assert_array_equal(grey, raw_rgb[..., 0])
    assert any("greyscale" in n for n in notes)

    mask, _ = read_mask(busi / "masks/busi_0001.png", spacing_2d=(0.1, 0.1))
    roi, records = check_mask(image, mask)
    assert [r.action for r in records] == ["binarised"]
    assert records[0].reason == "mask values {0, 255} mapped to {0, 1}"
    assert set(np.unique(sitk.GetArrayFromImage(roi))) == {0, 1}
    assert int(sitk.GetArrayFromImage(roi).sum()) == int(np.count_nonzero(raw_mask))


@pytest.mark.realdata
def test_busi_rgba_extra_mask(data_dir):
    path = data_dir / "busi/masks_extra/busi_0234_1.png"
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    mask, notes = read_mask(path)
    assert mask.GetNumberOfComponentsPerPixel() == 1 and mask.GetPixelID() == sitk.sitkUInt8
    assert int(np.count_nonzero(sitk.GetArrayFromImage(mask))) == int(np.count_nonzero(raw[..., 0]))
    assert notes and notes[0].startswith("RGBA mask")
