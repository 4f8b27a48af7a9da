"""SHAP values of a survival model's risk score (``pipeline.predict``: higher = earlier event), as tidy tables.

TreeSHAP is used when shap's TreeExplainer accepts the fitted estimator and its values add up to the risk score;
shap 0.51 does not accept scikit-survival's forests or boosted models, so those, like the penalised Cox model,
get the model-agnostic permutation explainer against k-means centroids of the training data (seeded per case).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from radpipe.explain.shap_values import (
    ShapResult,
    case_seed,
    final_estimator,
    final_features,
    kmeans_background,
    sample_background,
)


def compute_risk_shap(pipeline, X: pd.DataFrame, X_train: pd.DataFrame, *, explainer: str = "auto",
                      background: int = 50, agnostic_background: int = 20, max_evals: int | None = None,
                      seed: int = 42, n_jobs: int = 1) -> ShapResult:
    """SHAP values of the risk score of a fitted survival ``pipeline`` for every case of ``X``.

    ``base_value + values.sum(axis=1)`` is each case's risk score (``pipeline.predict(X)``); values are
    attributed to the features the final estimator sees. ``explainer`` is ``auto`` (TreeSHAP when shap
    supports the estimator, permutation otherwise), ``tree`` or ``permutation``; other parameters as in
    :func:`radpipe.explain.shap_values.compute_shap`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sksurv.linear_model import CoxPHSurvivalAnalysis
    >>> from sksurv.util import Surv
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    >>> y = Surv.from_arrays(rng.random(40) < 0.7, rng.exponential(100 * np.exp(-X["a"])))
    >>> pipe = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis()).set_output(transform="pandas").fit(X, y)
    >>> res = compute_risk_shap(pipe, X.head(3), X, max_evals=50)
    >>> bool(np.allclose(res.base_value + res.values.sum(axis=1), pipe.predict(X.head(3))))
    True
    """
    if explainer not in ("auto", "tree", "permutation"):
        raise ValueError(f"explainer {explainer!r} cannot explain a survival model: use auto, tree or permutation")
    est = final_estimator(pipeline)
    Xt, Xt_train = final_features(pipeline, X), final_features(pipeline, X_train)
    notes: list[str] = []
    tree_like = any(k in type(est).__name__ for k in ("Forest", "Tree", "Boosting"))
    if explainer == "tree" or (explainer == "auto" and tree_like):
        tree = _tree_shap(est, Xt, sample_background(Xt_train, background, seed))
        if tree is not None:
            values, base = tree
            return _result(values, base, X, Xt, "tree", [
                f"Exact interventional TreeSHAP on the risk score, relative to {min(background, len(Xt_train))} "
                "training cases."])
        notes.append(f"shap's tree explainer does not support {type(est).__name__}: the permutation explainer "
                     "is used instead.")
    bg, _ = kmeans_background(Xt_train, agnostic_background, seed)
    columns = list(Xt.columns)
    evals = max(max_evals or max(500, 2 * Xt.shape[1] + 1), 2 * Xt.shape[1] + 1)
    seeds = [case_seed(seed, c) for c in Xt.index]
    chunks = np.array_split(np.arange(len(Xt)), max(1, min(len(Xt), n_jobs * 4 if n_jobs > 1 else 1)))
    args = dict(est=est, columns=columns, bg=bg.to_numpy(dtype=float), evals=evals)
    if n_jobs == 1 or len(chunks) == 1:
        parts = [_permutation_rows(Xt.iloc[idx].to_numpy(dtype=float), [seeds[i] for i in idx], **args)
                 for idx in chunks if len(idx)]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs)(delayed(_permutation_rows)(
            Xt.iloc[idx].to_numpy(dtype=float), [seeds[i] for i in idx], **args) for idx in chunks if len(idx))
    values = np.vstack(parts) if parts else np.zeros((0, Xt.shape[1]))
    base = float(np.mean(_risk(est, columns, bg.to_numpy(dtype=float))))
    notes.append(f"Model-agnostic permutation SHAP of the risk score (antithetic permutations, {evals} model "
                 f"evaluations per patient, seeded per case) against {len(bg)} k-means centroids of the training "
                 "data; contributions add up exactly, individual values are estimates.")
    return _result(values, base, X, Xt, "permutation", notes)


def _result(values, base, X, Xt, kind, notes) -> ShapResult:
    frame = pd.DataFrame(values, index=Xt.index, columns=Xt.columns)
    frame.index.name = X.index.name or "case_id"
    return ShapResult(values=frame, base_value=float(base), features=Xt, explainer=kind, notes=notes)


def _risk(est, columns, A) -> np.ndarray:
    return np.asarray(est.predict(pd.DataFrame(np.asarray(A, dtype=float), columns=columns)), dtype=float)


def _tree_shap(est, Xt: pd.DataFrame, bg: pd.DataFrame):
    """(values, base) from shap's TreeExplainer, or None when shap cannot explain ``est`` exactly."""
    import shap

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.TreeExplainer(est, data=bg, feature_perturbation="interventional")
            values = np.asarray(explainer.shap_values(Xt, check_additivity=False), dtype=float)
    except Exception:  # shap raises InvalidModelError (and others) for estimators it does not know
        return None
    base = float(np.ravel(explainer.expected_value)[0])
    if values.shape != Xt.shape or not np.allclose(base + values.sum(axis=1), est.predict(Xt), atol=1e-6):
        return None  # shap explained another output than the risk score
    return values, base


def _permutation_rows(rows: np.ndarray, seeds, *, est, columns, bg, evals) -> np.ndarray:
    import shap
    from threadpoolctl import threadpool_limits

    def f(A):
        return _risk(est, columns, A)

    explainer = shap.explainers.Permutation(f, shap.maskers.Independent(bg, max_samples=len(bg)))
    out = []
    with threadpool_limits(limits=1):
        for row, s in zip(rows, seeds, strict=True):
            np.random.seed(s)
            exp = explainer(row[None, :], max_evals=evals, batch_size=evals, silent=True)
            out.append(np.asarray(exp.values)[0])
    return np.vstack(out) if out else np.zeros((0, len(columns)))
