"""Decision curve analysis of a binary classifier's predictions (Vickers & Elkin, Med Decis Making 2006).

Net benefit at a threshold probability pt is TP/n − FP/n × pt/(1 − pt): the true positives a model finds, less
its false positives weighted by the odds at which a clinician would accept one unnecessary intervention to
catch one case. The computation is :func:`dcurves.dca` (the maintained package of the method's authors); this
module arranges radpipe's predictions for it, keeps its columns in a stable order and draws the figure.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_bytes
from radpipe.model.folder import DECISION_CURVE_FIGURE, DECISION_CURVE_FILE

#: Columns of ``decision_curve.csv``.
DECISION_CURVE_COLUMNS = ["cohort", "model", "threshold", "net_benefit", "treat_all", "treat_none", "n",
                          "prevalence"]
#: Threshold probabilities 0.01, 0.02, ..., 0.99: the whole range, so a reader picks the part that fits the
#: clinical decision (0 and 1 are left out: the weight pt/(1 − pt) is 0 or infinite there).
DEFAULT_THRESHOLDS = tuple(round(k / 100, 2) for k in range(1, 100))

_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def case_probabilities(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (cohort, model, case): the positive-class probability, averaged over CV repeats.

    With repeated cross-validation each training case has one out-of-fold probability per repeat; decision
    curves and calibration plots use their mean, as the calibration slope of ``metrics.csv`` does. An external
    cohort has one probability per case already.

    Examples
    --------
    >>> rows = pd.DataFrame({"cohort": "cv", "model": "logreg", "case_id": ["a", "a", "b", "b"],
    ...                      "y_true": [1, 1, 0, 0], "y_prob": [0.8, 0.6, 0.3, 0.1]})
    >>> case_probabilities(rows)[["case_id", "y_true", "y_prob"]].to_dict("list")
    {'case_id': ['a', 'b'], 'y_true': [1, 0], 'y_prob': [0.7, 0.2]}
    """
    if "y_prob" not in predictions.columns:
        raise ValueError("predictions have no y_prob column: decision curves and calibration need a binary outcome")
    keys = ["cohort", "model", "case_id"]
    grouped = predictions.groupby(keys, sort=False)
    out = grouped.agg(y_true=("y_true", "first"), y_prob=("y_prob", "mean")).reset_index()
    out["y_true"] = out["y_true"].astype(int)
    return out


def _cohort_order(cohorts) -> list[str]:
    """'cv' (out-of-fold) first, then the external cohorts in the order they appear."""
    cohorts = list(dict.fromkeys(cohorts))
    return (["cv"] if "cv" in cohorts else []) + [c for c in cohorts if c != "cv"]


