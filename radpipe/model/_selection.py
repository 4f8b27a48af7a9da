"""Supervised feature selection that keeps at most k features: ANOVA F-test or L1-penalised logistic regression."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from radpipe.model._relevance import label_relevance


class FeatureSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features most related to the label, by a univariate test or an L1 model.

    Unlike ``SelectKBest``, ``k`` larger than the number of features keeps them all, so one search
    space fits cohorts of any width after the correlation filter.

    Parameters
    ----------
    method : {"univariate", "lasso", "mrmr", "trees", "none"}, default="univariate"
        ``univariate`` ranks by the ANOVA F statistic; ``mrmr`` picks features greedily by
        minimum-redundancy-maximum-relevance (F statistic divided by the mean absolute Pearson
        correlation with the features already picked, the "FCQ" scheme of Ding & Peng 2005);
        ``lasso`` fits an L1-penalised logistic
        regression (Lasso for a continuous target) with inverse strength ``C`` and ranks the
        features with a non-zero coefficient by its magnitude (if none is non-zero, the single
        feature with the largest F statistic is kept); ``trees`` ranks by the impurity importance of
        an extra-trees forest (50 trees, seeded, balanced class weights); ``none`` keeps every feature.
    k : int or None, default=20
        Most features to keep; None keeps all that the method selects.
    C : float, default=1.0
        Inverse L1 strength for ``method="lasso"`` (features are expected standardised).

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
        F statistics (``univariate``), k - pick order for picked features and 0 otherwise (``mrmr``), absolute coefficients (``lasso``) or ones (``none``).
    support_ : ndarray of bool of shape (n_features_in_,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import numpy as np
    >>> from radpipe.model import FeatureSelector
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 20)
    >>> X = np.column_stack([rng.normal(size=40), y + rng.normal(0, 0.3, 40), rng.normal(size=40)])
    >>> FeatureSelector(k=1).fit(X, y).get_support(indices=True).tolist()
    [1]
    """

    _parameter_constraints: dict = {
        "method": [StrOptions({"univariate", "lasso", "mrmr", "trees", "none"})],
        "k": [Interval(Integral, 1, None, closed="left"), None],
        "C": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, method: str = "univariate", k: int | None = 20, C: float = 1.0):
        self.method = method
        self.k = k
        self.C = C

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        if self.method != "none" and y is None:
            raise ValueError(
                f"FeatureSelector(method={self.method!r}) requires y to be passed, but the target y is None: "
                "it selects features by their relation to the label"
            )
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=False) if y is not None else (
            validate_data(self, X, dtype=np.float64), None)
        n_features = X.shape[1]
        if self.method == "none":
            scores = np.ones(n_features)
            candidates = np.ones(n_features, dtype=bool)
        elif self.method == "univariate":
            scores = label_relevance(X, y)
            candidates = np.ones(n_features, dtype=bool)
        elif self.method == "mrmr":
            scores = _mrmr_order_scores(X, label_relevance(X, y), self.k or n_features)
            candidates = scores > 0
        elif self.method == "trees":
            scores = _tree_importance(X, y)
            candidates = np.ones(n_features, dtype=bool)
        else:
            scores = self._lasso_scores(X, y)
            candidates = scores > 0
            if not candidates.any():
                candidates[int(np.argmax(label_relevance(X, y)))] = True
        keep = np.flatnonzero(candidates)
        if self.k is not None and len(keep) > self.k:
            ranked = keep[np.argsort(-scores[keep], kind="stable")]
            keep = ranked[: self.k]
        support = np.zeros(n_features, dtype=bool)
        support[keep] = True
        self.scores_ = scores
        self.support_ = support
        return self

    def _lasso_scores(self, X, y) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if type_of_target(y) == "continuous":
                model = Lasso(alpha=1.0 / self.C, max_iter=5000).fit(X, y)
            elif len(np.unique(y)) < 2:
                return np.zeros(X.shape[1])
            else:
                solver = "liblinear" if len(np.unique(y)) == 2 else "saga"
                model = LogisticRegression(
                    l1_ratio=1.0, C=self.C, solver=solver, class_weight="balanced", max_iter=1000
                ).fit(X, y)
        return np.abs(np.atleast_2d(model.coef_)).sum(axis=0)

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.method != "none"
        return tags


def _tree_importance(X: np.ndarray, y) -> np.ndarray:
    """Impurity importance of each feature in a seeded extra-trees forest (regression forest for a continuous y)."""
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    if type_of_target(y) == "continuous":
        forest = ExtraTreesRegressor(n_estimators=50, random_state=0, n_jobs=1)
    else:
        forest = ExtraTreesClassifier(n_estimators=50, random_state=0, n_jobs=1, class_weight="balanced")
    return forest.fit(X, y).feature_importances_


def _mrmr_order_scores(X: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Greedy mRMR (FCQ): a score per feature, higher for earlier picks, 0 for features not picked."""
    n_features = X.shape[1]
    k = min(k, n_features)
    with np.errstate(all="ignore"):
        Z = (X - X.mean(axis=0)) / X.std(axis=0)
    Z = np.nan_to_num(Z)
    redundancy = np.zeros(n_features)
    picked = np.zeros(n_features, dtype=bool)
    scores = np.zeros(n_features)
    for step in range(k):
        gain = relevance if step == 0 else relevance / np.maximum(redundancy / step, 1e-12)
        gain = np.where(picked, -np.inf, gain)
        j = int(np.argmax(gain))
        picked[j] = True
        scores[j] = k - step
        redundancy += np.abs(Z.T @ Z[:, j]) / max(X.shape[0], 1)
    return scores
