"""The numbers of the survival reports, read from the model folder's tables and never recomputed.

Patient pages lead with each case's cross-validated risk score and risk group (``predictions.csv``, cohort
``cv``: the fold models that never saw the case, averaged over repeats); the cohort page's C-index, td-AUC,
log-rank p and hazard ratio are cells of ``metrics.csv``. The final model's own risk and survival curve are
in-sample for its training cases and are labelled so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from radpipe.explain.performance import cv_predictions
from radpipe.explain.shap_values import final_features
from radpipe.model.folder import ModelFolder
from radpipe.model.survival import horizon_label, risk_groups, survival_at

#: What each headline source means, for hovers and the summary.
SOURCE_TEXT = {
    "cv": "cross-validated: from the fold models that never saw this case",
    "training": "final model, in-sample: a training case without a cross-validated risk (optimistic)",
    "external": "final model: the case was not among its training cases",
    "final": "final model (the model folder does not list its training cases)",
}


@dataclass
class SurvivalView:
    """What the pages need to know about a survival model, from its card."""

    model_name: str
    names: list[str]
    time_column: str
    event_column: str
    time_unit: str
    horizons: list[float]
    cutoff: float | None
    n_cases: int | None = None
    n_events: int | None = None
    censoring: float | None = None

    @classmethod
    def of(cls, model) -> SurvivalView:
        card = model.card
        outcome = card.get("outcome") or {}
        cutoff = card.get("risk_cutoff")
        return cls(str(card.get("model_name", "model")), [str(n) for n in model.feature_names],
                   str(outcome.get("time", "time")), str(outcome.get("event", "event")),
                   str(outcome.get("time_unit") or "days"), [float(h) for h in card.get("horizons") or []],
                   None if cutoff is None else float(cutoff), card.get("n_cases"), card.get("n_events"),
                   card.get("censoring_fraction"))

    def surv_columns(self) -> list[str]:
        return [f"surv_{horizon_label(h)}" for h in self.horizons]


def out_of_fold_risk(pr: pd.DataFrame | None, horizons: list[float]) -> pd.DataFrame:
    """Each case's cross-validated risk: mean over repeats and range, the repeats that put it in the high-risk
    group, its group and the survival at each horizon (mean, low, high).

    A case is in the high-risk group when its fold models put it above their cut-off in at least half of the
    repeats: the rule by which the model stage computes metrics.csv's log-rank p and hazard ratio.

    Examples
    --------
    >>> pr = pd.DataFrame({"case_id": ["a", "a", "b", "b"], "repeat": [0, 1, 0, 1], "time": [10, 10, 5, 5],
    ...                    "event": [1, 1, 0, 0], "risk": [0.4, 0.6, -0.1, 0.3], "risk_group": ["high", "low",
    ...                    "low", "low"], "surv_365": [0.5, 0.7, 0.9, 0.8]})
    >>> row = out_of_fold_risk(pr, [365]).loc["a"]
    >>> float(row["risk"]), int(row["high_calls"]), row["group"], float(row["surv_365_low"])
    (0.5, 1, 'high', 0.5)
    """
    columns = ["risk", "low", "high", "repeats", "high_calls", "group", "time", "event"]
    if pr is None or pr.empty:
        return pd.DataFrame(columns=columns)
    by = pr.groupby("case_id", sort=False)
    out = pd.DataFrame({"risk": by["risk"].mean(), "low": by["risk"].min(), "high": by["risk"].max(),
                        "repeats": by["repeat"].nunique() if "repeat" in pr else 1})
    calls = pr["risk_group"].astype(str).eq("high").groupby(pr["case_id"], sort=False).sum()
    out["high_calls"] = calls.astype(int)
    out["group"] = np.where(2 * out["high_calls"] >= out["repeats"], "high", "low")
    out["time"] = by["time"].first() if "time" in pr else np.nan
    out["event"] = by["event"].first() if "event" in pr else np.nan
    for h in horizons:
        col = f"surv_{horizon_label(h)}"
        if col in pr:
            out[col], out[f"{col}_low"], out[f"{col}_high"] = by[col].mean(), by[col].min(), by[col].max()
    return out


@dataclass
class FinalSurvival:
    """The final model's risk, risk group and survival curves for the explained cases (in-sample for its
    training cases)."""

    risk: pd.Series
    group: pd.Series
    at_horizons: pd.DataFrame                 # case x surv_<h>
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    note: str | None = None


def final_survival(pipe, X: pd.DataFrame, view: SurvivalView, curve_cases) -> FinalSurvival:
    """Risk scores of every case (``pipeline.predict``), the group at the card's frozen cut-off, and the survival
    function of the cases in ``curve_cases``."""
    risk = pd.Series(np.asarray(pipe.predict(X), dtype=float), index=X.index, name="risk")
    group = pd.Series("unknown" if view.cutoff is None else risk_groups(risk, view.cutoff), index=X.index,
                      name="risk_group", dtype=object)
    at = pd.DataFrame(np.nan, index=X.index, columns=view.surv_columns())
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    note = None
    est = pipe[-1] if hasattr(pipe, "steps") else pipe
    wanted = [c for c in X.index if str(c) in set(map(str, curve_cases))]
    try:
        at = survival_at(pipe, X, view.horizons) if view.horizons else at
        fns = est.predict_survival_function(final_features(pipe, X.loc[wanted])) if wanted else []
    except Exception as exc:  # e.g. a Coxnet model fitted without its baseline hazard
        fns, note = [], f"The final model gives no survival curves ({type(exc).__name__}: {exc})."
    for case, fn in zip(wanted, fns, strict=True):
        curves[str(case)] = (np.r_[0.0, np.asarray(fn.x, dtype=float)], np.r_[1.0, np.asarray(fn.y, dtype=float)])
    return FinalSurvival(risk, group, at, curves, note)


def metrics_table(folder: ModelFolder) -> pd.DataFrame | None:
    """metrics.csv (None when absent or unreadable)."""
    try:
        return folder.metrics()
    except Exception as exc:  # an optional table: the pages say it is missing
        warnings.warn(f"ignoring {folder.metrics_path}: {exc}", stacklevel=2)
        return None


def cv_metrics_row(metrics: pd.DataFrame | None, model_name: str) -> dict | None:
    """The explained model's cross-validated row of metrics.csv, missing cells as None."""
    if metrics is None or "cohort" not in metrics:
        return None
    rows = metrics[(metrics["cohort"].astype(str) == "cv") & (metrics["model"].astype(str) == model_name)]
    if rows.empty:
        return None
    return {k: (None if pd.isna(v) else v) for k, v in rows.iloc[0].items()}


def survival_rows(folder: ModelFolder, model_name: str) -> pd.DataFrame | None:
    """The explained model's out-of-fold rows of predictions.csv."""
    return cv_predictions(folder, model_name)


def calibration_table(folder: ModelFolder, model_name: str) -> pd.DataFrame | None:
    """The model stage's calibration at the horizons for the explained model's cross-validated predictions, when the
    model folder has one with the expected columns."""
    try:
        table = folder.calibration_survival()
    except Exception as exc:  # an optional table: the page says calibration is not shown
        warnings.warn(f"ignoring {folder.calibration_survival_path}: {exc}", stacklevel=2)
        return None
    if table is None:
        return None
    if "model" in table:
        table = table[table["model"].astype(str) == model_name]
    if "cohort" in table:
        table = table[table["cohort"].astype(str) == "cv"]
    return table if len(table) else None
