"""Nested cross-validation: outer folds estimate performance, inner folds tune hyper-parameters and
choose the decision threshold, so no number reported for a case ever used that case.

Labels are class indices: 0/1 for a binary outcome (1 = positive class), 0..K-1 for K > 2 classes.
A binary model's probabilities are those of the positive class (one value per case) and are
thresholded; a multi-class model keeps a (cases x K) matrix, is tuned by macro one-vs-rest ROC AUC
and predicts the most probable class, so it has no threshold (NaN).

Outer splits are ``RepeatedStratifiedKFold`` or, with groups, ``StratifiedGroupKFold`` reshuffled per
repeat; inner splits are stratified (grouped when groups are given) and seeded, so the same seed
reproduces every number.

With ComBat harmonisation (``settings.harmonise``) outer and inner splits are stratified on the
outcome x batch combination instead of the outcome alone, so every training fold holds every batch
in about its share of the cases (ComBat needs each batch in each training fold it is fitted on). When a
combined stratum has fewer cases than folds, that split is stratified on the outcome alone (as
without harmonisation): a stratum smaller than the folds cannot be spread over all of them anyway, and
the pre-flight check of the recipe already refuses batches too small for the nested CV. The rule is
applied to each split separately: the outer split on the whole cohort, each inner split on its outer
training fold.
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

from radpipe.model.inputs import batch_label
from radpipe.model.metrics import youden_threshold
from radpipe.model.settings import ENSEMBLE_NAMES, ModelSettings
from radpipe.model.zoo import build_ensemble, build_pipeline, search_space


@dataclass
class FoldFit:
    """One model fitted in one outer fold: its tuned pipeline, test-fold probabilities and threshold.

    ``test_prob`` and ``inner_oof`` are positive-class probabilities (binary) or (cases x K) matrices.
    """

    repeat: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    estimator: Any
    best_params: dict
    test_prob: np.ndarray
    threshold: float
    inner_oof: np.ndarray | None = field(default=None, repr=False)
    #: joint search only, for information: each family's best inner configuration's test-fold probabilities
    family_test_prob: dict[str, np.ndarray] | None = field(default=None, repr=False)


@dataclass
class NestedCVResult:
    """Fold fits per model, the outer splits and the time each model took."""

    folds: dict[str, list[FoldFit]]
    splits: list[tuple[int, int, np.ndarray, np.ndarray]]
    seconds: dict[str, float]
    stratified_on_batch: bool = False  # outer folds stratified on outcome x batch (harmonisation)


def batch_values(X, settings: ModelSettings) -> np.ndarray | None:
    """Each case's batch as text (2.0 and 2 are the same batch) when the settings harmonise; None otherwise."""
    if not settings.harmonise or not isinstance(X, pd.DataFrame) or settings.batch_column not in X.columns:
        return None
    return np.array([str(batch_label(value)) for value in X[settings.batch_column]], dtype=object)


def stratification_labels(y: np.ndarray, batches: np.ndarray | None, n_folds: int) -> np.ndarray:
    """What a split is stratified on: ``y`` without batches; with them the outcome x batch combination,
    unless one of its strata has fewer than ``n_folds`` cases (then ``y``, see the module docstring)."""
    if batches is None:
        return y
    key = np.array([f"{label}|{batch}" for label, batch in zip(np.asarray(y), batches, strict=True)], dtype=object)
    _, counts = np.unique(key, return_counts=True)
    return key if counts.min() >= n_folds else y


def outer_splits(y: np.ndarray, settings: ModelSettings, groups: np.ndarray | None = None,
                 batches: np.ndarray | None = None):
    """``[(repeat, fold, train_idx, test_idx), ...]`` of the outer cross-validation, stratified on ``y``
    (on outcome x batch when ``batches`` are given, see :func:`stratification_labels`)."""
    out = []
    strata = stratification_labels(y, batches, settings.outer_folds)
    if groups is None:
        splitter = RepeatedStratifiedKFold(
            n_splits=settings.outer_folds, n_repeats=settings.outer_repeats, random_state=settings.seed
        )
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(y)), strata)):
            out.append((i // settings.outer_folds, i % settings.outer_folds, train, test))
        return out
    for repeat in range(settings.outer_repeats):
        splitter = StratifiedGroupKFold(settings.outer_folds, shuffle=True, random_state=settings.seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), strata, groups)):
            out.append((repeat, fold, train, test))
    return out


