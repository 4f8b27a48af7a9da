"""Calibration plot tables: quantile bins with Wilson CIs, lowess, calibration-in-the-large and slope with CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from radpipe.model import ModelSettings, train_models
from radpipe.model.calibration_curve import (
    CALIBRATION_CURVE_COLUMNS,
    CALIBRATION_SUMMARY_COLUMNS,
    binned_calibration,
    calibration_summary_row,
    calibration_tables,
    n_bins,
    smoothed_calibration,
)
from radpipe.model.folder import ModelFolder
from radpipe.model.metrics import calibration_slope_intercept


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval written out (Wilson 1927)."""
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_bins_are_quantiles_with_wilson_intervals():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 103)
    y = (rng.uniform(size=103) < p).astype(int)
    table = binned_calibration(y, p)
    assert len(table) == 10 and table["n"].tolist() == [11, 11, 11] + [10] * 7
    order = np.argsort(p, kind="stable")
    first = order[:11]
    assert table["predicted"].iloc[0] == pytest.approx(p[first].mean())
    assert table["n_events"].iloc[0] == y[first].sum()
    for row in table.itertuples():
        low, high = _wilson(int(row.n_events), int(row.n))
        assert row.ci_low == pytest.approx(low, abs=1e-12) and row.ci_high == pytest.approx(high, abs=1e-12)
        assert row.observed == pytest.approx(row.n_events / row.n)
    assert (np.diff(table["predicted"]) > 0).all()
    assert [n_bins(n) for n in (10, 39, 57, 250)] == [2, 3, 5, 10]


def test_lowess_follows_a_perfectly_calibrated_model():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < p).astype(int)
    smooth = smoothed_calibration(y, p)
    inner = smooth[(smooth["predicted"] > 0.15) & (smooth["predicted"] < 0.85)]
    assert np.abs(inner["observed"] - inner["predicted"]).max() < 0.05


def test_summary_reuses_the_metrics_slope_and_bootstraps_cis():
    rng = np.random.default_rng(2)
    lp = rng.normal(0, 1.5, 300)
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-lp))).astype(int)
    p = 1 / (1 + np.exp(-(2 * lp + 0.5)))  # overconfident and too high: slope ~0.5, intercept < 0
    row = calibration_summary_row(y, p, n_boot=300, seed=7)
    slope, intercept = calibration_slope_intercept(y, p)
    assert row["calibration_slope"] == slope and row["calibration_intercept"] == intercept
    assert row["calibration_slope"] == pytest.approx(0.5, abs=0.12)
    assert row["calibration_slope_ci_low"] < row["calibration_slope"] < row["calibration_slope_ci_high"] < 1
    assert row["citl_difference"] == pytest.approx(y.mean() - p.mean())
    assert row["citl_difference_ci_high"] < 0 and row["calibration_intercept_ci_high"] < 0
    # the same resamples again give the same CIs
    assert calibration_summary_row(y, p, n_boot=300, seed=7) == row


def test_train_writes_tables_that_match_metrics_csv(tmp_path):
    rng = np.random.default_rng(3)
    y = pd.Series(["no", "yes"] * 20, index=[f"c{i:02d}" for i in range(40)])
    X = pd.DataFrame({"f1": rng.normal(size=40) + 1.5 * (y == "yes"), "f2": rng.normal(size=40)}, index=y.index)
    settings = ModelSettings(models=["logreg"], positive_class="yes", bootstrap=20, outer_folds=3,
                             outer_repeats=2, inner_folds=2)
    train_models(X, y, settings, tmp_path)
    folder = ModelFolder(tmp_path)
    curve = pd.read_csv(folder.calibration_curve_path)
    summary = pd.read_csv(folder.calibration_summary_path)
    assert list(curve.columns) == CALIBRATION_CURVE_COLUMNS and list(summary.columns) == CALIBRATION_SUMMARY_COLUMNS
    assert set(summary["model"]) == {"logreg"} and (summary["cohort"] == "cv").all()
    metrics = folder.metrics().set_index("model")
    for row in summary.itertuples():  # the slope of metrics.csv, on per-case means over the two repeats
        assert row.calibration_slope == pytest.approx(metrics.loc[row.model, "calibration_slope"], abs=1e-9)
        assert row.calibration_intercept == pytest.approx(metrics.loc[row.model, "calibration_intercept"], abs=1e-9)
        assert row.n == 40 and row.bins == 4
    bins = curve[(curve["kind"] == "bin") & (curve["model"] == "logreg")]
    assert bins["n"].sum() == 40 and bins["n_events"].sum() == 20
    assert (tmp_path / "calibration_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_one_class_cohorts_are_left_out():
    rows = pd.DataFrame({"cohort": "site", "model": "m", "case_id": list("abc"), "y_true": 1, "y_prob": [.2, .5, .9]})
    curve, summary = calibration_tables(rows, n_boot=0)
    assert curve.empty and summary.empty


def test_figure_draws_bins_with_no_or_only_events():
    from radpipe.model.calibration_curve import calibration_figure

    p = np.linspace(0.01, 0.99, 26)
    y = np.r_[np.zeros(13, int), np.ones(13, int)]  # a perfectly separating model: bins of 0% and 100%
    rows = pd.DataFrame({"cohort": "cv", "model": "m", "case_id": [f"c{i}" for i in range(26)], "y_true": y,
                         "y_prob": p})
    curve, summary = calibration_tables(rows, n_boot=0)
    bins = curve[curve["kind"] == "bin"]
    assert bins["observed"].tolist() == [0.0, 1.0] and bins["ci_high"].iloc[1] == pytest.approx(1.0)
    assert calibration_figure(curve, summary)[:4] == b"\x89PNG"
