"""Mask QC on constructed masks: each rule fixes (and records) or rejects (with a reason)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from radpipe.errors import CaseError
from radpipe.extract.io import read_image, read_mask
from radpipe.extract.qc import QCRecord, check_mask, split_rois

SPACING = (0.8, 0.8, 3.0)
ORIGIN = (-100.0, -120.0, 40.0)


def _image(shape=(8, 16, 16)):
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(40, 10, shape).astype(np.float32))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def _mask(array, like=None, dtype=np.uint8):
    mask = sitk.GetImageFromArray(np.asarray(array, dtype=dtype))
    if like is not None:
        mask.CopyInformation(like)
    return mask


def _cube(value=1, shape=(8, 16, 16)):
    array = np.zeros(shape, dtype=np.uint8)
    array[2:5, 4:9, 5:11] = value
    return array


def _array(image):
    return sitk.GetArrayFromImage(image)


def test_clean_mask_passes_unchanged_without_records():
    image = _image()
    roi, records = check_mask(image, _mask(_cube(), image))
    assert records == []
    assert roi.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(_array(roi), _cube())


def test_0_255_mask_is_binarised_and_recorded():
    image = _image()
    roi, records = check_mask(image, _mask(_cube(255), image))
    assert records == [QCRecord("binarised", "mask values {0, 255} mapped to {0, 1}")]
    np.testing.assert_array_equal(_array(roi), _cube())
    assert roi.GetOrigin() == image.GetOrigin() and roi.GetSpacing() == image.GetSpacing()


def test_boolean_mask_saved_as_float_0_1_is_accepted():
    image = _image()
    roi, records = check_mask(image, _mask(_cube().astype(bool), image, dtype=np.float32))
    assert records == []
    assert int(_array(roi).sum()) == 3 * 5 * 6


def test_several_labels_without_choice_are_rejected_listing_them():
    image = _image()
    array = _cube()
    array[6, 10:12, 10:12] = 2
    array[7, 0, 0] = 3
    with pytest.raises(CaseError) as info:
        check_mask(image, _mask(array, image))
    assert info.value.reason == "mask has several labels (1, 2, 3); choose one with `label:` in the recipe"


def test_chosen_label_is_selected_and_others_left_out():
    image = _image()
    array = _cube()
    array[6, 10:12, 10:12] = 2
    roi, records = check_mask(image, _mask(array, image), label=2)
    assert _array(roi).sum() == 4
    assert records[0].action == "selected_label"
    assert "label 2 selected from labels 1, 2" in records[0].reason


def test_chosen_label_absent_lists_labels_present():
    image = _image()
    with pytest.raises(CaseError, match=r"label 1 chosen in the recipe is not in the mask; labels present: 255"):
        check_mask(image, _mask(_cube(255), image), label=1)


def test_empty_mask_is_rejected():
    image = _image()
    with pytest.raises(CaseError) as info:
        check_mask(image, _mask(np.zeros((8, 16, 16)), image))
    assert info.value.reason == "mask is empty: no voxel has a non-zero value"


def test_one_voxel_mask_passes_by_default_but_not_below_min_voxels():
    image = _image()
    array = np.zeros((8, 16, 16))
    array[3, 3, 3] = 1
    roi, _ = check_mask(image, _mask(array, image))
    assert _array(roi).sum() == 1
    with pytest.raises(CaseError, match=r"mask has 1 voxel with label 1, fewer than the minimum of 10"):
        check_mask(image, _mask(array, image), min_voxels=10)


def test_whole_image_mask_is_rejected():
    image = _image()
    with pytest.raises(CaseError, match=r"mask covers the whole image \(all 2048 voxels\)"):
        check_mask(image, _mask(np.ones((8, 16, 16)), image))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m.SetOrigin((ORIGIN[0] + 0.0004, *ORIGIN[1:])), "origin"),
        (lambda m: m.SetSpacing((0.8004, 0.8, 3.0)), "spacing"),
        (lambda m: m.SetDirection((1, 0.0005, 0, -0.0005, 1, 0, 0, 0, 1)), "direction"),
    ],
)
def test_geometry_within_tolerance_is_fixed_by_resampling_and_recorded(change, words):
    image = _image()
    mask = _mask(_cube(), image)
    change(mask)
    roi, records = check_mask(image, mask)
    assert [r.action for r in records] == ["resampled_mask"]
    assert f"mask {words}" in records[0].reason
    assert "resampled onto image grid (nearest neighbour)" in records[0].reason
    assert roi.GetOrigin() == image.GetOrigin() and roi.GetSpacing() == image.GetSpacing()
    assert roi.GetDirection() == image.GetDirection()
    np.testing.assert_array_equal(_array(roi), _cube())


def test_origin_far_off_is_rejected_with_both_values():
    image = _image()
    mask = _mask(_cube(), image)
    mask.SetOrigin((ORIGIN[0] + 2.5, *ORIGIN[1:]))
    with pytest.raises(CaseError) as info:
        check_mask(image, mask)
    reason = info.value.reason
    assert "mask origin (-97.5, -120, 40) differs from image origin (-100, -120, 40) by 2.5 mm" in reason
    assert "more than the tolerance 0.001 mm" in reason


def test_several_far_off_properties_are_each_named():
    image = _image()
    mask = _mask(_cube(), image)
    mask.SetSpacing((1.0, 1.0, 3.0))
    mask.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    with pytest.raises(CaseError) as info:
        check_mask(image, mask)
    assert "mask spacing (1, 1, 3) differs from image spacing (0.8, 0.8, 3)" in info.value.reason
    assert "mask direction" in info.value.reason


def test_size_mismatch_is_rejected():
    image = _image()
    mask = _mask(np.ones((8, 16, 20)))
    mask.SetSpacing(SPACING)
    mask.SetOrigin((-200.0, -120.0, 40.0))
    with pytest.raises(CaseError, match=r"mask size \(20, 16, 8\) differs from image size \(16, 16, 8\)"):
        check_mask(image, mask)


def test_cropped_label_map_on_the_image_grid_is_placed_back():
    image = _image()
    full = _cube()
    cropped = sitk.RegionOfInterest(_mask(full, image), [8, 7, 4], [4, 3, 1])
    roi, records = check_mask(image, cropped)
    assert [r.action for r in records] == ["resampled_mask"]
    assert "sub-region starting at image voxel (4, 3, 1)" in records[0].reason
    np.testing.assert_array_equal(_array(roi), full)


def test_dimension_mismatch_is_rejected():
    image = _image()
    with pytest.raises(CaseError, match="mask is 2D"):
        check_mask(image, _mask(np.ones((16, 16))))


def test_png_mask_without_spacing_takes_image_spacing(tmp_path):
    array = np.zeros((10, 12), dtype=np.uint8)
    array[2:6, 3:8] = 255
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([array] * 3, -1), isVector=True), str(tmp_path / "i.png"))
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "m.png"))
    image, _ = read_image(tmp_path / "i.png", spacing_2d=(0.1, 0.1))
    mask, _ = read_mask(tmp_path / "m.png")
    roi, records = check_mask(image, mask)
    assert [r.action for r in records] == ["adopted_image_geometry", "binarised"]
    assert roi.GetSpacing() == (0.1, 0.1) and _array(roi).sum() == 20


# --- split_rois --------------------------------------------------------------------------------------------


def _two_lesions():
    array = np.zeros((8, 16, 16), dtype=np.uint8)
    array[1:3, 1:3, 1:3] = 1  # 8 voxels
    array[4:7, 8:12, 8:12] = 2  # 48 voxels
    array[7, 15, 15] = 2  # a speck of label 2, separate component
    return array


def test_split_single_returns_the_binary_mask():
    mask = _mask(_two_lesions())
    [(name, roi)] = split_rois(mask, "single")
    assert name == "roi" and _array(roi).sum() == 57 and _array(roi).max() == 1


def test_split_per_label_names_and_counts():
    mask = _mask(_two_lesions(), _image())
    rois = split_rois(mask, "per_label")
    assert [(n, int(_array(r).sum())) for n, r in rois] == [("label_1", 8), ("label_2", 49)]
    assert all(r.GetPixelID() == sitk.sitkUInt8 and r.GetOrigin() == ORIGIN for _, r in rois)


def test_split_per_label_unknown_label_lists_present():
    with pytest.raises(CaseError, match=r"label 3 .* labels present: 1, 2"):
        split_rois(_mask(_two_lesions()), "per_label", labels=[3])


def test_split_per_component_orders_by_size_and_drops_specks():
    mask = _mask(_two_lesions())
    rois = split_rois(mask, "per_component")
    assert [(n, int(_array(r).sum())) for n, r in rois] == [("lesion_1", 48), ("lesion_2", 8), ("lesion_3", 1)]
    rois = split_rois(mask, "per_component", min_voxels=5)
    assert [(n, int(_array(r).sum())) for n, r in rois] == [("lesion_1", 48), ("lesion_2", 8)]


def test_split_per_component_ties_are_ordered_by_position():
    array = np.zeros((5, 5), dtype=np.uint8)
    array[4, 4] = array[0, 3] = array[2, 0] = 1
    rois = split_rois(_mask(array), "per_component")
    firsts = [tuple(int(v) for v in np.argwhere(_array(r))[0]) for _, r in rois]
    assert firsts == [(0, 3), (2, 0), (4, 4)]


def test_split_per_component_counts_diagonal_neighbours_as_one_lesion():
    array = np.zeros((4, 4), dtype=np.uint8)
    array[0, 0] = array[1, 1] = 1
    assert len(split_rois(_mask(array), "per_component")) == 1


# busi_0125: three drawn lesions, two of which overlap, so the union has two connected regions
EXPECTED_BUSI_0125_COMPONENTS = 2


@pytest.mark.realdata
def test_busi_image_with_two_extra_lesion_masks(data_dir):
    busi = data_dir / "busi"
    image, _ = read_image(busi / "images/busi_0125.png")
    paths = [busi / "masks/busi_0125.png", *sorted((busi / "masks_extra").glob("busi_0125_*.png"))]
    assert len(paths) == 3
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
    areas = []
    for value, path in enumerate(paths, 1):
        mask, _ = read_mask(path)
        roi, _ = check_mask(image, mask)
        binary = _array(roi).astype(bool)
        areas.append(int(binary.sum()))
        labels[binary] = value
    label_map = _mask(labels, image)
    rois = split_rois(label_map, "per_label")
    assert [name for name, _ in rois] == ["label_1", "label_2", "label_3"]
    # two of the drawn lesions share 19 pixels; the label map gives them to the later mask
    assert [int(_array(r).sum()) for _, r in rois] == [areas[0], areas[1] - 19, areas[2]]
    components = split_rois(label_map, "per_component")
    union = int((labels > 0).sum())
    assert sum(int(_array(r).sum()) for _, r in components) == union
    assert len(components) == EXPECTED_BUSI_0125_COMPONENTS


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["brain1", "breast1", "lung2"])
def test_pyradiomics_samples_pass_without_fixes(data_dir, case):
    folder = data_dir / "pyradiomics_samples"
    image, _ = read_image(folder / f"{case}_image.nrrd")
    mask, _ = read_mask(folder / f"{case}_label.nrrd")
    roi, records = check_mask(image, mask)
    assert records == []
    expected = {"brain1": 4137, "breast1": 143, "lung2": 24644}[case]
    assert int(_array(roi).sum()) == expected


@pytest.mark.realdata
def test_sts_pet_float_suv_and_0_1_mask(data_dir):
    image, notes = read_image(data_dir / "sts_pet/images/STS_001.nii.gz")
    mask, mask_notes = read_mask(data_dir / "sts_pet/masks/STS_001.nii.gz")
    assert notes == mask_notes == []
    assert image.GetPixelID() == sitk.sitkFloat32 and image.GetDimension() == 3
    roi, records = check_mask(image, mask)
    assert records == [] and int(_array(roi).sum()) == int(np.count_nonzero(_array(mask)))


def test_keep_labels_checks_geometry_and_keeps_labels_for_per_label_split():
    image = _image()
    mask = _mask(_two_lesions(), image)
    mask.SetOrigin((ORIGIN[0] + 0.0002, *ORIGIN[1:]))
    kept, records = check_mask(image, mask, keep_labels=True)
    assert [r.action for r in records] == ["resampled_mask"]
    np.testing.assert_array_equal(_array(kept), _two_lesions())
    assert [name for name, _ in split_rois(kept, "per_label")] == ["label_1", "label_2"]
    # a single-label 0/255 mask is still binarised, so per-label naming stays label_1
    single, records = check_mask(image, _mask(_cube(255), image), keep_labels=True)
    assert [r.action for r in records] == ["binarised"] and _array(single).max() == 1