def inner_cv(settings: ModelSettings, grouped: bool):
    """The seeded splitter for hyper-parameter search and threshold choice."""
    if grouped:
        return StratifiedGroupKFold(settings.inner_folds, shuffle=True, random_state=settings.seed)
    return StratifiedKFold(settings.inner_folds, shuffle=True, random_state=settings.seed)


def inner_splits(X, y: np.ndarray, groups, settings: ModelSettings):
    """The ``cv`` of the inner search and of the inner out-of-fold probabilities on (X, y).

    The seeded splitter of :func:`inner_cv`; with harmonisation, its splits of these cases stratified on
    outcome x batch (a list of (train, test) index pairs, the same for the search and the OOF probabilities).
    """
    cv = inner_cv(settings, groups is not None)
    batches = batch_values(X, settings)
    if batches is None:
        return cv
    strata = stratification_labels(y, batches, settings.inner_folds)
    return list(cv.split(np.zeros(len(y)), strata, groups))


def make_search(name: str, settings: ModelSettings, cv, multiclass: bool = False):
    """Grid or randomized search over a family's pipeline on the inner folds ``cv``, scored by ROC AUC
    (macro one-vs-rest ROC AUC for a multi-class outcome)."""
    if name == "search":  # the whole pipeline chosen jointly (radpipe.model.search)
        from radpipe.model.search import JointSearch

        return JointSearch(settings, cv, scoring="roc_auc_ovr" if multiclass else "roc_auc")
    common = dict(scoring="roc_auc_ovr" if multiclass else "roc_auc", cv=cv, n_jobs=settings.n_jobs, refit=True,
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


def class_probabilities(proba: np.ndarray) -> np.ndarray:
    """``predict_proba`` output as radpipe keeps it: the positive-class column for two classes, else all."""
    return proba[:, 1] if proba.shape[1] == 2 else proba


def inner_oof_probabilities(estimator, X: pd.DataFrame, y: np.ndarray, groups, settings: ModelSettings) -> np.ndarray:
    """Out-of-fold probabilities on training data from the inner splits (see :func:`class_probabilities`)."""
    return class_probabilities(cross_val_predict(
        clone(estimator), X, y, groups=groups, cv=inner_splits(X, y, groups, settings),
        method="predict_proba", n_jobs=settings.n_jobs,
    ))


def choose_threshold(y: np.ndarray, oof_prob: np.ndarray, settings: ModelSettings) -> float:
    """The decision threshold from training-data predictions only (Youden's J, or 0.5 when fixed).

    NaN for a multi-class outcome, whose predicted class is the most probable one.
    """
    if np.ndim(oof_prob) == 2:
        return float("nan")
    return 0.5 if settings.threshold_method == "fixed" else youden_threshold(y, oof_prob)


def fitted_search(name: str, X: pd.DataFrame, y: np.ndarray, groups, settings: ModelSettings):
    """The inner search of model ``name``, fitted on (X, y)."""
    search = make_search(name, settings, inner_splits(X, y, groups, settings), multiclass=len(np.unique(y)) > 2)
    return search.fit(X, y, groups=groups) if groups is not None else search.fit(X, y)


def tune(name: str, X: pd.DataFrame, y: np.ndarray, groups, settings: ModelSettings):
    """Inner search on (X, y): the refitted best pipeline and its parameters."""
    search = fitted_search(name, X, y, groups, settings)
    return search.best_estimator_, _search_params(search)


def _search_params(search) -> dict:
    return {key.removeprefix("clf__"): _plain(value) for key, value in search.best_params_.items()}


def fit_ensemble(kind: str, members: dict[str, Any], X: pd.DataFrame, y: np.ndarray, settings: ModelSettings):
    """An ensemble of the members' tuned (unfitted clones of) pipelines, fitted on (X, y)."""
    ensemble = build_ensemble(kind, [(name, clone(est)) for name, est in members.items()], settings)
    return ensemble.fit(X, y)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def fit_count(settings: ModelSettings) -> int:
    """How many times :func:`nested_cv` and :func:`refit_all` call ``advance``: every model (base models and
    ensembles) once per outer fold and repeat, and once more for its final refit."""
    n_models = len(settings.base_models()) + sum(name in ENSEMBLE_NAMES for name in settings.models)
    return n_models * (settings.outer_folds * settings.outer_repeats + 1)


def nested_cv(
    X: pd.DataFrame,
    y: np.ndarray,
    settings: ModelSettings,
    groups: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    advance: Callable[[str], None] | None = None,
) -> NestedCVResult:
    """Run the nested CV for every model in ``settings.models`` (and the members ensembles need).

    ``y`` holds class indices (0/1, or 0..K-1 for a multi-class outcome). ``progress(message)`` is told
    what starts; ``advance(note)`` is called when a model has been fitted in an outer fold.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 15)
    >>> X = pd.DataFrame({"f1": rng.normal(size=30) + y, "f2": rng.normal(size=30)})
    >>> result = nested_cv(X, y, ModelSettings(models=["logreg"], outer_folds=3))
    >>> len(result.folds["logreg"]), len(result.splits)
    (3, 3)
    """
    say = progress or (lambda message: None)
    done = advance or (lambda note: None)
    batches = batch_values(X, settings)
    splits = outer_splits(y, settings, groups, batches)
    bases = settings.base_models()
    ensembles = [name for name in settings.models if name in ENSEMBLE_NAMES]
    folds: dict[str, list[FoldFit]] = {name: [] for name in bases + ensembles}
    seconds = dict.fromkeys(folds, 0.0)
    with _quiet():
        for repeat, fold, train, test in splits:
            X_tr, X_te, y_tr = X.iloc[train], X.iloc[test], y[train]
            g_tr = None if groups is None else groups[train]
            members: dict[str, Any] = {}
            for name in bases:
                say(f"repeat {repeat} fold {fold}: tuning {name}")
                start = time.perf_counter()
                search = fitted_search(name, X_tr, y_tr, g_tr, settings)
                best, params = search.best_estimator_, _search_params(search)
                oof = inner_oof_probabilities(best, X_tr, y_tr, g_tr, settings)
                per_family = None
                if hasattr(search, "family_probabilities"):  # the joint search: information, not a choice
                    per_family = {family: class_probabilities(prob) for family, prob in
                                  search.family_probabilities(X_tr, y_tr, X_te).items()}
                folds[name].append(FoldFit(
                    repeat, fold, train, test, best, params, class_probabilities(best.predict_proba(X_te)),
                    choose_threshold(y_tr, oof, settings), oof, per_family,
                ))
                members[name] = best
                seconds[name] += time.perf_counter() - start
                done(f"{name}, repeat {repeat} fold {fold}")
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
                    repeat, fold, train, test, ensemble, params, class_probabilities(ensemble.predict_proba(X_te)),
                    choose_threshold(y_tr, oof, settings), oof,
                ))
                seconds[kind] += time.perf_counter() - start
                done(f"{kind}, repeat {repeat} fold {fold}")
    on_batch = batches is not None and stratification_labels(y, batches, settings.outer_folds) is not y
    return NestedCVResult(folds=folds, splits=splits, seconds=seconds, stratified_on_batch=on_batch)


def refit_all(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, groups: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None, advance: Callable[[str], None] | None = None,
) -> dict[str, tuple[Any, dict]]:
    """Tune and fit every model on all of (X, y): ``{name: (pipeline, best_params)}``."""
    say = progress or (lambda message: None)
    done = advance or (lambda note: None)
    fitted: dict[str, tuple[Any, dict]] = {}
    with _quiet():
        for name in settings.base_models():
            say(f"final fit: tuning {name} on all {len(y)} cases")
            fitted[name] = tune(name, X, y, groups, settings)
            done(f"{name}, final fit")
        for kind in (name for name in settings.models if name in ENSEMBLE_NAMES):
            say(f"final fit: {kind} ensemble")
            chosen = {name: fitted[name][0] for name in settings.ensemble_members}
            params = {name: fitted[name][1] for name in settings.ensemble_members}
            fitted[kind] = (fit_ensemble(kind, chosen, X, y, settings), params)
            done(f"{kind}, final fit")
    return fitted
