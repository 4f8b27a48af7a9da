"""DICOM-tree cohorts beyond extraction: the manifest reports what discovery left out, lesion slices for reports,
and the scikit-learn transformer reading the same series and RTSTRUCT/SEG files as ``radpipe extract``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from radpipe import RadiomicsFeatures, cohort_paths
from radpipe.cohort import load_cohort
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.slices import read_lesion_slice
from radpipe.extract.stage import extract_cohort
from radpipe.pseudonym import Pseudonymiser
from tests.dicom_trees import _image, write_dicom_tree
from tests.synth import write_case

FAST = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": None, "shape": None}}


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    """Four cases that extract with no configuration: CT+RTSTRUCT (two studies), MR+SEG, PET split over folders."""
    root = tmp_path_factory.mktemp("clean_export")
    return root, write_dicom_tree(root, problems=False)


# ------------------------------------------------------------------------------------- manifest cohort_notes


def test_manifest_reports_unsegmented_series_and_no_patient_id_when_pseudonymised(tmp_path):
    root = tmp_path / "export"
    written = write_dicom_tree(root)  # with a localiser that has no segmentation
    settings = ExtractSettings(**FAST)
    extract_cohort(load_cohort(root), settings, tmp_path / "plain")
    extract_cohort(load_cohort(root), settings, tmp_path / "pseudo", pseudonymise=tmp_path / "private" / "key.json")

    plain = json.loads((tmp_path / "plain" / "manifest.json").read_text())["cohort_notes"]
    pseudo = json.loads((tmp_path / "pseudo" / "manifest.json").read_text())["cohort_notes"]
    assert written["unsegmented"] == 1
    for notes in (plain, pseudo):
        assert len(notes) == 1
        assert "5 case(s) (3 CT, 1 MR, 1 PT)" in notes[0]
        assert "1 image series without an RTSTRUCT or SEG (not cases)" in notes[0]
    assert pseudo == plain  # counts only: nothing to replace
    text = json.dumps(pseudo)
    for identifier in written["patient_ids"] + written["patient_names"] + [written["birth_date"]]:
        assert identifier not in text


def test_manifest_note_naming_an_example_case_carries_its_pseudonym(tmp_path):
    """The layout note of side-by-side files names one case as an example; pseudonymised, it names the pseudonym."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for index, case_id in enumerate(("PAT1", "PAT2")):
        write_case(tmp_path / "staging", case_id, seed=index)
        for sub, end in (("images", "image"), ("masks", "mask")):
            shutil.move(tmp_path / "staging" / sub / f"{case_id}.nii.gz", folder / f"{case_id}_{end}.nii.gz")
    key = tmp_path / "private" / "key.json"
    extract_cohort(load_cohort(folder), ExtractSettings(**FAST), tmp_path / "out", pseudonymise=key)

    notes = json.loads((tmp_path / "out" / "manifest.json").read_text())["cohort_notes"]
    p1 = Pseudonymiser(key)("PAT1")
    assert notes == [f"layout detected: image/mask file pairs: 2 cases ({p1}_image.nii.gz + {p1}_mask.nii.gz)"]


# -------------------------------------------------------------------------------------- lesion slice pictures


def test_lesion_slice_of_dicom_tree_cases_reads_series_files_and_rtstruct_or_seg(clean_tree):
    root, written = clean_tree
    cases = {case.case_id: case for case in load_cohort(root).cases}

    # CT series (a tuple of five files) with an RTSTRUCT: box 3..8 on slices 1-3, stored - 1024 HU
    ct = cases["PAT-B_20240110"]
    assert isinstance(ct.image, tuple) and len(ct.image) == 5
    img, msk, spacing, where = read_lesion_slice(ct.image, ct.mask)
    expected = written["cases"]["PAT-B_20240110"]["mask"]
    assert where == "axial slice 2 of 5 (largest mask area, 36 voxels)"
    assert spacing == (1.0, 1.0)
    np.testing.assert_array_equal(msk, expected[1] > 0)
    np.testing.assert_array_equal(img, _image(1)[1].astype(float) - 1024.0)

    # MR with a DICOM-SEG: box 4..10 on slices 0-2
    mr = cases["PAT-C"]
    _, msk, _, where = read_lesion_slice(mr.image, mr.mask)
    assert where == "axial slice 1 of 5 (largest mask area, 49 voxels)"
    np.testing.assert_array_equal(msk, written["cases"]["PAT-C"]["mask"][0] > 0)

    # PET split over two folders, RTSTRUCT: box 6..9 on slices 2-4
    pet = cases["PAT-D"]
    assert len({f.parent.name for f in pet.image}) == 2
    _, msk, _, where = read_lesion_slice(pet.image, pet.mask, roi_name="Lesion")
    assert where == "axial slice 3 of 5 (largest mask area, 16 voxels)"
    assert int(msk.sum()) == 16


# --------------------------------------------------------------------------------- RadiomicsFeatures on DICOM


def test_cohort_paths_of_a_dicom_tree_give_radpipe_extract_values(clean_tree, tmp_path):
    root, written = clean_tree
    cohort = load_cohort(root)
    paths = cohort_paths(cohort)
    assert sorted(paths.index) == sorted(written["cases"])
    pet = paths.loc["PAT-D", "image"]
    assert isinstance(pet, tuple) and len(pet) == 5 and all(isinstance(p, str) for p in pet)
    assert paths.loc["PAT-C", "mask"].endswith("seg.dcm")

    params = {"setting": {"binWidth": 25}}  # every feature class
    extracted = extract_cohort(cohort, ExtractSettings(**params), tmp_path / "out").features
    ours = RadiomicsFeatures(params).fit_transform(paths.loc[["PAT-D"]])
    assert ours.shape[1] > 100
    reference = extracted.loc[["PAT-D"], list(ours.columns)].astype(float)
    pd.testing.assert_frame_equal(ours, reference, check_names=False, rtol=1e-9, atol=1e-9)
    assert ours.loc["PAT-D", "original_shape_VoxelVolume"] == written["cases"]["PAT-D"]["voxels"] * 2.5

    # a cache keyed by the series files' contents gives the same values, computed once
    cached = RadiomicsFeatures(FAST, memory=tmp_path / "cache")
    first = cached.fit_transform(paths)
    again = cached.transform(paths)
    pd.testing.assert_frame_equal(first, again)
    assert list(cached.memory.glob("**/output.pkl")) and len(list(cached.memory.glob("**/output.pkl"))) == 4
    pd.testing.assert_frame_equal(first, extracted.loc[first.index, list(first.columns)].astype(float),
                                  check_names=False, rtol=1e-9, atol=1e-9)
