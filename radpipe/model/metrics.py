"""Performance of a classifier from its probabilities: discrimination, classification at a threshold
chosen on training data, calibration, stratified bootstrap CIs and the paired DeLong test.

The binary functions take ``y_true`` as 0/1 (1 = positive class) and ``y_prob`` as positive-class
probabilities. The ``multiclass_*`` functions take ``y_true`` as class indices 0..K-1 and ``y_prob``
as a (cases x K) matrix; they report one-vs-rest and macro-averaged metrics (see
:func:`multiclass_point_metrics`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, rankdata

#: Metrics that get a bootstrap 95% CI (``<name>_ci_low``, ``<name>_ci_high``).
CI_METRICS = ("auc", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier")

#: Column order of a metrics row (``cohort`` and ``model`` are prepended by the caller).
METRIC_COLUMNS = (
    ["n", "n_positive"]
    + [col for name in CI_METRICS for col in (name, f"{name}_ci_low", f"{name}_ci_high")]
    + ["calibration_slope", "calibration_intercept", "threshold"]
)


def _as_binary(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_prob has {y_prob.size}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 (1 = positive class)")
    return y_true, y_prob


def roc_auc(y_true, y_prob) -> float:
    """Area under the ROC curve (Mann-Whitney with mid-ranks for ties); NaN if one class is absent."""
    y_true, y_prob = _as_binary(y_true, y_prob)
    n_pos = int(y_true.sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(y_prob)
    return float((ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def youden_threshold(y_true, y_prob) -> float:
    """Threshold maximising Youden's J (sensitivity + specificity - 1); predict positive when ``y_prob >= t``.

    The threshold is placed midway between adjacent distinct probabilities, so it generalises to
    unseen cases rather than sitting on a training case's score. Returns 0.5 when a class is absent.
    """
    y_true, y_prob = _as_binary(y_true, y_prob)
    n_pos = int(y_true.sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    values = np.unique(y_prob)
    cuts = np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    pred = y_prob[None, :] >= cuts[:, None]
    sens = (pred & (y_true == 1)).sum(axis=1) / n_pos
    spec = (~pred & (y_true == 0)).sum(axis=1) / n_neg
    j = sens + spec - 1
    best = np.flatnonzero(j == j.max())
    # among equally good cuts take the middle one: the least sensitive to small shifts in the scores
    return float(np.clip(cuts[best[len(best) // 2]], 0.0, 1.0))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _logistic_newton(x: np.ndarray | None, y: np.ndarray, offset: np.ndarray, iters: int = 50) -> np.ndarray:
    """Unpenalised logistic regression y ~ a [+ b x] + offset by Newton-Raphson; NaNs when it diverges."""
    design = np.ones((y.size, 1)) if x is None else np.column_stack([np.ones(y.size), x])
    beta = np.zeros(design.shape[1])
    for _ in range(iters):
        eta = design @ beta + offset
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None]) + 1e-10 * np.eye(design.shape[1])
        step = np.linalg.solve(hessian, design.T @ (y - mu))
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e4:
            return np.full(design.shape[1], np.nan)
        if np.abs(step).max() < 1e-8:
            break
    return beta


def calibration_slope_intercept(y_true, y_prob) -> tuple[float, float]:
    """Calibration slope (logistic regression of y on logit(p)) and calibration-in-the-large intercept.

    The intercept is fitted with logit(p) as an offset (slope fixed at 1), the usual reporting in
    clinical prediction models (Van Calster et al. 2019): ideal values are slope 1, intercept 0.
    """
    y_true, y_prob = _as_binary(y_true, y_prob)
    if y_true.min() == y_true.max():
        return float("nan"), float("nan")
    lp = _logit(y_prob)
    slope = _logistic_newton(lp, y_true.astype(float), np.zeros(y_true.size))[1]
    intercept = _logistic_newton(None, y_true.astype(float), lp)[0]
    return float(slope), float(intercept)


def _classification(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    tp = float(np.sum((y_pred == 1) & (y_true == 1)))
    tn = float(np.sum((y_pred == 0) & (y_true == 0)))
    fp = float(np.sum((y_pred == 1) & (y_true == 0)))
    fn = float(np.sum((y_pred == 0) & (y_true == 1)))

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    ppv, npv = ratio(tp, tp + fp), ratio(tn, tn + fn)
    return {
        "balanced_accuracy": (sens + spec) / 2,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def point_metrics(y_true, y_prob, threshold: float, y_pred=None) -> dict[str, float]:
    """AUC, classification metrics at ``threshold`` (or given ``y_pred``), Brier score and calibration.

    ``y_pred`` lets out-of-fold predictions carry their own fold's threshold.
    """
    y_true, y_prob = _as_binary(y_true, y_prob)
    y_pred = (y_prob >= threshold).astype(int) if y_pred is None else np.asarray(y_pred).astype(int)
    slope, intercept = calibration_slope_intercept(y_true, y_prob)
    return {
        "n": int(y_true.size),
        "n_positive": int(y_true.sum()),
        "auc": roc_auc(y_true, y_prob),
        **_classification(y_true, y_pred),
        "brier": float(np.mean((y_prob - y_true) ** 2)),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "threshold": float(threshold),
    }


def _fast_metrics(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"auc": roc_auc(y_true, y_prob), **_classification(y_true, y_pred),
            "brier": float(np.mean((y_prob - y_true) ** 2))}


def stratified_bootstrap_indices(y_true, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples (rows) of case indices, drawn with replacement within each class."""
    y_true = np.asarray(y_true).astype(int)
    rng = np.random.default_rng(seed)
    parts = [rng.choice(np.flatnonzero(y_true == c), size=(n_boot, int((y_true == c).sum())), replace=True)
             for c in np.unique(y_true)]
    return np.concatenate(parts, axis=1)


