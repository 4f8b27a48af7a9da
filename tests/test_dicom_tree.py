"""DICOM trees as PACS and TCIA export them: layout detection, the series index, pairing, ROI choice, case ids,
modality in diagnostics.csv and no patient identifier in any output; the IBSI CT phantom as an export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from radpipe.cohort import detect_layout, discover, load_cohort
from radpipe.config import DatasetSpec
from radpipe.errors import ConfigError
from radpipe.extract.dicom_index import index_dicom_tree
from radpipe.extract.features import read_case_mask
from radpipe.extract.io import read_image
from radpipe.extract.runner import DigestMemo, case_inputs
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.dicom_trees import square, write_dicom_tree, write_rtstruct, write_series
from tests.synth import make_cohort


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return root, write_dicom_tree(root)


@pytest.fixture(scope="module")
def extracted(tree, tmp_path_factory):
    """The tree extracted with no configuration at all, plainly and pseudonymised."""
    root, _ = tree
    out = tmp_path_factory.mktemp("out")
    key = tmp_path_factory.mktemp("private") / "key.json"
    extract_cohort(load_cohort(root), ExtractSettings(), out / "plain")
    extract_cohort(load_cohort(root), ExtractSettings(), out / "pseudonymised", pseudonymise=key)
    return out / "plain", out / "pseudonymised", key


# --------------------------------------------------------------------------------------------- the index


def test_index_pairs_each_segmented_series_and_names_cases_by_patient(tree):
    root, written = tree
    index = index_dicom_tree(root)
    cases = {case.case_id: case for case in index.cases}
    assert sorted(cases) == sorted(written["cases"]) == ["PAT-A", "PAT-B_20240110", "PAT-B_20240301", "PAT-C", "PAT-D"]
    for case_id, expected in written["cases"].items():
        assert cases[case_id].modality == expected["modality"]
        assert cases[case_id].segmentation_modality == expected["segmentation"]
        assert len(cases[case_id].image_files) == 5
    # the PET series was split over two folders and is still one series of five slices
    assert cases["PAT-D"].folders == 2 and {f.parent.name for f in cases["PAT-D"].image_files} == {"PET_part1", "PET_part2"}
    assert cases["PAT-C"].segmentation.name == "seg.dcm"
    assert len(index.unsegmented) == written["unsegmented"] == 1 and "CT series 1" in index.unsegmented[0]
    assert index.n_files == index.n_dicom + 1  # README.txt skipped
    assert ("5 case(s) (3 CT, 1 MR, 1 PT)" in index.summary()
            and "1 image series without an RTSTRUCT or SEG (not cases)" in index.summary()
            and "1 series split across folders" in index.summary())


def test_missing_references_and_ambiguities_are_problems_naming_the_series(tree):
    root, written = tree
    problems = dict(index_dicom_tree(root).problems)
    assert sorted(problems) == sorted(written["problems"])
    for case_id, words in written["problems"].items():
        for word in words:
            assert word in problems[case_id], (case_id, word)


def test_case_ids_stay_unique_for_two_segmented_series_of_one_study(tmp_path):
    study = generate_uid()
    for number in (2, 4):
        frame = generate_uid()
        uid = write_series(tmp_path / f"s{number}", np.ones((3, 8, 8), np.uint16), spacing=(1.0, 1.0),
                           origin_xy=(0.0, 0.0), frame_uid=frame, study_uid=study, SeriesNumber=number,
                           StudyDate="20200101", PatientID="P7")
        write_rtstruct(tmp_path / f"rs{number}" / "rs.dcm", frame, {"GTV": [square(1.5, 1.5, 5.5, 5.5, 2.5)]},
                       referenced_series=uid, PatientID="P7")
    assert sorted(c.case_id for c in index_dicom_tree(tmp_path).cases) == ["P7_20200101_s2", "P7_20200101_s4"]


# ------------------------------------------------------------------------------------------ layout detection


def test_detect_layout_recognises_each_layout(tmp_path, tree):
    folders = make_cohort(tmp_path / "folders", n=3)
    guess = detect_layout(folders)
    assert guess.layout == "folders" and guess.spec.layout == "folders"
    assert guess.summary == "images/ + masks/ folders: 3 images, 3 masks, labels.csv"

    per_case = tmp_path / "per_case"
    for case_id in ("case00", "case01"):
        (per_case / case_id).mkdir(parents=True)
        shutil.copy(folders / "images" / f"{case_id}.nii.gz", per_case / case_id / "image.nii.gz")
        shutil.copy(folders / "masks" / f"{case_id}.nii.gz", per_case / case_id / "mask.nii.gz")
    guess = detect_layout(per_case)
    assert guess.layout == "per_case" and guess.summary == "per-case folders: 2 cases (image.nii.gz + mask.nii.gz)"
    assert [c.case_id for c in load_cohort(per_case).cases] == ["case00", "case01"]  # no datasets.yaml needed

    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "batch.csv").write_text(f"Image,Mask\n{folders}/images/case00.nii.gz,{folders}/masks/case00.nii.gz\n")
    guess = detect_layout(tmp_path / "batch")
    assert guess.layout == "pyradiomics_csv" and guess.spec.batch_csv == "batch.csv"
    assert guess.summary == "pyradiomics batch CSV batch.csv: 1 rows"

    root, _ = tree
    guess = detect_layout(root)
    assert guess.layout == "dicom" and guess.summary == "DICOM tree: 45 files in 17 folder(s)"


def test_nothing_fits_lists_what_was_found_and_what_is_accepted(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    (tmp_path / "b.nii.gz").write_bytes(b"x")
    (tmp_path / "notes" / "c.txt").write_text("x")
    with pytest.raises(ConfigError) as info:
        detect_layout(tmp_path)
    message = str(info.value)
    assert "2 .nii.gz, 1 .txt file(s) and 1 sub-folder(s)" in message
    assert "images/ + masks/" in message and "image* and mask*" in message and "DICOM tree" in message
    assert "Image and Mask columns" in message
    with pytest.raises(ConfigError, match="does not exist"):
        detect_layout(tmp_path / "absent")


# ------------------------------------------------------------------------------- reading, ROI choice, cache


def test_rasterised_masks_match_the_drawn_masks_voxel_for_voxel(tree):
    root, written = tree
    cohort = load_cohort(root)
    assert cohort.spec.layout == "dicom"
    for case in cohort.cases:
        expected = written["cases"][case.case_id]
        image, notes = read_image(case.image)
        roi = "GTV-1" if case.case_id in written["needs_roi_name"] else None
        mask, mask_notes = read_case_mask(case.mask, image, roi)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), expected["mask"], err_msg=case.case_id)
        assert int(sitk.GetArrayViewFromImage(mask).sum()) == expected["voxels"]
        if expected["segmentation"] == "RTSTRUCT" and roi is None:
            assert any(f"'{expected['roi']}' used: the only structure" in n for n in mask_notes)


def test_a_changed_slice_changes_the_cache_key_of_a_split_series(tree, tmp_path):
    root, _ = tree
    copy = tmp_path / "copy"
    shutil.copytree(root / "PAT-D", copy / "PAT-D")
    cohort = load_cohort(copy)
    before = case_inputs(cohort, ExtractSettings(), DigestMemo())[0]
    assert before.case_id == "PAT-D" and isinstance(before.image, tuple) and len(before.image) == 5
    slice_file = copy / "PAT-D" / "PETCT" / "PET_part2" / "slice005.dcm"
    ds = pydicom.dcmread(slice_file)
    ds.RescaleSlope = "2"
    ds.save_as(slice_file)
    after = case_inputs(load_cohort(copy), ExtractSettings(), DigestMemo())[0]
    assert after.image_sha256 != before.image_sha256 and after.mask_sha256 == before.mask_sha256


def test_per_case_mask_folder_holding_the_rtstruct_is_the_mask(tree, tmp_path):
    """Finding 8: case/image/ (a DICOM series) + case/mask/ (one RTSTRUCT) was read as a second image series."""
    root, written = tree
    case = tmp_path / "cohort" / "case01"
    shutil.copytree(root / "PAT-B" / "20240110_CT_CHEST" / "2_CT", case / "image")
    shutil.copytree(root / "PAT-B" / "20240110_CT_CHEST" / "3_RTSTRUCT", case / "mask")
    guess = detect_layout(tmp_path / "cohort")
    assert guess.summary == "per-case folders: 1 cases (image/ + mask/)"
    result = extract_cohort(load_cohort(tmp_path / "cohort"), ExtractSettings(), tmp_path / "out")
    assert result.qc["status"].tolist() == ["ok"]
    diagnostics = pd.read_csv(tmp_path / "out" / "diagnostics.csv")
    assert diagnostics["roi_voxels"].tolist() == [written["cases"]["PAT-B_20240110"]["voxels"]]
    assert diagnostics["modality"].tolist() == ["CT"]


# ------------------------------------------------------------------------------------ extraction outputs


def test_extraction_with_no_configuration(tree, extracted):
    _, written = tree
    plain, _, _ = extracted
    qc = pd.read_csv(plain / "qc.csv", dtype=str, keep_default_na=False).set_index("case_id")
    ok = [case_id for case_id in written["cases"] if case_id not in written["needs_roi_name"]]
    assert (qc.loc[ok, "status"] == "ok").all()
    reason = qc.loc["PAT-A", "reason"]
    assert qc.loc["PAT-A", "status"] == "failed"
    assert "'GTV-1'" in reason and "'Node'" in reason and "extract.roi_name" in reason
    for case_id, words in written["problems"].items():
        assert qc.loc[case_id, "status"] == "failed" and all(word in qc.loc[case_id, "reason"] for word in words)

    diagnostics = pd.read_csv(plain / "diagnostics.csv").set_index("case_id")
    assert sorted(diagnostics.index) == sorted(ok)
    for case_id in ok:
        assert diagnostics.loc[case_id, "modality"] == written["cases"][case_id]["modality"]
        assert diagnostics.loc[case_id, "roi_voxels"] == written["cases"][case_id]["voxels"]
    assert diagnostics.loc["PAT-D", "image_file"] == "PET_part1/ +1 folder(s) (5 DICOM files)"


def test_roi_name_picks_the_structure(tree, tmp_path):
    root, written = tree
    cohort = load_cohort(root)
    result = extract_cohort(cohort.subset(["PAT-A"]), ExtractSettings(roi_name="gtv-.*"), tmp_path / "out")
    assert result.qc["status"].tolist() == ["ok"]
    diagnostics = pd.read_csv(tmp_path / "out" / "diagnostics.csv")
    assert diagnostics["roi_voxels"].tolist() == [written["cases"]["PAT-A"]["voxels"]]


def _output_bytes(folder: Path) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def test_no_patient_identifier_reaches_an_output(tree, extracted):
    _, written = tree
    plain, pseudonymised, key = extracted
    never = [*written["patient_names"], *(n.split("^")[0] for n in written["patient_names"]), written["birth_date"]]
    for folder in (plain, pseudonymised):
        for name, data in _output_bytes(folder):
            for identifier in never:
                assert identifier.encode() not in data, f"{identifier} in {folder.name}/{name}"
    # pseudonymised: not even the PatientID, nor the study dates that extend it
    for name, data in _output_bytes(pseudonymised):
        for identifier in [*written["patient_ids"], "20240110", "20240301"]:
            assert identifier.encode() not in data, f"{identifier} in {name}"
    features = pd.read_csv(pseudonymised / "features.csv")
    assert len(features) == 4 and features["case_id"].str.fullmatch(r"P[0-9a-f]{12}").all()
    # without --pseudonymise the case id is the PatientID by design
    assert "PAT-C" in set(pd.read_csv(plain / "features.csv")["case_id"])


def test_a_datasets_entry_may_say_layout_dicom(tree):
    root, _ = tree
    cohort = discover("export", DatasetSpec(root=root, layout="dicom", labels=None))
    assert len(cohort.cases) == 5 and len(cohort.problems) == 3
    assert any("DICOM tree: 5 case(s)" in note for note in cohort.notes)


# ------------------------------------------------------------------------------ IBSI CT phantom (real data)


@pytest.mark.realdata
def test_ibsi_ct_phantom_as_a_pacs_export_extracts_with_no_configuration(data_dir, tmp_path):
    """Acceptance: the CT phantom as PAT1/<study>/<series>/*.dcm with the RTSTRUCT in its own series folder,
    `radpipe extract <tree>` with no recipe. The contours are marching-squares traces of the NIfTI reference
    mask at level 0.5: they pass half-way between inside and outside voxel centres, so no centre lies on a
    contour and the centre-inside rule has no boundary cases to decide: the voxel count must be exact."""
    from typer.testing import CliRunner

    from radpipe.cli import app
    from tests.dicom_trees import write_ibsi_phantom_tree

    written = write_ibsi_phantom_tree(tmp_path / "export", data_dir / "ibsi" / "ct_phantom")
    assert written["mask"].sum() == 125256
    result = CliRunner().invoke(app, ["extract", str(tmp_path / "export"), "--out", str(tmp_path / "out"),
                                      "--pseudonymise", str(tmp_path / "key.json")])
    assert result.exit_code == 0, result.output
    diagnostics = pd.read_csv(tmp_path / "out" / "diagnostics.csv")
    assert diagnostics["roi_voxels"].tolist() == [125256]
    assert diagnostics["modality"].tolist() == ["CT"] and diagnostics["image_size"].tolist() == ["204x201x60"]
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {"features.csv", "diagnostics.csv", "qc.csv", "manifest.json"} <= {p.name for p in files}
    for path in files:
        assert b"PAT1" not in path.read_bytes(), f"PAT1 in {path.name}"


@pytest.mark.realdata
def test_ibsi_ct_phantom_original_files_nested_as_exported(data_dir, tmp_path):
    """The phantom's own 60 slices and RTSTRUCT (PatientID '1'), moved into patient/study/series folders:
    indexed, paired by the RTSTRUCT's series reference, and rasterised to the reference mask exactly."""
    source = data_dir / "ibsi" / "ct_phantom" / "dicom"
    study = tmp_path / "export" / "1" / "study"
    shutil.copytree(source / "image", study / "CT")
    shutil.copytree(source / "rtstruct", study / "RTSTRUCT")
    cohort = load_cohort(tmp_path / "export")
    assert [c.case_id for c in cohort.cases] == ["1"] and not cohort.problems
    image, _ = read_image(cohort.cases[0].image)
    mask, notes = read_case_mask(cohort.cases[0].mask, image, None)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "ibsi" / "ct_phantom" / "mask.nii.gz")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), reference.astype(np.uint8))
    assert any("'GTV-1' used: the only structure with contours" in n for n in notes)
