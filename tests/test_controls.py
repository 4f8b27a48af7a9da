"""Negative controls (radpipe.controls): each control against its definition, features that shuffling must
leave unchanged, and on BUSI a texture-only model that must fall to chance on shuffled voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radpipe.cohort import load_cohort
from radpipe.config import Recipe
from radpipe.controls import (
    body_mask,
    case_rng,
    control_cohort,
    cv_aucs,
    move_roi,
    noise_image,
    shuffle_roi,
    texture_columns,
)
from radpipe.demo import make_demo_cohort
from radpipe.errors import CaseError, ConfigError
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort


def _phantom(seed: int = 0):
    """A 3D 'patient': a bright ellipsoid body (with a dark cyst inside) in dark air, a textured lesion in it."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(np.arange(24), np.arange(64), np.arange(64), indexing="ij")
    body = ((zz - 12) / 11) ** 2 + ((yy - 32) / 28) ** 2 + ((xx - 32) / 28) ** 2 <= 1
    cyst = ((zz - 12) / 3) ** 2 + ((yy - 20) / 4) ** 2 + ((xx - 32) / 4) ** 2 <= 1
    array = np.where(body, 100.0, -900.0) + rng.normal(0, 10, body.shape)
    array[cyst] = -850.0
    lesion = ((zz - 12) / 3) ** 2 + ((yy - 40) / 5) ** 2 + ((xx - 40) / 5) ** 2 <= 1
    array[lesion] += 60 * np.sin(xx[lesion])  # stripes: texture
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-10.0, 5.0, 30.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    mask = sitk.GetImageFromArray(lesion.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask, body


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())


def test_shuffled_roi_keeps_the_roi_values_and_everything_outside():
    image, mask, _ = _phantom()
    out = shuffle_roi(image, mask, case_rng(42, "c1", "shuffled"))
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(out)
    roi = sitk.GetArrayFromImage(mask) == 1
    assert _same_grid(image, out)
    np.testing.assert_array_equal(np.sort(after[roi]), np.sort(before[roi]))  # the same multiset of values
    np.testing.assert_array_equal(after[~roi], before[~roi])
    assert np.mean(after[roi] != before[roi]) > 0.9  # and they did move
    again = shuffle_roi(image, mask, case_rng(42, "c1", "shuffled"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), after)  # seeded
    other = shuffle_roi(image, mask, case_rng(42, "c2", "shuffled"))
    assert not np.array_equal(sitk.GetArrayFromImage(other), after)


def test_body_mask_is_the_body_with_its_holes_filled():
    image, _, body = _phantom()
    found = sitk.GetArrayFromImage(body_mask(image)) == 1
    assert np.mean(found == body) > 0.995  # the dark cyst inside is part of the body


def test_moved_roi_has_the_same_voxels_inside_the_body_elsewhere():
    image, mask, body = _phantom()
    roi = sitk.GetArrayFromImage(mask) == 1
    for seed in range(5):
        moved_image = move_roi(image, mask, case_rng(seed, "c1", "moved"))
        moved = sitk.GetArrayFromImage(moved_image) == 1
        assert _same_grid(mask, moved_image)
        assert moved.sum() == roi.sum()
        assert body[moved].all()  # inside the body (and so inside the image)
        assert not (moved & roi).any()  # away from the lesion when there is room
        # a pure translation of the same shape
        shift = np.argwhere(moved).min(axis=0) - np.argwhere(roi).min(axis=0)
        np.testing.assert_array_equal(np.argwhere(moved), np.argwhere(roi) + shift)


def test_a_roi_that_fits_nowhere_else_is_a_case_error():
    array = np.zeros((30, 30), np.float32)
    array[5:25, 5:25] = 100
    image = sitk.GetImageFromArray(array)
    mask = sitk.GetImageFromArray((array > 0).astype(np.uint8))  # the ROI is the whole body
    with pytest.raises(CaseError, match="fits nowhere else inside the image body"):
        move_roi(image, mask, np.random.default_rng(0))


