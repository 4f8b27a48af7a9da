"""The explained model as the pages see it, its final predictions, and the number each patient page leads with.

A page leads with the case's cross-validated (out-of-fold) probability from the model folder when the case was
in nested cross-validation; otherwise with the final model's prediction, saying whether the case was a training
case (in-sample, optimistic) or an external one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from radpipe.explain.shap_values import final_estimator, positive_index
from radpipe.model.folder import ModelFolder

#: What each headline source means, for hovers and the summary.
SOURCE_TEXT = {
    "cv": "cross-validated: from the fold models that never saw this case",
    "training": "final model, in-sample: a training case without a cross-validated probability (optimistic)",
    "external": "final model: the case was not among its training cases",
    "final": "final model (the model folder does not list its training cases)",
}


@dataclass
class ModelView:
    """What the report needs to know about a loaded model: its classes, threshold and input columns."""

    model_name: str
    columns: list[str]          # input columns in training order, batch column included
    names: list[str]            # feature columns (no batch column)
    batch: str | None
    multiclass: bool
    classes: list[str]
    estimator_classes: list[str]
    positive: str | None
    negative: str
    pos: int | None             # index of the positive class in predict_proba
    threshold: float | None

    @classmethod
    def of(cls, model) -> ModelView:
        card, est = model.card, final_estimator(model.pipeline)
        columns = [str(n) for n in model.feature_names]
        # a harmonised model also reads each case's batch (scanner, centre): an input column, never a feature
        batch = model.batch_column if model.batch_column in columns else None
        est_classes = [str(c) for c in est.classes_]
        multiclass = len(est_classes) > 2
        if multiclass:  # one-vs-rest view: no positive class and no threshold; classes in predict_proba order
            classes = [str(c) for c in card.get("classes") or []]
            classes = classes if len(classes) == len(est_classes) else est_classes
            positive, negative, pos, threshold = None, "other classes", None, None
        else:
            positive = card.get("positive_class")
            pos = positive_index(est.classes_, positive)
            classes = [str(c) for c in card.get("classes") or est_classes]
            negative = next((c for c in classes if c != str(positive)), "negative")
            threshold = model.threshold
        return cls(str(card.get("model_name", "model")), columns, [n for n in columns if n != batch], batch,
                   multiclass, classes, est_classes, positive, negative, pos, threshold)


@dataclass
class FinalPredictions:
    """The final model's predictions on the explained cases (in-sample for its training cases)."""

    proba: pd.Series                       # positive class (binary) or the predicted class (multi-class)
    predicted: pd.Series
    class_proba: pd.DataFrame | None = None


def final_predictions(pipe, X: pd.DataFrame, view: ModelView) -> FinalPredictions:
    if view.multiclass:
        class_proba = pd.DataFrame(pipe.predict_proba(X), index=X.index, columns=view.classes)
        best = class_proba.to_numpy().argmax(axis=1) if len(X) else np.array([], dtype=int)
        predicted = pd.Series(np.asarray(view.classes, dtype=object)[best], index=X.index, name="predicted")
        proba = pd.Series(class_proba.to_numpy().max(axis=1) if len(X) else [], index=X.index,
                          name="probability", dtype=float)
        return FinalPredictions(proba, predicted, class_proba)
    proba = pd.Series(pipe.predict_proba(X)[:, view.pos], index=X.index, name="probability")
    predicted = pd.Series(np.where(proba >= view.threshold, str(view.positive), view.negative), index=X.index,
                          name="predicted", dtype=object)
    return FinalPredictions(proba, predicted)


def training_cases(folder: ModelFolder, X_train: pd.DataFrame | None) -> set[str] | None:
    """Case ids the final model was trained on (None when the model folder does not say)."""
    try:
        labels = folder.train_labels()
    except Exception:  # an unreadable optional table: fall back to the training features
        labels = None
    if labels is not None:
        return set(map(str, labels.index))
    return set(map(str, X_train.index)) if X_train is not None else None


def headline(case: str, oof: pd.DataFrame, final: FinalPredictions, view: ModelView, trained_on: set[str] | None) -> dict:
    """The number a page leads with, and where it comes from.

    ``source`` is ``cv`` (out-of-fold from the model folder), ``training`` (a training case without an
    out-of-fold prediction: the final model's in-sample number), ``external`` (a case the final model was
    not trained on) or ``final`` (the model folder does not say which cases it was trained on).
    """
    out = {"final_probability": float(final.proba[case]), "final_predicted": str(final.predicted[case])}
    if case in oof.index:
        row = oof.loc[case]
        repeats = int(row["repeats"])
        out.update(source="cv", probability=float(row["probability"]), low=float(row["low"]),
                   high=float(row["high"]), repeats=repeats)
        if view.multiclass:
            out.update(predicted=str(row["predicted"]),
                       class_probs=[(c, float(row[f"p_{c}"])) for c in view.classes])
        elif "positive_calls" in row and pd.notna(row["positive_calls"]):
            calls = int(row["positive_calls"])
            out["positive_calls"] = calls
            out["predicted"] = (str(view.positive) if 2 * calls > repeats else view.negative if 2 * calls < repeats
                                else "split")
        else:
            out["predicted"] = str(view.positive) if row["probability"] >= view.threshold else view.negative
        return out
    source = "final" if trained_on is None else "training" if case in trained_on else "external"
    out.update(source=source, probability=out["final_probability"], low=None, high=None, repeats=0,
               predicted=out["final_predicted"])
    if view.multiclass:
        out["class_probs"] = [(c, float(final.class_proba.loc[case, c])) for c in view.classes]
    return out

