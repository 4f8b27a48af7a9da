"""Label relevance of each feature, shared by the correlation filter and the univariate selector."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.feature_selection import f_classif
from sklearn.utils.multiclass import type_of_target


def label_relevance(X: np.ndarray, y) -> np.ndarray:
    """ANOVA F statistic of each column against a class label (|Pearson r| for a continuous target).

    Constant columns, or ``y=None``, score 0; ties keep column order wherever this is used to rank.
    """
    n_features = X.shape[1]
    if y is None:
        return np.zeros(n_features)
    y = np.asarray(y)
    kind = type_of_target(y)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if kind == "continuous":
            yc = y.astype(float) - y.astype(float).mean()
            Xc = X - X.mean(axis=0)
            denom = np.sqrt((Xc**2).sum(axis=0) * (yc**2).sum())
            score = np.abs(Xc.T @ yc) / denom
        elif len(np.unique(y)) < 2:
            score = np.zeros(n_features)
        else:
            score, _ = f_classif(X, y)
    return np.nan_to_num(np.asarray(score, dtype=float), nan=0.0, posinf=np.finfo(float).max)
