"""`radpipe init`: a study folder for one's own cohort, with the extraction defaults read from the data."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

import radpipe.study
from radpipe.cli import app
from radpipe.config import load_datasets, load_recipe
from radpipe.demo import make_demo_cohort

runner = CliRunner()


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from radpipe.console import console

    monkeypatch.setattr(console, "width", 1000)


def pet_like_cohort(folder, spacings=(3.9, 4.7, 5.5), per_spacing=2):
    """Spheres with SUV-range intensities (background ~1, lesions up to ~6-12) at in-plane spacings that vary
    like the STS PET scans (3.9, 4.7, 5.5 mm; 3.27 mm slices)."""
    rng = np.random.default_rng(0)
    rows = ["case_id,label"]
    size = (16, 20, 20)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in size), indexing="ij")
    index = 0
    for spacing in spacings:
        for _ in range(per_spacing):
            case_id = f"PET_{index:02d}"
            distance = np.sqrt(((zz - 8) * 3.27) ** 2 + ((yy - 10) * spacing) ** 2 + ((xx - 10) * spacing) ** 2)
            mask = (distance <= 20).astype(np.uint8)
            peak = rng.uniform(6, 12)
            image = 1.0 + rng.normal(0, 0.1, size) + mask * peak * np.exp(-(distance / 20) ** 2)
            image += mask * rng.normal(0, 0.6, size)
            for array, sub in ((np.clip(image, 0, None).astype(np.float32), "images"), (mask, "masks")):
                itk = sitk.GetImageFromArray(array)
                itk.SetSpacing((spacing, spacing, 3.27))
                (folder / sub).mkdir(parents=True, exist_ok=True)
                sitk.WriteImage(itk, str(folder / sub / f"{case_id}.nii.gz"))
            rows.append(f"{case_id},{'metastasis' if index % 2 else 'no_metastasis'}")
            index += 1
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_init_on_a_pet_like_cohort_fills_in_unit_bin_width_and_resampling(tmp_path):
    from radpipe.extract.discretisation import grey_levels

    cohort = pet_like_cohort(tmp_path / "sarcoma_pet")
    result = runner.invoke(app, ["init", str(tmp_path / "study"), "--cohort", str(cohort),
                                             "--positive-class", "metastasis"])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "images/ + masks/ folders: 6 images, 6 masks, labels.csv" in text  # what was detected is printed
    assert "Cohort('sarcoma_pet', 6 cases, classes {metastasis: 3, no_metastasis: 3})" in text
    assert "voxel spacing varies" in text

    datasets = load_datasets(tmp_path / "study" / "datasets.yaml")
    spec = datasets["sarcoma_pet"]
    assert spec.root == cohort.resolve() and spec.layout == "folders"
    assert spec.label_column == "label" and spec.positive_class == "metastasis"

    recipe = load_recipe(tmp_path / "study" / "recipe.yaml")
    assert recipe.dataset == "sarcoma_pet"
    width = recipe.extract.setting["binWidth"]
    # SUV-range ROIs: pyradiomics' default of 25 would give one or two grey levels; the chosen width gives the
    # median ROI 32-64
    from radpipe.cohort import load_cohort
    from radpipe.extract.survey import survey_cohort

    survey = survey_cohort(load_cohort(cohort))
    levels = grey_levels(survey.ok["roi_min"], survey.ok["roi_max"], width)
    assert width < 1 and 32 <= np.median(levels) <= 64, (width, levels)
    assert np.median(grey_levels(survey.ok["roi_min"], survey.ok["roi_max"], 25.0)) <= 2
    [step] = recipe.extract.preprocessing
    assert step.step == "resample" and list(step.spacing) == pytest.approx([4.7, 4.7, 3.27])


def test_commented_defaults_are_real_keys_with_valid_values(tmp_path):
    cohort = make_demo_cohort(tmp_path / "lesions", n_cases=4)
    radpipe.study.init_study(tmp_path / "study", cohort, positive_class="aggressive")
    text = (tmp_path / "study" / "recipe.yaml").read_text()
    commented = re.findall(r"^  # (\w+): ", text, flags=re.M)
    assert {"models", "outer_folds", "select_k", "top_features", "lime_samples"} <= set(commented)
    # uncomment every `  # key: value   # why` line of the model and explain sections: still a valid recipe
    body = text[text.index("\nmodel:"):]
    uncommented = re.sub(r"^  # (\w+): (.*?)(   # .*)?$", r"  \1: \2", body, flags=re.M)
    (tmp_path / "study" / "all.yaml").write_text(text[:text.index("\nmodel:")] + uncommented)
    recipe = load_recipe(tmp_path / "study" / "all.yaml")
    assert recipe.model.outer_folds == 5 and recipe.explain.top_features == 10


def test_init_refuses_to_overwrite_and_force_replaces(tmp_path):
    cohort = make_demo_cohort(tmp_path / "lesions", n_cases=4)
    study = tmp_path / "study"
    study.mkdir()
    (study / "recipe.yaml").write_text("mine\n")
    result = runner.invoke(app, ["init", str(study), "--cohort", str(cohort)])
    assert result.exit_code == 2
    assert f"{study / 'recipe.yaml'} already exists" in said(result) and "--force" in said(result)
    assert (study / "recipe.yaml").read_text() == "mine\n" and not (study / "datasets.yaml").exists()

    result = runner.invoke(app, ["init", str(study), "--cohort", str(cohort), "--force"])
    assert result.exit_code == 0, result.output
    assert load_recipe(study / "recipe.yaml").dataset == "lesions"


def test_text_classes_without_a_positive_class_are_left_to_the_user(tmp_path):
    cohort = make_demo_cohort(tmp_path / "lesions", n_cases=4)
    result = runner.invoke(app, ["init", str(tmp_path / "study"), "--cohort", str(cohort)])
    assert result.exit_code == 0, result.output
    assert "two outcome classes (aggressive, indolent) and no positive class" in said(result)
    registry = (tmp_path / "study" / "datasets.yaml").read_text()
    assert "# positive_class: CHANGE_ME" in registry and "one of: aggressive, indolent" in registry
    assert load_datasets(tmp_path / "study" / "datasets.yaml")["lesions"].positive_class is None

    result = runner.invoke(app, ["init", str(tmp_path / "s2"), "--cohort", str(cohort),
                                             "--positive-class", "agressive"])
    assert result.exit_code == 2 and "'agressive' is not one of the outcome values" in said(result)


def test_init_without_a_cohort_writes_marked_templates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "study"])
    assert result.exit_code == 0, result.output
    for name in ("datasets.yaml", "recipe.yaml", "README.md"):
        assert "CHANGE_ME" in (tmp_path / "study" / name).read_text()
    assert yaml.safe_load((tmp_path / "study" / "datasets.yaml").read_text())["datasets"]["my_cohort"]
    # the template is valid YAML with checked keys; only the placeholder root stops it
    result = runner.invoke(app, ["validate", "study/recipe.yaml"])
    assert result.exit_code == 2 and "CHANGE_ME" in said(result) and "does not exist" in said(result)


def test_missing_cohort_is_exit_2(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "study"), "--cohort", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "nope does not exist" in said(result)
    assert not (tmp_path / "study").exists()


def test_init_on_a_dicom_export(tmp_path):
    from tests.dicom_trees import write_dicom_tree

    written = write_dicom_tree(tmp_path / "export", problems=False)
    result = runner.invoke(app, ["init", str(tmp_path / "study"), "--cohort", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert f"Cohort('export', {len(written['cases'])} cases, unlabelled)" in text
    assert "different modalities (CT: 2, MR: 1, PT: 1)" in text  # one bin width for all would mislead
    spec = load_datasets(tmp_path / "study" / "datasets.yaml")["export"]
    assert spec.layout == "dicom" and spec.labels is None
    recipe = load_recipe(tmp_path / "study" / "recipe.yaml")
    assert recipe.extract.intensity_unit == "HU"  # the majority modality, CT
    [step] = recipe.extract.preprocessing  # 1 x 1 x 2.5 mm voxels: isotropic resampling, same voxel volume
    assert list(step.spacing) == pytest.approx([1.36] * 3)
    assert all(name not in (tmp_path / "study" / "datasets.yaml").read_text() for name in written["patient_names"])


def test_init_help():
    result = runner.invoke(app, ["init", "--help"])
    assert result.exit_code == 0 and "--cohort" in result.output and "--force" in result.output
