"""train_models end to end on a small synthetic cohort: the files the explain stage and a reader rely on."""

import json

import numpy as np
import pandas as pd
import pytest

from radpipe.errors import ConfigError
from radpipe.model import ModelIntegrityError, ModelSettings, evaluate, load_model, predict, train_models
from radpipe.model.metrics import CI_METRICS

SETTINGS = ModelSettings(models=["logreg", "svm", "voting"], ensemble_members=["logreg", "svm"],
                         outer_folds=3, inner_folds=3, bootstrap=100, group_column="patient",
                         search="random", n_iter=3, positive_class="malignant")


def _cohort(n=72, seed=0, prefix="case"):
    """Synthetic lesions (two per patient): one informative texture feature, 40 noise features, a few NaNs."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"{prefix}{i:03d}" for i in range(n)], name="case_id")
    label = pd.Series(np.where(np.repeat(rng.random(n // 2) < 0.4, 2), "malignant", "benign"), index=ids)
    X = pd.DataFrame(rng.normal(size=(n, 40)), index=ids, columns=[f"original_glcm_F{j}" for j in range(40)])
    X["original_firstorder_Mean"] = (label == "malignant") * 1.5 + rng.normal(size=n)
    X.iloc[5, 3] = np.nan
    groups = pd.Series(np.repeat([f"p{i}" for i in range(n // 2)], 2), index=ids)
    return X, label, groups


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    X, y, groups = _cohort()
    Xe, ye, _ = _cohort(n=40, seed=1, prefix="ext")
    messages = []
    result = train_models(X, y, SETTINGS, out, groups=groups, external={"site_b": (Xe, ye)},
                          progress=messages.append)
    return result, out, X, y, messages


def test_outputs_and_metric_columns(trained):
    result, out, X, y, messages = trained
    for name in ("metrics.csv", "predictions.csv", "splits.json", "train_features.csv", "train_labels.csv",
                 "model.joblib", "model.joblib.sha256", "model_card.json", "model_card.md"):
        assert (out / name).exists(), name
    metrics = pd.read_csv(out / "metrics.csv")
    expected = ["cohort", "model", "n", "n_positive"]
    for name in CI_METRICS:
        expected += [name, f"{name}_ci_low", f"{name}_ci_high"]
    expected += ["calibration_slope", "calibration_intercept", "threshold", "delong_p_vs_best"]
    assert list(metrics.columns[: len(expected)]) == expected
    assert sorted(zip(metrics["cohort"], metrics["model"], strict=True)) == sorted(
        (c, m) for c in ("cv", "site_b") for m in SETTINGS.models)
    cv = metrics[metrics["cohort"] == "cv"].set_index("model")
    assert cv.loc[result.best_model, "auc"] == cv["auc"].max()
    assert np.isnan(cv.loc[result.best_model, "delong_p_vs_best"])
    assert (cv["auc"] > 0.7).all()           # the signal is strong
    assert (cv["auc_ci_low"] <= cv["auc"]).all() and (cv["auc"] <= cv["auc_ci_high"]).all()
    assert cv["n_positive"].iloc[0] == (y == "malignant").sum()
    assert any("best model" in m for m in messages)


def test_predictions_are_out_of_fold_and_grouped(trained):
    result, out, X, y, _ = trained
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns[:7]) == ["case_id", "model", "repeat", "fold", "label", "y_true", "y_prob"]
    cv = preds[preds["cohort"] == "cv"]
    assert len(cv) == len(X) * len(SETTINGS.models)
    assert set(cv.groupby("model")["case_id"].nunique()) == {len(X)}
    assert (cv["y_true"] == (cv["label"] == "malignant")).all()
    ext = preds[preds["cohort"] == "site_b"]
    assert ext["fold"].isna().all() and len(ext) == 40 * len(SETTINGS.models)
    splits = json.loads((out / "splits.json").read_text())
    for fold in splits["folds"]:
        pairs = {X.index.get_loc(c) // 2 for c in fold["test"]}   # rows 2i and 2i+1 are one patient
        train_pairs = {X.index.get_loc(c) // 2 for c in fold["train"]}
        assert not pairs & train_pairs, "a patient's lesions were split across train and test"


def test_model_card_and_explain_stage_contract(trained):
    result, out, X, y, _ = trained
    model = load_model(out)
    card = model.card
    for key in ("model_name", "classes", "positive_class", "feature_names", "threshold", "versions", "metrics",
                "best_params", "pipeline_steps", "selected_features", "n_cases", "class_counts", "cv",
                "intended_use", "limitations"):
        assert key in card, key
    assert card["classes"] == ["benign", "malignant"] and card["n_cases"] == len(X)
    assert card["metrics"]["auc"] == pytest.approx(result.metrics.query("cohort == 'cv'").set_index("model")
                                                   .loc[result.best_model, "auc"])
    assert "## Performance" in (out / "model_card.md").read_text()
    for name in SETTINGS.models:
        sub = load_model(out / "models" / name)
        pipe = sub.pipeline
        seen = list(pipe[:-1].get_feature_names_out())
        assert seen == sub.card["selected_features"]
        assert pipe[:-1].transform(X).shape == (len(X), len(seen))
        assert hasattr(pipe[-1], "predict_proba")
    folds = sorted(p.name for p in (out / "folds").iterdir())
    assert folds == ["0_0", "0_1", "0_2"]
    assert pd.read_csv(out / "train_labels.csv").columns.tolist() == ["case_id", "label"]


def test_predict_and_evaluate(trained):
    _, out, X, y, _ = trained
    model = load_model(out)
    shuffled = X[X.columns[::-1]].assign(extra_column=1.0)   # order and extra columns do not matter
    result = predict(model, shuffled)
    linear = model.card["model_name"] == "logreg"  # a linear model adds its rad-score (the log-odds)
    assert list(result.columns) == ["case_id", "y_prob", "predicted", *(["rad_score"] if linear else []),
                                    "ood_percentile", "ood_flag"]
    if linear:
        assert np.allclose(result["rad_score"], model.pipeline.decision_function(shuffled[X.columns]), atol=1e-9)
    assert set(result["predicted"]) <= {"benign", "malignant"}
    assert np.allclose(result["y_prob"], predict(model, X)["y_prob"])
    row = evaluate(model, X, y, n_boot=50)
    assert row.loc[0, "n"] == len(X) and row.loc[0, "auc"] > 0.7


def test_predict_refuses_missing_columns(trained):
    _, out, X, _, _ = trained
    model = load_model(out)
    with pytest.raises(ConfigError, match="lacks 2 of the 41 columns.*original_firstorder_Mean"):
        predict(model, X.drop(columns=["original_firstorder_Mean", "original_glcm_F0"]))


def test_load_refuses_a_tampered_model(trained, tmp_path):
    _, out, *_ = trained
    copy = tmp_path / "model"
    copy.mkdir()
    for name in ("model.joblib", "model.joblib.sha256", "model_card.json"):
        (copy / name).write_bytes((out / name).read_bytes())
    with open(copy / "model.joblib", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="does not match its sha256"):
        load_model(copy)


def test_rejects_positive_class_of_a_multiclass_outcome_and_unknown_positive_class(tmp_path):
    X, y, _ = _cohort(n=20)
    y3 = y.copy()
    y3.iloc[:3] = "other"   # three classes are a multi-class outcome (tests/test_model_multiclass.py)
    ungrouped = SETTINGS.model_copy(update={"group_column": None})
    with pytest.raises(ConfigError, match="applies only to a binary outcome.*3 classes"):
        train_models(X, y3, ungrouped.model_copy(update={"positive_class": "malignant"}), tmp_path)
    with pytest.raises(ConfigError, match="positive_class"):
        train_models(X, y, ungrouped.model_copy(update={"positive_class": "cancer"}), tmp_path)
    with pytest.raises(ConfigError, match="no group column 'patient'"):  # a group column needs the groups
        train_models(X, y, SETTINGS, tmp_path)


def test_pipeline_steps_carry_feature_names(trained):
    _, out, X, _, _ = trained
    pipe = load_model(out / "models" / "logreg").pipeline
    seen = pipe[:-1].transform(X)
    assert isinstance(seen, pd.DataFrame)
    assert list(seen.columns) == list(pipe[:-1].get_feature_names_out()) == list(pipe[-1].feature_names_in_)
    assert "original_firstorder_Mean" in seen.columns