def test_noise_image_has_the_roi_mean_and_sd():
    image, mask, _ = _phantom()
    values = sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(mask) == 1]
    out = noise_image(image, mask, case_rng(42, "c1", "noise"))
    noise = sitk.GetArrayFromImage(out)
    assert _same_grid(image, out) and noise.dtype == np.float32
    # 98,304 voxels: the standard error of the mean is SD/313, of the SD about SD/443
    assert abs(noise.mean() - values.mean()) < 0.02 * values.std()
    assert abs(noise.std() - values.std()) < 0.02 * values.std()
    assert not np.corrcoef(noise.ravel(), sitk.GetArrayFromImage(image).ravel())[0, 1] > 0.05


def test_first_order_and_shape_features_survive_shuffling(tmp_path):
    cohort = load_cohort(make_demo_cohort(tmp_path / "cohort", n_cases=4))
    settings = ExtractSettings(featureClass={"shape": [], "firstorder": [], "glcm": []}, setting={"binWidth": 10})
    real = extract_cohort(cohort, settings, tmp_path / "real").features
    shuffled_cohort = control_cohort(cohort, settings, "shuffled", tmp_path / "shuffled")
    shuffled = extract_cohort(shuffled_cohort, settings, tmp_path / "shuffled_features").features
    kept = [c for c in real.columns if "_shape_" in c or "_firstorder_" in c]
    texture = texture_columns(real.columns)
    assert len(kept) > 30 and len(texture) > 20
    shape = [c for c in kept if "_shape_" in c]
    pd.testing.assert_frame_equal(shuffled[shape], real[shape])  # the mask is the same: bit for bit
    # the same values in another order: equal up to the order of floating-point sums
    pd.testing.assert_frame_equal(shuffled[kept], real[kept], check_exact=False, rtol=1e-9)
    changed = (~np.isclose(shuffled[texture], real[texture], rtol=1e-6)).mean().mean()
    assert changed > 0.8


def test_texture_columns_read_the_codebook():
    book = pd.DataFrame({"column": ["cm_contrast_d1_3d_avg_fbs_w25", "stat_mean"], "feature_class": ["glcm",
                                                                                                 "firstorder"]})
    assert texture_columns(["cm_contrast_d1_3d_avg_fbs_w25", "stat_mean"], book) == ["cm_contrast_d1_3d_avg_fbs_w25"]


def test_cv_aucs_is_the_model_stage_auc_on_the_same_folds():
    from radpipe.model.metrics import roc_auc
    from radpipe.model.settings import ModelSettings
    from radpipe.model.validate import nested_cv

    rng = np.random.default_rng(3)
    y = np.tile([0, 1], 25)
    X = pd.DataFrame({"f1": rng.normal(size=50) + y, "f2": rng.normal(size=50)})
    settings = ModelSettings(models=["logreg"], outer_folds=3, inner_folds=2, bootstrap=50, seed=1)
    table = cv_aucs(X, y, settings)
    prob = np.empty(50)
    for fit in nested_cv(X, y, settings).folds["logreg"]:
        prob[fit.test_idx] = fit.test_prob
    assert table.loc[0, "auc"] == pytest.approx(roc_auc(y, prob), abs=1e-12)
    assert table.loc[0, "ci_low"] < table.loc[0, "auc"] < table.loc[0, "ci_high"]


def test_negative_controls_need_a_binary_outcome_before_any_work(tmp_path):
    from radpipe.pipeline import run_recipe

    cohort = make_demo_cohort(tmp_path / "cohort", n_cases=12)
    labels = pd.read_csv(cohort / "labels.csv")
    labels["label"] = ["a", "b", "c"] * 4
    labels.to_csv(cohort / "labels.csv", index=False)
    recipe = Recipe.model_validate({"name": "x", "dataset": str(cohort), "negative_controls": True,
                                    "model": {"models": ["logreg"], "outer_folds": 2}})
    with pytest.raises(ConfigError, match="negative_controls.*binary outcome"):
        run_recipe(recipe, tmp_path, tmp_path / "out", explain=False)
    assert not (tmp_path / "out" / "features").exists()


