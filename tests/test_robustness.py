"""Perturbation robustness: each perturbation against its definition, the stage end to end on synthetic spheres,
reader masks, and the model stage dropping non-robust features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from radpipe.cohort import load_cohort
from radpipe.errors import ConfigError
from radpipe.extract.features import CaseInput, extract_case
from radpipe.extract.settings import ExtractSettings
from radpipe.robustness import perturb
from radpipe.robustness.settings import RobustnessSettings
from radpipe.robustness.stage import robustness_cohort
from radpipe.robustness.table import read_robustness

SIZE = 32


def _ball(radius: float, size: int = SIZE, centre: float | None = None) -> np.ndarray:
    c = (size - 1) / 2 if centre is None else centre
    z, y, x = np.mgrid[:size, :size, :size]
    return (x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2 <= radius ** 2


def _image(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def _cohort(root, n=6, readers=False):
    """Spheres of growing radius in Gaussian noise (a texture that is pure noise); optionally three readers'
    masks per case: the sphere, one voxel dilated and one voxel eroded."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        ball = _ball(4 + 1.5 * i)
        sitk.WriteImage(_image(rng.normal(100, 20, ball.shape).astype(np.float32)), str(root / f"images/c{i}.nii.gz"))
        sitk.WriteImage(_image(ball.astype(np.uint8)), str(root / f"masks/c{i}.nii.gz"))
        if readers:
            for r, mask in enumerate([ball, ndimage.binary_dilation(ball), ndimage.binary_erosion(ball)], start=1):
                (root / f"masks_r{r}").mkdir(exist_ok=True)
                sitk.WriteImage(_image(mask.astype(np.uint8)), str(root / f"masks_r{r}/c{i}.nii.gz"))
    (root / "labels.csv").write_text("case_id,label\n" + "".join(f"c{i},{i % 2}\n" for i in range(n)))
    return load_cohort(str(root))


SETTINGS = ExtractSettings(setting={"binWidth": 10}, featureClass={
    "shape": ["VoxelVolume", "MeshVolume", "SurfaceArea", "Maximum3DDiameter"], "glcm": ["Contrast"]})


# --- each perturbation against its definition -------------------------------------------------------------------

def test_rotating_by_zero_leaves_features_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    image = _image(rng.normal(50, 10, (SIZE,) * 3).astype(np.float32), spacing=(0.8, 0.8, 2.0))
    mask = _image(_ball(8).astype(np.uint8), spacing=(0.8, 0.8, 2.0))
    centre = perturb.roi_centroid(mask)
    rotated = perturb.rigid_transform(image, angle=0.0, centre=centre)
    rotated_mask = perturb.rigid_transform(mask, angle=0.0, centre=centre, is_mask=True)
    paths = {}
    for name, img in {"image": image, "mask": mask, "rot": rotated, "rot_mask": rotated_mask}.items():
        paths[name] = str(tmp_path / f"{name}.nii")
        sitk.WriteImage(img, paths[name])
    settings = ExtractSettings(setting={"binWidth": 5}, featureClass={"shape": None, "firstorder": None, "glcm": None})
    before = extract_case(CaseInput("a", paths["image"], paths["mask"]), settings).features[0]
    after = extract_case(CaseInput("a", paths["rot"], paths["rot_mask"]), settings).features[0]
    assert np.array_equal(sitk.GetArrayViewFromImage(rotated_mask), sitk.GetArrayViewFromImage(mask))
    names = [k for k in before if k not in ("case_id", "roi")]
    assert len(names) > 50
    for name in names:
        assert after[name] == pytest.approx(before[name], rel=1e-5, abs=1e-6), name


def test_rotation_moves_content_about_the_given_centre():
    array = np.zeros((1, 21, 21), np.float32)[0]
    array[10, 15] = 1.0  # 5 voxels right of the centre (x), on the centre row
    rotated = sitk.GetArrayFromImage(perturb.rigid_transform(_image(array), angle=90.0, centre=(10.0, 10.0)))
    assert np.unravel_index(np.argmax(rotated), rotated.shape) == (15, 10)  # a quarter turn: +x goes to +y


