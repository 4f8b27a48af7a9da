"""Fold stability: does the SHAP ranking of features depend on which patients a model was trained on?

Each saved outer-fold model of the model folder is explained on the same seeded sample of cases and the
rankings are compared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from radpipe.explain.shap_values import compute_shap, compute_shap_classes, original_name_map, to_original
from radpipe.model.folder import ModelFolder
from radpipe.model.persist import load_model


def fold_stability(model_path, X, X_train, names, positive, settings, n_jobs, multiclass: bool = False) -> dict:
    """Mean |SHAP| of each feature in each outer-fold model, on a seeded sample of cases, and the Spearman
    correlation of those rankings between folds.

    ``importance`` (features x folds) is NaN where a fold's feature selection dropped the feature ("not
    selected", which is not the same as a selected feature with no influence); in the correlation such a
    feature ranks last. A fold whose model gives every feature the same importance has no defined
    correlation and is listed in ``undefined_folds``.

    Model-agnostic explainers use 200 evaluations per case here (unless ``shap_max_evals`` is set): a ranking of
    mean |SHAP| over many cases is far less noisy than one case's values.
    """
    folder = ModelFolder(model_path)
    fold_dirs = [d for d in folder.fold_dirs() if ModelFolder(d).exists()]
    if len(fold_dirs) < 2:
        return {"n_folds": len(fold_dirs), "note": "fewer than two outer-fold models in the model folder"}
    sample = X.sample(n=min(settings.stability_cases, len(X)), random_state=settings.seed)
    args = dict(sample=sample, X_train=X_train, names=names, positive=positive, settings=settings,
                multiclass=multiclass)
    if n_jobs > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(delayed(_fold_mean_abs)(d, **args) for d in fold_dirs)
    else:
        results = [_fold_mean_abs(d, **args) for d in fold_dirs]
    skipped = [r for r in results if isinstance(r, str)]
    usable = {d.name: r for d, r in zip(fold_dirs, results, strict=True) if not isinstance(r, str)}
    if len(usable) < 2:
        return {"n_folds": len(usable), "skipped": skipped, "note": "fewer than two usable outer-fold models"}
    # mean |SHAP| per feature (rows) and fold model (columns); NaN where the fold's selection dropped the feature
    importance = pd.DataFrame({fold: values for fold, (values, _) in usable.items()})
    for fold, (_, selected) in usable.items():
        importance.loc[~importance.index.isin(selected), fold] = np.nan
    # a dropped feature has no influence on that fold's model: it ranks last (0) in the correlation
    corr = importance.fillna(0.0).corr(method="spearman")
    off = corr.to_numpy()[np.triu_indices(len(corr), 1)]
    off = off[np.isfinite(off)]
    k = settings.top_features
    filled = importance.fillna(0.0)
    top_sets = {c: set(filled[c].sort_values(ascending=False, kind="stable").index[:k]) for c in filled}
    overall = filled.mean(axis=1).sort_values(ascending=False, kind="stable").index[:k]
    frequency = {f: float(np.mean([f in s for s in top_sets.values()])) for f in filled.index}
    out = {"n_folds": int(importance.shape[1]), "n_cases": int(len(sample)), "top_frequency": frequency,
           "skipped": skipped, "matrix": corr, "importance": importance.loc[list(overall)],
           "importance_all": importance,
           "undefined_folds": [c for c in corr if not np.isfinite(corr[c].drop(c)).any()],
           "fold_labels": _fold_labels(list(importance.columns))}
    if off.size:
        out.update(spearman_median=float(np.median(off)), spearman_min=float(off.min()),
                   spearman_max=float(off.max()))
    return out


def _fold_mean_abs(fold_dir, *, sample, X_train, names, positive, settings, multiclass=False):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = load_model(fold_dir)
        if multiclass:  # mean |SHAP| on each class's probability, averaged over the classes
            by_class = compute_shap_classes(
                m.pipeline, sample, X_train, explainer=settings.explainer, background=settings.shap_background,
                agnostic_background=settings.agnostic_background, max_evals=settings.shap_max_evals or 200,
                seed=settings.seed, n_jobs=1)
            first = next(iter(by_class.values()))
            return (pd.concat([to_original(r.values, names).abs().mean() for r in by_class.values()], axis=1)
                    .mean(axis=1), _selected(first.values.columns, names))
        res = compute_shap(m.pipeline, sample, X_train, positive_class=positive, explainer=settings.explainer,
                           background=settings.shap_background, agnostic_background=settings.agnostic_background,
                           max_evals=settings.shap_max_evals or 200, seed=settings.seed, n_jobs=1)
        return to_original(res.values, names).abs().mean(), _selected(res.values.columns, names)
    except Exception as exc:  # one broken fold model must not stop the report
        return f"{fold_dir.name}: {exc}"


def _selected(final_names, names) -> set[str]:
    """The input features that reach a fold model's final estimator (the rest were dropped by selection)."""
    return set(original_name_map(final_names, names).values())


def _fold_labels(names: list[str]) -> dict[str, str]:
    """Readable names of fold folders ``<repeat>_<fold>`` (0-based): "fold 3", or "repeat 2 fold 3"."""
    parts = {n: n.split("_") for n in names}
    if not all(len(p) == 2 and p[0].isdigit() and p[1].isdigit() for p in parts.values()):
        return {n: n for n in names}
    repeats = {p[0] for p in parts.values()}
    return {n: (f"fold {int(p[1]) + 1}" if len(repeats) == 1 else f"repeat {int(p[0]) + 1} fold {int(p[1]) + 1}")
            for n, p in parts.items()}
