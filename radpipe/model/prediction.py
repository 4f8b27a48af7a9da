"""Apply a saved model to a feature table: probabilities and classes per case, or metrics with CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radpipe.errors import ConfigError
from radpipe.model._combat import _label
from radpipe.model.metrics import metrics_with_ci, multiclass_metrics_with_ci
from radpipe.model.persist import LoadedModel


def _features(loaded: LoadedModel, X: pd.DataFrame) -> pd.DataFrame:
    """X restricted to the model's columns, in training order; refuses tables that lack any of them.

    A model trained with ComBat harmonisation also reads its batch column (``loaded.batch_column``, e.g. the
    scanner): it is kept as given (text allowed), needs a value for every case and only batches seen in
    training (``training_batches`` of the card); every other column must be numeric.
    """
    if "case_id" in X.columns:
        X = X.set_index("case_id")
    names = loaded.feature_names
    batch_column = loaded.batch_column
    if batch_column is not None and batch_column not in X.columns:
        raise ConfigError(
            f"the model '{loaded.card.get('model_name', 'model')}' harmonises features with ComBat and needs each "
            f"case's batch in a column '{batch_column}' (the scanner/centre column of the training labels), which "
            "the table lacks: add it to the feature table, or give a labels CSV with case_id and "
            f"'{batch_column}' (`radpipe predict/evaluate --labels FILE`)", key="batch_column")
    missing = [name for name in names if name not in X.columns]
    if missing:
        shown = ", ".join(missing[:20]) + (f", … ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise ConfigError(
            f"the feature table lacks {len(missing)} of the {len(names)} columns the model "
            f"'{loaded.card.get('model_name', 'model')}' was trained on: {shown}. Extract features with the "
            "same settings as the training cohort."
        )
    numeric = [name for name in names if name != batch_column]
    features = X[numeric]
    non_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ConfigError(f"feature columns must be numeric; not numeric: {non_numeric[:10]}")
    features = features.replace([np.inf, -np.inf], np.nan).astype(float)
    if batch_column is not None:
        features[batch_column] = _batches(loaded, X[batch_column])
        features = features[names]
    features.index.name = "case_id"
    return features


def _batches(loaded: LoadedModel, values: pd.Series) -> pd.Series:
    """The batch column checked: every case has a batch, and a batch the model was harmonised on."""
    column = loaded.batch_column
    text = values.map(_label)
    absent = text.index[text.isna()]
    if len(absent):
        raise ConfigError(f"{len(absent)} case(s) have no '{column}' (batch) value, e.g. {absent[:5].tolist()}: "
                          "the model's ComBat step needs every case's batch", key="batch_column")
    known = loaded.card.get("training_batches")
    unseen = sorted(set(text) - set(known)) if known else []
    if unseen:
        raise ConfigError(
            f"batch value(s) {unseen} in column '{column}' were not in the model's training data (its batches: "
            f"{sorted(known)}): ComBat cannot harmonise a scanner/centre it was not fitted on", key="batch_column")
    return values


def with_batches(loaded: LoadedModel, X: pd.DataFrame, table: pd.DataFrame | None) -> pd.DataFrame:
    """X with the model's batch column taken from ``table`` (a labels table indexed by case_id), when the model
    harmonises and X lacks that column; X unchanged otherwise (a batch column in X itself wins).

    A ``table`` without the column is a :class:`ConfigError` naming it; cases ``table`` does not list get no
    batch (refused by :func:`predict` / :func:`evaluate`, with their ids).
    """
    column = loaded.batch_column
    if column is None or table is None:
        return X
    if "case_id" in X.columns:
        X = X.set_index("case_id")
    if column in X.columns:
        return X
    if column not in table.columns:
        raise ConfigError(f"the model harmonises with ComBat and needs each case's batch in a column '{column}', "
                          f"but neither the feature table nor the labels table has one (labels columns: "
                          f"{list(table.columns)[:10]})", key="batch_column")
    batches = table[column]
    batches.index = batches.index.map(str)
    return pd.concat([X, batches.reindex(X.index.map(str)).set_axis(X.index).rename(column)], axis=1)


def predict(loaded: LoadedModel, X: pd.DataFrame) -> pd.DataFrame:
    """Positive-class probability and predicted class (at the card's threshold) per case.

    Returns columns ``case_id, y_prob, predicted`` (``predicted`` is a class label from the card).
    For a multi-class model: ``case_id``, one ``y_prob_<class>`` per class (they sum to 1) and
    ``predicted``, the most probable class.
    Extra columns in X are ignored; missing ones raise :class:`radpipe.errors.ConfigError`.
    """
    features = _features(loaded, X)
    if loaded.is_multiclass:
        proba = loaded.pipeline.predict_proba(features)
        classes = loaded.classes
        return pd.DataFrame({
            "case_id": features.index,
            **{f"y_prob_{c}": proba[:, k] for k, c in enumerate(classes)},
            "predicted": np.asarray(classes, dtype=object)[proba.argmax(axis=1)],
        })
    negative, positive = (str(c) for c in loaded.card["classes"])
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    return pd.DataFrame({
        "case_id": features.index,
        "y_prob": prob,
        "predicted": np.where(prob >= loaded.threshold, positive, negative),
    })


def evaluate(loaded: LoadedModel, X: pd.DataFrame, y: pd.Series, n_boot: int = 1000, seed: int = 42) -> pd.DataFrame:
    """One metrics row (``model`` then the metrics.csv columns) for the model on labelled cases, with CIs.

    A multi-class model gets the multi-class columns (macro and per-class one-vs-rest AUC, ...).
    """
    features = _features(loaded, X)
    missing = features.index.difference(y.index)
    if len(missing):
        raise ConfigError(f"{len(missing)} case(s) have no label, e.g. {missing[:5].tolist()}")
    labels = y.loc[features.index].astype(str)
    classes = [str(c) for c in loaded.card["classes"]]
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ConfigError(f"labels {unknown} are not classes of the model ({classes})")
    if loaded.is_multiclass:
        codes = pd.Categorical(labels, categories=classes).codes.astype(int)
        row = multiclass_metrics_with_ci(codes, loaded.pipeline.predict_proba(features), classes, n_boot=n_boot,
                                         seed=seed)
        return pd.DataFrame([{"model": loaded.card.get("model_name"), **row}])
    y01 = (labels == str(loaded.card["positive_class"])).to_numpy().astype(int)
    prob = loaded.pipeline.predict_proba(features)[:, 1]
    row = metrics_with_ci(y01, prob, loaded.threshold, n_boot=n_boot, seed=seed)
    return pd.DataFrame([{"model": loaded.card.get("model_name"), **row}])