@pytest.mark.parametrize("fraction", [0.1, -0.1, 0.25])
def test_volume_adaptation_changes_the_volume_by_the_fraction_evenly(fraction):
    ball = _ball(7.3)
    adapted = sitk.GetArrayFromImage(perturb.adapt_volume(_image(ball.astype(np.uint8)), fraction)).astype(bool)
    layer = ndimage.binary_dilation(ball).sum() - ball.sum()  # one voxel layer of this ROI
    assert abs(adapted.sum() - ball.sum() * (1 + fraction)) <= layer
    assert adapted.sum() == round(ball.sum() * (1 + fraction))  # in fact exactly the target count
    if fraction > 0:  # grown evenly: contains the ROI and stays within a few layers of it
        assert adapted[ball].all() and not adapted[~ndimage.binary_dilation(ball, iterations=2)].any()
    else:
        assert ball[adapted].all() and adapted[ndimage.binary_erosion(ball, iterations=2)].all()


def test_contour_randomisation_keeps_one_connected_roi_and_is_seeded():
    rng = np.random.default_rng(5)
    ball = _ball(9)
    image = _image((ball * 40.0 + rng.normal(0, 10, ball.shape)).astype(np.float32))
    mask = _image(ball.astype(np.uint8))
    results = []
    for seed in range(6):
        new = sitk.GetArrayFromImage(perturb.randomise_contour(image, mask, seed=seed, supervoxel_voxels=20))
        _, n_pieces = ndimage.label(new)  # face connectivity, the strictest sense of one piece
        assert n_pieces == 1
        assert 0.6 < new.sum() / ball.sum() < 1.4
        results.append(new)
    assert any(not np.array_equal(results[0], other) for other in results[1:])
    again = sitk.GetArrayFromImage(perturb.randomise_contour(image, mask, seed=0, supervoxel_voxels=20))
    assert np.array_equal(again, results[0])


def test_noise_is_added_at_the_estimated_level():
    base = _image(np.zeros((24, 48, 48), np.float32))
    noisy = perturb.add_noise(base, 4.0, seed=2)
    assert perturb.estimate_noise(noisy) == pytest.approx(4.0, rel=0.05)
    assert np.array_equal(sitk.GetArrayFromImage(perturb.add_noise(base, 4.0, seed=2)),
                          sitk.GetArrayFromImage(noisy))


# --- the stage ---------------------------------------------------------------------------------------------------

def test_sphere_shape_features_are_robust_under_rotation_and_noise_texture_is_not(tmp_path):
    cohort = _cohort(tmp_path / "cohort")
    robustness = RobustnessSettings(rotation=[-20, 0, 20])
    result = robustness_cohort(cohort, SETTINGS, robustness, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "robustness.csv").set_index("feature")
    for name in ["VoxelVolume", "MeshVolume", "SurfaceArea", "Maximum3DDiameter"]:
        assert table.loc[f"original_shape_{name}", "icc"] > 0.95
        assert table.loc[f"original_shape_{name}", "robust"]
    assert table.loc["original_glcm_Contrast", "icc"] < 0.5 and not table.loc["original_glcm_Contrast", "robust"]
    assert set(table["n_versions"]) == {3} and set(table["n_cases"]) == {6}
    assert table.loc["original_shape_VoxelVolume", "family"] == "shape"
    # the table agrees with the perturbed features it was computed from
    from radpipe.robustness.icc import icc_table

    long = pd.read_csv(tmp_path / "out" / "perturbed_features.csv")
    cube = long.pivot(index="case_id", columns="version", values="original_shape_VoxelVolume").to_numpy()
    assert table.loc["original_shape_VoxelVolume", "icc"] == pytest.approx(icc_table(cube)["ICC1"][0], abs=1e-12)
    assert "robustness.csv" in (tmp_path / "out" / "robustness.html").read_text()
    assert result.computed == 18 and (result.qc["status"] == "ok").all()
    # a rerun takes every version from the cache
    again = robustness_cohort(cohort, SETTINGS, robustness, tmp_path / "out")
    assert again.computed == 0 and again.cached == 18
    pd.testing.assert_frame_equal(again.robustness, result.robustness)


