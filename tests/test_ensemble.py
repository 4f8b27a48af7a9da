"""Ensembles of the best configurations (radpipe.model.ensemble): probabilities and SHAP values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from radpipe.explain.shap_values import compute_shap, to_original
from radpipe.model import ModelSettings, build_pipeline
from radpipe.model.ensemble import MeanEnsemble, fit_top_ensemble, is_mean_ensemble
from radpipe.model.search import JointSearch


def _cohort(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)],
                     index=pd.Index([f"c{i:02d}" for i in range(n)], name="case_id"))
    X["f0"] += y * 1.2
    X["f1"] += y * 0.6
    return X, y


def test_mean_ensemble_probabilities_are_the_weighted_mean_of_its_members():
    X, y = _cohort()
    settings = ModelSettings(select_k=3)
    members = [("rf", build_pipeline("rf", settings)), ("lr", build_pipeline("logreg", settings))]
    ens = MeanEnsemble(members, weights=[1, 3]).fit(X, y)
    expected = 0.25 * ens.estimators_[0].predict_proba(X) + 0.75 * ens.estimators_[1].predict_proba(X)
    np.testing.assert_allclose(ens.predict_proba(X), expected, atol=1e-12)
    np.testing.assert_allclose(ens.member_weights(), [0.25, 0.75])


def test_top_ensemble_of_the_search_is_the_plain_mean_of_its_members():
    X, y = _cohort()
    settings = ModelSettings(search_budget=9, search_top=3, search_families=["logreg_l2", "naive_bayes", "rf"])
    search = JointSearch(settings, StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    pipe = search.best_estimator_
    assert is_mean_ensemble(pipe) and len(search.best_params_["members"]) == 3
    members = pipe[-1].estimators_
    mean = np.mean([m.predict_proba(X) for m in members], axis=0)
    np.testing.assert_allclose(pipe.predict_proba(X), mean, atol=1e-12)
    assert search.best_params_["family"] == search.best_params_["members"][0]["family"]


def test_stacked_top_ensemble_is_a_logistic_regression_on_member_probabilities():
    X, y = _cohort()
    settings = ModelSettings(search_combine="stacking", select_k=3)
    pipes = [build_pipeline("rf", settings), build_pipeline("logreg", settings)]
    pipe = fit_top_ensemble(pipes, X, y, settings, StratifiedKFold(3, shuffle=True, random_state=0))
    stack = pipe[-1]
    z = stack.final_estimator_.decision_function(stack.transform(X))
    np.testing.assert_allclose(pipe.predict_proba(X)[:, 1], 1 / (1 + np.exp(-z)), atol=1e-10)


def test_ensemble_shap_is_additive_and_the_weighted_mean_of_member_values():
    X, y = _cohort()
    settings = ModelSettings(select_k=3)
    members = [("rf", build_pipeline("rf", settings)), ("et", build_pipeline("extra_trees", settings))]
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = Pipeline([("inputs", FunctionTransformer(feature_names_out="one-to-one")),
                     ("clf", MeanEnsemble(members, weights=[2, 1]))]).fit(X, y)
    cases = X.iloc[:8]
    res = compute_shap(pipe, cases, X, positive_class=1)
    prob = pipe.predict_proba(cases)[:, 1]
    np.testing.assert_allclose(res.base_value + res.values.sum(axis=1).to_numpy(), prob, atol=1e-6)
    parts = [compute_shap(m, cases, X, positive_class=1) for m in pipe[-1].estimators_]
    inputs = list(X.columns)
    expected = (2 * to_original(parts[0].values, inputs)[inputs] + to_original(parts[1].values, inputs)[inputs]) / 3
    np.testing.assert_allclose(res.values[inputs].to_numpy(), expected.to_numpy(), atol=1e-12)
    assert list(res.values.columns) == inputs and res.explainer == "ensemble (tree)"
