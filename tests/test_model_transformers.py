"""The leakage-safe transformers honour the scikit-learn estimator contract and do what they say."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from radpipe.model import CorrelationFilter, FeatureSelector


@pytest.mark.parametrize(
    "estimator",
    [CorrelationFilter(), CorrelationFilter(threshold=0.5), FeatureSelector(), FeatureSelector(method="lasso"),
     FeatureSelector(method="mrmr", k=2), FeatureSelector(method="none")],
    ids=repr,
)
def test_check_estimator(estimator):
    check_estimator(estimator)


def _correlated_pair(seed=0, n=60):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    signal = y + rng.normal(0, 0.7, n)
    # 'weak_copy' is a noisy copy of the signal: highly correlated with it but less related to y
    return pd.DataFrame({
        "weak_copy": signal + rng.normal(0, 0.2, n),
        "strong": signal,
        "noise": rng.normal(size=n),
    }), y


def test_correlation_filter_keeps_the_more_label_relevant_feature():
    X, y = _correlated_pair()
    assert abs(np.corrcoef(X["weak_copy"], X["strong"])[0, 1]) > 0.9
    filt = CorrelationFilter(threshold=0.9).set_output(transform="pandas").fit(X, y)
    assert list(filt.get_feature_names_out()) == ["strong", "noise"]
    assert list(filt.transform(X).columns) == ["strong", "noise"]
    assert filt.dropped_for_ == {0: 1}


def test_correlation_filter_without_labels_keeps_the_first_of_a_pair():
    X, _ = _correlated_pair()
    assert list(CorrelationFilter(0.9).fit(X).get_feature_names_out()) == ["weak_copy", "noise"]


def test_selector_k_larger_than_width_keeps_everything_and_clones():
    X, y = _correlated_pair()
    selector = FeatureSelector(k=50)
    assert clone(selector).get_params() == selector.get_params()
    assert selector.fit(X, y).get_support().all()
    assert list(FeatureSelector(k=1).fit(X, y).get_feature_names_out()) == ["strong"]


def test_lasso_selection_finds_the_informative_feature():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 40)
    X = pd.DataFrame(rng.normal(size=(80, 30)), columns=[f"f{i}" for i in range(30)])
    X["f7"] += 2 * y
    chosen = FeatureSelector(method="lasso", k=3, C=0.1).fit(X, y).get_feature_names_out()
    assert "f7" in chosen and len(chosen) <= 3


def test_mrmr_skips_a_redundant_copy_that_univariate_keeps():
    X, y = _correlated_pair()
    rng = np.random.default_rng(5)
    X["strong_again"] = X["strong"] * 2 + 1e-3 * rng.normal(size=len(X))
    X["independent"] = y + rng.normal(0, 0.8, len(X))   # weaker, but carries information of its own
    univariate = set(FeatureSelector(k=2).fit(X, y).get_feature_names_out())
    mrmr = set(FeatureSelector(method="mrmr", k=2).fit(X, y).get_feature_names_out())
    assert univariate == {"strong", "strong_again"}
    assert "independent" in mrmr and len(mrmr & {"strong", "strong_again"}) == 1
