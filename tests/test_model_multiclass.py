"""Multi-class outcomes end to end: metrics against scikit-learn, nested CV on signal and on noise,
reproducibility, predict/evaluate on a saved model, ensembles and the explain reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from radpipe.errors import ConfigError
from radpipe.model import ModelSettings, evaluate, load_model, predict, train_models
from radpipe.model.metrics import (
    macro_ovr_auc,
    multiclass_brier,
    multiclass_metrics_with_ci,
    multiclass_point_metrics,
    ovr_auc_per_class,
)

CLASSES = ["G1", "G2", "G3"]
FAST = dict(outer_folds=3, inner_folds=3, bootstrap=50, search="random", n_iter=2, seed=7)


def grade_cohort(n: int = 150, seed: int = 0, noise: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    """Three tumour grades, 4 informative first-order features among 16 (or pure noise), a few gaps."""
    X, y = make_classification(n, 16, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               class_sep=1.0, random_state=seed)
    if noise:
        X = np.random.default_rng(seed).normal(size=X.shape)
    ids = pd.Index([f"case{i:03d}" for i in range(n)], name="case_id")
    X = pd.DataFrame(X, index=ids, columns=[f"original_firstorder_F{j}" for j in range(X.shape[1])])
    X.iloc[4, 2] = np.nan
    return X, pd.Series(np.asarray(CLASSES)[y], index=ids, name="grade")


def _probabilities(n: int = 90, seed: int = 0, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    logits = rng.normal(size=(n, 3)) + signal * np.eye(3)[y]
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- metric functions


def test_multiclass_metrics_match_sklearn():
    y, p = _probabilities()
    pred = p.argmax(axis=1)
    m = multiclass_point_metrics(y, p, classes=CLASSES)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert macro_ovr_auc(y, p) == pytest.approx(m["auc"])
    for k, c in enumerate(CLASSES):
        assert m[f"auc_ovr_{c}"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["ppv"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(brier_score_loss(y, p) / 3)   # mean over classes, not Brier's sum
    cm = confusion_matrix(y, pred)
    tn = [cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k] for k in range(3)]
    fp = [cm[:, k].sum() - cm[k, k] for k in range(3)]
    fn = [cm[k].sum() - cm[k, k] for k in range(3)]
    assert m["specificity"] == pytest.approx(np.mean([tn[k] / (tn[k] + fp[k]) for k in range(3)]))
    assert m["npv"] == pytest.approx(np.mean([tn[k] / (tn[k] + fn[k]) for k in range(3)]))
    assert [m["n_G1"], m["n_G2"], m["n_G3"]] == [30, 30, 30]
    assert np.isnan(m["calibration_slope"]) and np.isnan(m["threshold"])


def test_two_class_brier_reduces_to_the_binary_score_and_absent_classes_are_left_out():
    y, p = _probabilities()
    y2 = (y == 2).astype(int)
    p2 = np.column_stack([1 - p[:, 2], p[:, 2]])
    assert multiclass_brier(y2, p2) == pytest.approx(np.mean((p[:, 2] - y2) ** 2))
    present = y < 2   # an external cohort without any G3: macro AUC over G1 and G2
    per_class = ovr_auc_per_class(y[present], p[present])
    assert np.isnan(per_class[2]) and macro_ovr_auc(y[present], p[present]) == pytest.approx(np.mean(per_class[:2]))


def test_multiclass_ci_brackets_the_estimate_and_is_reproducible():
    y, p = _probabilities(n=120, seed=3, signal=1.0)
    row = multiclass_metrics_with_ci(y, p, CLASSES, n_boot=200, seed=5)
    for name in ("auc", "balanced_accuracy", "f1", "brier", "auc_ovr_G2"):
        assert row[f"{name}_ci_low"] < row[name] < row[f"{name}_ci_high"], name
    pd.testing.assert_series_equal(pd.Series(row), pd.Series(multiclass_metrics_with_ci(y, p, CLASSES, n_boot=200,
                                                                                      seed=5)), rtol=0, atol=0)
    # repeats x cases x classes: point estimates are means over repeats
    stacked = multiclass_metrics_with_ci(y, np.stack([p, p]), CLASSES, n_boot=0)
    assert stacked["auc"] == pytest.approx(row["auc"]) and np.isnan(stacked["auc_ci_low"])


# ---------------------------------------------------------------- training


def test_outer_folds_are_stratified_on_every_class_and_keep_groups_together():
    from radpipe.model.validate import outer_splits

    _, y = grade_cohort(n=90)
    codes = pd.Categorical(y).codes
    groups = np.repeat(np.arange(45), 2)          # two lesions per patient
    codes = codes[::2].repeat(2)                  # a patient's lesions share the grade
    for _, _, train, test in outer_splits(codes, ModelSettings(outer_folds=3, outer_repeats=2), groups):
        assert not set(groups[train]) & set(groups[test])
        shares = np.bincount(codes[test], minlength=3) / len(test)
        assert np.all(np.abs(shares - np.bincount(codes, minlength=3) / len(codes)) < 0.12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiclass")
    X, y = grade_cohort()
    settings = ModelSettings(models=["logreg", "svm_linear", "voting", "stacking"],
                             ensemble_members=["logreg", "svm_linear"], **FAST)
    result = train_models(X.iloc[:120], y.iloc[:120], settings, out,
                          external={"site_b": (X.iloc[120:], y.iloc[120:])})
    return result, out, X, y, settings


def test_nested_cv_finds_the_signal_with_per_class_aucs(trained):
    result, out, X, y, settings = trained
    metrics = pd.read_csv(out / "metrics.csv")
    for c in CLASSES:
        assert {f"n_{c}", f"auc_ovr_{c}", f"auc_ovr_{c}_ci_low", f"auc_ovr_{c}_ci_high"} <= set(metrics.columns)
    assert "n_positive" not in metrics.columns and "y_prob" not in pd.read_csv(out / "predictions.csv").columns
    cv = metrics[metrics["cohort"] == "cv"].set_index("model")
    assert list(cv.index) == settings.models
    print(cv[["auc", "auc_ci_low", "auc_ci_high", "balanced_accuracy", "auc_ovr_G1", "auc_ovr_G2", "auc_ovr_G3"]])
    assert (cv["auc"] > 0.85).all()                   # chance is 0.5; the classes are well separated
    assert (cv["auc_ci_low"] < cv["auc"]).all() and (cv["auc"] < cv["auc_ci_high"]).all()
    assert (cv["balanced_accuracy"] > 0.6).all()      # chance is 1/3
    assert cv[["n_G1", "n_G2", "n_G3"]].sum(axis=1).eq(120).all()
    assert cv["delong_p_vs_best"].isna().all() and cv["calibration_slope"].isna().all()
    assert cv.loc[result.best_model, "auc"] == cv["auc"].max()
    ext = metrics[metrics["cohort"] == "site_b"].set_index("model")
    assert (ext["n"] == 30).all() and (ext["auc"] > 0.75).all()


def test_pure_noise_stays_at_chance(tmp_path):
    X, y = grade_cohort(noise=True)
    result = train_models(X, y, ModelSettings(models=["logreg"], **FAST), tmp_path)
    auc = result.metrics.set_index("model").loc["logreg", "auc"]
    print("noise macro AUC", auc)
    assert 0.35 <= auc <= 0.65


def test_predictions_hold_one_probability_per_class(trained):
    _, out, X, y, settings = trained
    preds = pd.read_csv(out / "predictions.csv")
    prob_cols = [f"y_prob_{c}" for c in CLASSES]
    assert list(preds.columns) == ["case_id", "model", "repeat", "fold", "label", "y_true", *prob_cols, "cohort",
                                   "y_pred", "predicted", "ood_percentile", "ood_flag"]
    np.testing.assert_allclose(preds[prob_cols].sum(axis=1), 1.0, atol=1e-9)
    assert (preds["y_pred"] == preds[prob_cols].to_numpy().argmax(axis=1)).all()
    assert (preds["predicted"] == np.asarray(CLASSES)[preds["y_pred"]]).all()
    assert (preds["label"] == np.asarray(CLASSES)[preds["y_true"]]).all()
    cv = preds[(preds["cohort"] == "cv") & (preds["model"] == "logreg")]
    assert sorted(cv["case_id"]) == sorted(X.index[:120])     # every case once, out of fold
    # the metrics row is computed from exactly these out-of-fold probabilities
    metrics = pd.read_csv(out / "metrics.csv").set_index(["cohort", "model"])
    assert metrics.loc[("cv", "logreg"), "auc"] == pytest.approx(
        roc_auc_score(cv["y_true"], cv[prob_cols].to_numpy(), multi_class="ovr"))


def test_model_card_describes_a_multiclass_model(trained):
    result, out, X, y, _ = trained
    card = load_model(out).card
    assert card["classes"] == CLASSES and card["positive_class"] is None and card["threshold"] is None
    assert card["class_counts"] == {c: int((y.iloc[:120] == c).sum()) for c in CLASSES}
    assert "one-vs-rest" in card["multiclass"] and "auc_ovr_G2" in card["metrics"]
    # the inner search's scoring, in the summary as in its own key (a binary card says roc_auc)
    assert card["cv"]["inner"] == ("random search, 3-fold stratified CV, scoring roc_auc_ovr (macro one-vs-rest "
                                   "ROC AUC)")
    assert card["cv"]["inner_scoring"] == "roc_auc_ovr (macro one-vs-rest ROC AUC)"
    md = (out / "model_card.md").read_text()
    assert "multi-class" in md and "one-vs-rest" in md and "| auc_ovr_G3 |" in md and "no threshold" in md
    fold_card = json.loads((out / "folds" / "0_0" / "model_card.json").read_text())
    assert fold_card["classes"] == CLASSES and "argmax" in fold_card["threshold_rule"]


def test_predict_and_evaluate_a_saved_multiclass_model(trained):
    _, out, X, y, _ = trained
    model = load_model(out / "models" / "stacking")
    result = predict(model, X.iloc[120:][X.columns[::-1]])
    prob_cols = [f"y_prob_{c}" for c in CLASSES]
    assert list(result.columns) == ["case_id", *prob_cols, "predicted", "ood_percentile", "ood_flag"]
    np.testing.assert_allclose(result[prob_cols].sum(axis=1), 1.0, atol=1e-9)
    assert (result["predicted"] == np.asarray(CLASSES)[result[prob_cols].to_numpy().argmax(axis=1)]).all()
    row = evaluate(model, X.iloc[120:], y, n_boot=50)
    assert row.loc[0, "auc"] == pytest.approx(roc_auc_score(y.iloc[120:], result[prob_cols].to_numpy(),
                                                            multi_class="ovr"))
    assert row.loc[0, "auc_ci_low"] <= row.loc[0, "auc"] <= row.loc[0, "auc_ci_high"]
    # evaluate on the external cohort reproduces the metrics.csv row that training wrote for it
    written = pd.read_csv(out / "metrics.csv").set_index(["cohort", "model"]).loc[("site_b", "stacking")]
    assert row.loc[0, "balanced_accuracy"] == pytest.approx(written["balanced_accuracy"])


def test_cli_predict_and_evaluate_a_multiclass_model(trained, tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    _, out, X, y, _ = trained
    X.iloc[120:].reset_index().to_csv(tmp_path / "features.csv", index=False)
    y.iloc[120:].rename("label").reset_index().to_csv(tmp_path / "labels.csv", index=False)
    runner = CliRunner()
    done = runner.invoke(app, ["predict", str(out), str(tmp_path / "features.csv"), "-o", str(tmp_path / "p.csv")])
    assert done.exit_code == 0, done.output
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written.columns) == ["case_id", *(f"y_prob_{c}" for c in CLASSES), "predicted", "ood_percentile",
                                     "ood_flag"]
    assert len(written) == 30 and set(written["predicted"]) <= set(CLASSES)
    done = runner.invoke(app, ["evaluate", str(out), str(tmp_path / "features.csv"), "--labels",
                               str(tmp_path / "labels.csv"), "-o", str(tmp_path / "m.csv")])
    assert done.exit_code == 0, done.output
    row = pd.read_csv(tmp_path / "m.csv").iloc[0]
    assert row["n"] == 30 and row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"] and "auc_ovr_G3" in row


def test_same_seed_gives_identical_files(trained, tmp_path):
    _, out, X, y, _ = trained
    settings = ModelSettings(models=["logreg"], **FAST)
    train_models(X.iloc[:120], y.iloc[:120], settings, tmp_path / "a")
    train_models(X.iloc[:120], y.iloc[:120], settings, tmp_path / "b")
    for name in ("metrics.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_positive_class_is_refused_for_a_multiclass_outcome(tmp_path):
    X, y = grade_cohort(n=30)
    with pytest.raises(ConfigError, match="applies only to a binary outcome"):
        train_models(X, y, ModelSettings(models=["logreg"], positive_class="G3", **FAST), tmp_path)
    y_small = y.copy()
    y_small.iloc[:2] = "G4"      # a class with two cases cannot fill three outer folds
    with pytest.raises(ConfigError, match="smallest class .'G4'. has 2 case"):
        train_models(X, y_small, ModelSettings(models=["logreg"], **FAST), tmp_path)


@pytest.mark.parametrize("kind", ["smote", "random_over", "random_under"])
def test_rebalancing_a_multiclass_outcome_balances_every_class(kind):
    from sklearn.dummy import DummyClassifier

    from radpipe.model import build_pipeline

    X, y = grade_cohort(n=150)
    keep = (y != "G3") | (np.arange(len(y)) % 4 == 0)         # G3 cut to a quarter: 50 / 50 / ~13 cases
    X, y = X[keep], y[keep]
    codes = pd.Categorical(y, categories=CLASSES).codes
    assert np.bincount(codes).min() < 20
    probe = build_pipeline("logreg", ModelSettings(rebalance=kind, select_k=4)).set_params(
        clf=DummyClassifier(strategy="prior"))
    probe.fit(X, codes)
    np.testing.assert_allclose(probe[-1].class_prior_, [1 / 3] * 3)  # fitted on balanced classes
    assert probe.predict_proba(X).shape == (len(X), 3)               # every case predicted, none added


def test_train_models_with_smote_on_a_multiclass_outcome(tmp_path):
    X, y = grade_cohort(n=150)
    # G3 cut to half (~25 cases): SMOTE's 5 neighbours need 6 G3 cases in every inner training fold
    keep = (y != "G3") | (np.arange(len(y)) % 2 == 0)
    X, y = X[keep], y[keep]
    result = train_models(X, y, ModelSettings(models=["logreg"], rebalance="smote", **FAST), tmp_path)
    cv = result.metrics.set_index("cohort").loc["cv"]
    assert cv["auc"] > 0.75 and min(cv["auc_ovr_G1"], cv["auc_ovr_G2"], cv["auc_ovr_G3"]) > 0.6
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["cv"]["rebalance"] == "smote" and "SMOTE(random_state=7)" in card["pipeline_steps"]


# ---------------------------------------------------------------- explain


@pytest.mark.parametrize("clf, kind", [
    (RandomForestClassifier(n_estimators=30, random_state=0), "tree"),
    (XGBClassifier(n_estimators=20, max_depth=2, n_jobs=1), "permutation"),   # shap: no multi-class probability
    (LogisticRegression(C=0.5), "permutation"),                              # softmax is not one log-odds
])
def test_shap_of_every_class_adds_up_to_its_probability(clf, kind):
    from radpipe.explain import compute_shap_classes

    X, y = grade_cohort(n=60)
    pipe = Pipeline([("impute", SimpleImputer()), ("clf", clf)]).set_output(transform="pandas")
    pipe.fit(X, pd.Categorical(y).codes)
    by_class = compute_shap_classes(pipe, X.iloc[:5], X, class_names=CLASSES, background=20,
                                    agnostic_background=10, max_evals=60)
    proba = pipe.predict_proba(X.iloc[:5])
    assert list(by_class) == CLASSES
    for k, c in enumerate(CLASSES):
        r = by_class[c]
        assert r.explainer == kind
        np.testing.assert_allclose(r.base_value + r.values.sum(axis=1), proba[:, k], atol=1e-6)
    # the classes' contributions of one feature sum to ~0: probabilities always add up to 1
    total = sum(r.values for r in by_class.values())
    assert total.abs().max().max() < 1e-6


def test_explain_a_multiclass_model_writes_pages_per_predicted_class(trained, tmp_path):
    from radpipe.explain import ExplainSettings, explain

    result, out, X, y, _ = trained
    settings = ExplainSettings(lime_samples=100, bootstrap=20, stability_cases=6, max_patients=3,
                               dependence_plots=2, shap_max_evals=40, agnostic_background=8)
    res = explain(out, X.iloc[:30], tmp_path, labels=y, settings=settings)   # the best model, with its fold models
    assert set(res.shap_by_class) == set(CLASSES)
    assert res.summary["fold_stability"]["n_folds"] == 3
    proba = load_model(out).pipeline.predict_proba(X.iloc[:30])
    for k, c in enumerate(CLASSES):   # SHAP of every class adds up to that class's probability
        r = res.shap_by_class[c]
        np.testing.assert_allclose(r.base_value + r.values.sum(axis=1), proba[:, k], atol=1e-6)
    assert res.summary["additivity_max_error"] < 1e-6 and res.summary["classes"] == CLASSES

    cohort = (tmp_path / "cohort.html").read_text()
    assert "multi-class outcome" in cohort and all(f"Class <b>{c}</b>" in cohort for c in CLASSES)
    assert "Macro AUC" in cohort and "auc_ovr_G1" in cohort
    assert {f"cohort_beeswarm_{k}.png" for k in range(3)} <= {p.name for p in (tmp_path / "figures").iterdir()}

    shap_table = pd.read_csv(tmp_path / "shap_values.csv")
    assert list(shap_table.columns[:2]) == ["case_id", "class"] and len(shap_table) == 3 * 30
    lime = pd.read_csv(tmp_path / "lime.csv")
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    for case_id, page in res.patient_pages.items():
        i = X.index.get_loc(case_id)
        html = page.read_text()
        assert f"Probability of {predicted[i]}" in html and "Probability of each class" in html
        assert all(c in html for c in CLASSES)
        assert set(lime.loc[lime["case_id"] == case_id, "explained_class"]) == {predicted[i]}
        assert res.summary["patients"][case_id]["predicted"] == predicted[i]


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_sts_pet_histological_type_from_pet_radiomics(data_dir, tmp_path):
    """STS-PET: the three commonest MSKCC types (MFH, liposarcoma, leiomyosarcoma; 29 patients) as a
    3-class outcome from PET radiomics. n is tiny, so only an honest band is asserted: a run that scores
    near 1 would be a leak, not a discovery."""
    from radpipe.cohort import load_cohort
    from radpipe.config import REPO_ROOT, load_recipe
    from radpipe.extract.stage import extract_cohort
    from radpipe.extract.tables import read_feature_table
    from radpipe.model.inputs import modelling_table

    recipe = load_recipe(REPO_ROOT / "pipelines" / "sts_pet.yaml")
    cohort = load_cohort("sts_pet", relative_to=REPO_ROOT / "pipelines")
    result = extract_cohort(cohort, recipe.extract, tmp_path / "features", jobs=2)
    X = modelling_table(read_feature_table(result.out_dir / "features.csv"), recipe.extract.aggregate)
    labels = pd.read_csv(data_dir / "sts_pet" / "labels.csv", dtype=str).set_index("case_id")["mskcc_type"]
    y = labels[labels.isin(["MFH", "Liposarcoma", "Leiomyosarcoma"])]
    X = X.loc[[c for c in X.index if c in y.index]]
    settings = recipe.model.model_copy(update={"positive_class": None, "models": ["logreg", "rf"],
                                               "outer_folds": 3, "outer_repeats": 2, "bootstrap": 300})
    trained = train_models(X, y, settings, tmp_path / "models")
    cv = trained.metrics.set_index("model")
    print(cv[["auc", "auc_ci_low", "auc_ci_high", "balanced_accuracy", "auc_ovr_MFH"]].round(3).to_string())
    assert len(X) == 29 and set(cv.columns) >= {"auc_ovr_MFH", "auc_ovr_Liposarcoma", "auc_ovr_Leiomyosarcoma"}
    assert (cv["auc"].between(0.2, 0.95)).all()
    assert ((cv["auc_ci_high"] - cv["auc_ci_low"]) > 0.15).all()   # 29 patients: wide intervals
    probabilities = predict(load_model(tmp_path / "models"), X)
    assert np.allclose(probabilities[[f"y_prob_{c}" for c in trained.predictions["label"].unique()]]
                       .sum(axis=1), 1.0)
