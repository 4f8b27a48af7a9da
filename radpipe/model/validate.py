"""Nested cross-validation: outer folds estimate performance, inner folds tune hyper-parameters and
choose the decision threshold, so no number reported for a case ever used that case.

Outer splits are ``RepeatedStratifiedKFold`` or, with groups, ``StratifiedGroupKFold`` reshuffled per
repeat; inner splits are stratified (grouped when groups are given) and seeded, so the same seed
reproduces every number.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    cross_val_predict,
)
from threadpoolctl import threadpool_limits

from radpipe.model.metrics import youden_threshold
from radpipe.model.settings import ENSEMBLE_NAMES, ModelSettings
from radpipe.model.zoo import build_ensemble, build_pipeline, search_space


@dataclass
class FoldFit:
    """One model fitted in one outer fold: its tuned pipeline, test-fold probabilities and threshold."""

    repeat: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    estimator: Any
    best_params: dict
    test_prob: np.ndarray
    threshold: float
    inner_oof: np.ndarray | None = field(default=None, repr=False)


@dataclass
class NestedCVResult:
    """Fold fits per model, the outer splits and the time each model took."""

    folds: dict[str, list[FoldFit]]
    splits: list[tuple[int, int, np.ndarray, np.ndarray]]
    seconds: dict[str, float]


def outer_splits(y01: np.ndarray, settings: ModelSettings, groups: np.ndarray | None = None):
    """``[(repeat, fold, train_idx, test_idx), ...]`` of the outer cross-validation."""
    out = []
    if groups is None:
        splitter = RepeatedStratifiedKFold(
            n_splits=settings.outer_folds, n_repeats=settings.outer_repeats, random_state=settings.seed
        )
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(y01)), y01)):
            out.append((i // settings.outer_folds, i % settings.outer_folds, train, test))
        return out
    for repeat in range(settings.outer_repeats):
        splitter = StratifiedGroupKFold(settings.outer_folds, shuffle=True, random_state=settings.seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y01)), y01, groups)):
            out.append((repeat, fold, train, test))
    return out


def inner_cv(settings: ModelSettings, grouped: bool):
    """The seeded splitter for hyper-parameter search and threshold choice."""
    if grouped:
        return StratifiedGroupKFold(settings.inner_folds, shuffle=True, random_state=settings.seed)
    return StratifiedKFold(settings.inner_folds, shuffle=True, random_state=settings.seed)


def make_search(name: str, settings: ModelSettings, grouped: bool):
    """Grid or randomized search over a family's pipeline, scored by ROC AUC on the inner folds."""
    common = dict(scoring="roc_auc", cv=inner_cv(settings, grouped), n_jobs=settings.n_jobs, refit=True,
                  error_score=np.nan)
    if settings.search == "grid":
        return GridSearchCV(build_pipeline(name, settings), search_space(name, settings), **common)
    return RandomizedSearchCV(build_pipeline(name, settings), search_space(name, settings), n_iter=settings.n_iter,
                              random_state=settings.seed, **common)


@contextmanager
def _quiet():
    """Silence convergence chatter of small inner folds and keep BLAS single-threaded.

    Radiomics matrices are tiny: multi-threaded BLAS only adds overhead (20x slower Platt scaling
    on a busy 2-core machine); parallelism comes from ``n_jobs`` over search candidates instead.
    """
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*Only one class is present.*")
        warnings.filterwarnings("ignore", message=".*scores are non-finite.*")
        yield


def inner_oof_probabilities(estimator, X: pd.DataFrame, y01: np.ndarray, groups, settings: ModelSettings) -> np.ndarray:
    """Out-of-fold positive-class probabilities on training data, from the inner splits."""
    return cross_val_predict(
        clone(estimator), X, y01, groups=groups, cv=inner_cv(settings, groups is not None),
        method="predict_proba", n_jobs=settings.n_jobs,
    )[:, 1]


def choose_threshold(y01: np.ndarray, oof_prob: np.ndarray, settings: ModelSettings) -> float:
    """The decision threshold from training-data predictions only (Youden's J, or 0.5 when fixed)."""
    return 0.5 if settings.threshold_method == "fixed" else youden_threshold(y01, oof_prob)


