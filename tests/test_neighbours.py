"""Similar patients and the out-of-distribution flag (radpipe.model.neighbours, explain's "Similar patients").

A synthetic cohort where every case has a twin (the same lesion measured twice, tiny noise): the twin must be
its nearest neighbour; PET-like copies whose intensities are 10 times larger must be flagged.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from radpipe.explain import ExplainSettings, explain
from radpipe.model.neighbours import (
    DEFAULT_OOD_METHOD,
    IsolationScorer,
    MahalanobisScorer,
    Neighbours,
    OODScorer,
)
from radpipe.model.persist import load_model
from radpipe.model.prediction import predict
from radpipe.model.settings import ModelSettings
from radpipe.model.train import train_models

# intensity-valued first-order features scale with the intensities; variance and energy with their square
LINEAR = ["original_firstorder_Mean", "original_firstorder_Median", "original_firstorder_90Percentile"]
SQUARED = ["original_firstorder_Variance"]
OTHER = ["original_firstorder_Skewness", "original_glcm_Contrast", "original_shape_Sphericity",
         "original_glszm_ZoneEntropy"]


def twin_cohort(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """2n cases: case_i and case_i_twin (the same features plus 1% noise), the same label and group."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(3.0, 1.0, size=n)
    base = pd.DataFrame({
        "original_firstorder_Mean": mean,
        "original_firstorder_Median": mean * 0.9 + rng.normal(0, 0.4, n),
        "original_firstorder_90Percentile": mean * 1.6 + rng.normal(0, 0.6, n),
        "original_firstorder_Variance": (0.5 * mean) ** 2 + rng.gamma(2.0, 0.3, n),
        "original_firstorder_Skewness": rng.normal(0.5, 0.4, n),
        "original_glcm_Contrast": rng.gamma(3.0, 1.0, n),
        "original_shape_Sphericity": rng.uniform(0.4, 0.9, n),
        "original_glszm_ZoneEntropy": rng.normal(5.0, 0.5, n),
    }, index=[f"case_{i:03d}" for i in range(n)])
    twin = base * (1 + rng.normal(0, 0.01, size=base.shape))
    twin.index = [f"{c}_twin" for c in base.index]
    X = pd.concat([base, twin]).rename_axis("case_id")
    signal = base["original_firstorder_Mean"] + base["original_glcm_Contrast"] / 2 + rng.normal(0, 0.8, n)
    labels = np.where(signal > np.median(signal), "malignant", "benign")
    y = pd.Series(np.concatenate([labels, labels]), index=X.index, name="label")
    groups = pd.Series([c.removesuffix("_twin") for c in X.index], index=X.index, name="group")
    return X, y, groups


def pet_times_ten(X: pd.DataFrame) -> pd.DataFrame:
    """The same lesions with intensities 10x larger (as SUV against a wrongly scaled PET), first-order features
    shifted consistently: intensity-valued ones x10, the variance x100, unit-free ones unchanged."""
    out = X.copy()
    out[LINEAR] *= 10
    out[SQUARED] *= 100
    out.index = [f"{c}_pet10" for c in X.index]
    return out.rename_axis("case_id")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    X, y, groups = twin_cohort()
    out = tmp_path_factory.mktemp("nb") / "models"
    settings = ModelSettings(models=["logreg"], positive_class="malignant", bootstrap=0, outer_folds=4,
                             inner_folds=3, outer_repeats=1, seed=0)
    result = train_models(X, y, settings, out, groups=groups)
    return X, y, groups, out, result


def test_nearest_neighbour_of_every_case_is_its_twin(trained):
    X, _, _, out, _ = trained
    model = load_model(out)
    assert model.neighbours is not None and model.neighbours.case_ids == list(X.index)
    found = model.neighbours.query(model.pipeline, X, k=1, exclude={c: {c} for c in X.index})
    twin_of = {c: (c.removesuffix("_twin") if c.endswith("_twin") else f"{c}_twin") for c in X.index}
    assert (found["neighbour"] == found["case_id"].map(twin_of)).all()
    # the twin is much closer than the second nearest case
    two = model.neighbours.query(model.pipeline, X, k=2, exclude={c: {c} for c in X.index})
    d = two.pivot(index="case_id", columns="rank", values="distance")
    assert (d[1] < 0.2 * d[2]).mean() > 0.9


def test_group_exclusion_leaves_out_the_twin(trained):
    X, _, groups, out, _ = trained
    model = load_model(out)
    case = "case_005"
    same_group = set(groups[groups == groups[case]].index)
    assert same_group == {"case_005", "case_005_twin"}
    found = model.neighbours.query(model.pipeline, X.loc[[case]], k=5, exclude={case: same_group})
    assert len(found) == 5 and not set(found["neighbour"]) & same_group
    assert list(found["rank"]) == [1, 2, 3, 4, 5] and found["distance"].is_monotonic_increasing


def test_out_of_fold_rows_are_rarely_flagged_and_pet_times_ten_always(trained):
    X, _, _, out, result = trained
    cv = result.predictions[result.predictions["cohort"] == "cv"]
    assert cv["ood_percentile"].between(0, 100).all()
    assert cv["ood_flag"].mean() <= 0.05  # in-distribution out-of-fold cases: at least 95% not flagged
    saved = pd.read_csv(out / "predictions.csv")
    assert list(saved.columns[-2:]) == ["ood_percentile", "ood_flag"]
    shifted = predict(load_model(out), pet_times_ten(X))
    assert shifted["ood_flag"].all() and (shifted["ood_percentile"] == 100).all()
    same = predict(load_model(out), X)
    assert same["ood_flag"].mean() <= 0.05  # training cases scored by the final scorer (cross-fitted reference)