def bootstrap_ci(
    y_true, y_prob, y_pred, n_boot: int = 1000, seed: int = 42, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of the :data:`CI_METRICS` from a stratified bootstrap over cases.

    ``y_prob`` and ``y_pred`` may be 2-D (repeats x cases): each resample then averages the metric
    over repeats, matching how repeated-CV point estimates are formed.
    """
    y_true = np.asarray(y_true).astype(int)
    probs = np.atleast_2d(np.asarray(y_prob, dtype=float))
    preds = np.atleast_2d(np.asarray(y_pred).astype(int))
    return _bootstrap_cis(_fast_metrics, CI_METRICS, y_true, probs, preds, n_boot, seed, level)


def _bootstrap_cis(metrics_of, keys, y_true: np.ndarray, probs: np.ndarray, preds: np.ndarray, n_boot: int,
                   seed: int, level: float) -> dict[str, tuple[float, float]]:
    """Percentile CIs of ``keys`` of ``metrics_of(y, prob, pred)`` over stratified resamples of the cases,
    each resample averaging the metric over the repeats (first axis of ``probs`` and ``preds``)."""
    if n_boot <= 0:
        return {key: (float("nan"), float("nan")) for key in keys}
    samples = {key: np.empty(n_boot) for key in keys}
    for b, idx in enumerate(stratified_bootstrap_indices(y_true, n_boot, seed)):
        per_repeat = [metrics_of(y_true[idx], p[idx], q[idx]) for p, q in zip(probs, preds, strict=True)]
        for key in keys:
            samples[key][b] = np.mean([m[key] for m in per_repeat])
    return _percentile_cis(samples, level)


def _percentile_cis(samples: dict[str, np.ndarray], level: float) -> dict[str, tuple[float, float]]:
    """Percentile interval of each metric's bootstrap values, ignoring resamples where it was undefined."""
    alpha = (1 - level) / 2
    out = {}
    for name, values in samples.items():
        values = values[np.isfinite(values)]
        out[name] = (
            (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))) if values.size
            else (float("nan"), float("nan"))
        )
    return out