def test_cohort_page_section_reads_the_controls_table(tmp_path):
    from radpipe.controls.report import negative_controls_section

    assert negative_controls_section(tmp_path, "svm") is None  # a run without controls shows nothing
    pd.DataFrame({
        "control": ["none", "none", "shuffled", "shuffled", "moved"],
        "features": ["all", "texture", "all", "texture", "all"], "model": ["svm"] * 5, "n": [100] * 4 + [60],
        "auc": [0.9, 0.8, 0.6, 0.5, float("nan")], "ci_low": [0.85, 0.7, 0.5, 0.4, float("nan")],
        "ci_high": [0.95, 0.9, 0.7, 0.6, float("nan")], "note": ["", "", "", "", "not trained: ..."],
    }).to_csv(tmp_path / "negative_controls.csv", index=False)
    section = negative_controls_section(tmp_path, "svm")
    assert [r["auc"] for r in section["rows"]] == ["0.90 [0.85, 0.95]", "0.80 [0.70, 0.90]", "0.60 [0.50, 0.70]",
                                                    "0.50 [0.40, 0.60]", "not trained"]
    text = " ".join(section["sentences"])
    assert "loses AUC on shuffled voxels (0.60 against 0.90" in text
    assert "0.80 on the real images and 0.50 on shuffled voxels, near chance" in text
    assert "moved into other tissue" not in text  # no number, no sentence


def test_negative_controls_key_is_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "x", "dataset": "d", "negative_control": True})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "x", "dataset": "d", "negative_controls": "sometimes"})


@pytest.fixture(scope="module")
def busi_real_and_shuffled(data_dir, tmp_path_factory):
    """BUSI's features and those of its voxel-shuffled control, extracted with pipelines/busi.yaml."""
    from radpipe.config import load_recipe
    from radpipe.extract.tables import read_feature_table
    from radpipe.model.inputs import modelling_table

    work = tmp_path_factory.mktemp("busi")
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "busi.yaml")
    cohort = load_cohort("busi")

    def features(one, folder):
        result = extract_cohort(one, recipe.extract, work / folder, jobs=2)
        return modelling_table(read_feature_table(result.out_dir / "features.csv"))

    shuffled_cohort = control_cohort(cohort, recipe.extract, "shuffled", work / "shuffled", jobs=2)
    return cohort, features(cohort, "real"), features(shuffled_cohort, "shuffled_features")


@pytest.mark.realdata
@pytest.mark.slow
def test_busi_shuffling_keeps_first_order_and_shape_and_changes_texture(busi_real_and_shuffled):
    _, real, shuffled = busi_real_and_shuffled
    assert shuffled.index.tolist() == real.index.tolist()
    kept = [c for c in real.columns if "_shape2D_" in c or "_firstorder_" in c]
    assert len(kept) > 20
    pd.testing.assert_frame_equal(shuffled[kept], real[kept], check_exact=False, rtol=1e-9)
    texture = texture_columns(real.columns)
    assert (~np.isclose(shuffled[texture], real[texture], rtol=1e-6)).mean().mean() > 0.8


def _busi_texture_aucs(cohort, real, shuffled) -> tuple[float, float]:
    from radpipe.model.settings import ModelSettings

    y = (cohort.labels.reindex(real.index) == "malignant").to_numpy().astype(int)
    groups = cohort.groups.reindex(real.index).to_numpy()
    settings = ModelSettings(models=["logreg"], positive_class="malignant", outer_folds=5, inner_folds=3,
                             correlation_threshold=0.9, selection="univariate", select_k=20, bootstrap=0, seed=42)
    texture = texture_columns(real.columns)
    return (cv_aucs(real[texture], y, settings, groups).loc[0, "auc"],
            cv_aucs(shuffled[texture], y, settings, groups).loc[0, "auc"])


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 16 expects AUC < 0.65; measured on BUSI (logreg, busi.yaml settings): 0.81 on the real images and 0.79 on "
    "shuffled voxels. On a random arrangement pyradiomics' texture features are functions of the ROI's grey-level "
    "histogram and voxel count (GLCM contrast is about twice the grey-level variance, run and zone non-uniformities grow "
    "with the ROI's size), and on BUSI both carry the outcome. Strict: this test fails loudly if that changes."))
def test_busi_texture_model_on_shuffled_voxels_is_near_chance(busi_real_and_shuffled):
    cohort, real, shuffled = busi_real_and_shuffled
    on_real, on_shuffled = _busi_texture_aucs(cohort, real, shuffled)
    print(f"BUSI texture-only logreg: real AUC {on_real:.3f}, shuffled-voxel AUC {on_shuffled:.3f}")
    assert on_shuffled < 0.65
