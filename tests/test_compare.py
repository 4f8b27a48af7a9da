"""Comparing two models on the same cases: DeLong's test against hand computations and the paired bootstrap."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from radpipe.model.compare import COMPARISON_COLUMNS, compare_models, paired_bootstrap
from radpipe.model.metrics import delong_auc_variance, delong_test


def _placements(y, score):
    """DeLong et al. (1988) by their definition, pair by pair: each positive's share of negatives it outscores
    (ties count one half), each negative's share of positives that outscore it."""
    pos, neg = score[y == 1], score[y == 0]
    psi = lambda a, b: 1.0 if a > b else 0.5 if a == b else 0.0  # noqa: E731
    v10 = np.array([np.mean([psi(p, n) for n in neg]) for p in pos])
    v01 = np.array([np.mean([psi(p, n) for p in pos]) for n in neg])
    return v10.mean(), v10, v01


def test_delong_variance_of_a_four_case_example_worked_by_hand():
    # positives 0.9, 0.6; negatives 0.7, 0.1: pairs won 1, 1, 0, 1 -> AUC 3/4
    # per positive: 1, 1/2 (variance 1/8); per negative: 1/2, 1 (variance 1/8); var = 1/8 / 2 + 1/8 / 2 = 1/8
    auc, var = delong_auc_variance([1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1])
    assert auc == pytest.approx(0.75) and var == pytest.approx(0.125)


def test_fast_delong_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(5)
    y = np.array([1] * 9 + [0] * 12)
    a = np.round(rng.normal(size=21) + y, 1)  # rounded: ties within and across classes
    b = np.round(0.5 * a + rng.normal(size=21), 1)
    auc_a, v10a, v01a = _placements(y, a)
    auc_b, v10b, v01b = _placements(y, b)
    m, n = len(v10a), len(v01a)
    cov = np.cov(np.vstack([v10a, v10b])) / m + np.cov(np.vstack([v01a, v01b])) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc_a - auc_b) / math.sqrt(var)
    diff, z_fast, p_fast = delong_test(y, a, b)
    assert diff == pytest.approx(auc_a - auc_b, abs=1e-12)
    assert z_fast == pytest.approx(z, rel=1e-10)
    assert p_fast == pytest.approx(2 * norm.sf(abs(z)), rel=1e-10)


def test_paired_bootstrap_agrees_with_delong():
    rng = np.random.default_rng(11)
    y = np.repeat([0, 1], 150)
    shared = rng.normal(size=300)
    a = 1.0 * y + shared + 0.6 * rng.normal(size=300)
    b = 0.5 * y + shared + 0.6 * rng.normal(size=300)
    diff, z, p = delong_test(y, a, b)
    boot = paired_bootstrap(y, a, b, n_boot=1000, seed=3)
    assert boot["difference"] == pytest.approx(diff, abs=1e-12)
    # the paired bootstrap's 95% interval is about DeLong's estimate +- 1.96 standard errors
    delong_se = abs(diff / z)
    width = (boot["difference_ci_high"] - boot["difference_ci_low"]) / (2 * 1.96)
    assert width == pytest.approx(delong_se, rel=0.15)
    assert p < 0.05 and boot["difference_ci_low"] > 0  # both say model a is better
    assert boot["difference_ci_low"] == pytest.approx(diff - 1.96 * delong_se, abs=0.02)


def test_same_model_twice_has_a_zero_difference_and_p_one():
    y = np.tile([0, 1], 10)
    score = np.linspace(0, 1, 20)
    boot = paired_bootstrap(y, score, score, n_boot=100)
    assert (boot["difference"], boot["difference_ci_low"], boot["difference_ci_high"]) == (0.0, 0.0, 0.0)
    assert delong_test(y, score, score)[2] == 1.0


def test_comparison_table_uses_the_probability_averaged_over_repeats():
    y = np.array([0, 0, 0, 1, 1, 1])
    rows = []
    for repeat, (clin, rad) in enumerate([([.1, .2, .3, .7, .8, .9], [.5, .2, .6, .4, .8, .9]),
                                          ([.3, .2, .1, .9, .8, .7], [.1, .6, .2, .7, .3, .9])]):
        for i in range(6):
            rows += [{"case_id": f"c{i}", "model": "clinical", "repeat": repeat, "cohort": "cv", "y_true": y[i],
                      "y_prob": clin[i]},
                     {"case_id": f"c{i}", "model": "rf", "repeat": repeat, "cohort": "cv", "y_true": y[i],
                      "y_prob": rad[i]}]
    table = compare_models(pd.DataFrame(rows), {"clinical": "clinical", "rf": "radiomics"}, "clinical", n_boot=50)
    assert list(table.columns) == COMPARISON_COLUMNS
    rf = table.set_index("model").loc["rf"]
    mean_rf = np.array([.3, .4, .4, .55, .55, .9])  # mean of the two repeats per case
    positives, negatives = mean_rf[3:], mean_rf[:3]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives])
    assert rf["auc"] == pytest.approx(expected) and rf["auc_difference"] == pytest.approx(expected - 1.0)
    assert rf["probabilities"] == "out-of-fold, mean of 2 repeats per case"
