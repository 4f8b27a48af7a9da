"""Issue 12: a new user's first ten minutes, one block of CLI tests per finding (exit code and words)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import radpipe.config
from radpipe.cli import app

runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from radpipe.console import console

    monkeypatch.setattr(console, "width", 1000)  # long temporary paths stay on one line


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """An empty working folder, radpipe behaving as an installed package (no source checkout beside it)."""
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(radpipe.config, "CHECKOUT_ROOT", None)
    monkeypatch.delenv("RADPIPE_DATASETS", raising=False)
    monkeypatch.delenv("RADPIPE_DATA", raising=False)
    yield work
    radpipe.config.use_datasets_file(None)  # --datasets lasts for the process; leave none behind


# ---------------------------------------------------------------------------------------------------------
# Finding 1: after a non-editable install, demo/datasets looked inside site-packages, --help suggested a
# recipe that is not installed, and no registry but the checkout's could be used.
# (tests/test_installed.py runs the same commands from a real wheel in a fresh venv.)
# ---------------------------------------------------------------------------------------------------------

def test_help_suggests_commands_that_work_from_an_installed_package():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    text = said(result)
    assert "radpipe demo" in text and "radpipe init" in text
    assert "pipelines/" not in text  # the checkout's recipes are not installed


def test_demo_recipe_is_package_data():
    from importlib.resources import files

    from radpipe.config import load_recipe

    recipe = load_recipe(files("radpipe") / "recipes" / "demo.yaml")
    assert recipe.name == "demo" and recipe.model.positive_class == "aggressive"


def test_datasets_without_any_registry_says_where_it_looked(installed):
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "no dataset registry found" in text
    assert "--datasets FILE" in text and "$RADPIPE_DATASETS" in text and "radpipe init" in text
    assert "source checkout" not in text  # an installed package has none


def test_registry_search_order(installed, tmp_path, monkeypatch):
    parent = installed / "datasets.yaml"
    parent.write_text("datasets:\n  from_parent:\n    root: .\n")
    below = installed / "sub" / "deeper"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert f"registry: {parent}" in said(result) and "from_parent" in said(result)

    from_env = tmp_path / "env.yaml"
    from_env.write_text("datasets:\n  from_env:\n    root: .\n")
    monkeypatch.setenv("RADPIPE_DATASETS", str(from_env))
    result = runner.invoke(app, ["datasets"])
    assert f"registry: {from_env}" in said(result) and "from_parent" not in said(result)

    explicit = tmp_path / "mine.yaml"
    explicit.write_text("datasets:\n  mine:\n    root: .\n")
    result = runner.invoke(app, ["--datasets", str(explicit), "datasets"])
    assert result.exit_code == 0, result.output
    assert f"registry: {explicit}" in said(result) and "from_env" not in said(result)


def test_missing_registry_file_given_with_datasets_is_exit_2(installed):
    result = runner.invoke(app, ["--datasets", "nowhere.yaml", "datasets"])
    assert result.exit_code == 2
    assert "nowhere.yaml" in said(result) and "dataset registry not found" in said(result)


def test_registry_using_radpipe_data_needs_it_outside_a_checkout(installed):
    (installed / "datasets.yaml").write_text("datasets:\n  pet:\n    root: ${RADPIPE_DATA}/pet\n")
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 2
    text = said(result)
    assert "RADPIPE_DATA is not set" in text and "datasets.yaml" in text


def test_a_study_registry_is_found_from_its_recipe_folder(installed):
    from tests.synth import make_cohort

    cohort = make_cohort(installed / "data" / "lesions", n=8)
    study = installed / "study"
    study.mkdir()
    (study / "datasets.yaml").write_text(f"datasets:\n  lesions:\n    root: {cohort}\n    positive_class: b\n")
    (study / "recipe.yaml").write_text("name: s\ndataset: lesions\n")
    result = runner.invoke(app, ["validate", "study/recipe.yaml"])  # run from the folder above the study
    assert result.exit_code == 0, result.output
    assert "Cohort('lesions', 8 cases" in said(result)


# ---------------------------------------------------------------------------------------------------------
# Finding 2: `radpipe extract ./no_such_cohort` blamed site-packages/datasets.yaml, never the user's path.
# ---------------------------------------------------------------------------------------------------------

def test_missing_cohort_folder_is_exit_2_naming_it(installed):
    result = runner.invoke(app, ["extract", "./no_such_cohort", "--out", "x"])
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "'./no_such_cohort' is neither a folder nor a dataset" in text
    assert "no datasets.yaml was found (looked at: --datasets FILE, $RADPIPE_DATASETS" in text
    assert "site-packages" not in text and not (installed / "x").exists()


def test_missing_cohort_folder_with_a_registry_lists_its_names(installed):
    (installed / "datasets.yaml").write_text("datasets:\n  one:\n    root: .\n")
    result = runner.invoke(app, ["extract", "no_such_cohort", "--out", "x"])
    assert result.exit_code == 2
    text = said(result)
    assert "'no_such_cohort' is neither a folder nor a dataset" in text and "(known: one)" in text


def test_missing_cohort_path_is_blamed_even_beside_a_registry_that_cannot_load(installed):
    (installed / "datasets.yaml").write_text("datasets:\n  pet:\n    root: ${RADPIPE_DATA}/pet\n")
    result = runner.invoke(app, ["extract", "./no_such_cohort", "--out", "x"])
    assert result.exit_code == 2
    text = said(result)
    assert "'./no_such_cohort' is neither a folder nor a dataset" in text and "RADPIPE_DATA" not in text


@pytest.mark.parametrize("command", ["validate", "run"])
def test_recipe_whose_cohort_folder_is_missing_is_exit_2(installed, command):
    (installed / "recipe.yaml").write_text("name: r\ndataset: data/my_cohort\n")
    args = [command, "recipe.yaml"] + (["--out", "out"] if command == "run" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "'data/my_cohort' is neither a folder nor a dataset" in text and "my_cohort" in text
    assert not (installed / "out").exists()


# ---------------------------------------------------------------------------------------------------------
# Finding 5: `radpipe extract path/to/cohort` on PET in SUV used pyradiomics' binWidth 25, so most
# ROIs had one grey level (Uniformity 1, NGTDM Coarseness 1e6, GLCM Contrast 0) and varying voxel spacing went
# unmentioned. Now the bin width is chosen from the data and said, a bad recipe width and the spacing are warned
# about, and an external cohort reuses the training cohort's width with --reference.
# ---------------------------------------------------------------------------------------------------------

def test_extract_on_pet_chooses_and_says_the_bin_width_and_warns_about_spacing(tmp_path):
    from tests.test_defaults import pet_cohort

    spacings = [(3.90625, 3.90625, 3.27), (4.6875, 4.6875, 3.27)] + [(5.46875, 5.46875, 3.27)] * 4
    cohort = pet_cohort(tmp_path / "pet", n=6, spacings=spacings)
    result = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "discretisation: binWidth 0.25 a.u. (auto: the median ROI gets" in text
    assert "warning: voxel spacing varies by more than 10% across the cohort along x/y" in text
    assert "{step: resample, spacing: [5.47, 5.47, 3.27], interpolator: linear" in text
    codebook = (tmp_path / "out" / "codebook.csv").read_text()
    assert "binWidth=0.25" in codebook and "placeholder" not in codebook and "single grey level" not in codebook


def test_extract_with_pyradiomics_default_width_on_suv_warns_with_the_numbers(tmp_path):
    from tests.test_defaults import pet_cohort

    cohort = pet_cohort(tmp_path / "pet", n=4)
    params = tmp_path / "params.yaml"
    params.write_text("setting:\n  binWidth: 25\n")
    result = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "discretisation: binWidth 25 a.u. (recipe: the median ROI gets 1 grey levels)" in text
    assert "warning: binWidth 25 gives the median ROI 1 grey levels (median ROI range" in text
    assert "texture features will be degenerate (one or a few grey levels); try binWidth 0.25" in text
    codebook = (tmp_path / "out" / "codebook.csv").read_text()
    assert "pyradiomics placeholder 1e+06 in 4 of 4 cases" in codebook


def test_extract_external_cohort_with_reference_reuses_the_frozen_width(tmp_path):
    from tests.test_defaults import pet_cohort

    train = pet_cohort(tmp_path / "train", n=4)
    bright = pet_cohort(tmp_path / "bright", n=3, scale=3.0)
    assert runner.invoke(app, ["extract", str(train), "--out", str(tmp_path / "features")]).exit_code == 0
    result = runner.invoke(app, ["extract", str(bright), "--out", str(tmp_path / "ext"),
                                 "--reference", str(tmp_path / "features")])
    assert result.exit_code == 0, result.output
    assert "discretisation: binWidth 0.25 a.u. (reference: the median ROI gets" in said(result)
    missing = runner.invoke(app, ["extract", str(bright), "--out", str(tmp_path / "ext2"),
                                  "--reference", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "reference not found" in said(missing) and "nowhere" in said(missing)


# ---------------------------------------------------------------------------------------------------------
# Findings 3, 4, 6, 7 and 9: model inputs checked in one place (radpipe.model.inputs).
# 3: default `radpipe train` on 12 cases (6/6) exited 3: the SVM's calibration CV asked for 3 folds of
#    inner folds holding fewer cases. 4: string labels without a positive class silently made the minority
#    class positive. 6: user mistakes exited 3. 7: `validate` accepted a labels file `run` refused.
# 9: `train` printed nothing for 20 s; extraction rates disagreed; a cached rerun said "0.00 cases/s".
# ---------------------------------------------------------------------------------------------------------

def _small_tables(folder, n=12, labels=("no_metastasis", "metastasis")):
    """A 12-case feature table (one informative feature) and its labels.csv, as a user brings them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    ids = [f"STS_{i:03d}" for i in range(n)]
    y = [labels[i % 2] for i in range(n)]
    table = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"original_firstorder_F{j}" for j in range(6)])
    table["original_firstorder_F0"] += 1.5 * np.array([label == labels[1] for label in y])
    table.insert(0, "case_id", ids)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "features.csv", index=False)
    pd.DataFrame({"case_id": ids, "label": y}).to_csv(folder / "labels.csv", index=False)
    return folder / "features.csv", folder / "labels.csv"


