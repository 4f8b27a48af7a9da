"""IBSI-style column names (extract.names: ibsi, radpipe extract --names ibsi): the names, their round trip,
and a run whose tables use them from extraction to the explain pages."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from radpipe.extract.ibsi import ibsi_table
from radpipe.extract.ibsi_names import IBSI_TAGS, ibsi_name, ibsi_names, pyradiomics_parts

ALL_FEATURES = [f"{image_type}_{cls}_{feature}" for image_type in ("original", "wavelet-LLH", "log-sigma-2-0-mm-3D")
                for cls, feature in ibsi_table().index if not (image_type != "original" and cls.startswith("shape"))]


def test_volume_names_follow_the_ibsi_codes():
    # RNU0 "Volume (mesh)" is IBSI's morph_volume; YEKZ "Volume (voxel counting)" its approximation
    table = ibsi_table()
    assert table.loc[("shape", "MeshVolume"), "ibsi_code"] == "RNU0"
    assert table.loc[("shape", "VoxelVolume"), "ibsi_code"] == "YEKZ"
    assert ibsi_name("original_shape_MeshVolume", {}) == "morph_volume"
    assert ibsi_name("original_shape_VoxelVolume", {}) == "morph_vol_approx"
    assert ibsi_name("original_firstorder_Mean", {}) == "stat_mean"


def test_names_carry_distance_aggregation_and_discretisation():
    assert ibsi_name("original_glcm_Contrast", {"binWidth": 25}) == "cm_contrast_d1_3d_avg_fbs_w25"
    assert ibsi_name("original_glcm_Contrast", {"binWidth": 25.0, "distances": [1, 2]}) == \
        "cm_contrast_d1-2_3d_avg_fbs_w25"
    assert ibsi_name("original_glrlm_ShortRunEmphasis", {"binCount": 32}, two_d=True) == "rlm_sre_2d_avg_fbn_n32"
    assert ibsi_name("original_glszm_SmallAreaEmphasis", {"binWidth": 0.25}) == "szm_sze_3d_fbs_w0.25"
    assert ibsi_name("original_gldm_DependenceEntropy", {"gldm_a": 1}) == "ngl_dc_entr_d1_a1_3d_fbs_w25"
    assert ibsi_name("original_ngtdm_Coarseness", {}) == "ngt_coarseness_d1_3d_fbs_w25"
    assert ibsi_name("original_firstorder_Entropy", {"binCount": 64}) == "ih_entropy_fbn_n64"  # histogram: binned
    assert ibsi_name("wavelet-HLH_firstorder_Median", {}) == "stat_median_wavelet-HLH"
    names = ibsi_names(["original_glcm_Contrast"], {"setting": {"force2D": True, "binCount": 16}})
    assert names == {"original_glcm_Contrast": "cm_contrast_d1_2d_avg_fbn_n16"}


def test_features_without_an_ibsi_value_keep_a_prefixed_pyradiomics_name():
    assert ibsi_name("original_firstorder_TotalEnergy", {}) == "pyradiomics_original_firstorder_TotalEnergy"
    assert ibsi_name("original_shape_MajorAxisLength", {}) == "pyradiomics_original_shape_MajorAxisLength"
    assert ibsi_name("original_firstorder_Kurtosis", {}) == "pyradiomics_original_firstorder_Kurtosis"
    assert ibsi_name("original_shape2D_PixelSurface", {}) == "pyradiomics_original_shape2D_PixelSurface"
    # Energy is IBSI's only without pyradiomics' intensity shift
    assert ibsi_name("original_firstorder_Energy", {}) == "stat_energy"
    assert ibsi_name("original_firstorder_Energy", {"voxelArrayShift": 1000}) == \
        "pyradiomics_original_firstorder_Energy"
    assert ibsi_name("age", {}) == "age"
    assert ibsi_name("pet_original_glcm_Contrast", {}) == "pet_original_glcm_Contrast"  # not a pyradiomics name


@pytest.mark.parametrize("setting", [{}, {"binCount": 32, "force2D": True}, {"binWidth": 0.5, "distances": [1, 3]}])
def test_names_are_unique_and_read_back(setting):
    names = ibsi_names(ALL_FEATURES, {"setting": setting})
    assert len(set(names.values())) == len(ALL_FEATURES) > 250
    for column, name in names.items():
        assert pyradiomics_parts(name) == tuple(column.split("_", 2)), (column, name)
    back = {name: column for column, name in names.items()}
    assert [back[names[c]] for c in ALL_FEATURES] == ALL_FEATURES


def test_every_ibsi_coded_feature_has_a_tag():
    coded = {code for code in ibsi_table()["ibsi_code"] if code}
    assert coded == set(IBSI_TAGS)


@pytest.mark.realdata
def test_tags_are_the_reference_table_tags(data_dir):
    """Each tag is the stem of the tag the IBSI reference table gives that code (aggregation suffix removed)."""
    reference = pd.read_csv(data_dir / "ibsi" / "ibsi1_reference_values.csv", keep_default_na=False)
    for code, tag in IBSI_TAGS.items():
        tags = set(reference.loc[reference["ibsi_code"] == code, "mirp_tag"])
        assert tags and all(t == tag or t.startswith(tag + "_") for t in tags), (code, tag, tags)


def test_a_run_with_ibsi_names_and_negative_controls_trains_and_explains(tmp_path):
    """One small run for both features of this issue part: IBSI names downstream, and the control rows on the
    cohort page (the texture-only model finds its GLCM columns through the codebook's IBSI names)."""
    from radpipe.config import Recipe
    from radpipe.demo import make_demo_cohort
    from radpipe.explain.shap_values import parse_feature_name
    from radpipe.pipeline import run_recipe

    cohort = make_demo_cohort(tmp_path / "cohort", n_cases=16)
    recipe = Recipe.model_validate({
        "name": "ibsi", "dataset": str(cohort), "negative_controls": True,
        "extract": {"names": "ibsi", "setting": {"binWidth": 10},
                    "featureClass": {"shape": ["MeshVolume", "VoxelVolume", "Sphericity"],
                                     "firstorder": ["Mean", "Kurtosis"], "glcm": ["Contrast", "Idm"]}},
        "model": {"models": ["logreg"], "positive_class": "aggressive", "outer_folds": 3, "bootstrap": 0},
        "explain": {"lime_samples": 50, "shap_background": 8, "max_patients": 1, "bootstrap": 0,
                    "dependence_plots": 1, "stability_cases": 5}})
    result = run_recipe(recipe, tmp_path, tmp_path / "out")
    features = pd.read_csv(tmp_path / "out" / "features" / "features.csv")
    assert features.columns[0] == "case_id"
    assert sorted(features.columns[1:]) == [
        "cm_contrast_d1_3d_avg_fbs_w10", "cm_inv_diff_mom_d1_3d_avg_fbs_w10", "morph_sphericity", "morph_vol_approx",
        "morph_volume", "pyradiomics_original_firstorder_Kurtosis", "stat_mean"]
    book = pd.read_csv(tmp_path / "out" / "features" / "codebook.csv", keep_default_na=False).set_index("column")
    assert book.loc["morph_volume", "pyradiomics_column"] == "original_shape_MeshVolume"
    assert book.loc["morph_volume", "ibsi_code"] == "RNU0"
    assert book.loc["pyradiomics_original_firstorder_Kurtosis", "ibsi_note"].startswith("differs")
    assert (book["ibsi_column"] == book.index).all()
    assert result.metrics.loc[0, "auc"] > 0.5
    card = (tmp_path / "out" / "models" / "model_card.md").read_text()
    assert any(name in card for name in features.columns[1:])
    # the explain stage groups IBSI-named features by family, and the cohort page is written
    assert parse_feature_name("cm_contrast_d1_3d_avg_fbs_w10")["family"] == "texture"
    assert (result.explain_dir / "cohort.html").is_file()
    page = (result.explain_dir / "cohort.html").read_text()
    assert "texture" in page

    controls = pd.read_csv(tmp_path / "out" / "models" / "negative_controls.csv", keep_default_na=False)
    real = controls[(controls["control"] == "none") & (controls["features"] == "all")]
    assert float(real["auc"].iloc[0]) == pytest.approx(result.metrics.loc[0, "auc"])
    assert set(controls["control"]) == {"none", "shuffled", "moved", "noise"}
    assert set(controls["features"]) == {"all", "texture"}
    # the demo images are a bright lesion on a dark background: the 'body' is the lesion, no room to move it
    moved = controls[controls["control"] == "moved"]
    assert (moved["auc"] == "").all() and moved["note"].str.contains("not trained").all()
    qc = pd.read_csv(tmp_path / "out" / "controls" / "moved" / "features" / "qc.csv")
    assert qc["reason"].str.contains("fits nowhere else inside the image body").all()
    assert 'id="negative-controls"' in page and "voxels shuffled inside the ROI" in page
    assert "learning the intensity histogram, volume or shape, not texture" in page


def test_cli_names_option_is_checked(tmp_path):
    from radpipe.cli import app
    from radpipe.demo import make_demo_cohort

    cohort = make_demo_cohort(tmp_path / "cohort", n_cases=4)
    result = CliRunner().invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "f"), "--names", "ibsl"])
    assert result.exit_code == 2
    assert "--names" in result.output and "ibsi" in result.output