def decision_curve(predictions: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Net benefit of each model, treat-all and treat-none, per cohort and threshold probability.

    Parameters
    ----------
    predictions
        Rows of ``predictions.csv`` (columns ``cohort, model, case_id, y_true, y_prob``); out-of-fold rows
        (cohort ``cv``) are averaged over repeats per case first (:func:`case_probabilities`).
    thresholds
        Threshold probabilities, strictly between 0 and 1.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DECISION_CURVE_COLUMNS`. ``treat_all`` is the net benefit of treating every case of that
        cohort (it can be negative), ``treat_none`` is 0. A cohort with one class only gets no rows.

    Examples
    --------
    >>> rows = pd.DataFrame({"cohort": "cv", "model": "logreg", "case_id": list("abcd"),
    ...                      "y_true": [1, 1, 0, 0], "y_prob": [0.9, 0.4, 0.6, 0.1]})
    >>> curve = decision_curve(rows, thresholds=[0.5])
    >>> curve[["threshold", "net_benefit", "treat_all", "prevalence"]].to_dict("records")
    [{'threshold': 0.5, 'net_benefit': 0.0, 'treat_all': 0.0, 'prevalence': 0.5}]
    """
    from dcurves import dca

    thresholds = [float(t) for t in thresholds]
    if not thresholds or min(thresholds) <= 0 or max(thresholds) >= 1:
        raise ValueError("decision-curve thresholds must lie strictly between 0 and 1")
    cases = case_probabilities(predictions)
    frames = []
    for cohort in _cohort_order(cases["cohort"]):
        mine = cases[cases["cohort"] == cohort]
        wide = mine.pivot(index="case_id", columns="model", values="y_prob")
        models = [str(m) for m in dict.fromkeys(mine["model"])]
        wide.columns = [str(c) for c in wide.columns]
        wide = wide.dropna()
        y = mine.drop_duplicates("case_id").set_index("case_id")["y_true"].reindex(wide.index)
        if y.nunique() < 2:
            continue
        # dca names its reference strategies 'all' and 'none': model columns get a prefix so none can collide
        data = wide[models].rename(columns=lambda m: f"m:{m}").assign(_outcome=y.to_numpy())
        with warnings.catch_warnings():  # dcurves warns about pandas idioms, not about the data
            warnings.simplefilter("ignore", FutureWarning)
            result = dca(data=data, outcome="_outcome", modelnames=[f"m:{m}" for m in models],
                         thresholds=thresholds)
        by_model = {name: part.set_index("threshold")["net_benefit"] for name, part in result.groupby("model")}
        for m in models:
            nb = by_model[f"m:{m}"]
            frames.append(pd.DataFrame({
                "cohort": cohort, "model": m, "threshold": nb.index.to_numpy(dtype=float),
                "net_benefit": nb.to_numpy(dtype=float),
                "treat_all": by_model["all"].reindex(nb.index).to_numpy(dtype=float),
                "treat_none": by_model["none"].reindex(nb.index).to_numpy(dtype=float),
                "n": len(y), "prevalence": float(y.mean()),
            }))
    if not frames:
        return pd.DataFrame(columns=DECISION_CURVE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)[DECISION_CURVE_COLUMNS]
    table["threshold"] = table["threshold"].round(6)
    return table


def decision_curve_figure(table: pd.DataFrame, *, source: str = "decision_curve.csv") -> bytes:
    """PNG of the decision curves of ``table`` (:func:`decision_curve`), one panel per cohort.

    The y axis starts a little below 0: below that, treat-all falls away and would squash the curves that matter.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cohorts = _cohort_order(table["cohort"])
    fig, axes = plt.subplots(1, max(len(cohorts), 1), figsize=(6.2 * max(len(cohorts), 1), 4.4), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=False):
        mine = table[table["cohort"] == cohort]
        first = mine[mine["model"] == mine["model"].iloc[0]]
        prevalence = float(first["prevalence"].iloc[0])
        ax.plot(first["threshold"], first["treat_all"], color="#7f7f7f", lw=1.4, label="treat all")
        ax.axhline(0, color="#000000", lw=1.0, label="treat none")
        for k, (model, part) in enumerate(mine.groupby("model", sort=False)):
            ax.plot(part["threshold"], part["net_benefit"], color=_COLOURS[k % len(_COLOURS)], lw=1.8, label=model)
        top = max(prevalence, float(np.nanmax(mine["net_benefit"]))) * 1.1
        ax.set_ylim(-0.05 * max(top, 0.1), max(top, 0.05))
        ax.set_xlim(0, 1)
        ax.set_xlabel("threshold probability (treat when predicted risk ≥ threshold)")
        ax.set_ylabel("net benefit")
        name = "out-of-fold (cross-validation)" if cohort == "cv" else f"external: {cohort}"
        ax.set_title(f"{name}, n = {int(first['n'].iloc[0])}, prevalence {prevalence:.2f}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8.5, frameon=False)
    return figure_png(fig, f"table: {source}")


def figure_png(fig, footer: str) -> bytes:
    """PNG bytes of a study figure with its source line (the table it was drawn from) at the bottom; closes it."""
    import matplotlib.pyplot as plt

    fig.text(0.01, 0.005, footer, fontsize=8, color="#5d6d7e")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_decision_curve(out_dir, predictions: pd.DataFrame, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame | None:
    """Write ``decision_curve.csv`` and ``decision_curve.png`` into ``out_dir`` (a model folder); returns the table.

    Nothing is written for a multi-class outcome (no ``y_prob`` column) or when no cohort has both classes.
    """
    if "y_prob" not in predictions.columns:
        return None
    table = decision_curve(predictions, thresholds)
    if table.empty:
        return None
    out_dir = Path(out_dir)
    table.to_csv(out_dir / DECISION_CURVE_FILE, index=False)
    atomic_write_bytes(out_dir / DECISION_CURVE_FIGURE, decision_curve_figure(table, source=DECISION_CURVE_FILE))
    return table
