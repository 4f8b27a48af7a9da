"""DICOM input: series reading (CT in HU, PET in SUV), RTSTRUCT rasterisation and DICOM-SEG, on
small synthetic series written with pydicom and on the IBSI CT phantom (60 slices + RTSTRUCT)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from radpipe.errors import CaseError
from radpipe.extract.dicom import (
    is_dicom_folder,
    rasterise_rtstruct,
    read_dicom_seg,
    read_dicom_series,
    suv_body_weight_factor,
)
from tests.dicom_trees import square, write_rtstruct, write_seg, write_series


def _leaks(texts) -> list[str]:
    joined = " ".join(str(t) for t in texts)
    return [v for v in ("Doe", "Jane", "MRN-4711", "19610203", "ACC-99812") if v in joined]


def _image_texts(image: sitk.Image) -> list[str]:
    return [f"{k}={image.GetMetaData(k)}" for k in image.GetMetaDataKeys()]


def _stored(shape=(5, 6, 7), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3000, size=shape).astype(np.uint16)


# ----------------------------------------------------------------------------------- folders and series


def test_is_dicom_folder_checks_the_preamble(tmp_path):
    write_series(tmp_path / "ct", _stored())
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.dcm").write_text("not really DICOM")
    assert is_dicom_folder(tmp_path / "ct")
    assert not is_dicom_folder(tmp_path / "text")
    assert not is_dicom_folder(tmp_path / "absent")
    assert not is_dicom_folder(tmp_path / "ct" / "slice001.dcm")


def test_ct_series_is_read_in_hounsfield_units_with_its_geometry(tmp_path):
    stored = _stored()
    write_series(tmp_path, stored, z_positions=[10.0, 12.5, 15.0, 17.5, 20.0], slope=1.0, intercept=-1024)
    image, notes = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored.astype(np.float32) - 1024)
    assert image.GetSpacing() == pytest.approx((0.8, 0.8, 2.5))
    assert image.GetOrigin() == pytest.approx((-10.0, -20.0, 10.0))
    assert image.GetMetaData("radpipe_intensity_units") == "HU"
    assert any("intercept -1024" in n and "checked" in n for n in notes)
    assert not _leaks(notes + _image_texts(image))


def test_slices_are_sorted_by_position_not_by_file_name(tmp_path):
    stored = _stored()
    write_series(tmp_path, stored, z_positions=[20.0, 17.5, 15.0, 12.5, 10.0])
    image, _ = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored[::-1].astype(np.float32) - 1024)
    assert image.GetOrigin()[2] == pytest.approx(10.0)


def test_several_series_need_a_uid_and_the_error_lists_them(tmp_path):
    ct = write_series(tmp_path, _stored(), prefix="ct")
    pet = write_series(tmp_path, _stored((3, 6, 7)), modality="PT", prefix="pt", Units="BQML")
    with pytest.raises(CaseError) as info:
        read_dicom_series(tmp_path)
    message = str(info.value)
    assert ct in message and pet in message
    assert "CT, 5 slice(s)" in message and "PT, 3 slice(s)" in message
    assert not _leaks([message])

    image, _ = read_dicom_series(tmp_path, series_uid=pet)
    assert image.GetSize() == (7, 6, 3)
    with pytest.raises(CaseError, match="not in"):
        read_dicom_series(tmp_path, series_uid="1.2.3.4")


def test_a_missing_slice_is_reported_with_its_position(tmp_path):
    write_series(tmp_path, _stored((4, 6, 7)), z_positions=[0.0, 2.5, 7.5, 10.0])
    with pytest.raises(CaseError, match=r"1 slice\(s\) missing .* between 2.50 and 7.50 mm"):
        read_dicom_series(tmp_path)


def test_duplicated_slice_positions_are_refused(tmp_path):
    write_series(tmp_path, _stored((4, 6, 7)), z_positions=[0.0, 2.5, 2.5, 5.0])
    with pytest.raises(CaseError, match="occur more than once"):
        read_dicom_series(tmp_path)


def test_inconsistent_slice_spacing_is_refused(tmp_path):
    write_series(tmp_path, _stored((4, 6, 7)), z_positions=[0.0, 2.5, 5.0, 9.0])
    with pytest.raises(CaseError, match="inconsistent"):
        read_dicom_series(tmp_path)


def test_gantry_tilted_stack_is_refused(tmp_path):
    write_series(tmp_path, _stored((3, 6, 7)))
    for number, path in enumerate(sorted(tmp_path.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [-10.0, -20.0 + 0.9 * number, 2.5 * number]  # 20 degree tilt
        ds.save_as(path)
    with pytest.raises(CaseError, match="gantry tilt"):
        read_dicom_series(tmp_path)


def test_folder_without_dicom_is_a_case_error(tmp_path):
    (tmp_path / "readme.txt").write_text("empty")
    with pytest.raises(CaseError, match="No DICOM image series"):
        read_dicom_series(tmp_path)
    with pytest.raises(CaseError, match="not found"):
        read_dicom_series(tmp_path / "absent")


# ------------------------------------------------------------------------------------------------- PET


def _pet_tags(**overrides):
    info = Dataset()
    info.RadionuclideTotalDose = "370000000"  # 370 MBq
    info.RadionuclideHalfLife = "6586.2"  # F-18, s
    info.RadiopharmaceuticalStartTime = "090000"
    tags = {
        "Units": "BQML",
        "DecayCorrection": "START",
        "CorrectedImage": ["ATTN", "DECY"],
        "PatientWeight": "70",
        "SeriesDate": "20240102",
        "SeriesTime": "100000",  # 60 min after injection
        "AcquisitionTime": "100000",
        "RadiopharmaceuticalInformationSequence": Sequence([info]),
    }
    tags.update(overrides)
    return tags


def test_pet_is_converted_to_suv_body_weight(tmp_path):
    stored = _stored((3, 6, 7))
    slopes = [0.5, 1.25, 2.0]  # PET slices carry their own scale
    write_series(tmp_path, stored, modality="PT", slope=slopes, intercept=0, **_pet_tags())
    image, notes = read_dicom_series(tmp_path)

    decayed_dose = 370e6 * 2 ** (-3600 / 6586.2)
    expected = stored * np.array(slopes)[:, None, None] * 70_000 / decayed_dose
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), expected, rtol=1e-5)
    assert image.GetMetaData("radpipe_intensity_units") == "SUVbw g/ml"
    assert any("SUV body-weight" in n and "60.0 min" in n for n in notes)
    assert not _leaks(notes + _image_texts(image))


def test_pet_without_weight_keeps_raw_values_and_names_the_tag(tmp_path):
    stored = _stored((3, 6, 7))
    tags = _pet_tags()
    del tags["PatientWeight"]
    write_series(tmp_path, stored, modality="PT", slope=1.0, intercept=0, **tags)
    image, notes = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored.astype(np.float32))
    assert image.GetMetaData("radpipe_intensity_units") == "BQML"
    assert any("not SUV" in n and "PatientWeight" in n for n in notes)


@pytest.mark.parametrize(
    ("overrides", "expected_factor", "phrase"),
    [
        ({"DecayCorrection": "ADMIN"}, 70_000 / 370e6, "ADMIN"),
        ({"Units": "CNTS"}, None, "Units is CNTS"),
        ({"DecayCorrection": "NONE"}, None, "DecayCorrection is NONE"),
        ({"RadiopharmaceuticalInformationSequence": Sequence([])}, None, "RadiopharmaceuticalInformationSequence"),
        ({"SeriesTime": "083000", "AcquisitionTime": "083000"}, None, "implausible"),
    ],
)
def test_suv_factor_from_header(overrides, expected_factor, phrase):
    header = Dataset()
    for key, value in _pet_tags(**overrides).items():
        setattr(header, key, value)
    factor, notes = suv_body_weight_factor([header])
    assert factor == (pytest.approx(expected_factor) if expected_factor else None)
    assert any(phrase in n for n in notes)


def test_suv_missing_half_life_is_named():
    header = Dataset()
    for key, value in _pet_tags().items():
        setattr(header, key, value)
    del header.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife
    factor, notes = suv_body_weight_factor([header])
    assert factor is None and "RadionuclideHalfLife" in notes[0]


# --------------------------------------------------------------------------------- synthetic RTSTRUCT


_square = square


def test_rtstruct_fills_pixel_centres_inside_and_treats_inner_contours_as_holes(tmp_path):
    # 1 mm pixels from (0, 0): a 10 x 10 mm square from 1.5 to 11.5 mm holds pixel centres 2..11
    # (10 x 10), and a hole from 4.5 to 6.5 mm removes centres 5..6 (2 x 2).
    frame = generate_uid()
    write_series(tmp_path / "ct", _stored((3, 16, 16)), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0),
                 z_positions=[0.0, 2.5, 5.0], frame_uid=frame)
    contours = [_square(1.5, 1.5, 11.5, 11.5, 2.5), _square(4.5, 4.5, 6.5, 6.5, 2.5)]
    write_rtstruct(tmp_path / "rs.dcm", frame, {"Lesion": contours, "Lesion-edge": contours[:1], "Body": []})

    mask, notes = rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "lesion")
    array = sitk.GetArrayFromImage(mask)
    assert mask.GetPixelIDValue() == sitk.sitkUInt8 and set(np.unique(array)) == {0, 1}
    assert array.sum() == 100 - 4 and array[1].sum() == 96 and array[[0, 2]].sum() == 0
    assert array[1, 2:12, 2:12].sum() == 96 and array[1, 5:7, 5:7].sum() == 0
    assert any("96 voxels" in n for n in notes)
    assert not _leaks(notes + _image_texts(mask))

    with pytest.raises(CaseError) as info:
        rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "lesion.*")
    assert "'Lesion' (number 1)" in str(info.value) and "'Lesion-edge' (number 2)" in str(info.value)
    with pytest.raises(CaseError) as info:
        rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "GTV")
    assert "available: 'Lesion' (number 1), 'Lesion-edge' (number 2), 'Body' (number 3)" in str(info.value)
    with pytest.raises(CaseError, match="no contours"):
        rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "body")


def test_rtstruct_from_another_frame_of_reference_is_refused(tmp_path):
    write_series(tmp_path / "ct", _stored((3, 16, 16)), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0))
    write_rtstruct(tmp_path / "rs.dcm", generate_uid(), {"Lesion": [_square(1.5, 1.5, 11.5, 11.5, 2.5)]})
    with pytest.raises(CaseError, match="frame of reference"):
        rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "Lesion")


def test_rtstruct_between_slices_is_refused(tmp_path):
    frame = generate_uid()
    write_series(tmp_path / "ct", _stored((3, 16, 16)), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0), frame_uid=frame)
    write_rtstruct(tmp_path / "rs.dcm", frame, {"Lesion": [_square(1.5, 1.5, 11.5, 11.5, 1.25)]})
    with pytest.raises(CaseError, match="between two slices"):
        rasterise_rtstruct(tmp_path / "rs.dcm", tmp_path / "ct", "Lesion")


# ---------------------------------------------------------------------------- IBSI CT phantom (real data)


@pytest.fixture(scope="module")
def phantom(data_dir):
    root = data_dir / "ibsi" / "ct_phantom"
    return {
        "series": root / "dicom" / "image",
        "rtstruct": root / "dicom" / "rtstruct" / "DCM_RS_00060.dcm",
        "image": sitk.ReadImage(str(root / "image.nii.gz")),
        "mask": sitk.ReadImage(str(root / "mask.nii.gz")),
    }


@pytest.mark.realdata
def test_ct_phantom_series_matches_the_reference_nifti_voxel_for_voxel(phantom):
    image, notes = read_dicom_series(phantom["series"])
    reference = phantom["image"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))
    assert image.GetSize() == reference.GetSize() == (204, 201, 60)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-9)
    assert any("intercept -1000" in n and "exact" in n for n in notes)
    assert not _leaks(notes + _image_texts(image)) and "PAT1" not in " ".join(notes + _image_texts(image))


@pytest.mark.realdata
def test_ct_phantom_rtstruct_reproduces_the_reference_mask(phantom):
    mask, notes = rasterise_rtstruct(phantom["rtstruct"], phantom["series"], "gtv-1")
    ours = sitk.GetArrayFromImage(mask).astype(bool)
    reference = sitk.GetArrayFromImage(phantom["mask"]).astype(bool)
    dice = 2 * (ours & reference).sum() / (ours.sum() + reference.sum())
    assert reference.sum() == 125256
    assert dice >= 0.99
    assert (ours ^ reference).sum() == 0  # pixel-centre rule: the same mask, not just close
    assert any("GTV-1" in n and "125256 voxels" in n for n in notes)

    with pytest.raises(CaseError, match="available: 'GTV-1'"):
        rasterise_rtstruct(phantom["rtstruct"], mask, "GTV")


@pytest.mark.realdata
def test_ct_phantom_rtstruct_roi_matching_several_names_lists_them(phantom, tmp_path):
    dataset = pydicom.dcmread(phantom["rtstruct"])
    extra = Dataset()
    extra.ROINumber = 2
    extra.ROIName = "GTV-2"
    extra.ReferencedFrameOfReferenceUID = dataset.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    dataset.StructureSetROISequence.append(extra)
    dataset.save_as(tmp_path / "rs.dcm")
    with pytest.raises(CaseError) as info:
        rasterise_rtstruct(tmp_path / "rs.dcm", phantom["image"], r"gtv-\d")
    assert "'GTV-1' (number 1), 'GTV-2' (number 2)" in str(info.value)


_write_seg = write_seg


@pytest.mark.realdata
def test_dicom_seg_round_trip_on_the_ct_phantom(phantom, tmp_path):
    gtv = sitk.GetArrayFromImage(phantom["mask"]).astype(bool)
    box = np.zeros_like(gtv)
    box[5:9, 40:60, 70:100] = True  # a second, disjoint segment away from the GTV's slices
    _write_seg(phantom["series"], {"GTV-1": gtv, "Box": box}, tmp_path / "seg.dcm")

    reference, _ = read_dicom_series(phantom["series"])
    mask, notes = read_dicom_seg(tmp_path / "seg.dcm", reference, "gtv-1")
    assert mask.GetPixelIDValue() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), gtv.astype(np.uint8))
    assert any("lie on the reference voxels" in n and "125256 voxels" in n for n in notes)

    by_number, _ = read_dicom_seg(tmp_path / "seg.dcm", phantom["series"], 2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_number), box.astype(np.uint8))

    with pytest.raises(CaseError) as info:
        read_dicom_seg(tmp_path / "seg.dcm", reference)
    assert "'GTV-1' (number 1), 'Box' (number 2)" in str(info.value)
    with pytest.raises(CaseError, match="no segment number 7"):
        read_dicom_seg(tmp_path / "seg.dcm", reference, 7)
