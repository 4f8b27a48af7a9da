"""Model performance for the reports, read from the model folder's tables and never recomputed.

Every number the cohort page states about performance is a cell of ``metrics.csv`` (the explained model's
``cv`` row); every figure is drawn from the rows of ``predictions.csv`` that produced that cell:

- the ROC curves are those of the out-of-fold probabilities, one per repeat of the outer cross-validation,
  and their caption quotes ``auc``, ``auc_ci_low`` and ``auc_ci_high`` (the mean of the per-repeat AUCs and
  its stratified-bootstrap interval, as the model stage computes them);
- the confusion matrix counts the out-of-fold decisions ``y_pred``, each fold at its own threshold, summed
  over the repeats. Every case is tested once per repeat, so (found / all positives) of these sums is the
  mean over repeats of each repeat's sensitivity: exactly ``metrics.csv``'s ``sensitivity``, and likewise
  specificity (and, for a multi-class model, the macro-averaged recall).

Patient pages lead with :func:`out_of_fold`, each case's probability from the fold models that never saw it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from radpipe.explain import plots
from radpipe.model.folder import ModelFolder


@dataclass
class Performance:
    """What the cohort page shows about performance, each part naming the table it came from.

    ``source`` is ``"cv"`` (the model folder's out-of-fold predictions), ``"apparent"`` (the final model on the
    explained cases with labels: optimistic) or ``None`` (nothing to show).
    """

    source: str | None = None
    description: str = ""
    metrics_row: dict | None = None      # the explained model's cv row of metrics.csv
    metrics_table: dict | None = None    # every row of metrics.csv, CIs merged into cells
    confusion: dict | None = None        # binary: tp, fn, fp, tn (+ repeats); multi-class: classes, matrix
    n_repeats: int = 1
    figures: dict[str, bytes] = field(default_factory=dict)
    roc_aucs: dict[str, float] | None = None  # multi-class: class -> one-vs-rest AUC of metrics.csv


def cv_predictions(folder: ModelFolder, model_name: str | None) -> pd.DataFrame | None:
    """The explained model's out-of-fold rows of ``predictions.csv`` (None when the folder has none).

    External cohorts' rows are left out: they are not cross-validated.
    """
    try:
        pr = folder.predictions()
    except Exception as exc:  # an unreadable optional table must not stop the reports
        warnings.warn(f"ignoring {folder.predictions_path}: {exc}", stacklevel=2)
        return None
    if pr is None or pr.empty:
        return None
    if "cohort" in pr.columns:
        pr = pr[pr["cohort"].fillna("cv").astype(str) == "cv"]
    if "model" in pr.columns and model_name is not None and str(model_name) in set(pr["model"].astype(str)):
        pr = pr[pr["model"].astype(str) == str(model_name)]
    if "repeat" not in pr.columns:
        pr = pr.assign(repeat=0)
    pr = pr.assign(case_id=pr["case_id"].astype(str))
    return pr if len(pr) else None


def out_of_fold(pr: pd.DataFrame | None, classes: list[str], positive: str | None) -> pd.DataFrame:
    """Each case's cross-validated probability: the mean over repeats, its range, and the fold decisions.

    Binary models: ``probability`` is the positive class's; ``positive_calls`` counts the repeats in which the
    case's fold model (at that fold's threshold) called it positive. Multi-class models: ``p_<class>`` per
    class, ``predicted`` the most probable class on average, and ``probability``/``low``/``high`` that class's.

    Examples
    --------
    >>> pr = pd.DataFrame({"case_id": ["a", "a", "b", "b"], "repeat": [0, 1, 0, 1],
    ...                    "y_prob": [0.4, 0.6, 0.1, 0.3], "y_pred": [0, 1, 0, 0]})
    >>> out_of_fold(pr, ["no", "yes"], "yes").round(2).to_dict("index")["a"]
    {'probability': 0.5, 'low': 0.4, 'high': 0.6, 'repeats': 2, 'positive_calls': 1}
    """
    if pr is None or pr.empty:
        return pd.DataFrame(columns=["probability", "low", "high", "repeats"], dtype=float)
    by_case = pr.groupby("case_id", sort=False)
    if len(classes) > 2:
        cols = [f"y_prob_{c}" for c in classes]
        mean = by_case[cols].mean()
        best = mean.to_numpy().argmax(axis=1)
        out = pd.DataFrame({f"p_{c}": mean[col] for c, col in zip(classes, cols, strict=True)})
        out["predicted"] = np.asarray(classes, dtype=object)[best]
        out["probability"] = mean.to_numpy()[np.arange(len(mean)), best]
        chosen = pr[cols].to_numpy()[np.arange(len(pr)), pr["case_id"].map(
            dict(zip(mean.index, best, strict=True))).to_numpy()]
        span = pd.Series(chosen, index=pr.index).groupby(pr["case_id"], sort=False)
        out["low"], out["high"] = span.min(), span.max()
        out["repeats"] = by_case["repeat"].nunique()
        return out
    out = pd.DataFrame({"probability": by_case["y_prob"].mean(), "low": by_case["y_prob"].min(),
                        "high": by_case["y_prob"].max(), "repeats": by_case["repeat"].nunique()})
    if "y_pred" in pr.columns:
        out["positive_calls"] = by_case["y_pred"].sum().astype(int)
    return out


def confusion_counts(pr: pd.DataFrame, classes: list[str]) -> dict:
    """Counts of the out-of-fold decisions (``y_true`` against ``y_pred``), summed over the repeats.

    Binary: ``{"tp", "fn", "fp", "tn", "repeats"}``; multi-class: ``{"classes", "matrix", "repeats"}`` with
    true classes in rows. See the module docstring for why these reproduce ``metrics.csv``.
    """
    y = pr["y_true"].to_numpy(dtype=int)
    pred = pr["y_pred"].to_numpy(dtype=int)
    repeats = int(pr["repeat"].nunique())
    if len(classes) > 2:
        k = len(classes)
        matrix = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        return {"classes": list(classes), "matrix": matrix.tolist(), "repeats": repeats}
    return {"tp": int(((y == 1) & (pred == 1)).sum()), "fn": int(((y == 1) & (pred == 0)).sum()),
            "fp": int(((y == 0) & (pred == 1)).sum()), "tn": int(((y == 0) & (pred == 0)).sum()),
            "repeats": repeats}


def model_performance(folder: ModelFolder, card: dict, classes: list[str], *, final_proba=None,
                      labels: pd.Series | None = None, predictions: pd.DataFrame | None = None) -> Performance:
    """The performance section of the cohort page for the model of ``card``.

    With out-of-fold predictions in the folder everything comes from ``predictions.csv`` and ``metrics.csv``.
    Without them, and with ``labels`` for some explained cases, the final model's own predictions on those
    cases are shown as apparent (optimistic) performance: ``final_proba`` is its positive-class probability
    (binary) or its class-probability table (multi-class).
    """
    model_name = card.get("model_name")
    perf = Performance()
    metrics = _read_metrics(folder)
    if metrics is not None:
        perf.metrics_table = _metrics_table(metrics, model_name)
        perf.metrics_row = _cv_row(metrics, model_name)
    pr = predictions if predictions is not None else cv_predictions(folder, model_name)
    multiclass = len(classes) > 2
    if pr is not None and {"y_true", "y_pred"} <= set(pr.columns) and pr["y_true"].nunique() >= 2:
        perf.source = "cv"
        perf.n_repeats = int(pr["repeat"].nunique())
        perf.description = (f"{pr['case_id'].nunique()} cases, {perf.n_repeats} repeat{'s' if perf.n_repeats > 1 else ''} "
                            "of the outer cross-validation")
        perf.confusion = confusion_counts(pr, classes)
        if multiclass:
            perf.figures["roc"] = _roc_ovr_by_repeat(pr, classes)
            if perf.metrics_row:
                perf.roc_aucs = {c: perf.metrics_row.get(f"auc_ovr_{c}") for c in classes}
        else:
            perf.figures["roc"] = _roc_by_repeat(pr, perf.metrics_row)
            case_mean = pr.groupby("case_id", sort=False).agg(y=("y_true", "first"), p=("y_prob", "mean"))
            perf.figures["calibration"] = plots.calibration(case_mean["y"].to_numpy(), case_mean["p"].to_numpy())
        return perf
    if labels is not None and final_proba is not None and labels.notna().any():
        _apparent(perf, labels, final_proba, classes, card)
    return perf


def _apparent(perf: Performance, labels: pd.Series, final_proba, classes: list[str], card: dict) -> None:
    """The final model on the explained cases with labels: apparent performance, said to be optimistic."""
    known = labels.dropna().astype(str)
    known = known[known.isin(classes)]
    if known.nunique() < 2:
        return
    perf.source = "apparent"
    perf.description = (f"the final model on the {len(known)} explained cases with a label (apparent performance: "
                        "optimistic for cases the model was trained on; the model folder has no out-of-fold "
                        "predictions)")
    if len(classes) > 2:
        y = pd.Categorical(known, categories=classes).codes.astype(int)
        p = final_proba.loc[known.index].to_numpy(dtype=float)
        perf.figures["roc"], stats = plots.roc_curves_ovr(y, p, classes, n_boot=0)
        perf.roc_aucs = stats["per_class"]
        pr = pd.DataFrame({"y_true": y, "y_pred": p.argmax(axis=1), "repeat": 0})
    else:
        positive = str(card.get("positive_class"))
        threshold = float(card.get("threshold", 0.5))
        y = (known == positive).astype(int).to_numpy()
        p = final_proba.loc[known.index].to_numpy(dtype=float)
        perf.figures["roc"], stats = plots.roc_curve_band(y, p, n_boot=0, threshold=threshold)
        perf.figures["calibration"] = plots.calibration(y, p)
        pr = pd.DataFrame({"y_true": y, "y_pred": (p >= threshold).astype(int), "repeat": 0})
        perf.roc_aucs = {"auc": stats["auc"]}
    perf.confusion = confusion_counts(pr, classes)


def _read_metrics(folder: ModelFolder) -> pd.DataFrame | None:
    try:
        return folder.metrics()
    except Exception as exc:  # an unreadable optional table must not stop the reports
        warnings.warn(f"ignoring {folder.metrics_path}: {exc}", stacklevel=2)
        return None


def _cv_row(metrics: pd.DataFrame, model_name) -> dict | None:
    rows = metrics
    if "cohort" in rows.columns:
        rows = rows[rows["cohort"].fillna("cv").astype(str) == "cv"]
    if "model" in rows.columns:
        rows = rows[rows["model"].astype(str) == str(model_name)]
    if len(rows) != 1:
        return None
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rows.iloc[0].to_dict().items()}


def _roc_by_repeat(pr: pd.DataFrame, row: dict | None) -> bytes:
    """ROC curve of each repeat's out-of-fold probabilities, and metrics.csv's operating point."""
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(4.8, 4.6))
    ax = fig.add_subplot()
    repeats = sorted(pr["repeat"].unique())
    for k, (_, rows) in enumerate(pr.groupby("repeat", sort=True)):
        fpr, tpr, _ = roc_curve(rows["y_true"].to_numpy(dtype=int), rows["y_prob"].to_numpy(dtype=float))
        label = "out-of-fold ROC" if len(repeats) == 1 else ("one curve per repeat" if k == 0 else None)
        ax.plot(fpr, tpr, color=plots.CURVE, lw=1.8 if len(repeats) == 1 else 1.1,
                alpha=1.0 if len(repeats) == 1 else 0.6, label=label)
    if row and row.get("sensitivity") is not None and row.get("specificity") is not None:
        ax.plot([1 - row["specificity"]], [row["sensitivity"]], "o", color="black", ms=6,
                label="each fold at its own threshold")
    plots._roc_axes(ax, legend_size=10)
    ax.xaxis.label.set_size(11)
    ax.yaxis.label.set_size(11)
    return plots._png(fig)


def _roc_ovr_by_repeat(pr: pd.DataFrame, classes: list[str]) -> bytes:
    """One-vs-rest ROC curve of each class (one line per repeat), from the out-of-fold probabilities."""
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(5.0, 4.6))
    ax = fig.add_subplot()
    y = pr["y_true"].to_numpy(dtype=int)
    for k, name in enumerate(classes):
        col = f"y_prob_{name}"
        first = True
        for rep in sorted(pr["repeat"].unique()):
            sel = (pr["repeat"] == rep).to_numpy()
            yk = y[sel] == k
            if 0 < yk.sum() < len(yk):
                fpr, tpr, _ = roc_curve(yk, pr.loc[sel, col].to_numpy(dtype=float))
                ax.plot(fpr, tpr, color=plots._class_colour(k), lw=1.5, alpha=0.8,
                        label=f"{plots._short(name, 24)} vs rest" if first else None)
                first = False
    plots._roc_axes(ax, legend_size=9)
    return plots._png(fig)


def _metrics_table(df: pd.DataFrame, model_name) -> dict:
    """Metrics with their CIs merged into one cell ("0.870 (0.810–0.920)"), the chosen model's rows first."""
    if "model" in df.columns and model_name in set(df["model"].astype(str)):
        df = pd.concat([df[df["model"].astype(str) == str(model_name)], df[df["model"].astype(str) != str(model_name)]])
    cols = [c for c in df.columns if not re.search(r"_ci_(low|high)$", c)]
    cols = [c for c in cols if df[c].notna().any()]  # a column empty for every model says nothing
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
                text = "–" if pd.isna(v) else str(v)
            row.append(text)
        rows.append({"cells": row, "chosen": "model" in df.columns and str(r.get("model")) == str(model_name)})
    return {"columns": [c.replace("_", " ") for c in cols], "rows": rows}