def metrics_with_ci(
    y_true, y_prob, threshold: float, y_pred=None, n_boot: int = 1000, seed: int = 42
) -> dict[str, float]:
    """One metrics row (columns :data:`METRIC_COLUMNS`): point estimates and bootstrap 95% CIs.

    With 2-D ``y_prob``/``y_pred`` (repeats x cases) the point estimates are means over repeats,
    except calibration, which is computed on the case-wise mean probability.
    """
    y_true = np.asarray(y_true).astype(int)
    probs = np.atleast_2d(np.asarray(y_prob, dtype=float))
    preds = (probs >= threshold).astype(int) if y_pred is None else np.atleast_2d(np.asarray(y_pred).astype(int))
    per_repeat = [point_metrics(y_true, p, threshold, q) for p, q in zip(probs, preds, strict=True)]
    row = {name: float(np.mean([m[name] for m in per_repeat])) for name in CI_METRICS}
    slope, intercept = calibration_slope_intercept(y_true, probs.mean(axis=0))
    cis = bootstrap_ci(y_true, probs, preds, n_boot=n_boot, seed=seed)
    out: dict[str, float] = {"n": int(y_true.size), "n_positive": int(y_true.sum())}
    for name in CI_METRICS:
        out[name] = row[name]
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = cis[name]
    out.update(calibration_slope=slope, calibration_intercept=intercept, threshold=float(threshold))
    return out


# --- multi-class -----------------------------------------------------------------------------------

#: Metrics of a multi-class outcome that get a bootstrap 95% CI; all but accuracy and Brier are macro averages.
MULTICLASS_CI_METRICS = (*CI_METRICS, "accuracy")


def multiclass_metric_columns(classes) -> list[str]:
    """Column order of a multi-class metrics row: ``n``, ``n_<class>``, the macro metrics with CIs, then
    ``auc_ovr_<class>`` with CIs, and the binary-only columns (NaN) so every metrics table has them."""
    classes = [str(c) for c in classes]
    return (
        ["n"] + [f"n_{c}" for c in classes]
        + [col for name in MULTICLASS_CI_METRICS for col in (name, f"{name}_ci_low", f"{name}_ci_high")]
        + [col for c in classes for col in (f"auc_ovr_{c}", f"auc_ovr_{c}_ci_low", f"auc_ovr_{c}_ci_high")]
        + ["calibration_slope", "calibration_intercept", "threshold"]
    )


def _as_multiclass(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y_prob = np.asarray(y_prob, dtype=float)
    if y_prob.ndim != 2:
        raise ValueError(f"y_prob must be a (cases x classes) matrix, got shape {y_prob.shape}")
    y_true = np.asarray(y_true).astype(int).ravel()
    if y_true.size != y_prob.shape[0]:
        raise ValueError(f"y_true has {y_true.size} values but y_prob has {y_prob.shape[0]} rows")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= y_prob.shape[1]):
        raise ValueError(f"y_true must hold class indices 0..{y_prob.shape[1] - 1} (columns of y_prob)")
    return y_true, y_prob


def ovr_auc_per_class(y_true, y_prob) -> np.ndarray:
    """One-vs-rest ROC AUC of each class (column k of ``y_prob`` scoring class k against all others).

    NaN for a class that is absent from ``y_true`` or is the only class present.
    """
    y_true, y_prob = _as_multiclass(y_true, y_prob)
    return np.array([roc_auc((y_true == k).astype(int), y_prob[:, k]) for k in range(y_prob.shape[1])])