def test_a_bad_case_becomes_a_qc_row(tmp_path):
    cohort = _cohort(tmp_path / "cohort", n=4)
    sitk.WriteImage(_image(np.zeros((SIZE,) * 3, np.uint8)), str(tmp_path / "cohort/masks/c1.nii.gz"))
    result = robustness_cohort(cohort, SETTINGS, RobustnessSettings(rotation=[-10, 10]), tmp_path / "out")
    qc = result.qc.set_index("case_id")
    assert qc.loc["c1", "status"] == "failed" and "empty" in qc.loc["c1", "reason"].lower()
    assert set(result.robustness["n_cases"]) == {3}


def test_reader_masks_give_an_inter_reader_icc(tmp_path):
    cohort = _cohort(tmp_path / "cohort", readers=True)
    settings = SETTINGS.model_copy(update={"reader_masks": "masks_r*/{case_id}.nii.gz"})
    result = robustness_cohort(cohort, settings, RobustnessSettings(), tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "reader_icc.csv").set_index("feature")
    assert set(table["n_versions"]) == {3} and set(table["n_cases"]) == {6}
    volume = table.loc["original_shape_VoxelVolume"]
    assert 0.8 < volume["icc"] < 1.0  # dilated/eroded readers: the volume differs by reader, the ranking does not
    assert volume["ICC3"] > volume["ICC2"]  # consistency forgives the readers' systematic offset, agreement does not
    assert result.robustness is None


def test_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="single version"):
        robustness_cohort(None, SETTINGS, RobustnessSettings(), tmp_path / "out")
    with pytest.raises(ValueError, match="rotatoin"):
        RobustnessSettings(rotatoin=[1])
    with pytest.raises(ConfigError, match="not found"):
        read_robustness(tmp_path / "nothing.csv")
    (tmp_path / "r.csv").write_text("feature,icc\nx,0.9\n")
    with pytest.raises(ConfigError, match="robust"):
        read_robustness(tmp_path / "r.csv")


# --- the model stage drops the non-robust features ----------------------------------------------------------------

def test_robust_features_drops_exactly_the_non_robust_columns_and_the_card_records_it(tmp_path):
    import json

    from radpipe.model.inputs import training_inputs
    from radpipe.model.persist import render_model_card
    from radpipe.model.settings import ModelSettings

    rng = np.random.default_rng(3)
    y = pd.Series(["no", "yes"] * 15, index=pd.Index([f"c{i:02d}" for i in range(30)], name="case_id"))
    X = pd.DataFrame({f"original_firstorder_F{j}": rng.normal(size=30) + (j == 0) * 1.5 * (y == "yes")
                      for j in range(6)}, index=y.index)
    table = pd.DataFrame({"feature": list(X.columns), "icc_type": "ICC(1,1)",
                          "icc": [0.95, 0.9, 0.6, 0.85, 0.3, 0.99], "ci_low": [0.9, 0.8, 0.4, 0.7, 0.1, 0.97]})
    table["robust"] = table["ci_low"] >= 0.75
    table["threshold"] = 0.75
    table.to_csv(tmp_path / "robustness.csv", index=False)
    settings = ModelSettings(models=["logreg"], positive_class="yes", bootstrap=0, outer_folds=3, inner_folds=2,
                             robust_features=str(tmp_path / "robustness.csv"))
    inputs = training_inputs(X, y, settings)
    non_robust = ["original_firstorder_F2", "original_firstorder_F3", "original_firstorder_F4"]
    assert inputs.feature_names == [c for c in X.columns if c not in non_robust]
    assert sorted(k for k, why in inputs.dropped.items() if why.startswith("not robust")) == non_robust
    # a stricter threshold on the lower bound drops F1 (0.8) as well
    strict = training_inputs(X, y, settings.model_copy(update={"robust_threshold": 0.85}))
    assert "original_firstorder_F1" not in strict.feature_names and len(strict.feature_names) == 2

    # the card's validation record (train writes settings.cv_summary() as card["cv"]; the whole run is checked
    # end to end by the slow test below) and its Markdown section
    record = inputs.settings.cv_summary()["robust_features"]
    assert record["threshold"] == 0.75 and record["dropped"] == 3 and record["assessed"] == 6
    assert record["file"] == str(tmp_path / "robustness.csv")
    card = json.loads(json.dumps({"model_name": "logreg", "cv": inputs.settings.cv_summary()}))
    assert "3 of the 6 features assessed" in render_model_card(card)

    (tmp_path / "bad.csv").write_text("feature,icc\nx,0.9\n")
    with pytest.raises(ConfigError, match="robust"):
        training_inputs(X, y, settings.model_copy(update={"robust_features": str(tmp_path / "bad.csv")}))
    with pytest.raises(ConfigError, match="not found"):
        training_inputs(X, y, settings.model_copy(update={"robust_features": str(tmp_path / "none.csv")}))


