"""Fold stability: does the SHAP ranking of features depend on which patients a model was trained on?

Each saved outer-fold model of the model folder is explained on the same seeded sample of cases and the
rankings are compared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from radpipe.explain.shap_values import compute_shap, compute_shap_classes, to_original
from radpipe.model.folder import ModelFolder
from radpipe.model.persist import load_model


def fold_stability(model_path, X, X_train, names, positive, settings, n_jobs, multiclass: bool = False) -> dict:
    """Spearman correlation of mean |SHAP| between the outer-fold models, on a seeded sample of cases.

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
    table = pd.DataFrame({d.name: r for d, r in zip(fold_dirs, results, strict=False) if not isinstance(r, str)})
    if table.shape[1] < 2:
        return {"n_folds": table.shape[1], "skipped": skipped, "note": "fewer than two usable outer-fold models"}
    corr = table.corr(method="spearman")
    off = corr.to_numpy()[np.triu_indices(len(corr), 1)]
    k = settings.top_features
    top_sets = {c: set(table[c].sort_values(ascending=False, kind="stable").index[:k]) for c in table}
    overall = table.mean(axis=1).sort_values(ascending=False, kind="stable").index[:k]
    frequency = {f: float(np.mean([f in s for s in top_sets.values()])) for f in overall}
    return {
        "n_folds": int(table.shape[1]), "n_cases": int(len(sample)),
        "spearman_median": float(np.nanmedian(off)), "spearman_min": float(np.nanmin(off)),
        "spearman_max": float(np.nanmax(off)), "top_frequency": frequency, "skipped": skipped,
        "matrix": corr,
    }


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
            return pd.concat([to_original(r.values, names).abs().mean() for r in by_class.values()], axis=1).mean(axis=1)
        res = compute_shap(m.pipeline, sample, X_train, positive_class=positive, explainer=settings.explainer,
                           background=settings.shap_background, agnostic_background=settings.agnostic_background,
                           max_evals=settings.shap_max_evals or 200, seed=settings.seed, n_jobs=1)
        return to_original(res.values, names).abs().mean()
    except Exception as exc:  # one broken fold model must not stop the report
        return f"{fold_dir.name}: {exc}"
