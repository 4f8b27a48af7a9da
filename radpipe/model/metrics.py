"""Performance of a binary classifier from its probabilities: discrimination, classification at a
threshold chosen on training data, calibration, stratified bootstrap CIs and the paired DeLong test.

All functions take ``y_true`` as 0/1 (1 = positive class) and ``y_prob`` as positive-class probabilities.
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
    if n_boot <= 0:
        return {name: (float("nan"), float("nan")) for name in CI_METRICS}
    samples = {name: np.empty(n_boot) for name in CI_METRICS}
    for b, idx in enumerate(stratified_bootstrap_indices(y_true, n_boot, seed)):
        per_repeat = [_fast_metrics(y_true[idx], p[idx], q[idx]) for p, q in zip(probs, preds, strict=True)]
        for name in CI_METRICS:
            samples[name][b] = np.mean([m[name] for m in per_repeat])
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