def test_train_on_12_cases_fits_the_svm_calibration_folds_to_the_classes(tmp_path):
    """The SVM (what failed) with the default folds; the full default run is the slow test below."""
    import json

    import pandas as pd

    features, labels = _small_tables(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndataset: .\nmodel:\n  models: [svm]\n  bootstrap: 200\n")
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                                 "--positive-class", "metastasis", "--recipe", str(recipe)])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "note: the smallest class ('metastasis') has 6 cases: SVM calibration folds 3 -> 2" in text
    assert "train models" in text and "6/6" in text  # 5 outer folds + the refit
    cv = pd.read_csv(tmp_path / "m" / "metrics.csv").set_index("model")
    assert cv.loc["svm", "n"] == 12 and cv.loc["svm", "auc_ci_low"] <= cv.loc["svm", "auc"] <= cv.loc["svm", "auc_ci_high"]
    splits = json.loads((tmp_path / "m" / "splits.json").read_text())
    assert splits["folds_reduced"]["used"] == {"outer_folds": 5, "inner_folds": 3, "calibration_folds": 2}
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["cv"]["calibration_folds"] == 2


@pytest.mark.slow  # about 30 s alone, 75 s on a busy 2-core machine
def test_default_train_on_12_cases_completes_with_folds_fitted_to_the_classes(tmp_path):
    import json

    import pandas as pd

    features, labels = _small_tables(tmp_path)
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                                 "--positive-class", "metastasis"])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "note: the smallest class ('metastasis') has 6 cases: SVM calibration folds 3 -> 2" in text
    assert "train models" in text and "18/18" in text  # 3 models x (5 folds + refit)
    cv = pd.read_csv(tmp_path / "m" / "metrics.csv").set_index("model")
    assert sorted(cv.index) == ["rf", "svm", "xgb"] and cv["auc"].between(0, 1).all()
    assert (cv["auc_ci_low"] <= cv["auc"]).all() and (cv["auc"] <= cv["auc_ci_high"]).all()
    splits = json.loads((tmp_path / "m" / "splits.json").read_text())
    assert splits["outer_folds"] == 5 and len(splits["folds"]) == 5
    assert splits["folds_reduced"]["used"] == {"outer_folds": 5, "inner_folds": 3, "calibration_folds": 2}
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["cv"]["calibration_folds"] == 2 and card["positive_class"] == "metastasis"


