"""Metrics checked against values worked out by hand and against scikit-learn."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radpipe.model.metrics import (
    bootstrap_ci,
    calibration_slope_intercept,
    delong_auc_variance,
    delong_test,
    metrics_with_ci,
    point_metrics,
    roc_auc,
    youden_threshold,
)

# Three positives and three negatives. Model A: positives 0.9, 0.8, 0.4; negatives 0.7, 0.3, 0.2.
# Pairs (pos > neg): 0.9 beats all 3, 0.8 beats all 3, 0.4 beats 0.3 and 0.2 -> AUC = 8/9.
# DeLong components: V10 (per positive) = 1, 1, 2/3; V01 (per negative) = 2/3, 1, 1.
# Sample variances (ddof=1) are both 1/27, so Var(AUC) = (1/27)/3 + (1/27)/3 = 2/81.
Y = np.array([1, 1, 1, 0, 0, 0])
A = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
B = np.array([0.6, 0.5, 0.9, 0.4, 0.8, 0.1])


def test_delong_variance_matches_hand_computation():
    auc, var = delong_auc_variance(Y, A)
    assert auc == pytest.approx(8 / 9)
    assert var == pytest.approx(2 / 81)


def _delong_bruteforce(y, a, b):
    """DeLong et al. (1988) straight from the definition: O(m n) kernel psi(X, Y)."""
    def components(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = components(a), components(b)
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    z = (auc_a - auc_b) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return auc_a - auc_b, z


def test_paired_delong_matches_the_definition():
    # Model B: positives 0.6 and 0.5 beat 0.4 and 0.1, 0.9 beats all three: 7 of 9 pairs -> AUC 7/9.
    diff, z, p = delong_test(Y, A, B)
    assert diff == pytest.approx(8 / 9 - 7 / 9)
    expected_diff, expected_z = _delong_bruteforce(Y, A, B)
    assert z == pytest.approx(expected_z)
    assert p == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(expected_z) / math.sqrt(2)))))


def test_delong_with_ties_matches_the_definition_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    a = np.round(y * 0.5 + rng.random(200), 1)   # rounding makes ties
    b = np.round(rng.random(200), 1)
    _, z, _ = delong_test(y, a, b)
    assert z == pytest.approx(_delong_bruteforce(y, a, b)[1])


def test_identical_models_are_not_different():
    assert delong_test(Y, A, A)[2] == 1.0


def test_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p = np.round(rng.random(100), 2)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_youden_threshold_separates_a_separable_sample():
    t = youden_threshold(Y, np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2]))
    assert 0.4 < t < 0.6
    m = point_metrics(Y, np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2]), t)
    assert m["sensitivity"] == m["specificity"] == m["balanced_accuracy"] == 1.0


def test_confusion_metrics_at_a_threshold():
    m = point_metrics(Y, A, 0.5)   # predicted positive: 0.9, 0.8, 0.7 -> TP 2, FP 1, FN 1, TN 2
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"]) == pytest.approx((2 / 3,) * 4)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx(np.mean((A - Y) ** 2))


def test_calibration_of_a_calibrated_model_is_near_ideal():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 20000)
    y = (rng.random(20000) < p).astype(int)
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1, abs=0.05) and intercept == pytest.approx(0, abs=0.05)
    slope_over, _ = calibration_slope_intercept(y, 1 / (1 + np.exp(-3 * np.log(p / (1 - p)))))
    assert slope_over == pytest.approx(1 / 3, abs=0.05)   # over-confident predictions: slope < 1


def test_bootstrap_ci_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    p = np.clip(y * 0.3 + rng.random(120) * 0.7, 0, 1)
    row = metrics_with_ci(y, p, 0.5, n_boot=300, seed=7)
    assert row["auc_ci_low"] < row["auc"] < row["auc_ci_high"]
    assert bootstrap_ci(y, p, p >= 0.5, 300, 7) == bootstrap_ci(y, p, p >= 0.5, 300, 7)