def tune(name: str, X: pd.DataFrame, y01: np.ndarray, groups, settings: ModelSettings):
    """Inner search on (X, y01): the refitted best pipeline and its parameters."""
    search = make_search(name, settings, groups is not None)
    search.fit(X, y01, groups=groups) if groups is not None else search.fit(X, y01)
    params = {key.removeprefix("clf__"): _plain(value) for key, value in search.best_params_.items()}
    return search.best_estimator_, params


def fit_ensemble(kind: str, members: dict[str, Any], X: pd.DataFrame, y01: np.ndarray, settings: ModelSettings):
    """An ensemble of the members' tuned (unfitted clones of) pipelines, fitted on (X, y01)."""
    ensemble = build_ensemble(kind, [(name, clone(est)) for name, est in members.items()], settings)
    return ensemble.fit(X, y01)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def nested_cv(
    X: pd.DataFrame,
    y01: np.ndarray,
    settings: ModelSettings,
    groups: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> NestedCVResult:
    """Run the nested CV for every model in ``settings.models`` (and the members ensembles need)."""
    say = progress or (lambda message: None)
    splits = outer_splits(y01, settings, groups)
    bases = settings.base_models()
    ensembles = [name for name in settings.models if name in ENSEMBLE_NAMES]
    folds: dict[str, list[FoldFit]] = {name: [] for name in bases + ensembles}
    seconds = dict.fromkeys(folds, 0.0)
    with _quiet():
        for repeat, fold, train, test in splits:
            X_tr, X_te, y_tr = X.iloc[train], X.iloc[test], y01[train]
            g_tr = None if groups is None else groups[train]
            members: dict[str, Any] = {}
            for name in bases:
                say(f"repeat {repeat} fold {fold}: tuning {name}")
                start = time.perf_counter()
                best, params = tune(name, X_tr, y_tr, g_tr, settings)
                oof = inner_oof_probabilities(best, X_tr, y_tr, g_tr, settings)
                folds[name].append(FoldFit(
                    repeat, fold, train, test, best, params, best.predict_proba(X_te)[:, 1],
                    choose_threshold(y_tr, oof, settings), oof,
                ))
                members[name] = best
                seconds[name] += time.perf_counter() - start
            member_fits = {name: folds[name][-1] for name in settings.ensemble_members} if ensembles else {}
            for kind in ensembles:
                say(f"repeat {repeat} fold {fold}: fitting {kind} ensemble")
                start = time.perf_counter()
                chosen = {name: members[name] for name in settings.ensemble_members}
                ensemble = fit_ensemble(kind, chosen, X_tr, y_tr, settings)
                if kind == "voting":   # soft voting's inner OOF is the mean of its members' (same splits)
                    oof = np.mean([fit.inner_oof for fit in member_fits.values()], axis=0)
                else:
                    oof = inner_oof_probabilities(ensemble, X_tr, y_tr, g_tr, settings)
                params = {name: fit.best_params for name, fit in member_fits.items()}
                folds[kind].append(FoldFit(
                    repeat, fold, train, test, ensemble, params, ensemble.predict_proba(X_te)[:, 1],
                    choose_threshold(y_tr, oof, settings), oof,
                ))
                seconds[kind] += time.perf_counter() - start
    return NestedCVResult(folds=folds, splits=splits, seconds=seconds)


def refit_all(
    X: pd.DataFrame, y01: np.ndarray, settings: ModelSettings, groups: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, tuple[Any, dict]]:
    """Tune and fit every model on all of (X, y01): ``{name: (pipeline, best_params)}``."""
    say = progress or (lambda message: None)
    fitted: dict[str, tuple[Any, dict]] = {}
    with _quiet():
        for name in settings.base_models():
            say(f"final fit: tuning {name} on all {len(y01)} cases")
            fitted[name] = tune(name, X, y01, groups, settings)
        for kind in (name for name in settings.models if name in ENSEMBLE_NAMES):
            say(f"final fit: {kind} ensemble")
            chosen = {name: fitted[name][0] for name in settings.ensemble_members}
            params = {name: fitted[name][1] for name in settings.ensemble_members}
            fitted[kind] = (fit_ensemble(kind, chosen, X, y01, settings), params)
    return fitted
