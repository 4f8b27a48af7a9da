"""Cohort discovery pairs images, masks and labels and names every case it cannot pair."""

from __future__ import annotations

from radpipe.cohort import case_id_from_path, load_cohort
from tests.synth import make_cohort, write_case


def test_folder_cohort_with_labels(tmp_path):
    make_cohort(tmp_path, n=4)
    cohort = load_cohort(tmp_path)
    assert [case.case_id for case in cohort.cases] == ["case00", "case01", "case02", "case03"]
    assert cohort.labels.to_dict() == {"case00": "a", "case01": "b", "case02": "a", "case03": "b"}
    assert repr(cohort) == f"Cohort('{tmp_path.name}', 4 cases, classes {{a: 2, b: 2}})"


def test_unpaired_files_and_orphan_labels_become_problems(tmp_path):
    make_cohort(tmp_path, n=3)
    write_case(tmp_path, "lonely", seed=9)
    (tmp_path / "masks" / "lonely.nii.gz").unlink()
    write_case(tmp_path, "ghost", seed=10)
    (tmp_path / "images" / "ghost.nii.gz").unlink()
    with open(tmp_path / "labels.csv", "a") as handle:
        handle.write("nobody,a\n")
    cohort = load_cohort(tmp_path)
    problems = {p.case_id: p.reason for p in cohort.problems}
    assert "has no mask" in problems["lonely"]
    assert "has no image" in problems["ghost"]
    assert "no image or mask was found" in problems["nobody"]
    assert len(cohort.cases) == 3


def test_labels_with_bom_and_windows_line_endings(tmp_path):
    make_cohort(tmp_path, n=2, labels=False)
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbfcase_id,label\r\ncase00,a\r\ncase01,b\r\n")
    assert load_cohort(tmp_path).labels.to_dict() == {"case00": "a", "case01": "b"}


def test_duplicate_case_ids_are_not_guessed(tmp_path):
    make_cohort(tmp_path, n=2)
    (tmp_path / "images" / "case00.nrrd").write_bytes((tmp_path / "images" / "case00.nii.gz").read_bytes())
    cohort = load_cohort(tmp_path)
    assert [c.case_id for c in cohort.cases] == ["case01"]
    assert "two image files share case id 'case00'" in cohort.problems[0].reason


def test_case_id_strips_double_extensions(tmp_path):
    assert case_id_from_path(tmp_path / "STS_001.nii.gz") == "STS_001"
    assert case_id_from_path(tmp_path / "busi_0001.png") == "busi_0001"


def test_pyradiomics_batch_csv(tmp_path):
    make_cohort(tmp_path, n=2, labels=False)
    (tmp_path / "batch.csv").write_text("Image,Mask\nimages/case00.nii.gz,masks/case00.nii.gz\n"
                                        "images/case01.nii.gz,masks/case01.nii.gz\n")
    cohort = load_cohort(tmp_path / "batch.csv")
    assert [c.case_id for c in cohort.cases] == ["case00", "case01"]
    assert cohort.cases[0].mask == tmp_path / "masks" / "case00.nii.gz"


def test_files_side_by_side_named_image_and_label_are_detected(tmp_path):
    import shutil

    from radpipe.cohort import detect_layout

    folders = make_cohort(tmp_path / "folders", n=3, labels=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for case_id in ("lung1", "lung_2", "brain-3"):
        source = f"case0{len(list(flat.iterdir())) // 2}"
        shutil.copy(folders / "images" / f"{source}.nii.gz", flat / f"{case_id}_image.nii.gz")
        shutil.copy(folders / "masks" / f"{source}.nii.gz", flat / f"{case_id}_label.nii.gz")
    guess = detect_layout(flat)
    assert guess.layout == "folders" and (guess.spec.images, guess.spec.masks) == ("*_image.nii.gz", "*_label.nii.gz")
    assert guess.summary == "image/mask file pairs: 3 cases (brain-3_image.nii.gz + brain-3_label.nii.gz)"
    cohort = load_cohort(flat)  # a folder on the command line: layout auto
    assert [c.case_id for c in cohort.cases] == ["brain-3", "lung1", "lung_2"] and not cohort.problems
    assert cohort.cases[2].mask == flat / "lung_2_label.nii.gz"