def macro_ovr_auc(y_true, y_prob) -> float:
    """Macro one-vs-rest ROC AUC: the unweighted mean of :func:`ovr_auc_per_class` over the classes present.

    With every class present this is ``sklearn.metrics.roc_auc_score(y, P, multi_class="ovr",
    average="macro")``; a class absent from ``y_true`` (e.g. in a small external cohort) is left out
    of the mean instead of making it undefined. NaN when fewer than two classes are present.
    """
    per_class = ovr_auc_per_class(y_true, y_prob)
    return float(np.mean(per_class[np.isfinite(per_class)])) if np.isfinite(per_class).any() else float("nan")


def multiclass_brier(y_true, y_prob) -> float:
    """Brier score of a K-class prediction as the mean over cases *and classes* of ``(p_k - [y = k])^2``.

    This is Brier's (1950) original score (summed over classes, range 0-2) divided by K, so that
    for K = 2 it equals the binary Brier score of the positive class; 0 is perfect. It is
    ``sklearn.metrics.brier_score_loss(y, P) / K``.
    """
    y_true, y_prob = _as_multiclass(y_true, y_prob)
    onehot = np.eye(y_prob.shape[1])[y_true]
    return float(np.mean((y_prob - onehot) ** 2))


def _multiclass_classification(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Macro one-vs-rest classification metrics over the classes present in ``y_true``."""
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    present = cm.sum(axis=1) > 0
    if not present.any():
        return dict.fromkeys(("balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy"),
                             float("nan"))

    def macro(num: np.ndarray, den: np.ndarray) -> float:
        # an undefined ratio (e.g. PPV of a class never predicted) counts as 0, like sklearn's zero_division=0
        ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return float(np.mean(ratio[present]))

    recall = macro(tp, tp + fn)
    spec = (tn + fp)[present]
    return {
        "balanced_accuracy": recall,
        "sensitivity": recall,
        "specificity": float(np.mean(tn[present] / spec)) if (spec > 0).all() else float("nan"),
        "ppv": macro(tp, tp + fp),
        "npv": macro(tn, tn + fn),
        "f1": macro(2 * tp, 2 * tp + fp + fn),
        "accuracy": float(tp.sum() / cm.sum()),
    }


def _multiclass_fast(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    per_class = np.array([roc_auc((y_true == k).astype(int), y_prob[:, k]) for k in range(y_prob.shape[1])])
    finite = np.isfinite(per_class)
    return {
        "auc": float(np.mean(per_class[finite])) if finite.any() else float("nan"),
        **_multiclass_classification(y_true, y_pred, y_prob.shape[1]),
        "brier": float(np.mean((y_prob - np.eye(y_prob.shape[1])[y_true]) ** 2)),
        **{f"auc_ovr_{k}": float(v) for k, v in enumerate(per_class)},
    }


def multiclass_point_metrics(y_true, y_prob, classes=None) -> dict[str, float]:
    """Metrics of a K-class prediction; the predicted class is the most probable one (no threshold).

    ``auc`` is the macro one-vs-rest ROC AUC (:func:`macro_ovr_auc`) and ``auc_ovr_<class>`` each
    class's own; ``sensitivity`` (= ``balanced_accuracy``, the mean per-class recall),
    ``specificity``, ``ppv``, ``npv`` and ``f1`` are unweighted means over the classes present in
    ``y_true`` of each class's one-vs-rest value, an undefined ratio counting as 0 (sklearn's
    ``zero_division=0``); ``accuracy`` is the share classified correctly; ``brier`` is
    :func:`multiclass_brier`. Calibration slope/intercept and the threshold are binary notions: NaN.
    """
    y_true, y_prob = _as_multiclass(y_true, y_prob)
    names = [str(c) for c in (classes if classes is not None else range(y_prob.shape[1]))]
    row = _multiclass_fast(y_true, y_prob, y_prob.argmax(axis=1))
    out: dict[str, float] = {"n": int(y_true.size)}
    out.update({f"n_{c}": int((y_true == k).sum()) for k, c in enumerate(names)})
    out.update({name: row[name] for name in MULTICLASS_CI_METRICS})
    out.update({f"auc_ovr_{c}": row[f"auc_ovr_{k}"] for k, c in enumerate(names)})
    out.update(calibration_slope=float("nan"), calibration_intercept=float("nan"), threshold=float("nan"))
    return out


def multiclass_metrics_with_ci(
    y_true, y_prob, classes=None, n_boot: int = 1000, seed: int = 42, level: float = 0.95
) -> dict[str, float]:
    """One multi-class metrics row (columns :func:`multiclass_metric_columns`) with stratified bootstrap CIs.

    ``y_prob`` is (cases x K) or (repeats x cases x K); with repeats, point estimates and each
    bootstrap resample average the metric over repeats, as in :func:`metrics_with_ci`. The predicted
    class of a case is the argmax of its probabilities. Resamples are drawn within each class.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    probs = np.asarray(y_prob, dtype=float)
    probs = probs[None] if probs.ndim == 2 else probs
    for p in probs:
        _as_multiclass(y_true, p)
    n_classes = probs.shape[2]
    names = [str(c) for c in (classes if classes is not None else range(n_classes))]
    preds = probs.argmax(axis=2)
    keys = [*MULTICLASS_CI_METRICS, *(f"auc_ovr_{k}" for k in range(n_classes))]
    per_repeat = [_multiclass_fast(y_true, p, q) for p, q in zip(probs, preds, strict=True)]
    point = {key: float(np.mean([m[key] for m in per_repeat])) for key in keys}
    cis = _bootstrap_cis(_multiclass_fast, keys, y_true, probs, preds, n_boot, seed, level)
    label = {**{name: name for name in MULTICLASS_CI_METRICS},
             **{f"auc_ovr_{k}": f"auc_ovr_{c}" for k, c in enumerate(names)}}
    out: dict[str, float] = {"n": int(y_true.size)}
    out.update({f"n_{c}": int((y_true == k).sum()) for k, c in enumerate(names)})
    for key in keys:
        out[label[key]] = point[key]
        out[f"{label[key]}_ci_low"], out[f"{label[key]}_ci_high"] = cis[key]
    out.update(calibration_slope=float("nan"), calibration_intercept=float("nan"), threshold=float("nan"))
    return {col: out[col] for col in multiclass_metric_columns(names)}


