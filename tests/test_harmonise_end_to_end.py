"""`radpipe run` with ComBat harmonisation and with a multi-class outcome, end to end (extract → train → explain),
then `radpipe predict` / `evaluate` on the saved model: the batch column travels as text from the labels file to
the harmoniser and is never a feature, never perturbed and never explained."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.config import Recipe
from radpipe.errors import ConfigError
from radpipe.explain.settings import ExplainSettings
from radpipe.extract.settings import ExtractSettings
from radpipe.model import ModelSettings, load_model
from radpipe.pipeline import run_recipe
from tests.synth import write_case

FAST_EXTRACT = ExtractSettings(setting={"binWidth": 25}, imageType={"Original": {}},
                               featureClass={"firstorder": None, "shape": ["VoxelVolume", "SurfaceArea", "Sphericity"]})
FAST_EXPLAIN = ExplainSettings(lime_samples=50, lime_top=5, max_patients=3, bootstrap=20, stability_cases=4,
                               dependence_plots=1, waterfall_png=False, images=False)
SCANNERS = ("GE", "Siemens")


def scanner_cohort(folder, n=24):
    """``n`` cases, labels a/b alternating, scanners GE/Siemens in blocks of two (every label x scanner stratum
    holds n/4 cases)."""
    rows = ["case_id,label,scanner"]
    for i in range(n):
        label, scanner = "ab"[i % 2], SCANNERS[(i // 2) % 2]
        write_case(folder, f"case{i:02d}", seed=i, radius=4.0 + 2.0 * (i % 2) + 0.1 * i)
        rows.append(f"case{i:02d},{label},{scanner}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def harmonised_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("harmonised")
    folder = scanner_cohort(tmp / "cohort")
    recipe = Recipe(name="h", dataset=str(folder), extract=FAST_EXTRACT, explain=FAST_EXPLAIN,
                    model=ModelSettings(models=["logreg"], harmonise="combat", batch_column="scanner",
                                        outer_folds=3, inner_folds=2, select_k=3, bootstrap=20,
                                        correlation_threshold=None, positive_class="b"))
    result = run_recipe(recipe, tmp, tmp / "out")
    return tmp, folder, result


def test_run_with_combat_trains_and_explains_without_the_batch_as_a_feature(harmonised_run):
    tmp, folder, result = harmonised_run
    models, explain = tmp / "out" / "models", tmp / "out" / "explain"
    card = json.loads((models / "model_card.json").read_text())
    assert card["feature_names"][-1] == "scanner" and "scanner" not in card["selected_features"]
    assert card["training_batches"] == {"GE": 12, "Siemens": 12}
    assert card["cv"]["outer"].startswith("RepeatedStratifiedKFold(3 folds x 1 repeats), stratified on outcome x batch")
    loaded = load_model(models)
    assert loaded.batch_column == "scanner"
    assert loaded.pipeline.named_steps["harmonise"].batches_.tolist() == ["GE", "Siemens"]

    # outer folds stratified on label x scanner: 6 cases per stratum, 2 of each in every test fold
    labels = pd.read_csv(folder / "labels.csv", dtype=str).set_index("case_id")
    splits = json.loads((models / "splits.json").read_text())
    assert splits["stratified_on"] == "outcome x batch"
    for fold in splits["folds"]:
        strata = (labels.loc[fold["test"], "label"] + labels.loc[fold["test"], "scanner"]).value_counts()
        assert strata.to_dict() == {"aGE": 2, "aSiemens": 2, "bGE": 2, "bSiemens": 2}
    predictions = pd.read_csv(models / "predictions.csv", dtype={"case_id": str})
    assert sorted(predictions["case_id"]) == sorted(labels.index) and predictions["y_prob"].between(0, 1).all()

    # explain: SHAP on the harmonised final features, LIME on the inputs, never the scanner
    shap = pd.read_csv(explain / "shap_values.csv", index_col=0)
    shap_original = pd.read_csv(explain / "shap_values_original.csv", index_col=0)
    lime = pd.read_csv(explain / "lime.csv")
    assert "scanner" not in shap.columns and "scanner" not in shap_original.columns
    assert len(shap) == 24 and shap.shape[1] == 3 + 1          # 3 selected features + base_value
    assert len(lime) and "scanner" not in set(lime["feature"])
    assert not lime["feature_rule"].str.contains("scanner").any()
    summary = json.loads((explain / "summary.json").read_text())
    assert summary["additivity_max_error"] < 1e-6
    assert summary["n_final_features"] == 3 and summary["n_patients"] == 3
    assert summary["fold_stability"]["n_folds"] == 3 and not summary["fold_stability"]["skipped"]
    assert (explain / "cohort.html").exists() and len(list((explain / "patients").glob("*.html"))) == 3


def test_predict_and_evaluate_read_the_batch_from_the_labels_file(harmonised_run):
    tmp, folder, _ = harmonised_run
    models, features = tmp / "out" / "models", tmp / "out" / "features" / "features.csv"
    runner = CliRunner()
    out = tmp / "predictions.csv"

    # the feature table has no scanner column: refused, naming the column
    missing = runner.invoke(app, ["predict", str(models), str(features), "--out", str(out)])
    assert missing.exit_code == 2, missing.output
    assert "'scanner'" in missing.output and "--labels" in " ".join(missing.output.split())

    done = runner.invoke(app, ["predict", str(models), str(features), "--out", str(out),
                               "--labels", str(folder / "labels.csv")])
    assert done.exit_code == 0, done.output
    predicted = pd.read_csv(out, dtype={"case_id": str}).set_index("case_id")
    train = pd.read_csv(models / "train_features.csv", dtype={"case_id": str, "scanner": str}).set_index("case_id")
    expected = load_model(models).pipeline.predict_proba(train)[:, 1]
    np.testing.assert_allclose(predicted.loc[train.index, "y_prob"], expected, rtol=0, atol=1e-12)

    # the same with the scanner as a column of the feature table, and as evaluate's --labels
    table = pd.read_csv(features, dtype={"case_id": str}).set_index("case_id")
    labels = pd.read_csv(folder / "labels.csv", dtype=str).set_index("case_id")
    table.assign(scanner=labels["scanner"]).reset_index().to_csv(tmp / "with_scanner.csv", index=False)
    again = runner.invoke(app, ["predict", str(models), str(tmp / "with_scanner.csv"), "--out", str(tmp / "p2.csv")])
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp / "p2.csv"), pd.read_csv(out))
    scored = runner.invoke(app, ["evaluate", str(models), str(features), "--labels", str(folder / "labels.csv"),
                                "--out", str(tmp / "metrics.csv")])
    assert scored.exit_code == 0, scored.output
    assert pd.read_csv(tmp / "metrics.csv").loc[0, "n"] == 24

    # a scanner the model was not harmonised on is named
    labels.assign(scanner=labels["scanner"].replace({"GE": "Philips"})).reset_index().to_csv(tmp / "new.csv",
                                                                                             index=False)
    unseen = runner.invoke(app, ["predict", str(models), str(features), "--out", str(out), "--labels",
                                 str(tmp / "new.csv")])
    assert unseen.exit_code == 2 and "['Philips']" in unseen.output, unseen.output


def test_explain_command_reads_the_batch_from_labels_or_cohort(harmonised_run, tmp_path):
    tmp, folder, _ = harmonised_run
    models, features = tmp / "out" / "models", tmp / "out" / "features" / "features.csv"
    reference = pd.read_csv(tmp / "out" / "explain" / "shap_values.csv")
    runner = CliRunner()
    for option in (["--labels", str(folder / "labels.csv")], ["--cohort", str(folder)]):
        out = tmp_path / option[0].strip("-")
        result = runner.invoke(app, ["explain", str(models), "--features", str(features), "--out", str(out),
                                     "--patients", ",".join(reference["case_id"].astype(str)), *option])
        assert result.exit_code == 0, result.output
        shap = pd.read_csv(out / "shap_values.csv")
        assert "scanner" not in shap.columns
        assert list(shap.columns) == list(reference.columns)
        np.testing.assert_allclose(shap.drop(columns="case_id").to_numpy(),
                                   reference.drop(columns="case_id").to_numpy(), rtol=0, atol=1e-9)
    missing = runner.invoke(app, ["explain", str(models), "--features", str(features), "--out",
                                  str(tmp_path / "none")])
    assert missing.exit_code == 2 and "'scanner'" in missing.output, missing.output


def test_external_cohort_keeps_its_text_batch_column(harmonised_run, tmp_path):
    """train_models on an external cohort whose batch column is text: scored, not cast to float."""
    from radpipe.model import train_models

    tmp, folder, _ = harmonised_run
    train = pd.read_csv(tmp / "out" / "models" / "train_features.csv", dtype={"case_id": str, "scanner": str})
    train = train.set_index("case_id")
    y = pd.read_csv(folder / "labels.csv", dtype=str).set_index("case_id")["label"]
    settings = ModelSettings(models=["logreg"], harmonise="combat", batch_column="scanner", outer_folds=3,
                             inner_folds=2, select_k=3, bootstrap=0, correlation_threshold=None, positive_class="b")
    external = train.iloc[::3]
    result = train_models(train, y, settings, tmp_path / "m", external={"ext": (external, y)})
    ext = result.predictions[result.predictions["cohort"] == "ext"].set_index("case_id")
    final = load_model(tmp_path / "m").pipeline
    np.testing.assert_allclose(ext.loc[external.index, "y_prob"], final.predict_proba(external)[:, 1], atol=1e-12)
    with pytest.raises(ConfigError, match=r"external cohort 'bad' has batch value\(s\) \['Philips'\].*'GE', 'Siemens'"):
        train_models(train, y, settings, tmp_path / "m2",
                     external={"bad": (external.assign(scanner="Philips"), y)})


def three_class_cohort(folder, n=18):
    """``n`` cases of classes a/b/c (radius by class), no positive_class: a multi-class outcome."""
    rows = ["case_id,label"]
    for i in range(n):
        write_case(folder, f"case{i:02d}", seed=i, radius=3.5 + 1.5 * (i % 3) + 0.05 * i)
        rows.append(f"case{i:02d},{'abc'[i % 3]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_run_on_a_three_class_cohort_trains_and_explains_a_multiclass_model(tmp_path):
    folder = three_class_cohort(tmp_path / "cohort")
    recipe = Recipe(name="m", dataset=str(folder), extract=FAST_EXTRACT, explain=FAST_EXPLAIN,
                    model=ModelSettings(models=["rf"], outer_folds=3, inner_folds=2, select_k=3, bootstrap=20,
                                        search="random", n_iter=1, correlation_threshold=None))
    result = run_recipe(recipe, tmp_path, tmp_path / "out")
    card = json.loads((tmp_path / "out" / "models" / "model_card.json").read_text())
    assert card["classes"] == ["a", "b", "c"] and card["positive_class"] is None
    assert card["cv"]["inner"].endswith("scoring roc_auc_ovr (macro one-vs-rest ROC AUC)")
    cv = result.metrics.set_index("cohort").loc["cv"]
    assert {"auc_ovr_a", "auc_ovr_b", "auc_ovr_c"} <= set(result.metrics.columns) and cv["n"] == 18
    assert cv["auc"] == pytest.approx(np.mean([cv["auc_ovr_a"], cv["auc_ovr_b"], cv["auc_ovr_c"]]))
    summary = json.loads((tmp_path / "out" / "explain" / "summary.json").read_text())
    assert summary["outcome_type"] == "multiclass" and summary["classes"] == ["a", "b", "c"]
    assert all(summary["patients"][c]["predicted"] in "abc" for c in summary["patients"])


def test_a_dataset_positive_class_on_three_classes_is_refused_before_extracting(tmp_path):
    folder = three_class_cohort(tmp_path / "cohort", n=9)
    recipe = Recipe(name="m", dataset=str(folder), model=ModelSettings(positive_class="b"))
    with pytest.raises(ConfigError, match=r"model.positive_class 'b' applies only to a binary outcome.*3 classes"):
        run_recipe(recipe, tmp_path, tmp_path / "out", explain=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("declared", "recipe_class", "classes", "expected"), [
    ("b", None, ["a", "b"], "b"),            # a binary dataset's positive class reaches the model settings
    ("b", "a", ["a", "b"], "a"),             # the recipe's own wins
    (None, None, ["a", "b", "c"], None),     # no positive class: multi-class
])
def test_dataset_positive_class_is_copied_only_for_two_classes(declared, recipe_class, classes, expected):
    from radpipe.model.inputs import resolve_classes

    _, settings = resolve_classes(classes, ModelSettings(positive_class=recipe_class), declared=declared, dataset="d")
    assert settings.positive_class == expected


def test_dataset_positive_class_that_is_no_label_is_named():
    from radpipe.model.inputs import resolve_classes

    with pytest.raises(ConfigError, match=r"dataset 'd' sets positive_class 'yes', which is not one of its labels"):
        resolve_classes(["a", "b", "c"], ModelSettings(), declared="yes", dataset="d")