@pytest.mark.slow  # a whole run (extract, perturb, train): ~35 s on a loaded 2-core machine
def test_run_with_robust_features_auto_computes_robustness_on_the_training_cohort_only(tmp_path):
    import json

    from radpipe.config import Recipe
    from radpipe.demo import make_demo_cohort
    from radpipe.pipeline import run_recipe

    cohort = make_demo_cohort(tmp_path / "cohort", n_cases=20)
    recipe = Recipe.model_validate({
        "name": "auto", "dataset": str(cohort),
        "extract": {"featureClass": {"shape": ["VoxelVolume", "Sphericity", "Elongation"],
                                     "firstorder": ["Mean", "Kurtosis", "Range"]}},
        "robustness": {"rotation": [-10, 10], "noise_repeats": 1},
        "model": {"models": ["logreg"], "positive_class": "aggressive", "outer_folds": 3, "inner_folds": 2,
                  "bootstrap": 0, "robust_features": "auto"}})
    run_recipe(recipe, tmp_path, tmp_path / "out", explain=False)
    table = pd.read_csv(tmp_path / "out" / "robustness" / "robustness.csv")
    assert set(table["n_cases"]) == {20} and set(table["n_versions"]) == {2}
    card = json.loads((tmp_path / "out" / "models" / "model_card.json").read_text())
    record = card["cv"]["robust_features"]
    assert record["file"] == str(tmp_path / "out" / "robustness" / "robustness.csv")
    assert record["dropped"] == int((~table["robust"]).sum())
    assert set(card["feature_names"]) == set(table.loc[table["robust"], "feature"])


def test_cli_runs_the_recipe_and_refuses_a_misspelt_key(tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    _cohort(tmp_path / "cohort", n=4)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: t\ndataset: cohort\nextract:\n  setting: {binWidth: 10}\n  featureClass: {shape: [VoxelVolume]}"
                      "\nrobustness:\n  rotation: [-10, 10]\n  threshold: 0.9\n")
    runner = CliRunner()
    done = runner.invoke(app, ["robustness", str(tmp_path / "cohort"), "--recipe", str(recipe),
                               "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert table["threshold"].tolist() == [0.9] and table["robust"].tolist() == [table["ci_low"][0] >= 0.9]
    recipe.write_text("name: t\ndataset: cohort\nrobustness:\n  rotatoin: [-10, 10]\n")
    refused = runner.invoke(app, ["robustness", str(tmp_path / "cohort"), "--recipe", str(recipe),
                                  "--out", str(tmp_path / "out2")])
    assert refused.exit_code == 2 and "robustness.rotatoin" in refused.output
    assert not (tmp_path / "out2").exists()