def test_train_too_few_cases_for_any_fold_is_exit_2_naming_the_counts(tmp_path):
    features, labels = _small_tables(tmp_path, n=6)  # 3 of each class: the SVM cannot calibrate
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                                 "--positive-class", "metastasis"])
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "has 3 cases {'metastasis': 3, 'no_metastasis': 3}" in text
    # the default search has two calibrated SVM families; a family list names its own
    assert "leave 'svm_linear' and 'svm' out of model.search_families" in text and not (tmp_path / "m").exists()
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                                 "--positive-class", "metastasis", "--models", "svm,rf,xgb"])
    assert result.exit_code == 2 and "leave 'svm' out of model.models" in said(result)


def test_string_labels_without_a_positive_class_are_exit_2_listing_both_and_where_to_set_it(tmp_path):
    features, labels = _small_tables(tmp_path)
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "two classes, 'metastasis' and 'no_metastasis', and no positive class" in text
    assert "--positive-class" in text and "model.positive_class" in text and "positive_class: VALUE" in text
    assert not (tmp_path / "m").exists()


def test_zero_one_labels_need_no_positive_class(tmp_path):
    features, labels = _small_tables(tmp_path, labels=("0", "1"))
    result = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
                                 "--models", "logreg"])
    assert result.exit_code == 0, result.output
    assert "positive '1'" in said(result)


