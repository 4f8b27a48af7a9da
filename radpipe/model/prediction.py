"""Apply a saved model to a feature table: probabilities and classes per case, or metrics with CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radpipe.errors import ConfigError
from radpipe.model.metrics import metrics_with_ci
from radpipe.model.persist import LoadedModel


def _features(loaded: LoadedModel, X: pd.DataFrame) -> pd.DataFrame:
    """X restricted to the model's columns, in training order; refuses tables that lack any of them."""
    if "case_id" in X.columns:
        X = X.set_index("case_id")
    names = loaded.feature_names
    missing = [name for name in names if name not in X.columns]
    if missing:
        shown = ", ".join(missing[:20]) + (f", … ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise ConfigError(
            f"the feature table lacks {len(missing)} of the {len(names)} columns the model "
            f"'{loaded.card.get('model_name', 'model')}' was trained on: {shown}. Extract features with the "
            "same settings as the training cohort."
        )
    features = X[names]
    non_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ConfigError(f"feature columns must be numeric; not numeric: {non_numeric[:10]}")
    features = features.replace([np.inf, -np.inf], np.nan).astype(float)
    features.index.name = "case_id"
    return features


def predict(loaded: LoadedModel, X: pd.DataFrame) -> pd.DataFrame:
    """Positive-class probability and predicted class (at the card's threshold) per case.

    Returns columns ``case_id, y_prob, predicted`` (``predicted`` is a class label from the card).
    Extra columns in X are ignored; missing ones raise :class:`radpipe.errors.ConfigError`.
    """
    features = _features(loaded, X)
    negative, positive = (str(c) for c in loaded.card["classes"])
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    return pd.DataFrame({
        "case_id": features.index,
        "y_prob": prob,
        "predicted": np.where(prob >= loaded.threshold, positive, negative),
    })


def evaluate(loaded: LoadedModel, X: pd.DataFrame, y: pd.Series, n_boot: int = 1000, seed: int = 42) -> pd.DataFrame:
    """One metrics row (``model`` then the metrics.csv columns) for the model on labelled cases, with CIs."""
    features = _features(loaded, X)
    missing = features.index.difference(y.index)
    if len(missing):
        raise ConfigError(f"{len(missing)} case(s) have no label, e.g. {missing[:5].tolist()}")
    labels = y.loc[features.index].astype(str)
    classes = [str(c) for c in loaded.card["classes"]]
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ConfigError(f"labels {unknown} are not classes of the model ({classes})")
    y01 = (labels == str(loaded.card["positive_class"])).to_numpy().astype(int)
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    row = metrics_with_ci(y01, prob, loaded.threshold, n_boot=n_boot, seed=seed)
    return pd.DataFrame([{"model": loaded.card.get("model_name"), **row}])
