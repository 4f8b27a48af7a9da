"""Clinical covariates: checked as inputs, encoded per training fold, compared with the radiomics models."""

import json

import numpy as np
import pandas as pd
import pytest

from radpipe.errors import ConfigError
from radpipe.model.clinical import clinical_nested_cv, clinical_values, infer_types
from radpipe.model.inputs import training_inputs
from radpipe.model.settings import ModelSettings
from radpipe.model.train import train_models
from radpipe.model.validate import outer_splits


def _cohort(n=60, seed=0, age_effect=12.0):
    """Ten noise features; only age carries the outcome; grade is noise (three levels)."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    index = pd.Index([f"c{i:02d}" for i in range(n)], name="case_id")
    X = pd.DataFrame({f"original_firstorder_F{i}": rng.normal(size=n) for i in range(10)}, index=index)
    labels = pd.DataFrame({"label": np.where(y == 1, "yes", "no"),
                           "age": (rng.normal(60, 8, n) + age_effect * y).round(1).astype(str),
                           "grade": rng.choice(["Low", "Intermediate", "High"], n),
                           "centre": rng.choice(["A", "B"], n)}, index=index)
    return X, labels, y


def test_covariate_types_are_inferred_and_overridable():
    _, labels, _ = _cohort()
    assert infer_types(labels, ["age", "grade"]) == {"age": "numeric", "grade": "categorical"}
    assert infer_types(labels, ["age"], {"age": "categorical"}) == {"age": "categorical"}
    with pytest.raises(ConfigError, match="'grade' is numeric, but it holds text"):
        infer_types(labels, ["grade"], {"grade": "numeric"})


@pytest.mark.parametrize("column, why", [("label", "the outcome being predicted"),
                                         ("centre", "the group column of the folds")])
def test_an_outcome_or_fold_column_is_refused_as_a_covariate(column, why):
    X, labels, _ = _cohort()
    settings = ModelSettings(positive_class="yes", clinical=["age", column], group_column="centre")
    with pytest.raises(ConfigError, match=why) as error:
        training_inputs(X, labels, settings)
    assert error.value.key == "model.clinical"


def test_a_missing_covariate_names_the_columns_that_exist():
    X, labels, _ = _cohort()
    with pytest.raises(ConfigError, match=r"'stage', which the labels table lacks \(columns found: \['label', 'age', 'grade', 'centre'\]"):
        training_inputs(X, labels, ModelSettings(positive_class="yes", clinical=["age", "stage"]))


def test_a_survival_outcome_takes_no_covariates():
    with pytest.raises(ValueError, match="clinical covariates are compared for a binary outcome"):
        ModelSettings(clinical=["age"], outcome={"type": "survival", "time": "t", "event": "e"})


def test_encoding_is_fitted_per_training_fold_a_test_only_category_never_enters_training():
    X, labels, y = _cohort(n=30)
    settings = ModelSettings(positive_class="yes", clinical=["age", "grade"], outer_folds=3, inner_folds=2,
                             select_k=3)
    splits = outer_splits(y, settings)
    rare = X.index[splits[0][3][0]]  # a case of fold 0's test part only
    labels.loc[rare, "grade"] = "Undifferentiated"
    inputs = training_inputs(X, labels, settings)
    Xc = inputs.X.join(inputs.clinical)
    folds, _ = clinical_nested_cv(Xc, inputs.y_codes, inputs.settings, None, splits, inputs.clinical_types,
                                  list(inputs.X.columns))
    for name in ("clinical", "combined"):
        fits = folds[name]
        categories = [fit.estimator.named_steps["design"].named_transformers_["categorical"]
                      .named_steps["onehot"].categories_[0].tolist() for fit in fits]
        assert "Undifferentiated" not in categories[0]  # fold 0 trained without the case that has it
        assert all("Undifferentiated" in c for c in categories[1:])  # the others trained with it
        design = fits[0].estimator[:-1].get_feature_names_out().tolist()
        assert "grade_Undifferentiated" not in design
        # the unseen category scores 0 on every indicator: the test case gets a probability, no error
        assert np.isfinite(fits[0].test_prob).all() and len(fits[0].test_prob) == len(splits[0][3])


def test_only_age_carries_signal_clinical_beats_radiomics_and_combined_matches_clinical(tmp_path):
    X, labels, _ = _cohort(n=60, seed=1, age_effect=14.0)
    settings = ModelSettings(models=["logreg"], positive_class="yes", clinical=["age", "grade"], outer_folds=3,
                             inner_folds=2, select_k=2, bootstrap=100)
    result = train_models(X, labels, settings, tmp_path)
    auc = result.metrics.set_index("model")["auc"]
    assert auc["clinical"] > 0.8 and auc["logreg"] < 0.65
    assert auc["clinical"] > auc["logreg"] + 0.2
    assert abs(auc["combined"] - auc["clinical"]) < 0.1
    assert result.best_model == "logreg"  # the best model of the folder is always a radiomics one
    comparison = pd.read_csv(tmp_path / "comparison.csv")
    rows = comparison.set_index("model")
    assert rows.loc["logreg", "kind"] == "radiomics" and rows.loc["combined", "kind"] == "combined"
    assert pd.isna(rows.loc["clinical", "reference"]) and rows.loc["logreg", "reference"] == "clinical"
    assert rows.loc["logreg", "delong_p"] < 0.05 and rows.loc["logreg", "difference_ci_high"] < 0
    assert rows.loc["combined", "delong_p"] > 0.05
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert set(predictions["model"]) == {"logreg", "clinical", "combined"}
    assert predictions["rad_score"].notna().all()  # all three models are linear
    card = json.loads((tmp_path / "models" / "combined" / "model_card.json").read_text())
    assert card["kind"] == "combined" and card["clinical_types"] == {"age": "numeric", "grade": "categorical"}
    assert {"age", "grade_High"} <= set(card["selected_features"])
    size = json.loads((tmp_path / "sample_size.json").read_text())
    # 10 features + age + grade (3 levels: 2 parameters)
    assert size["candidate_predictors"] == 13 and size["n_available"] == 60 and size["events_available"] == 30
    assert size["n_required"] > 60 and "events per candidate predictor" in size["warning"]
    assert "## Sample size" in (tmp_path / "model_card.md").read_text()


def test_clinical_values_keep_numbers_as_float_and_levels_as_text():
    table = pd.DataFrame({"age": ["50", None, "70.5"], "grade": ["High", None, "Low"]})
    values = clinical_values(table, {"age": "numeric", "grade": "categorical"})
    assert values["age"].tolist()[::2] == [50.0, 70.5] and np.isnan(values["age"].iloc[1])
    assert values["grade"].iloc[0] == "High" and pd.isna(values["grade"].iloc[1])


def test_cli_refuses_the_outcome_as_a_covariate_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    X, labels, _ = _cohort(n=20)
    X.reset_index().to_csv(tmp_path / "features.csv", index=False)
    labels.reset_index().to_csv(tmp_path / "labels.csv", index=False)
    args = ["train", str(tmp_path / "features.csv"), "--labels", str(tmp_path / "labels.csv"), "--out",
            str(tmp_path / "out"), "--positive-class", "yes", "--models", "logreg", "--clinical", "age,label"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "covariate 'label' is the outcome being predicted" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()  # refused before any work