@pytest.mark.parametrize("case", ["features", "labels", "labels_without_case_id", "labels_column"])
def test_train_user_mistakes_are_exit_2_naming_the_path(tmp_path, case):
    features, labels = _small_tables(tmp_path)
    expected = {"features": ("nowhere.csv", "feature table not found"),
                "labels": ("nowhere.csv", "labels table not found"),
                "labels_without_case_id": ("labels.csv", "no column 'case_id'"),
                "labels_column": ("labels.csv", "no column 'outcome'")}[case]
    args = ["train", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"), "--positive-class",
            "metastasis"]
    if case == "features":
        args[1] = str(tmp_path / "nowhere.csv")
    elif case == "labels":
        args[3] = str(tmp_path / "nowhere.csv")
    elif case == "labels_without_case_id":
        labels.write_text(labels.read_text().replace("case_id,", "patient,"))
    else:
        args += ["--label-column", "outcome"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = said(result)
    assert expected[0] in text and expected[1] in text
    assert "unexpectedly" not in text


@pytest.mark.parametrize("command", ["predict", "evaluate", "explain"])
def test_a_missing_model_folder_is_exit_2(tmp_path, command):
    features, labels = _small_tables(tmp_path)
    where = str(tmp_path / "no_model")
    args = {"predict": ["predict", where, str(features), "--out", str(tmp_path / "p.csv")],
            "evaluate": ["evaluate", where, str(features), "--labels", str(labels)],
            "explain": ["explain", where, "--features", str(features), "--out", str(tmp_path / "e")]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"model folder {where} does not exist" in said(result)


def test_validate_refuses_the_labels_file_run_refuses(tmp_path):
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=6)
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text().replace("case_id,label", "case_id,outcome"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndataset: {folder}\nmodel:\n  positive_class: b\n")
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(recipe), *(["--out", str(tmp_path / "out")] if command == "run"
                                                             else [])])
        assert result.exit_code == 2, result.output
        assert "has no outcome column 'label'" in said(result) and "['outcome']" in said(result)
    assert not (tmp_path / "out").exists()


