"""radpipe.model.inputs: the one place where feature and outcome tables are checked before modelling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radpipe.errors import ConfigError
from radpipe.model.inputs import (
    check_recipe_inputs,
    plain_positive,
    plan_folds,
    read_features,
    read_outcomes,
    resolve_classes,
    training_inputs,
)
from radpipe.model.settings import ModelSettings


def _table(n=12, seed=0, labels=("no_metastasis", "metastasis")):
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"STS_{i:03d}" for i in range(n)], name="case_id")
    y = pd.Series([labels[i % 2] for i in range(n)], index=ids)
    X = pd.DataFrame(rng.normal(size=(n, 4)), index=ids,
                     columns=["original_firstorder_Mean", "original_firstorder_Energy", "original_shape_Sphericity",
                              "original_glcm_Contrast"])
    return X, y


# ---------------------------------------------------------------- folds


def test_folds_fit_a_12_case_cohort_at_every_level():
    plan = plan_folds({"a": 6, "b": 6}, ModelSettings())  # svm, rf, xgb: the SVM calibrates with its own CV
    assert (plan.outer, plan.inner, plan.calibration) == (5, 3, 2)
    assert plan.reduced and "SVM calibration folds 3 -> 2" in plan.describe()
    plan = plan_folds({"a": 6, "b": 6}, ModelSettings(models=["logreg", "rf"]))
    assert (plan.outer, plan.inner, plan.calibration) == (5, 3, None) and not plan.reduced


def test_outer_and_inner_folds_shrink_to_the_smallest_class():
    plan = plan_folds({"a": 3, "b": 9}, ModelSettings(models=["logreg"]))
    # 3 cases: 3 outer folds, an outer training fold keeps 2 of them, so 2 inner folds
    assert (plan.outer, plan.inner) == (3, 2)
    assert plan.record()["requested"]["outer_folds"] == 5 and plan.record()["used"]["inner_folds"] == 2


def test_a_class_too_small_for_the_svm_calibration_is_refused_with_what_to_change():
    with pytest.raises(ConfigError, match=r"'svm'.*calibrate.*leave 'svm' out of model.models") as caught:
        plan_folds({"a": 3, "b": 9}, ModelSettings(models=["svm", "rf", "xgb"]))
    assert "3 cases {'a': 3, 'b': 9}" in str(caught.value)
    with pytest.raises(ConfigError, match=r"search's 'svm_linear' and 'svm' calibrate.*out of model.search_families"):
        plan_folds({"a": 3, "b": 9}, ModelSettings(models=["search"]))  # the joint search has SVM families too


def test_a_class_of_one_case_is_refused():
    with pytest.raises(ConfigError, match=r"smaller class \('a'\) has 1 case.*at least 2 cases of every class"):
        plan_folds({"a": 1, "b": 11}, ModelSettings(models=["logreg"]))


# ---------------------------------------------------------------- positive class


def test_two_text_classes_without_a_positive_class_are_refused_naming_both_and_the_three_settings():
    with pytest.raises(ConfigError) as caught:
        resolve_classes(["no_metastasis", "metastasis"], ModelSettings())
    message = str(caught.value)
    assert "'metastasis' and 'no_metastasis'" in message
    for way in ("--positive-class", "model.positive_class", "positive_class: VALUE"):
        assert way in message


@pytest.mark.parametrize(("labels", "positive"), [
    (["0", "1"], "1"), (["1.0", "0.0"], "1.0"), (["False", "True"], "True"), (["false", "TRUE"], "TRUE"),
])
def test_plain_binary_outcomes_need_no_setting(labels, positive):
    assert plain_positive(labels) == positive
    classes, settings = resolve_classes(labels, ModelSettings())
    assert classes[1] == positive and settings.positive_class == positive


def test_declared_positive_class_and_multiclass():
    classes, settings = resolve_classes(["b", "a"], ModelSettings(), declared="a", dataset="d")
    assert classes == ["b", "a"] and settings.positive_class == "a"
    classes, settings = resolve_classes(["b", "a"], ModelSettings(positive_class="b"), declared="a")
    assert classes == ["a", "b"]  # the recipe's own wins over the dataset's
    assert resolve_classes(["a", "b", "c"], ModelSettings())[0] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="applies only to a binary outcome.*3 classes"):
        resolve_classes(["a", "b", "c"], ModelSettings(positive_class="a"))
    with pytest.raises(ConfigError, match="dataset 'd' sets positive_class 'yes', which is not one of its labels"):
        resolve_classes(["a", "b", "c"], ModelSettings(), declared="yes", dataset="d")


# ---------------------------------------------------------------- reading tables


def test_missing_or_malformed_tables_are_config_errors_naming_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"features.csv.*feature table not found"):
        read_features(tmp_path / "features.csv")
    with pytest.raises(ConfigError, match=r"labels.csv.*labels table not found"):
        read_outcomes(tmp_path / "labels.csv")
    (tmp_path / "f.csv").write_text("id,original_firstorder_Mean\nc1,1\n")
    with pytest.raises(ConfigError, match=r"f.csv.*needs a 'case_id' column.*\['id', 'original_firstorder_Mean'\]"):
        read_features(tmp_path / "f.csv")
    (tmp_path / "l.csv").write_text("patient,label\nc1,a\n")
    with pytest.raises(ConfigError, match=r"l.csv.*no column 'case_id'.*columns found: \['patient', 'label'\]"):
        read_outcomes(tmp_path / "l.csv")
    (tmp_path / "o.csv").write_text("case_id,outcome\nc1,a\n")
    with pytest.raises(ConfigError, match=r"no column 'label'.*\['case_id', 'outcome'\].*--label-column"):
        read_outcomes(tmp_path / "o.csv", key="--labels")
    assert read_outcomes(tmp_path / "o.csv", label_column="outcome")["outcome"].to_dict() == {"c1": "a"}
    with pytest.raises(ConfigError, match="found a folder"):
        read_features(tmp_path)


# ---------------------------------------------------------------- training inputs


def test_training_inputs_align_drop_and_report():
    X, y = _table()
    X["scan_note"] = "contrast"                      # a text column: not a feature
    X["original_shape_Flatness"] = 0.5               # constant: no information
    X.loc["STS_999"] = X.iloc[0]                     # a case without a label
    inputs = training_inputs(X, y, ModelSettings(positive_class="metastasis", models=["logreg"]))
    assert inputs.classes == ["no_metastasis", "metastasis"]
    assert list(inputs.X.index) == list(y.index) and inputs.n_unlabelled == 1
    assert inputs.dropped["scan_note"] == "text, not a feature"
    assert inputs.dropped["original_shape_Flatness"].startswith("constant across the cohort")
    assert inputs.feature_names == ["original_firstorder_Mean", "original_firstorder_Energy",
                                    "original_shape_Sphericity", "original_glcm_Contrast"]
    assert repr(inputs).startswith("ModelInputs(12 cases x 4 features, classes {no_metastasis: 6, metastasis: 6}")
    assert any("1 case(s) of the feature table have no label" in note for note in inputs.notes())


def test_training_inputs_refuse_what_cannot_be_modelled():
    X, y = _table()
    settings = ModelSettings(positive_class="metastasis")
    mixed = X.astype(object)
    mixed.iloc[2, 0] = "n/a?"
    with pytest.raises(ConfigError, match=r"must hold numbers: 'original_firstorder_Mean' holds 'n/a\?'"):
        training_inputs(mixed, y, settings)
    with pytest.raises(ConfigError, match=r"no case of the feature table has a label.*do not match"):
        training_inputs(X, y.rename(index=lambda c: c.lower()), settings)
    with pytest.raises(ConfigError, match="no group column 'patient'"):
        training_inputs(X, y.to_frame("label"), settings.model_copy(update={"group_column": "patient"}))


def test_groups_and_batches_come_from_the_labels_table():
    X, y = _table(n=40)
    table = y.to_frame("outcome").assign(patient=[f"p{i // 2}" for i in range(40)],
                                         scanner=["GE", "Siemens"] * 20)
    settings = ModelSettings(models=["logreg"], positive_class="metastasis", group_column="patient",
                             harmonise="combat", batch_column="scanner")
    inputs = training_inputs(X, table, settings, label_column="outcome")
    assert inputs.groups.tolist()[:4] == ["p0", "p0", "p1", "p1"]
    assert inputs.X["scanner"].tolist()[:2] == ["GE", "Siemens"] and inputs.batch_column == "scanner"
    gap = table.copy()
    gap.loc["STS_007", "scanner"] = None
    with pytest.raises(ConfigError, match=r"1 case\(s\).*no 'scanner' value.*STS_007"):
        training_inputs(X, gap, settings, label_column="outcome")


# ---------------------------------------------------------------- recipe pre-flight


def test_validate_and_run_refuse_a_labels_file_without_the_outcome_column(tmp_path):
    from radpipe.cohort import load_cohort
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=6)
    (folder / "labels.csv").write_text((folder / "labels.csv").read_text().replace("case_id,label", "case_id,outcome"))
    with pytest.raises(ConfigError, match=r"labels.csv.*has no outcome column 'label'.*\['outcome'\].*label_column"):
        check_recipe_inputs(load_cohort(str(folder)), ModelSettings())


def test_recipe_pre_flight_keeps_the_requested_folds_for_the_model_card(tmp_path):
    from radpipe.cohort import load_cohort
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=12)  # labels a/b, 6 each
    checked = check_recipe_inputs(load_cohort(str(folder)), ModelSettings(positive_class="b"))
    assert checked.classes == ["a", "b"] and checked.notes() == [checked.folds.describe()]
    assert checked.settings.calibration_folds == 2 and checked.requested.calibration_folds == 3
    X, _ = _table(n=12)
    X.index = checked.outcomes.index
    inputs = training_inputs(X, checked.outcomes, checked.requested)  # what run_recipe trains with
    assert inputs.folds == checked.folds and inputs.folds.record()["requested"]["calibration_folds"] == 3
