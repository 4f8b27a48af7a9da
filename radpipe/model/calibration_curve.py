"""Calibration plot of a binary classifier: observed event rate against predicted probability.

Cases are put into quantile bins of their predicted probability; each bin shows its mean prediction and its
observed proportion of positives with a 95% Wilson interval. A lowess curve of the outcome on the predicted
probability (statsmodels, installed with dcurves) shows the same without binning. Two summary numbers go with
it (Van Calster et al., J Clin Epidemiol 2016;74:167): calibration-in-the-large, as the mean observed minus the
mean predicted and as the logistic intercept with logit(p) as offset, and the calibration slope; each with a
stratified bootstrap 95% CI. The slope and intercept are :func:`radpipe.model.metrics.calibration_slope_intercept`,
the same numbers as in ``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_bytes
from radpipe.model.decision_curve import _COLOURS, _cohort_order, case_probabilities, figure_png
from radpipe.model.folder import CALIBRATION_CURVE_FIGURE, CALIBRATION_CURVE_FILE, CALIBRATION_SUMMARY_FILE
from radpipe.model.metrics import calibration_slope_intercept, stratified_bootstrap_indices

#: Columns of ``calibration_curve.csv``: ``kind`` is ``bin`` (a quantile bin with its Wilson CI) or ``smooth``
#: (a point of the lowess curve; no CI, ``n``/``n_events`` empty).
CALIBRATION_CURVE_COLUMNS = ["cohort", "model", "kind", "bin", "n", "n_events", "predicted", "observed",
                             "ci_low", "ci_high"]
#: Columns of ``calibration_summary.csv``.
CALIBRATION_SUMMARY_COLUMNS = ["cohort", "model", "n", "n_events", "bins", "mean_predicted", "mean_observed",
                               "citl_difference", "citl_difference_ci_low", "citl_difference_ci_high",
                               "calibration_intercept", "calibration_intercept_ci_low", "calibration_intercept_ci_high",
                               "calibration_slope", "calibration_slope_ci_low", "calibration_slope_ci_high", "n_boot"]
MAX_BINS = 10
#: at least this many cases per bin: 39 cases give 3 bins, 100 give 10
MIN_PER_BIN = 10
LOWESS_FRACTION = 2 / 3


def n_bins(n: int, max_bins: int = MAX_BINS) -> int:
    """Number of quantile bins for ``n`` cases: ``max_bins``, fewer so that each bin holds ~10 cases, at least 2.

    >>> [n_bins(n) for n in (15, 39, 100, 700)]
    [2, 3, 10, 10]
    """
    return int(max(2, min(max_bins, n // MIN_PER_BIN)))


def wilson_interval(events, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportions ``events / n`` (statsmodels' ``proportion_confint``).

    >>> low, high = wilson_interval(3, 10)
    >>> round(float(low), 4), round(float(high), 4)
    (0.1078, 0.6032)
    """
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(np.asarray(events), np.asarray(n), alpha=1 - level, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def binned_calibration(y_true, y_prob, bins: int | None = None) -> pd.DataFrame:
    """Observed against predicted in quantile bins of ``y_prob`` (columns ``bin, n, n_events, predicted,
    observed, ci_low, ci_high``).

    Cases are sorted by predicted probability and split into ``bins`` groups of (nearly) equal size, so tied
    probabilities never leave a bin empty.

    Examples
    --------
    >>> table = binned_calibration([0, 0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.7, 0.9], bins=2)
    >>> table[["n", "n_events", "predicted", "observed"]].round(3).to_dict("list")
    {'n': [3, 3], 'n_events': [1, 2], 'predicted': [0.2, 0.733], 'observed': [0.333, 0.667]}
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_prob, dtype=float)
    bins = n_bins(len(y)) if bins is None else int(bins)
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    n = np.array([len(g) for g in groups])
    events = np.array([int(y[g].sum()) for g in groups])
    low, high = wilson_interval(events, n)
    return pd.DataFrame({
        "bin": np.arange(1, len(groups) + 1), "n": n, "n_events": events,
        "predicted": [float(p[g].mean()) for g in groups], "observed": events / n, "ci_low": low, "ci_high": high,
    })


def smoothed_calibration(y_true, y_prob, points: int = 50) -> pd.DataFrame:
    """Lowess of the outcome on the predicted probability, on ``points`` probabilities spanning the middle 95% of
    the predictions (columns ``predicted, observed``). No robustness iterations: with a 0/1 outcome they would down-weight the
    very cases that show miscalibration."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    # between the 2.5th and 97.5th percentile of the predictions: beyond, a handful of cases decide the curve
    low, high = np.quantile(p, [0.025, 0.975])
    grid = np.linspace(low, high, points)
    fitted = lowess(y, p, frac=LOWESS_FRACTION, it=0, xvals=grid)
    return pd.DataFrame({"predicted": grid, "observed": np.clip(fitted, 0.0, 1.0)})


def _citl(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    with np.errstate(over="ignore"):  # a resample the logistic fit cannot fit gives NaN, left out of the CI
        slope, intercept = calibration_slope_intercept(y, p)
    return float(y.mean() - p.mean()), intercept, slope


def calibration_summary_row(y_true, y_prob, n_boot: int = 1000, seed: int = 42) -> dict:
    """Calibration-in-the-large (difference and logistic intercept) and slope, each with a stratified bootstrap
    95% percentile CI (resamples where the logistic fit diverges are left out).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.05, 0.95, 400)
    >>> y = (rng.uniform(size=400) < p).astype(int)
    >>> row = calibration_summary_row(y, p, n_boot=200)
    >>> row["calibration_slope_ci_low"] < 1 < row["calibration_slope_ci_high"]
    True
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_prob, dtype=float)
    point = _citl(y, p)
    names = ("citl_difference", "calibration_intercept", "calibration_slope")
    row: dict = {"n": int(y.size), "n_events": int(y.sum()), "mean_predicted": float(p.mean()),
                 "mean_observed": float(y.mean())}
    samples = np.array([_citl(y[idx], p[idx]) for idx in stratified_bootstrap_indices(y, n_boot, seed)]) \
        if n_boot > 0 else np.empty((0, 3))
    for k, name in enumerate(names):
        row[name] = point[k]
        values = samples[:, k][np.isfinite(samples[:, k])] if len(samples) else np.array([])
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = (
            (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))) if values.size else (np.nan, np.nan))
    row["n_boot"] = int(n_boot)
    return row


def calibration_tables(predictions: pd.DataFrame, n_boot: int = 1000, seed: int = 42,
                       bins: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The calibration curve (bins and lowess) and summary of every (cohort, model) of ``predictions``.

    Out-of-fold rows are averaged over repeats per case first (see
    :func:`radpipe.model.decision_curve.case_probabilities`). A cohort with one class only is left out.

    Returns
    -------
    (curve, summary)
        Tables with columns :data:`CALIBRATION_CURVE_COLUMNS` and :data:`CALIBRATION_SUMMARY_COLUMNS`.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> p = rng.uniform(0.05, 0.95, 60)
    >>> rows = pd.DataFrame({"cohort": "cv", "model": "logreg", "case_id": [f"c{i}" for i in range(60)],
    ...                      "y_true": (rng.uniform(size=60) < p).astype(int), "y_prob": p})
    >>> curve, summary = calibration_tables(rows, n_boot=50)
    >>> curve["kind"].value_counts().to_dict(), int(summary["bins"].iloc[0])
    ({'smooth': 50, 'bin': 6}, 6)
    """
    cases = case_probabilities(predictions)
    curves, rows = [], []
    for cohort in _cohort_order(cases["cohort"]):
        for model, mine in cases[cases["cohort"] == cohort].groupby("model", sort=False):
            y, p = mine["y_true"].to_numpy(int), mine["y_prob"].to_numpy(float)
            if y.min() == y.max():
                continue
            binned = binned_calibration(y, p, bins).assign(kind="bin")
            smooth = smoothed_calibration(y, p).assign(kind="smooth")
            curves.append(pd.concat([binned, smooth], ignore_index=True).assign(cohort=cohort, model=model))
            rows.append({"cohort": cohort, "model": model, "bins": len(binned),
                         **calibration_summary_row(y, p, n_boot=n_boot, seed=seed)})
    if not curves:
        return pd.DataFrame(columns=CALIBRATION_CURVE_COLUMNS), pd.DataFrame(columns=CALIBRATION_SUMMARY_COLUMNS)
    curve = pd.concat(curves, ignore_index=True).reindex(columns=CALIBRATION_CURVE_COLUMNS)
    curve[["bin", "n", "n_events"]] = curve[["bin", "n", "n_events"]].astype("Int64")
    return curve, pd.DataFrame(rows).reindex(columns=CALIBRATION_SUMMARY_COLUMNS)


def calibration_figure(curve: pd.DataFrame, summary: pd.DataFrame | None = None, *,
                       source: str = "calibration_curve.csv") -> bytes:
    """PNG of ``curve`` (:func:`calibration_tables`): one small panel per cohort and model (rows: cohorts), each
    with the model's bins (dots with 95% CI bars), its lowess curve and the diagonal of perfect calibration; the
    panel title carries the slope with its CI when ``summary`` is given. Separate panels, because six models'
    error bars on one plot hide each other."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [(cohort, model) for cohort in _cohort_order(curve["cohort"])
              for model in dict.fromkeys(curve.loc[curve["cohort"] == cohort, "model"])]
    models = list(dict.fromkeys(curve["model"]))
    ncols = min(3, max(len(panels), 1))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.7 * nrows + 0.3), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (cohort, model) in zip(axes.ravel(), panels, strict=False):
        colour = _COLOURS[models.index(model) % len(_COLOURS)]
        part = curve[(curve["cohort"] == cohort) & (curve["model"] == model)]
        bins, smooth = part[part["kind"] == "bin"], part[part["kind"] == "smooth"]
        ax.plot([0, 1], [0, 1], ls="--", color="#7f7f7f", lw=1)
        # clipped: with 0 or all events the Wilson bound equals the proportion up to rounding
        below = np.clip(bins["observed"] - bins["ci_low"], 0, None)
        above = np.clip(bins["ci_high"] - bins["observed"], 0, None)
        ax.errorbar(bins["predicted"], bins["observed"], yerr=[below, above], fmt="o", ms=5, color=colour,
                    capsize=3, lw=1)
        ax.plot(smooth["predicted"], smooth["observed"], color=colour, lw=1.6, alpha=0.85)
        title = model if cohort == "cv" else f"{model}, external: {cohort}"
        if summary is not None:
            row = summary[(summary["cohort"] == cohort) & (summary["model"] == model)]
            if len(row) and np.isfinite(row["calibration_slope"].iloc[0]):
                r = row.iloc[0]
                title += (f"\nslope {r['calibration_slope']:.2f} "
                          f"({r['calibration_slope_ci_low']:.2f} to {r['calibration_slope_ci_high']:.2f})")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("predicted probability", fontsize=8.5)
        ax.set_ylabel("observed proportion", fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    kind = "out-of-fold, mean over repeats" if "cv" in set(curve["cohort"]) else "external"
    return figure_png(fig, f"table: {source} ({kind}); dots: quantile bins with 95% Wilson CI; lines: lowess; "
                      "dashed: perfect calibration")


def write_calibration(out_dir, predictions: pd.DataFrame, n_boot: int = 1000,
                      seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Write ``calibration_curve.csv``, ``calibration_summary.csv`` and ``calibration_curve.png`` into ``out_dir``
    (a model folder). Nothing is written for a multi-class outcome or when no cohort has both classes."""
    if "y_prob" not in predictions.columns:
        return None
    curve, summary = calibration_tables(predictions, n_boot=n_boot, seed=seed)
    if curve.empty:
        return None
    out_dir = Path(out_dir)
    curve.to_csv(out_dir / CALIBRATION_CURVE_FILE, index=False)
    summary.to_csv(out_dir / CALIBRATION_SUMMARY_FILE, index=False)
    atomic_write_bytes(out_dir / CALIBRATION_CURVE_FIGURE,
                       calibration_figure(curve, summary, source=CALIBRATION_CURVE_FILE))
    return curve, summary
