"""Clinical covariates: a clinical-only and a combined clinical + radiomics logistic model.

With ``model.clinical: [age, grade]`` radpipe trains, on the *same outer folds* as the radiomics
models, two more models that :mod:`radpipe.model.train` records beside them:

- ``clinical``: the covariates alone, in a logistic regression;
- ``combined``: one logistic regression over the covariates and the radiomics features that the
  radiomics preprocessing and selection (:func:`radpipe.model.zoo.preprocessing_steps`: impute,
  variance, scale, decorrelate, select k) keep inside each training fold.

Design choice: the combined model re-selects its radiomics signature in every training fold with the
same steps as the radiomics pipelines, rather than reusing the best radiomics model's final
signature (chosen on all cases, so reusing it would leak) or stacking a fitted rad-score (in-fold
scores of a model fitted on the same cases are optimistic). One penalised logistic regression on top
keeps it a single formula: a rad-score, a nomogram and a model card like the other linear models.
Its penalty (C, L1/L2) is tuned by the same inner CV and grid as ``logreg``. Resampling
(``model.rebalance``) is not applied to these two models: class weights balance them.

Covariates are encoded inside the pipeline, so every fold fits its own encoding on its training
cases: numeric ones are imputed (median) and standardised; categorical ones imputed (most frequent)
and one-hot encoded, a category never seen in training scoring zero on every indicator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from radpipe.errors import ConfigError
from radpipe.model.settings import ModelSettings

CLINICAL_MODEL = "clinical"
COMBINED_MODEL = "combined"
CLINICAL_MODELS = (CLINICAL_MODEL, COMBINED_MODEL)
#: the penalty grid of both logistic models (that of the zoo's logreg)
GRID = {"clf__C": [0.01, 0.1, 1.0], "clf__l1_ratio": [0.0, 1.0]}


def model_kind(name: str) -> str:
    """``clinical``, ``combined`` or ``radiomics``: what a model of ``metrics.csv`` is built from."""
    return name if name in CLINICAL_MODELS else "radiomics"


def infer_types(table: pd.DataFrame, columns: list[str], overrides: Mapping[str, str] | None = None, *,
                source: str | None = None) -> dict[str, str]:
    """``numeric`` or ``categorical`` per covariate: numeric when every filled cell is a number, unless
    ``overrides`` (``model.clinical_types``) says otherwise; a numeric override on text is refused.

    Examples
    --------
    >>> table = pd.DataFrame({"age": ["59", "61", None], "grade": ["High", "Low", "High"]})
    >>> infer_types(table, ["age", "grade"])
    {'age': 'numeric', 'grade': 'categorical'}
    >>> infer_types(table, ["age", "grade"], {"age": "categorical"})
    {'age': 'categorical', 'grade': 'categorical'}
    """
    overrides = dict(overrides or {})
    types = {}
    for column in columns:
        values = table[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        inferred = "numeric" if len(values) and numbers.notna().all() else "categorical"
        wanted = overrides.get(column, inferred)
        if wanted == "numeric" and inferred != "numeric":
            bad = values[numbers.isna()]
            example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else " (it has no value)"
            raise ConfigError(f"model.clinical_types says covariate '{column}' is numeric, but it holds text"
                              f"{example}: make it categorical or fix the labels file", file=source,
                              key=f"model.clinical_types.{column}")
        types[column] = wanted
    return types


def clinical_values(table: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """The covariates as the pipelines read them: numeric as float, categorical as text (missing: NaN)."""
    out = {}
    for column, kind in types.items():
        if kind == "numeric":
            out[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
        else:
            values = table[column].astype(object)
            out[column] = values.map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(out, index=table.index)


def _covariate_transformers(types: Mapping[str, str]) -> list[tuple[str, Any, list[str]]]:
    numeric = [c for c, kind in types.items() if kind == "numeric"]
    categorical = [c for c, kind in types.items() if kind == "categorical"]
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                                           ("scale", StandardScaler())]), numeric))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]), categorical))
    return parts


def _logistic(settings: ModelSettings) -> LogisticRegression:
    return LogisticRegression(solver="saga", l1_ratio=0.0, C=1.0, class_weight=settings.class_weight, max_iter=5000,
                              tol=1e-3, random_state=settings.seed)


def build_clinical_pipeline(types: Mapping[str, str], settings: ModelSettings,
                            radiomics: list[str] | None = None) -> Pipeline:
    """The unfitted ``clinical`` pipeline, or the ``combined`` one when ``radiomics`` names the feature columns.

    Examples
    --------
    >>> pipe = build_clinical_pipeline({"age": "numeric", "grade": "categorical"}, ModelSettings())
    >>> X = pd.DataFrame({"age": [50.0, 60, 70, 80], "grade": ["Low", "High", "Low", "High"]})
    >>> pipe.fit(X, [0, 1, 0, 1])[:-1].get_feature_names_out().tolist()
    ['age', 'grade_High', 'grade_Low']
    """
    from radpipe.model.zoo import preprocessing_steps

    parts = _covariate_transformers(types)
    if radiomics is not None:
        steps = [(name, step) for name, step in preprocessing_steps(settings) if name != "rebalance"]
        parts.insert(0, ("radiomics", Pipeline(steps), list(radiomics)))
    design = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("design", design), ("clf", _logistic(settings))]).set_output(transform="pandas")


def search_grid(settings: ModelSettings, combined: bool) -> dict[str, list]:
    grid = dict(GRID)
    if combined and settings.select_k_grid and settings.selection != "none":
        grid["design__radiomics__select__k"] = list(settings.select_k_grid)
    return grid


def _tune(pipeline: Pipeline, grid: dict, X: pd.DataFrame, y: np.ndarray, groups, settings: ModelSettings):
    from radpipe.model.validate import inner_splits

    search = GridSearchCV(pipeline, grid, scoring="roc_auc", cv=inner_splits(X, y, groups, settings),
                          n_jobs=settings.n_jobs, refit=True, error_score=np.nan)
    search.fit(X, y, groups=groups) if groups is not None else search.fit(X, y)
    params = {key.removeprefix("clf__"): (v.item() if isinstance(v, np.generic) else v)
              for key, v in search.best_params_.items()}
    return search.best_estimator_, params


def clinical_pipelines(types: Mapping[str, str], settings: ModelSettings,
                       radiomics: list[str]) -> dict[str, tuple[Pipeline, dict]]:
    """``{name: (unfitted pipeline, grid)}`` of the clinical and combined models."""
    return {CLINICAL_MODEL: (build_clinical_pipeline(types, settings), search_grid(settings, False)),
            COMBINED_MODEL: (build_clinical_pipeline(types, settings, radiomics), search_grid(settings, True))}


def clinical_nested_cv(X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, groups, splits,
                       types: Mapping[str, str], radiomics: list[str],
                       progress: Callable[[str], None] | None = None) -> tuple[dict[str, list], dict[str, float]]:
    """The clinical and combined models on the given outer ``splits`` (those of the radiomics models).

    ``X`` holds the radiomics columns and the covariates (:func:`clinical_values`). Returns the
    :class:`~radpipe.model.validate.FoldFit` lists by model name and the seconds each took.
    """
    from radpipe.model.validate import FoldFit, _quiet, choose_threshold, inner_oof_probabilities

    say = progress or (lambda message: None)
    models = clinical_pipelines(types, settings, radiomics)
    folds: dict[str, list] = {name: [] for name in models}
    seconds = dict.fromkeys(models, 0.0)
    with _quiet():
        for repeat, fold, train, test in splits:
            X_tr, X_te, y_tr = X.iloc[train], X.iloc[test], y[train]
            g_tr = None if groups is None else groups[train]
            for name, (pipeline, grid) in models.items():
                say(f"repeat {repeat} fold {fold}: tuning {name}")
                start = time.perf_counter()
                best, params = _tune(pipeline, grid, X_tr, y_tr, g_tr, settings)
                oof = inner_oof_probabilities(best, X_tr, y_tr, g_tr, settings)
                folds[name].append(FoldFit(repeat, fold, train, test, best, params, best.predict_proba(X_te)[:, 1],
                                           choose_threshold(y_tr, oof, settings), oof))
                seconds[name] += time.perf_counter() - start
    return folds, seconds


def refit_clinical(X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, groups, types: Mapping[str, str],
                   radiomics: list[str]) -> dict[str, tuple[Pipeline, dict]]:
    """The clinical and combined models tuned and fitted on all cases: ``{name: (pipeline, params)}``."""
    from radpipe.model.validate import _quiet

    with _quiet():
        return {name: _tune(pipeline, grid, X, y, groups, settings)
                for name, (pipeline, grid) in clinical_pipelines(types, settings, radiomics).items()}


def candidate_parameters(n_features: int, clinical: pd.DataFrame | None, types: Mapping[str, str] | None) -> int:
    """Candidate predictor parameters before selection (for the sample size): every feature offered to the
    selection, 1 per numeric covariate and (levels - 1) per categorical one."""
    total = int(n_features)
    for column, kind in (types or {}).items():
        total += 1 if kind == "numeric" else max(int(clinical[column].nunique()) - 1, 1)
    return total
