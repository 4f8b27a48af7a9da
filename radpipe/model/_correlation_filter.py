"""Correlation filter: of each pair of features correlated above a threshold, keep the one more related to the label."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.feature_selection import SelectorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from radpipe.model._relevance import label_relevance


class CorrelationFilter(SelectorMixin, BaseEstimator):
    """Drop redundant features: of every pair with ``|Pearson r| > threshold`` keep the more label-relevant.

    Features are ranked by their ANOVA F statistic against ``y`` (by column order when ``y`` is
    None) and kept greedily: a feature survives when it correlates at most ``threshold`` with every
    better-ranked feature already kept. Fitted inside each cross-validation fold, it never sees the
    test cases.

    Parameters
    ----------
    threshold : float, default=0.9
        Absolute Pearson correlation above which two features count as redundant.

    Attributes
    ----------
    relevance_ : ndarray of shape (n_features_in_,)
        ANOVA F statistic of each input feature (0 when ``y`` is None or the feature is constant).
    support_ : ndarray of bool of shape (n_features_in_,)
        Mask of the kept features.
    dropped_for_ : dict
        Index of each dropped feature -> index of the kept feature that made it redundant.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Present when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from radpipe.model import CorrelationFilter
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> signal = y + rng.normal(0, 0.5, 40)
    >>> X = np.column_stack([signal + rng.normal(0, 0.05, 40), signal, rng.normal(size=40)])
    >>> CorrelationFilter(threshold=0.9).fit(X, y).get_support().tolist()
    [False, True, True]
    """

    _parameter_constraints: dict = {"threshold": [Interval(Real, 0, 1, closed="right")]}

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        self.relevance_ = label_relevance(X, y)
        n_features = X.shape[1]
        with np.errstate(all="ignore"):
            corr = np.abs(np.corrcoef(X, rowvar=False)) if X.shape[0] > 1 else np.zeros((n_features, n_features))
        corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
        order = np.argsort(-self.relevance_, kind="stable")
        kept: list[int] = []
        dropped: dict[int, int] = {}
        for j in order:
            if kept:
                row = corr[j, kept]
                worst = int(np.argmax(row))
                if row[worst] > self.threshold:
                    dropped[int(j)] = kept[worst]
                    continue
            kept.append(int(j))
        support = np.zeros(n_features, dtype=bool)
        support[kept] = True
        self.support_ = support
        self.dropped_for_ = dropped
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
