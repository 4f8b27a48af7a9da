"""Nested cross-validation is honest (selection inside the folds) and reproducible bit for bit."""

import numpy as np
import pandas as pd
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from radpipe.model import ModelSettings
from radpipe.model.metrics import roc_auc
from radpipe.model.validate import nested_cv, outer_splits


def _pure_noise(n=60, p=500, seed=0):
    """A wide radiomics-like table with no signal at all: any AUC far from 0.5 is leakage or luck."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"case{i:03d}" for i in range(n)], name="case_id")
    X = pd.DataFrame(rng.normal(size=(n, p)), index=ids, columns=[f"original_noise_{j}" for j in range(p)])
    y01 = np.tile([0, 1], n // 2)
    return X, y01


def _pooled_auc(result, name, y01):
    fits = result.folds[name]
    aucs = []
    for repeat in sorted({f.repeat for f in fits}):
        prob = np.empty(len(y01))
        for f in (f for f in fits if f.repeat == repeat):
            prob[f.test_idx] = f.test_prob
        aucs.append(roc_auc(y01, prob))
    return float(np.mean(aucs))


# the search is not what is tested here: two random candidates keep the test fast
FAST = dict(models=["logreg"], outer_folds=3, outer_repeats=2, inner_folds=3, select_k=10, bootstrap=0,
            search="random", n_iter=2)


def test_noise_stays_at_chance_when_selection_is_inside_the_folds():
    X, y01 = _pure_noise()
    nested = _pooled_auc(nested_cv(X, y01, ModelSettings(**FAST)), "logreg", y01)

    # the classic mistake: pick the 10 "best" features on all cases, then cross-validate
    leaky_X = SelectKBest(f_classif, k=10).fit_transform(X, y01)
    leaky_prob = cross_val_predict(LogisticRegression(C=1.0), leaky_X, y01,
                                   cv=StratifiedKFold(3, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    leaky = roc_auc(y01, leaky_prob)

    assert abs(nested - 0.5) < 0.15, nested
    assert leaky > 0.8, leaky
    assert leaky - nested > 0.25


def test_same_seed_same_numbers_bit_for_bit():
    X, y01 = _pure_noise(n=40, p=30, seed=1)
    # xgb subsamples rows and columns, and n_jobs=2 runs the search in worker processes: both must be seeded
    settings = ModelSettings(models=["xgb"], outer_folds=3, inner_folds=2, bootstrap=0, n_jobs=2,
                             search="random", n_iter=3)
    first, second = nested_cv(X, y01, settings), nested_cv(X, y01, settings)
    for name in ("xgb",):
        a = np.concatenate([f.test_prob for f in first.folds[name]])
        b = np.concatenate([f.test_prob for f in second.folds[name]])
        assert a.tobytes() == b.tobytes()
        assert [f.best_params for f in first.folds[name]] == [f.best_params for f in second.folds[name]]
    other = outer_splits(y01, settings.model_copy(update={"seed": 7}))
    assert not np.array_equal(first.splits[0][3], other[0][3])


def test_groups_never_straddle_outer_folds():
    rng = np.random.default_rng(2)
    y01 = rng.integers(0, 2, 60)
    groups = np.repeat(np.arange(20), 3)   # three lesions per patient
    for _, _, train, test in outer_splits(y01, ModelSettings(outer_folds=4, outer_repeats=2), groups):
        assert not set(groups[train]) & set(groups[test])
