"""Model performance on the cohort page, read from the model folder's tables (``metrics.csv``,
``predictions.csv``) through :class:`radpipe.model.folder.ModelFolder`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe.explain import plots
from radpipe.model.folder import ModelFolder


def binary_performance(model_path, card, proba, labels, threshold, settings) -> dict:
    """ROC, calibration and confusion from out-of-fold predictions, else from the labels given."""
    positive = str(card.get("positive_class"))
    classes = [str(c) for c in card.get("classes", [])]
    negative = next((c for c in classes if c != positive), "negative")
    out: dict = {"source": None, "figures": {}}
    y = p = None
    folder = ModelFolder(model_path)
    pred_path = folder.predictions_path
    if pred_path.exists():
        try:
            pr = _cv_predictions(folder.predictions(), card)
            if "y_true" not in pr.columns and "label" in pr.columns:
                pr["y_true"] = (pr["label"].astype(str) == positive).astype(int)
            per_case = pr.groupby(pr["case_id"].astype(str)).agg(y_true=("y_true", "first"), y_prob=("y_prob", "mean"))
            y, p = per_case["y_true"].to_numpy(dtype=int), per_case["y_prob"].to_numpy(dtype=float)
            out["oof"] = per_case["y_prob"].astype(float).to_dict()
            repeats = pr["repeat"].nunique() if "repeat" in pr.columns else 1
            out["source"] = (f"out-of-fold predictions of the model folder ({len(per_case)} cases"
                             + (f", probability averaged over {repeats} repeats" if repeats > 1 else "") + ")")
        except Exception as exc:
            warnings.warn(f"ignoring {pred_path}: {exc}", stacklevel=2)
    if y is None and labels is not None and labels.notna().any():
        known = labels.dropna()
        y = (known.astype(str) == positive).astype(int).to_numpy()
        p = proba.loc[known.index].to_numpy()
        out["source"] = (f"the final model on the {len(known)} explained cases with a label: apparent performance, "
                         "optimistic when these cases were used for training")
    if y is not None and len(np.unique(y)) == 2:
        out["figures"]["roc"], out["roc"] = plots.roc_curve_band(y, p, n_boot=settings.bootstrap,
                                                                 seed=settings.seed, threshold=threshold)
        out["figures"]["calibration"] = plots.calibration(y, p)
        out["figures"]["confusion"], out["confusion"] = plots.confusion(y, p, threshold, (negative, positive))
    _add_metrics_table(out, model_path, card)
    return out


def multiclass_performance(model_path, card, classes, class_proba, labels, settings) -> dict:
    """One-vs-rest ROC curves and the confusion matrix of the most probable class, from out-of-fold
    predictions (``y_prob_<class>`` columns of predictions.csv), else from the labels given."""
    out: dict = {"source": None, "figures": {}}
    y = p = None
    prob_cols = [f"y_prob_{c}" for c in classes]
    folder = ModelFolder(model_path)
    pred_path = folder.predictions_path
    if pred_path.exists():
        try:
            pr = _cv_predictions(folder.predictions(), card)
            pr = pr.assign(y_true=pd.Categorical(pr["label"].astype(str), categories=classes).codes)
            per_case = pr.groupby(pr["case_id"].astype(str)).agg(
                y_true=("y_true", "first"), **{col: (col, "mean") for col in prob_cols})
            per_case = per_case[per_case["y_true"] >= 0]
            y, p = per_case["y_true"].to_numpy(dtype=int), per_case[prob_cols].to_numpy(dtype=float)
            out["oof"] = {case: dict(zip(classes, map(float, row), strict=True))
                          for case, row in zip(per_case.index, p, strict=True)}
            repeats = pr["repeat"].nunique() if "repeat" in pr.columns else 1
            out["source"] = (f"out-of-fold predictions of the model folder ({len(per_case)} cases"
                             + (f", probabilities averaged over {repeats} repeats" if repeats > 1 else "") + ")")
        except Exception as exc:
            warnings.warn(f"ignoring {pred_path}: {exc}", stacklevel=2)
            y = p = None
    if y is None and labels is not None and labels.notna().any():
        known = labels.dropna().astype(str)
        known = known[known.isin(classes)]
        y = pd.Categorical(known, categories=classes).codes.astype(int)
        p = class_proba.loc[known.index].to_numpy(dtype=float)
        out["source"] = (f"the final model on the {len(known)} explained cases with a label: apparent performance, "
                         "optimistic when these cases were used for training")
    if y is not None and len(np.unique(y)) >= 2:
        out["figures"]["roc"], out["roc"] = plots.roc_curves_ovr(y, p, classes, n_boot=settings.bootstrap,
                                                                 seed=settings.seed)
        out["figures"]["confusion"], out["confusion_matrix"] = plots.confusion_multiclass(
            y, p.argmax(axis=1), classes)
    _add_metrics_table(out, model_path, card)
    return out


def _cv_predictions(pr: pd.DataFrame, card: dict) -> pd.DataFrame:
    """The card's model's out-of-fold rows of predictions.csv (external cohorts are reported apart)."""
    if "cohort" in pr.columns:
        pr = pr[pr["cohort"].fillna("cv").astype(str) == "cv"]
    if "model" in pr.columns and card.get("model_name") in set(pr["model"].astype(str)):
        pr = pr[pr["model"].astype(str) == str(card["model_name"])]
    return pr


def _add_metrics_table(out: dict, model_path: Path, card: dict) -> None:
    metrics_path = ModelFolder(model_path).metrics_path
    if metrics_path.exists():
        try:
            out["metrics_table"] = _metrics_table(ModelFolder(model_path).metrics(), card.get("model_name"))
        except Exception as exc:
            warnings.warn(f"ignoring {metrics_path}: {exc}", stacklevel=2)


def _metrics_table(df: pd.DataFrame, model_name) -> dict:
    """Metrics with their CIs merged into one cell ("0.87 (0.81–0.92)"), the chosen model's rows first."""
    if "model" in df.columns and model_name in set(df["model"].astype(str)):
        df = pd.concat([df[df["model"].astype(str) == str(model_name)], df[df["model"].astype(str) != str(model_name)]])
    cols = [c for c in df.columns if not re.search(r"_ci_(low|high)$", c)]
    rows = []
    for _, r in df.iterrows():
        row = []
        for c in cols:
            v = r[c]
            if isinstance(v, float | np.floating) and not pd.isna(v):
                text = f"{v:.3f}"
                if f"{c}_ci_low" in df.columns and not pd.isna(r[f"{c}_ci_low"]):
                    text += f" ({r[f'{c}_ci_low']:.3f}–{r[f'{c}_ci_high']:.3f})"
            else:
                text = "" if pd.isna(v) else str(v)
            row.append(text)
        rows.append({"cells": row, "chosen": "model" in df.columns and str(r.get("model")) == str(model_name)})
    return {"columns": cols, "rows": rows}


