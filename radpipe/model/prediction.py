"""Apply a saved model to a feature table: probabilities and classes per case, or metrics with CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radpipe.model.inputs import features_for_model, labels_for_model
from radpipe.model.metrics import metrics_with_ci, multiclass_metrics_with_ci
from radpipe.model.persist import LoadedModel


def predict(loaded: LoadedModel, X: pd.DataFrame) -> pd.DataFrame:
    """Positive-class probability and predicted class (at the card's threshold) per case.

    Returns columns ``case_id, y_prob, predicted`` (``predicted`` is a class label from the card), and
    ``rad_score`` for a linear model (its linear predictor, :mod:`radpipe.model.radscore`).
    For a survival model: ``case_id, risk, surv_<h>…, risk_group`` (the card's horizons and frozen cut-off).
    For a multi-class model: ``case_id``, one ``y_prob_<class>`` per class (they sum to 1) and
    ``predicted``, the most probable class.
    A classifier saved with ``neighbours.joblib`` adds ``ood_percentile`` and ``ood_flag`` (how unlike the
    training cases each case is, :mod:`radpipe.model.neighbours`); they are computed beside the
    probabilities and never change them.
    Extra columns in X are ignored; missing ones raise :class:`radpipe.errors.ConfigError`.
    """
    features = features_for_model(loaded, X)
    if loaded.is_survival:
        from radpipe.model.survival import predict_survival

        return predict_survival(loaded, features)
    return _with_ood(loaded, features, _class_predictions(loaded, features))


def _with_ood(loaded: LoadedModel, features: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    if loaded.neighbours is None:
        return out
    ood = loaded.neighbours.score(loaded.pipeline, features)
    return out.assign(ood_percentile=ood["ood_percentile"].to_numpy(), ood_flag=ood["ood_flag"].to_numpy())


def _class_predictions(loaded: LoadedModel, features: pd.DataFrame) -> pd.DataFrame:
    if loaded.is_multiclass:
        proba = loaded.pipeline.predict_proba(features)
        classes = loaded.classes
        return pd.DataFrame({
            "case_id": features.index,
            **{f"y_prob_{c}": proba[:, k] for k, c in enumerate(classes)},
            "predicted": np.asarray(classes, dtype=object)[proba.argmax(axis=1)],
        })
    from radpipe.model.radscore import linear_score

    negative, positive = (str(c) for c in loaded.card["classes"])
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    out = pd.DataFrame({
        "case_id": features.index,
        "y_prob": prob,
        "predicted": np.where(prob >= loaded.threshold, positive, negative),
    })
    score = linear_score(loaded.pipeline, features)
    return out if score is None else out.assign(rad_score=score)


def evaluate(loaded: LoadedModel, X: pd.DataFrame, y: pd.Series, n_boot: int = 1000, seed: int = 42) -> pd.DataFrame:
    """One metrics row (``model`` then the metrics.csv columns) for the model on labelled cases, with CIs.

    A multi-class model gets the multi-class columns (macro and per-class one-vs-rest AUC, ...).
    """
    if loaded.is_survival:
        from radpipe.errors import ConfigError

        raise ConfigError("evaluate scores classifiers; a survival model's external cohorts are scored by "
                          "`radpipe run` with the cohort listed under external: (frozen model and cut-off)")
    features = features_for_model(loaded, X)
    labels = labels_for_model(loaded, features.index, y)
    classes = loaded.classes
    if loaded.is_multiclass:
        codes = pd.Categorical(labels, categories=classes).codes.astype(int)
        row = multiclass_metrics_with_ci(codes, loaded.pipeline.predict_proba(features), classes, n_boot=n_boot,
                                         seed=seed)
        return pd.DataFrame([{"model": loaded.card.get("model_name"), **row}])
    y01 = (labels == str(loaded.card["positive_class"])).to_numpy().astype(int)
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    row = metrics_with_ci(y01, prob, loaded.threshold, n_boot=n_boot, seed=seed)
    return pd.DataFrame([{"model": loaded.card.get("model_name"), **row}])
