"""Extraction: values equal pyradiomics called directly; bad cases are ledgered, good ones untouched."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.cohort import load_cohort
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.synth import make_cohort, write_case

runner = CliRunner()


def pyradiomics_direct(image, mask, params):
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    result = extractor.execute(str(image), str(mask))
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


@pytest.mark.realdata
def test_pyradiomics_samples_equal_pyradiomics_direct(data_dir, tmp_path):
    settings = ExtractSettings(setting={"binWidth": 25})
    result = extract_cohort(load_cohort("pyradiomics_samples"), settings, tmp_path, jobs=2)
    assert list(result.features.index) == ["brain1", "brain2", "breast1", "lung1", "lung2"]
    worst = 0.0
    for case in ("brain1", "brain2", "breast1", "lung1", "lung2"):
        root = data_dir / "pyradiomics_samples"
        direct = pyradiomics_direct(root / f"{case}_image.nrrd", root / f"{case}_label.nrrd",
                                    {"setting": {"binWidth": 25, "label": 1}})
        ours = result.features.loc[case]
        assert set(direct) == set(ours.index)
        for name, value in direct.items():
            rel = abs(ours[name] - value) / max(abs(value), 1e-12)
            worst = max(worst, rel)
    print(f"worst relative difference vs pyradiomics over 5 cases x {len(direct)} features: {worst:.2e}")
    assert worst <= 1e-9


@pytest.mark.realdata
def test_intensity_scaled_filters_equal_pyradiomics_on_the_whole_image(data_dir, tmp_path):
    # Square & co. scale by the image maximum: cropping before them once gave brain2 square Mean 223.8 vs 107.1
    from radpipe.extract.features import CaseInput, extract_case

    root = data_dir / "pyradiomics_samples"
    params = {"imageType": {"Square": {}, "SquareRoot": {}, "Logarithm": {}, "Exponential": {}},
              "featureClass": {"firstorder": []}, "setting": {"binWidth": 25}}
    settings = ExtractSettings(**params)
    case = CaseInput("brain2", str(root / "brain2_image.nrrd"), str(root / "brain2_label.nrrd"), label=1)
    ours = extract_case(case, settings).features[0]
    direct = pyradiomics_direct(root / "brain2_image.nrrd", root / "brain2_label.nrrd",
                                {**params, "setting": {"binWidth": 25, "label": 1}})
    assert len(direct) == 4 * 18
    assert ours["square_firstorder_Mean"] == pytest.approx(direct["square_firstorder_Mean"], rel=1e-12)
    for name, value in direct.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.realdata
def test_busi_rgb_png_with_255_mask_matches_pyradiomics_on_grey(data_dir, tmp_path):
    """RGB ultrasound → luminance grey and 0/255 mask → binary, then pyradiomics as usual."""
    import SimpleITK as sitk

    from radpipe.extract.features import CaseInput, extract_case

    image = data_dir / "busi" / "images" / "busi_0001.png"
    mask = data_dir / "busi" / "masks" / "busi_0001.png"
    settings = ExtractSettings(setting={"binCount": 32, "force2D": True})
    result = extract_case(CaseInput("busi_0001", str(image), str(mask)), settings)
    assert result.status == "fixed" and [row.action for row in result.qc] == ["binarised"], result.qc
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float64)
    grey = sitk.GetImageFromArray((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32))
    binary = sitk.GetImageFromArray((sitk.GetArrayFromImage(sitk.ReadImage(str(mask))) > 0).astype(np.uint8))
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    direct = featureextractor.RadiomicsFeatureExtractor({"setting": {"binCount": 32, "force2D": True}}).execute(grey, binary)
    ours = result.features[0]
    assert ours["original_shape2D_PixelSurface"] == float(direct["original_shape2D_PixelSurface"])
    assert ours["original_shape2D_PixelSurface"] == pytest.approx((sitk.GetArrayFromImage(binary) > 0).sum(), rel=0.01)
    for name, value in direct.items():
        if not name.startswith("diagnostics_"):
            assert ours[name] == pytest.approx(float(value), rel=1e-6, abs=1e-9), name


def test_corrupt_image_and_empty_mask_are_ledgered_and_others_unchanged(tmp_path):
    clean = make_cohort(tmp_path / "clean", n=4)
    dirty = make_cohort(tmp_path / "dirty", n=4)
    write_case(dirty, "corrupt", seed=20)
    raw = (dirty / "images" / "corrupt.nii.gz").read_bytes()
    (dirty / "images" / "corrupt.nii.gz").write_bytes(raw[: len(raw) // 3])  # truncated download
    write_case(dirty, "empty", seed=21, mask_array=np.zeros((16, 24, 24), np.uint8))

    ok = runner.invoke(app, ["extract", str(clean), "--out", str(tmp_path / "out_clean")])
    bad = runner.invoke(app, ["extract", str(dirty), "--out", str(tmp_path / "out_dirty")])
    assert ok.exit_code == 0, ok.output
    assert bad.exit_code == 1, bad.output
    assert "Traceback" not in bad.output

    qc = pd.read_csv(tmp_path / "out_dirty" / "qc.csv")
    failed = qc[qc["status"] == "failed"].set_index("case_id")
    assert sorted(failed.index) == ["corrupt", "empty"]
    assert "corrupt.nii.gz" in failed.loc["corrupt", "reason"]
    assert "empty" in failed.loc["empty", "reason"]

    # every good case's row is byte-identical to the run without the bad cases
    clean_lines = (tmp_path / "out_clean" / "features.csv").read_text().splitlines()
    dirty_lines = (tmp_path / "out_dirty" / "features.csv").read_text().splitlines()
    assert clean_lines == dirty_lines


def test_rerun_uses_cache_and_new_case_is_the_only_one_computed(tmp_path):
    cohort_dir = make_cohort(tmp_path / "c", n=4)
    settings = ExtractSettings()
    first = extract_cohort(load_cohort(cohort_dir), settings, tmp_path / "out")
    assert (first.summary.computed, first.summary.cached) == (4, 0)
    before = (tmp_path / "out" / "features.csv").read_bytes()
    again = extract_cohort(load_cohort(cohort_dir), settings, tmp_path / "out")
    assert (again.summary.computed, again.summary.cached) == (0, 4)
    assert (tmp_path / "out" / "features.csv").read_bytes() == before
    write_case(cohort_dir, "case99", seed=99)
    grown = extract_cohort(load_cohort(cohort_dir), settings, tmp_path / "out")
    assert (grown.summary.computed, grown.summary.cached) == (1, 4)
    changed = extract_cohort(load_cohort(cohort_dir), ExtractSettings(setting={"binWidth": 5}), tmp_path / "out")
    assert changed.summary.computed == 5


def test_tables_long_parquet_codebook_agree(tmp_path):
    cohort_dir = make_cohort(tmp_path / "c", n=3)
    extract_cohort(load_cohort(cohort_dir), ExtractSettings(), tmp_path / "out")
    wide = pd.read_csv(tmp_path / "out" / "features.csv")
    parquet = pd.read_parquet(tmp_path / "out" / "features.parquet")
    pd.testing.assert_frame_equal(wide, parquet, check_dtype=False)
    assert pd.api.types.is_string_dtype(parquet["case_id"]) and parquet.drop(columns="case_id").dtypes.eq(np.float64).all()
    long = pd.read_csv(tmp_path / "out" / "features_long.csv")
    assert len(long) == (wide.shape[1] - 1) * len(wide)
    row = long[(long.case_id == "case01") & (long.feature == "Contrast") & (long.feature_class == "glcm")]
    assert row["value"].item() == wide.set_index("case_id").loc["case01", "original_glcm_Contrast"]
    codebook = pd.read_csv(tmp_path / "out" / "codebook.csv")
    assert list(codebook["column"]) == list(wide.columns[1:])
    book = codebook.set_index("column")
    assert book.loc["original_shape_Sphericity", "family"] == "shape"
    assert book.loc["original_glcm_Contrast", "ibsi_code"] == "ACUI"
    assert book.loc["original_firstorder_Kurtosis", "ibsi_note"].startswith("differs")
    # no bin width in the recipe: one chosen for the cohort's ROI range (about 60-150) and recorded
    assert book.loc["original_glcm_Contrast", "discretisation"] == "binWidth=2.0"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["discretisation"]["binWidth"] == 2.0 and manifest["discretisation"]["source"] == "auto"
    assert book["description"].str.len().gt(0).mean() > 0.9
    raw = (tmp_path / "out" / "features.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r\n" not in raw


def test_second_run_into_same_folder_is_refused(tmp_path):
    from radpipe.errors import ConfigError
    from radpipe.extract.stage import output_lock

    lock = output_lock(tmp_path)
    try:
        with pytest.raises(ConfigError, match="another radpipe run"):
            output_lock(tmp_path)
    finally:
        lock.release()


@pytest.mark.realdata
def test_ibsi_ct_phantom_dicom_rtstruct_equals_nifti_pair(data_dir, tmp_path):
    """The same phantom as DICOM series + RTSTRUCT and as NIfTI gives identical feature rows."""
    root = data_dir / "ibsi" / "ct_phantom"
    (tmp_path / "dicom.csv").write_text(
        f"case_id,Image,Mask\nphantom,{root / 'dicom' / 'image'},{root / 'dicom' / 'rtstruct' / 'DCM_RS_00060.dcm'}\n")
    (tmp_path / "nifti.csv").write_text(
        f"case_id,Image,Mask\nphantom,{root / 'image.nii.gz'},{root / 'mask.nii.gz'}\n")
    settings = ExtractSettings(roi_name="GTV-1", setting={"binWidth": 25},
                               featureClass={"shape": [], "firstorder": [], "glcm": []})
    from_dicom = extract_cohort(load_cohort(tmp_path / "dicom.csv"), settings, tmp_path / "a")
    from_nifti = extract_cohort(load_cohort(tmp_path / "nifti.csv"), settings, tmp_path / "b")
    assert from_dicom.n_failed == 0 and from_nifti.n_failed == 0
    assert from_dicom.features.loc["phantom", "original_shape_VoxelVolume"] == pytest.approx(125256 * 0.977 * 0.977 * 3, rel=1e-3)
    pd.testing.assert_frame_equal(from_dicom.features, from_nifti.features, rtol=1e-9)


@pytest.mark.realdata
def test_busi_extra_lesion_masks_give_one_row_per_roi_and_aggregate(data_dir, tmp_path):
    from radpipe.config import REPO_ROOT
    from radpipe.extract.tables import aggregate_rois

    settings = ExtractSettings(params_file=REPO_ROOT / "pipelines" / "params" / "ultrasound_2d.yaml",
                               extra_masks="masks_extra/{case_id}_*.png")
    cohort = load_cohort("busi").subset(["busi_0046", "busi_0125", "busi_0001"])
    result = extract_cohort(cohort, settings, tmp_path)
    table = result.features
    assert table.loc["busi_0125", "roi"].tolist() == ["roi", "extra_1", "extra_2"]
    assert table.loc["busi_0046", "roi"].tolist() == ["roi", "extra_1"]
    assert table.loc[["busi_0001"], "roi"].tolist() == ["roi"]
    area = "original_shape2D_PixelSurface"
    largest = aggregate_rois(table, "largest")
    assert list(largest.index) == ["busi_0001", "busi_0046", "busi_0125"]
    assert largest.loc["busi_0125", area] == table.loc["busi_0125", area].max()
    weighted = aggregate_rois(table, "volume_weighted_mean")
    rows = table.loc["busi_0125"]
    expected = (rows["original_firstorder_Mean"] * rows[area]).sum() / rows[area].sum()
    assert weighted.loc["busi_0125", "original_firstorder_Mean"] == pytest.approx(expected, rel=1e-12)


def test_shape_axes_that_pyradiomics_returns_as_complex_are_real_features(tmp_path):
    # this sphere's eigenvalues come out of pyradiomics as 1-4e-17j (Elongation) and the like
    from radpipe.extract.features import CaseInput, extract_case

    write_case(tmp_path, "sphere", seed=2, radius=4.2)
    case = CaseInput("sphere", str(tmp_path / "images/sphere.nii.gz"), str(tmp_path / "masks/sphere.nii.gz"))
    settings = ExtractSettings(setting={"binWidth": 25}, featureClass={"shape": None})
    result = extract_case(case, settings)
    assert result.status == "ok", result.qc
    row = result.features[0]
    assert row["original_shape_Elongation"] == pytest.approx(1.0, abs=1e-12)
    assert row["original_shape_MajorAxisLength"] == pytest.approx(7.714656412756111, rel=1e-12)