def test_out_of_fold_percentile_comes_from_a_scorer_that_never_saw_the_case(trained):
    """Recompute one outer fold's OOD scores by hand: scorer fitted on the fold's training cases only."""
    X, _, _, out, result = trained
    import json

    fold = json.loads((out / "splits.json").read_text())["folds"][0]
    fold_model = load_model(out / "folds" / "0_0")
    from radpipe.model.neighbours import transform

    scorer = OODScorer.fit(transform(fold_model.pipeline, X.loc[fold["train"]]), DEFAULT_OOD_METHOD, seed=0)
    expected = scorer.frame(transform(fold_model.pipeline, X.loc[fold["test"]]))
    cv = result.predictions[(result.predictions["cohort"] == "cv") & (result.predictions["fold"] == 0)]
    got = cv.set_index("case_id")["ood_percentile"].reindex(fold["test"])
    np.testing.assert_allclose(got.to_numpy(), expected["ood_percentile"].to_numpy())


def test_the_flag_never_changes_a_prediction(trained):
    X, _, _, out, _ = trained
    model = load_model(out)
    cases = pd.concat([X, pet_times_ten(X)])
    with_flag = predict(model, cases)
    without = predict(dataclasses.replace(model, neighbours=None), cases)
    # a linear model's output also carries its rad_score (linear predictor); no OOD columns without the scorer
    assert [c for c in without.columns if c != "rad_score"] == ["case_id", "y_prob", "predicted"]
    pd.testing.assert_frame_equal(with_flag[without.columns.tolist()], without)
    np.testing.assert_array_equal(with_flag["y_prob"], model.pipeline.predict_proba(cases)[:, 1])


@pytest.mark.parametrize("scorer", [MahalanobisScorer(), IsolationScorer(random_state=0)],
                         ids=["mahalanobis", "isolation_forest"])
def test_both_scorers_flag_shifted_cases_and_spare_new_in_distribution_ones(scorer):
    rng = np.random.default_rng(3)
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 1.0]])
    centre = np.array([3.0, 3.0, 3.0])  # intensity-like features are positive: x10 moves them away
    train = rng.multivariate_normal(centre, cov, size=400)
    fresh = rng.multivariate_normal(centre, cov, size=1000)
    method = "mahalanobis" if isinstance(scorer, MahalanobisScorer) else "isolation_forest"
    ood = OODScorer.fit(train, method, seed=0)
    assert type(ood.scorer) is type(scorer)
    flagged = ood.frame(fresh)["ood_flag"].mean()
    assert flagged <= 0.03  # calibrated at the 99th percentile of out-of-fold scores: about 1%
    assert ood.frame(fresh * 10)["ood_flag"].mean() >= 0.95
    # against the correlation: unusual for Mahalanobis although each coordinate alone is ordinary
    odd = centre + np.array([[2.5, -2.5, 0.0]])
    if method == "mahalanobis":
        assert ood.frame(odd)["ood_flag"].all()


def test_scorers_are_sklearn_estimators():
    from sklearn.base import clone

    assert clone(IsolationScorer(n_estimators=50, random_state=1)).get_params() == {
        "n_estimators": 50, "random_state": 1}
    assert clone(MahalanobisScorer()).get_params() == {}


def test_patient_pages_show_similar_patients_and_the_flag(trained, tmp_path):
    X, y, groups, out, _ = trained
    shifted = pet_times_ten(X.loc[["case_007"]])
    features = pd.concat([X, shifted])
    settings = ExplainSettings(lime_samples=60, shap_background=10, bootstrap=20, stability_cases=10)
    result = explain(out, features, tmp_path / "explain", labels=y, settings=settings,
                     patients=["case_007", "case_007_pet10"])
    cv_page = result.patient_pages["case_007"].read_text()
    table = pd.read_csv(tmp_path / "explain" / "similar_patients.csv", dtype={"case_id": str})
    mine = table[table["case_id"] == "case_007"]
    assert len(mine) == 5 and "case_007_twin" not in set(mine["neighbour"])  # own group left out on a CV page
    assert 'id="similar-patients"' in cv_page and "Euclidean distance" in cv_page
    for neighbour in mine["neighbour"]:
        assert f"<td>{neighbour}</td>" in cv_page
    positives = int((mine["outcome"] == "malignant").sum())
    assert f"{positives} of 5</b>" in cv_page
    assert "Unlike the patients this model was trained on" not in cv_page
    assert not re.search(r"\bnan\b", cv_page, flags=re.IGNORECASE)  # no 'nan' text
    # an external (new) case: the twin may be shown, and the shifted intensities raise the flag
    new_page = result.patient_pages["case_007_pet10"].read_text()
    assert "Unlike the patients this model was trained on" in new_page and "100th percentile" in new_page
    assert "Even the nearest of them is far from this patient" in new_page
    assert "other cases of their group are left out" in cv_page and "typically (median) at" in cv_page
    assert 'id="similar-table"' in new_page
    patients = pd.read_csv(tmp_path / "explain" / "patients.csv", dtype={"case_id": str}).set_index("case_id")
    assert bool(patients.loc["case_007_pet10", "ood_flag"]) and patients.loc["case_007_pet10", "ood_source"] == "final"
    assert patients.loc["case_007", "ood_source"] == "cv"
    # the probability is the same with and without the flag
    plain = predict(dataclasses.replace(load_model(out), neighbours=None), shifted)
    assert result.summary["patients"]["case_007_pet10"]["probability"] == pytest.approx(plain["y_prob"].iloc[0])


def test_neighbours_fit_on_a_plain_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = twin_cohort(n=20, seed=1)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    nb = Neighbours.fit(pipe, X)
    found = nb.query(pipe, X.loc[["case_003"]], k=1, exclude={"case_003": {"case_003"}})
    assert found["neighbour"].tolist() == ["case_003_twin"]