def test_validate_reports_what_run_would_train(tmp_path):
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=12)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndataset: {folder}\nmodel:\n  positive_class: b\n")
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    text = said(result)
    assert "classes ['a', 'b'], positive class 'b'; folds 5 outer x 3 inner" in text
    assert "SVM calibration folds 3 -> 2" in text


def test_extract_rates_agree_and_a_cached_rerun_says_so(tmp_path):
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=4)
    first = runner.invoke(app, ["extract", str(folder), "--out", str(tmp_path / "f")])
    assert first.exit_code == 0, first.output
    assert "cases/s (4 computed in" in said(first)
    rates = re.findall(r"(\d+\.\d\d) cases/s", said(first))  # the bar's last rate, then the summary's
    assert len(rates) >= 2 and len(set(rates)) == 1, rates
    again = runner.invoke(app, ["extract", str(folder), "--out", str(tmp_path / "f")])
    assert again.exit_code == 0, again.output
    assert "all 4 cases from the cache" in said(again) and "0.00 cases/s" not in said(again)


# ---------------------------------------------------------------------------------------------------------
# Finding 8: a per-case folder whose mask/ held the RTSTRUCT was read as an image series ("No DICOM
# image series in .../mask"); a one-structure RTSTRUCT still demanded extract.roi_name; a folder of per-case
# folders needed `layout: per_case` in datasets.yaml.
# ---------------------------------------------------------------------------------------------------------

def _per_case_dicom_cohort(folder, *, rois: tuple[str, ...] = ("GTV",)):
    """<folder>/case01/image/ (a CT series) + <folder>/case01/mask/ (one RTSTRUCT), no datasets.yaml."""
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.dicom_trees import square, write_rtstruct, write_series

    frame = generate_uid()
    series = write_series(folder / "case01" / "image", np.full((4, 12, 12), 1100, np.uint16), spacing=(1.0, 1.0),
                          origin_xy=(0.0, 0.0), frame_uid=frame)
    contours = {name: [square(1.5 + i, 1.5 + i, 8.5 + i, 8.5 + i, 2.5 * z) for z in (1, 2)] for i, name in enumerate(rois)}
    write_rtstruct(folder / "case01" / "mask" / "RS1.dcm", frame, contours, referenced_series=series)
    return folder


def test_per_case_folder_with_the_rtstruct_in_mask_extracts_with_no_configuration(tmp_path):
    import pandas as pd

    cohort = _per_case_dicom_cohort(tmp_path / "cohort")
    result = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "No DICOM image series" not in said(result)
    diagnostics = pd.read_csv(tmp_path / "out" / "diagnostics.csv")
    assert diagnostics["case_id"].tolist() == ["case01"] and diagnostics["roi_voxels"].tolist() == [7 * 7 * 2]
    assert diagnostics["modality"].tolist() == ["CT"]


def test_rtstruct_with_several_structures_and_no_roi_name_lists_them_in_qc(tmp_path):
    import pandas as pd

    cohort = _per_case_dicom_cohort(tmp_path / "cohort", rois=("GTV", "Lung-L"))
    result = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output  # a case failed, the run did not
    reason = pd.read_csv(tmp_path / "out" / "qc.csv").set_index("case_id").loc["case01", "reason"]
    assert "2 structures" in reason and "'GTV'" in reason and "'Lung-L'" in reason and "extract.roi_name" in reason


def test_a_folder_in_no_known_layout_is_exit_2_listing_what_it_holds(tmp_path):
    folder = tmp_path / "scans"
    (folder / "notes").mkdir(parents=True)
    for name in ("a.nii.gz", "b.nii.gz", "notes/readme.txt"):
        (folder / name).write_bytes(b"x")
    result = runner.invoke(app, ["extract", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = said(result)
    assert "cannot tell how the cohort" in text and "2 .nii.gz, 1 .txt file(s) and 1 sub-folder(s)" in text
    assert "images/ + masks/" in text and "DICOM tree" in text
