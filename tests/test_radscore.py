"""The rad-score: a linear model written as a formula that recomputes its decision function exactly."""

import numpy as np
import pandas as pd
import pytest

from radpipe.model.clinical import build_clinical_pipeline, clinical_values
from radpipe.model.radscore import LinearFormula, linear_formula, linear_score, write_radscore
from radpipe.model.settings import ModelSettings
from radpipe.model.zoo import build_pipeline


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    y = np.tile([0, 1], 25)
    X = pd.DataFrame({f"f{i}": rng.normal(i, 1 + i, 50) + (y if i < 3 else 0) for i in range(8)})
    X.iloc[4, 1] = np.nan  # imputed by the training median inside the pipeline
    X["age"] = rng.normal(60, 9, 50) + 4 * y
    X["grade"] = rng.choice(["Low", "Intermediate", "High"], 50)
    X.loc[6, "grade"] = np.nan
    X[["age", "grade"]] = clinical_values(X, {"age": "numeric", "grade": "categorical"})
    return X, y


RADIOMICS = [f"f{i}" for i in range(8)]


def _recomputed(path, X):
    """What a statistician computes from radscore.csv alone: intercept + sum of coefficient x standardised value."""
    terms = pd.read_csv(path, keep_default_na=False, na_values=[""])
    score = np.full(len(X), terms.loc[terms["term"] == "(intercept)", "coefficient"].iloc[0])
    for row in terms[terms["term"] != "(intercept)"].itertuples():
        if isinstance(row.level, str):  # a category indicator (empty for a numeric term)
            values = X[row.feature].fillna(row.impute).astype(str)
            score += row.coefficient * (values == row.level).to_numpy()
        else:
            values = X[row.feature].fillna(float(row.impute))
            score += row.coefficient * (values.to_numpy() - row.mean) / row.sd
    return score


@pytest.mark.parametrize("kind", ["logreg", "clinical", "combined"])
def test_formula_from_the_csv_recomputes_decision_function(tmp_path, table, kind):
    X, y = table
    settings = ModelSettings(select_k=4)
    if kind == "logreg":
        X = X[RADIOMICS]
        pipeline = build_pipeline("logreg", settings).set_params(clf__C=10.0).fit(X, y)
    else:
        types = {"age": "numeric", "grade": "categorical"}
        pipeline = build_clinical_pipeline(types, settings, RADIOMICS if kind == "combined" else None).fit(X, y)
    path = write_radscore(pipeline, tmp_path)
    assert np.abs(_recomputed(path, X) - pipeline.decision_function(X)).max() < 1e-9
    assert np.abs(LinearFormula.read_csv(path).score(X) - pipeline.decision_function(X)).max() < 1e-9
    text = (tmp_path / "radscore.txt").read_text()
    assert text.count("\n  + (") == len(pd.read_csv(path)) - 1 and "plogis(rad_score)" in text


def test_linear_svm_score_is_the_mean_of_its_calibration_fold_svms(table):
    X, y = table[0][RADIOMICS], table[1]
    pipeline = build_pipeline("svm_linear", ModelSettings(select_k=3)).fit(X, y)
    Z = pipeline[:-1].transform(X)
    expected = np.mean([c.estimator.decision_function(Z) for c in pipeline[-1].calibrated_classifiers_], axis=0)
    assert np.abs(linear_score(pipeline, X) - expected).max() < 1e-9
    assert not linear_formula(pipeline).logistic


@pytest.mark.parametrize("family", ["rf", "svm"])
def test_non_linear_models_have_no_rad_score(tmp_path, table, family):
    X, y = table[0][RADIOMICS], table[1]
    pipeline = build_pipeline(family, ModelSettings(select_k=3)).fit(X, y)
    assert linear_score(pipeline, X) is None and write_radscore(pipeline, tmp_path) is None
    assert not (tmp_path / "radscore.csv").exists()