# --- DeLong -----------------------------------------------------------------------------------------


def _delong_components(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance matrix by the fast DeLong algorithm (Sun & Xu, IEEE SPL 21:1389, 2014).

    ``scores`` is (n_models x n_cases). Mid-ranks within the positives, within the negatives and
    overall give the structural components V10 (per positive) and V01 (per negative) of DeLong,
    DeLong & Clarke-Pearson (Biometrics 44:837, 1988) in O(n log n).
    """
    pos = scores[:, y_true == 1]
    neg = scores[:, y_true == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positive and two negative cases")
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:, :m] - tx) / n          # per positive: fraction of negatives scored lower
    v01 = 1 - (tz[:, m:] - ty) / m      # per negative: fraction of positives scored higher
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_auc_variance(y_true, y_prob) -> tuple[float, float]:
    """AUC and its DeLong variance."""
    y_true, y_prob = _as_binary(y_true, y_prob)
    aucs, cov = _delong_components(y_true, y_prob[None, :])
    return float(aucs[0]), float(cov[0, 0])


def delong_test(y_true, prob_a, prob_b) -> tuple[float, float, float]:
    """Paired two-sided DeLong test of equal AUCs for two models scored on the same cases.

    Returns ``(auc_a - auc_b, z, p_value)``; p is 1.0 when both models rank the cases identically.
    """
    y_true, prob_a = _as_binary(y_true, prob_a)
    _, prob_b = _as_binary(y_true, prob_b)
    aucs, cov = _delong_components(y_true, np.vstack([prob_a, prob_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15:
        return diff, 0.0, 1.0
    z = diff / math.sqrt(var)
    return diff, float(z), float(2 * norm.sf(abs(z)))
