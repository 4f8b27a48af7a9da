"""Time-to-event outcomes: survival pipelines, nested CV, concordance, time-dependent AUC, risk groups.

A survival outcome is a follow-up time and an event indicator per case (``model.outcome: {type:
survival, time: os_days, event: os_event}``). The pipelines are the classifiers' leakage-safe steps
(impute, harmonise, scale, decorrelate, select; see :mod:`radpipe.model.zoo`) ending in a
scikit-survival estimator: ``coxnet`` (elastic-net Cox), ``rsf`` (random survival forest) or ``gbsa``
(gradient-boosted Cox). ``pipeline.predict(X)`` is a risk score (higher = worse) and
``pipeline.predict_survival_function(X)`` the survival curves; :func:`survival_at` reads them at horizons.

scikit-survival is GPL-3 and radpipe BSD-3, so survival lives behind the ``radpipe[survival]`` extra:
this module imports scikit-survival and statsmodels only inside the functions that need them, and
:func:`require_survival` turns their absence into a ConfigError naming the install command.

This module also defines the survival columns of ``metrics.csv`` and ``predictions.csv`` (the
model-folder contract read by the explain stage): :data:`SURVIVAL_METRIC_COLUMNS`,
:func:`survival_metric_columns`, :func:`survival_prediction_columns` and :func:`horizon_label`.
"""

from __future__ import annotations

import json
import time as _time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from radpipe.errors import ConfigError

SURVIVAL_INSTALL = 'pip install "radpipe[survival]"'
#: metrics.csv columns of a survival model; the td_auc_<h> columns follow td_auc_mean (see survival_metric_columns)
SURVIVAL_METRIC_COLUMNS = [
    "cohort", "model", "n", "n_events", "c_harrell", "c_harrell_ci_low", "c_harrell_ci_high",
    "c_uno", "c_uno_ci_low", "c_uno_ci_high", "td_auc_mean", "ibs", "ibs_null", "logrank_p",
    "hazard_ratio", "hazard_ratio_ci_low", "hazard_ratio_ci_high", "c_fold_mean", "c_fold_sd",
]
CALIBRATION_COLUMNS = ["model", "cohort", "horizon", "risk_tertile", "n", "n_events", "predicted_survival",
                       "observed_survival", "observed_ci_low", "observed_ci_high"]
RISK_CUTOFF_RULE = (
    "median of the out-of-fold risk of the training cases (inner cross-validation of the tuned pipeline); "
    "each outer fold uses its own training cases' cut-off, the final model the one from all training cases; "
    "risk above the cut-off is 'high'"
)
INTENDED_USE_SURVIVAL = (
    "Research use: ranking the risk of the event and estimating survival probabilities at the stated horizons, "
    "from radiomics features computed with the same extraction settings, for cases like those in the training "
    "cohort. Not a medical device; not validated for clinical decisions."
)
LIMITATIONS_SURVIVAL = (
    "Performance is estimated by nested cross-validation on one cohort and may not transfer to other scanners, "
    "protocols, segmentations or populations without external validation. Few events give wide CIs; survival "
    "probabilities beyond the last follow-up are carried forward, not estimated."
)


# ---------------------------------------------------------------- the extra


def require_survival() -> None:
    """ConfigError (exit 2) naming the install command when scikit-survival or statsmodels is missing."""
    missing = []
    for module, package in (("sksurv", "scikit-survival"), ("statsmodels", "statsmodels")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(f"a survival outcome needs {' and '.join(missing)}, which radpipe installs only with its "
                          f"survival extra: {SURVIVAL_INSTALL}", key="model.outcome")


# ---------------------------------------------------------------- column names (the folder contract)


def horizon_label(h: float) -> str:
    """A horizon as written in column names: ``365`` for 365.0, ``182.5`` otherwise.

    Examples
    --------
    >>> horizon_label(365.0), horizon_label(182.5)
    ('365', '182.5')
    """
    h = float(h)
    return str(int(h)) if h.is_integer() else f"{h:g}"


def survival_metric_columns(horizons: Sequence[float]) -> list[str]:
    """metrics.csv columns of a survival model with these horizons (``td_auc_<h>`` after ``td_auc_mean``).

    Examples
    --------
    >>> survival_metric_columns([365, 730])[10:13]
    ['td_auc_mean', 'td_auc_365', 'td_auc_730']
    """
    at = SURVIVAL_METRIC_COLUMNS.index("td_auc_mean") + 1
    return [*SURVIVAL_METRIC_COLUMNS[:at], *(f"td_auc_{horizon_label(h)}" for h in horizons),
            *SURVIVAL_METRIC_COLUMNS[at:]]


def survival_prediction_columns(horizons: Sequence[float]) -> list[str]:
    """predictions.csv columns of a survival model: risk, survival at each horizon, the frozen cut-off, group.

    Examples
    --------
    >>> survival_prediction_columns([365])
    ['case_id', 'model', 'repeat', 'fold', 'time', 'event', 'risk', 'surv_365', 'risk_cutoff', 'risk_group', 'cohort']
    """
    return ["case_id", "model", "repeat", "fold", "time", "event", "risk",
            *(f"surv_{horizon_label(h)}" for h in horizons), "risk_cutoff", "risk_group", "cohort"]


# ---------------------------------------------------------------- outcome arrays


def survival_array(event, time) -> np.ndarray:
    """scikit-survival's structured outcome array (fields ``event``, ``time``)."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))


def _event_time(y) -> tuple[np.ndarray, np.ndarray]:
    names = y.dtype.names
    return np.asarray(y[names[0]]).astype(bool), np.asarray(y[names[1]], dtype=float)


def default_horizons(event, time) -> list[float]:
    """The 25th, 50th and 75th percentiles of the event times, kept below the last follow-up time
    (where the censoring weights of Uno's C and the time-dependent AUC are still defined); rounded to whole
    time units (half up) when every time is a whole number, as follow-up in days is.

    Examples
    --------
    >>> default_horizons([1, 1, 1, 1, 0], [10, 20, 30, 40, 50])
    [18.0, 25.0, 33.0]
    """
    event, time = np.asarray(event).astype(bool), np.asarray(time, dtype=float)
    quartiles = np.percentile(time[event], [25, 50, 75])
    if np.all(np.mod(time, 1) == 0):
        quartiles = np.floor(quartiles + 0.5)
    inside = [float(h) for h in quartiles if time.min() <= h < time.max()]
    return sorted(dict.fromkeys(round(h, 6) for h in inside))


def evaluation_grid(time, n: int = 20) -> np.ndarray:
    """Times at which survival curves are compared (integrated Brier score): the 10th to 80th percentile of
    the follow-up times, inside the range the censoring weights allow."""
    time = np.asarray(time, dtype=float)
    grid = np.unique(np.percentile(time, np.linspace(10, 80, n)))
    return grid[(grid >= time.min()) & (grid < time.max())]


# ---------------------------------------------------------------- survival-aware selection


#: scores by (outcome, column) digest: the selector re-ranks the very columns the correlation filter just ranked
#: in the same fold, and the concordance calls are most of a survival pipeline's fitting time (measured: half)
_SCORES: dict[bytes, float] = {}
_SCORES_MAX = 100_000


def concordance_scores(X: np.ndarray, event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """|Harrell's C - 0.5| of each feature used alone as a risk score: its univariate prognostic strength,
    whichever its direction (the C-index a univariate Cox model on it reaches). Constant columns score 0."""
    import hashlib

    from sksurv.metrics import concordance_index_censored

    event, time = np.asarray(event, dtype=bool), np.asarray(time, dtype=float)
    outcome = hashlib.blake2b(event.tobytes() + time.tobytes(), digest_size=16).digest()
    if len(_SCORES) > _SCORES_MAX:
        _SCORES.clear()
    scores = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        column = np.ascontiguousarray(X[:, j], dtype=float)
        if np.ptp(column) == 0 or not np.isfinite(column).all():
            continue
        key = outcome + hashlib.blake2b(column.tobytes(), digest_size=16).digest()
        if key not in _SCORES:
            _SCORES[key] = abs(concordance_index_censored(event, time, column)[0] - 0.5)
        scores[j] = _SCORES[key]
    return scores


def _survival_xy(estimator, X, y, reset: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if y is None:
        raise ValueError(f"{type(estimator).__name__} ranks features by their relation to survival: y (a "
                         "structured array of event and time) is required")
    X = validate_data(estimator, X, dtype=np.float64, reset=reset)
    event, time = _event_time(y)
    return X, event, time


class SurvivalSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features most related to survival: by univariate concordance or a CoxNet path.

    Parameters
    ----------
    method : {"univariate", "lasso", "none"}, default="univariate"
        ``univariate`` ranks by |Harrell's C - 0.5| of each feature alone (:func:`concordance_scores`);
        ``lasso`` fits an L1 Cox path (scikit-survival's ``CoxnetSurvivalAnalysis``) and ranks features by how
        early they enter it (if none enters, the best univariate feature is kept); ``none`` keeps all.
    k : int or None, default=20
        Most features to keep; None keeps all the method selects.

    Attributes
    ----------
    scores_ : ndarray of shape (n_features_in_,)
    support_ : ndarray of bool of shape (n_features_in_,)

    Examples
    --------
    >>> import numpy as np
    >>> from radpipe.model.survival import SurvivalSelector, survival_array
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 3))
    >>> time = np.exp(-X[:, 1] + rng.normal(0, 0.3, 80))
    >>> SurvivalSelector(k=1).fit(X, survival_array(np.ones(80), time)).get_support(indices=True).tolist()
    [1]
    """

    def __init__(self, method: str = "univariate", k: int | None = 20):
        self.method = method
        self.k = k

    def fit(self, X, y=None):
        if self.method not in ("univariate", "lasso", "none"):
            raise ValueError(f"method must be 'univariate', 'lasso' or 'none', not {self.method!r}")
        X, event, time = _survival_xy(self, X, y)
        n_features = X.shape[1]
        if self.method == "none":
            scores, candidates = np.ones(n_features), np.ones(n_features, dtype=bool)
        elif self.method == "univariate":
            scores, candidates = concordance_scores(X, event, time), np.ones(n_features, dtype=bool)
        else:
            scores = self._path_scores(X, event, time)
            candidates = scores > 0
            if not candidates.any():
                candidates[int(np.argmax(concordance_scores(X, event, time)))] = True
        keep = np.flatnonzero(candidates)
        if self.k is not None and len(keep) > self.k:
            keep = keep[np.argsort(-scores[keep], kind="stable")][: self.k]
        self.support_ = np.zeros(n_features, dtype=bool)
        self.support_[keep] = True
        self.scores_ = scores
        return self

    @staticmethod
    def _path_scores(X, event, time) -> np.ndarray:
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                path = CoxnetSurvivalAnalysis(l1_ratio=1.0, n_alphas=50, alpha_min_ratio=0.01).fit(
                    X, survival_array(event, time))
            except (ArithmeticError, ValueError):
                return np.zeros(X.shape[1])
        entered = np.abs(path.coef_) > 0  # features x alphas, from the strongest penalty down
        first = np.where(entered.any(axis=1), entered.argmax(axis=1), entered.shape[1])
        return (entered.shape[1] - first).astype(float)

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_


class SurvivalCorrelationFilter(SelectorMixin, BaseEstimator):
    """Of every pair of features with ``|Pearson r| > threshold`` keep the one more related to survival.

    The greedy rule of :class:`radpipe.model.CorrelationFilter`, with features ranked by
    :func:`concordance_scores` instead of a classifier's F statistic.

    Examples
    --------
    >>> import numpy as np
    >>> from radpipe.model.survival import SurvivalCorrelationFilter, survival_array
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=60)
    >>> X = np.column_stack([signal + rng.normal(0, 0.05, 60), signal, rng.normal(size=60)])
    >>> y = survival_array(np.ones(60), np.exp(-signal))
    >>> SurvivalCorrelationFilter(0.9).fit(X, y).get_support().sum()
    np.int64(2)
    """

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X, y=None):
        from radpipe.model.transformers import CorrelationFilter

        X, event, time = _survival_xy(self, X, y)
        self.relevance_ = concordance_scores(X, event, time)
        order = np.argsort(-self.relevance_, kind="stable")
        # without y, CorrelationFilter keeps earlier columns: hand it the columns best-first
        inner = CorrelationFilter(self.threshold).fit(X[:, order])
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order] = inner.support_
        self.dropped_for_ = {int(order[a]): int(order[b]) for a, b in inner.dropped_for_.items()}
        return self

    def _get_support_mask(self):
        check_is_fitted(self)
        return self.support_


# ---------------------------------------------------------------- estimators and search spaces


def survival_estimator(name: str, settings) -> Any:
    """The scikit-survival estimator of a zoo name (``coxnet``, ``rsf``, ``gbsa``), seeded."""
    require_survival()
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    if name == "coxnet":
        return CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=[0.1], fit_baseline_model=True, max_iter=100000)
    if name == "rsf":
        return RandomSurvivalForest(n_estimators=100, min_samples_split=10, min_samples_leaf=5, max_features="sqrt",
                                    random_state=settings.seed, n_jobs=1)
    if name == "gbsa":
        return GradientBoostingSurvivalAnalysis(loss="coxph", n_estimators=100, learning_rate=0.1, max_depth=2,
                                                subsample=0.8, random_state=settings.seed)
    raise ValueError(f"unknown survival model {name!r}")


# one penalty per candidate: a CoxNet fitted at a single alpha predicts at that alpha
SURVIVAL_GRIDS: dict[str, dict[str, list]] = {
    "coxnet": {"alphas": [[0.02], [0.05], [0.1], [0.2], [0.4]]},
    "rsf": {"min_samples_leaf": [3, 10]},
    "gbsa": {"max_depth": [1, 2]},
}


def survival_distributions() -> dict[str, dict[str, Any]]:
    from scipy.stats import loguniform, randint, uniform

    return {
        "coxnet": {"alphas": [[float(a)] for a in np.geomspace(0.01, 0.5, 12)], "l1_ratio": uniform(0.1, 0.9)},
        "rsf": {"min_samples_leaf": randint(2, 15), "max_features": uniform(0.1, 0.6)},
        "gbsa": {"max_depth": randint(1, 4), "learning_rate": loguniform(2e-2, 3e-1)},
    }


# ---------------------------------------------------------------- predictions


def _step_values(functions, times) -> np.ndarray:
    times = np.asarray(times, dtype=float)
    out = np.empty((len(functions), len(times)))
    for i, fn in enumerate(functions):
        low, high = fn.domain
        # before the first time survival is the curve's start; after the last follow-up it is carried forward
        out[i] = fn(np.clip(times, low, high))
    return out


def survival_matrix(pipeline, X, times) -> np.ndarray:
    """Survival probability of each case (rows) at each time (columns) from a fitted survival pipeline."""
    if len(times) == 0:
        return np.empty((len(X), 0))
    return _step_values(pipeline.predict_survival_function(X), times)


def survival_at(pipeline, X: pd.DataFrame, horizons: Sequence[float]) -> pd.DataFrame:
    """Survival probabilities at ``horizons`` per case: columns ``surv_<h>``, indexed like ``X``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sksurv.linear_model import CoxPHSurvivalAnalysis
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"f": rng.normal(size=40)})
    >>> time = np.exp(-X["f"] + rng.normal(size=40))
    >>> model = CoxPHSurvivalAnalysis().fit(X, survival_array(np.ones(40), time))
    >>> survival_at(model, X.head(2), [1.0]).columns.tolist()
    ['surv_1']
    """
    values = survival_matrix(pipeline, X, horizons)
    return pd.DataFrame(values, index=X.index, columns=[f"surv_{horizon_label(h)}" for h in horizons])


def risk_groups(risk, cutoff: float) -> np.ndarray:
    """'high' where the risk is above the frozen cut-off, else 'low'."""
    return np.where(np.asarray(risk, dtype=float) > cutoff, "high", "low")


def kaplan_meier_at(event, time, times) -> np.ndarray:
    """The Kaplan–Meier survival of (event, time) at ``times`` (the null model's prediction for every case)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    x, y = kaplan_meier_estimator(np.asarray(event).astype(bool), np.asarray(time, dtype=float))
    idx = np.searchsorted(x, np.asarray(times, dtype=float), side="right") - 1
    return np.where(idx < 0, 1.0, y[np.clip(idx, 0, None)])


# ---------------------------------------------------------------- metrics


def harrell_c(event, time, risk) -> float:
    """Harrell's concordance index of a risk score (scikit-survival's ``concordance_index_censored``)."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event).astype(bool)
    if not event.any():
        return float("nan")
    return float(concordance_index_censored(event, np.asarray(time, dtype=float), np.asarray(risk, dtype=float))[0])


def uno_c(y_train, event, time, risk) -> float:
    """Uno's IPCW concordance index up to the last training follow-up (``concordance_index_ipcw``)."""
    from sksurv.metrics import concordance_index_ipcw

    event = np.asarray(event).astype(bool)
    tau = float(_event_time(y_train)[1].max())
    if not (event & (np.asarray(time) < tau)).any():
        return float("nan")
    try:
        return float(concordance_index_ipcw(y_train, survival_array(event, time), np.asarray(risk, dtype=float),
                                            tau=tau)[0])
    except ValueError:
        return float("nan")


def time_dependent_auc(y_train, event, time, risk, horizons) -> np.ndarray:
    """Cumulative/dynamic AUC at each horizon (scikit-survival's ``cumulative_dynamic_auc``); NaN at a horizon
    outside the follow-up range of the scored cases."""
    from sksurv.metrics import cumulative_dynamic_auc

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    out = np.full(len(horizons), np.nan)
    t_train = _event_time(y_train)[1]
    for k, h in enumerate(horizons):
        if not (time.min() <= h < min(time.max(), t_train.max())) or not (event & (time <= h)).any():
            continue
        try:
            out[k] = cumulative_dynamic_auc(y_train, survival_array(event, time), np.asarray(risk, dtype=float),
                                            [h])[0][0]
        except ValueError:
            pass
    return out


def integrated_brier(y_train, event, time, surv: np.ndarray, grid) -> float:
    """Integrated Brier score of survival curves ``surv`` (cases x grid) over ``grid`` (IPCW weighted)."""
    from sksurv.metrics import integrated_brier_score

    time = np.asarray(time, dtype=float)
    grid = np.asarray(grid, dtype=float)
    inside = (grid >= time.min()) & (grid < min(time.max(), _event_time(y_train)[1].max()))
    if inside.sum() < 2:
        return float("nan")
    try:
        return float(integrated_brier_score(y_train, survival_array(event, time), surv[:, inside], grid[inside]))
    except ValueError:
        return float("nan")


def logrank_p(event, time, high) -> float:
    """Log-rank p of the difference between two groups (scikit-survival's ``compare_survival``)."""
    from sksurv.compare import compare_survival

    high = np.asarray(high).astype(bool)
    if high.all() or not high.any() or not np.asarray(event).astype(bool).any():
        return float("nan")
    return float(compare_survival(survival_array(event, time), high.astype(int))[1])


def hazard_ratio(event, time, high) -> tuple[float, float, float]:
    """Hazard ratio of the high-risk group against the low one, with its 95% CI (statsmodels' ``PHReg``)."""
    from statsmodels.duration.hazard_regression import PHReg

    high = np.asarray(high).astype(float)
    event = np.asarray(event).astype(int)
    if high.min() == high.max() or not event.any():
        return (float("nan"),) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = PHReg(np.asarray(time, dtype=float), high[:, None], status=event).fit()
    with np.errstate(over="ignore"):  # groups that separate perfectly have an unbounded upper limit
        low, upper = np.exp(fit.conf_int()[0])
        return float(np.exp(fit.params[0])), float(low), float(upper)


def concordance_with_ci(y_train, event, time, risk, *, n_boot: int = 1000, seed: int = 42) -> dict[str, float]:
    """Harrell's and Uno's C with percentile-bootstrap 95% CIs (cases resampled within events and censored)."""
    event, time, risk = np.asarray(event).astype(bool), np.asarray(time, dtype=float), np.asarray(risk, dtype=float)
    out = {"c_harrell": harrell_c(event, time, risk), "c_uno": uno_c(y_train, event, time, risk)}
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(event), np.flatnonzero(~event)]
    draws: dict[str, list[float]] = {"c_harrell": [], "c_uno": []}
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata if len(s)])
        draws["c_harrell"].append(harrell_c(event[idx], time[idx], risk[idx]))
        draws["c_uno"].append(uno_c(y_train, event[idx], time[idx], risk[idx]))
    for name, values in draws.items():
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [2.5, 97.5]) if len(values) >= 20 else (np.nan, np.nan)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(low), float(high)
    return out


def survival_metrics(y_train, event, time, risk, surv_grid, null_grid, grid, horizons, high, *,
                     n_boot: int = 1000, seed: int = 42) -> dict[str, float]:
    """One metrics.csv row (without cohort/model) for risks, survival curves and risk groups of scored cases."""
    event = np.asarray(event).astype(bool)
    row: dict[str, float] = {"n": int(len(event)), "n_events": int(event.sum())}
    row.update(concordance_with_ci(y_train, event, time, risk, n_boot=n_boot, seed=seed))
    aucs = time_dependent_auc(y_train, event, time, risk, horizons)
    row["td_auc_mean"] = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
    for h, auc in zip(horizons, aucs, strict=True):
        row[f"td_auc_{horizon_label(h)}"] = float(auc)
    row["ibs"] = integrated_brier(y_train, event, time, surv_grid, grid)
    row["ibs_null"] = integrated_brier(y_train, event, time, null_grid, grid)
    row["logrank_p"] = logrank_p(event, time, high)
    row["hazard_ratio"], row["hazard_ratio_ci_low"], row["hazard_ratio_ci_high"] = hazard_ratio(event, time, high)
    return row


def calibration_table(event, time, risk, surv_at_h: pd.DataFrame, horizons) -> pd.DataFrame:
    """Predicted survival (mean) against Kaplan–Meier observed survival (log-log 95% CI) per risk tertile and
    horizon."""
    from sksurv.nonparametric import kaplan_meier_estimator

    event, time = np.asarray(event).astype(bool), np.asarray(time, dtype=float)
    tertile = pd.qcut(pd.Series(risk).rank(method="first"), 3, labels=["low", "middle", "high"]).to_numpy()
    rows = []
    for h in horizons:
        column = f"surv_{horizon_label(h)}"
        for name in ("low", "middle", "high"):
            inside = tertile == name
            observed = low = high = float("nan")
            if event[inside].any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    x, y, ci = kaplan_meier_estimator(event[inside], time[inside], conf_type="log-log")
                k = np.searchsorted(x, h, side="right") - 1
                if h <= time[inside].max():
                    observed, low, high = (1.0, 1.0, 1.0) if k < 0 else (y[k], ci[0][k], ci[1][k])
            rows.append({"horizon": float(h), "risk_tertile": name, "n": int(inside.sum()),
                         "n_events": int(event[inside].sum()),
                         "predicted_survival": float(np.mean(surv_at_h[column].to_numpy()[inside])),
                         "observed_survival": float(observed), "observed_ci_low": float(low),
                         "observed_ci_high": float(high)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- nested cross-validation


@dataclass
class SurvivalFoldFit:
    """One survival model tuned and fitted in one outer fold, with its test-fold predictions."""

    repeat: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    estimator: Any
    best_params: dict
    test_risk: np.ndarray
    test_surv: np.ndarray  # test cases x (horizons + evaluation grid)
    null_surv: np.ndarray  # Kaplan–Meier of the training fold at the same times
    cutoff: float


@dataclass
class SurvivalCVResult:
    folds: dict[str, list[SurvivalFoldFit]]
    splits: list[tuple[int, int, np.ndarray, np.ndarray]]
    seconds: dict[str, float]


def _inner_split_list(X, event, groups, settings) -> list:
    from radpipe.model.validate import batch_values, inner_cv, stratification_labels

    strata = stratification_labels(event.astype(int), batch_values(X, settings), settings.inner_folds)
    return list(inner_cv(settings, groups is not None).split(np.zeros(len(event)), strata, groups))


def tune_survival(name: str, X: pd.DataFrame, y: np.ndarray, groups, settings) -> tuple[Any, dict]:
    """Inner search (scored by Harrell's C, the estimators' own ``score``): the refitted best pipeline and its
    parameters."""
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    from radpipe.model.zoo import build_pipeline, search_space

    event, _ = _event_time(y)
    cv = _inner_split_list(X, event, groups, settings)
    common = dict(cv=cv, n_jobs=settings.n_jobs, refit=True, error_score=np.nan)
    if settings.search == "grid":
        search = GridSearchCV(build_pipeline(name, settings), search_space(name, settings), **common)
    else:
        search = RandomizedSearchCV(build_pipeline(name, settings), search_space(name, settings),
                                    n_iter=settings.n_iter, random_state=settings.seed, **common)
    search.fit(X, y)
    params = {key.removeprefix("clf__"): _plain(value) for key, value in search.best_params_.items()}
    return search.best_estimator_, params


def risk_cutoff(pipeline, X: pd.DataFrame, y: np.ndarray, groups, settings) -> float:
    """The frozen risk cut-off: median out-of-fold risk of the training cases (inner splits, tuned pipeline)."""
    from sklearn.model_selection import cross_val_predict

    event, _ = _event_time(y)
    oof = cross_val_predict(clone(pipeline), X, y, cv=_inner_split_list(X, event, groups, settings),
                            method="predict")
    return float(np.median(oof))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@contextmanager
def _quiet():
    """The classifiers' quiet context, and CoxNet's note that a strong penalty zeroed every coefficient (a
    candidate the inner search then scores at C = 0.5, not a user's concern)."""
    from radpipe.model.validate import _quiet as quiet

    with quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*all coefficients are zero.*")
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def survival_nested_cv(X: pd.DataFrame, y: np.ndarray, settings, groups: np.ndarray | None, times: np.ndarray, *,
                       progress: Callable[[str], None] | None = None,
                       advance: Callable[[str], None] | None = None) -> SurvivalCVResult:
    """Nested CV of every survival model: outer folds stratified on the event indicator (grouped when groups
    are given), inner search by Harrell's C, and each fold's risk cut-off from its training cases only."""
    from radpipe.model.validate import batch_values, outer_splits

    say, done = progress or (lambda m: None), advance or (lambda n: None)
    event, time = _event_time(y)
    splits = outer_splits(event.astype(int), settings, groups, batch_values(X, settings))
    folds: dict[str, list[SurvivalFoldFit]] = {name: [] for name in settings.models}
    seconds = dict.fromkeys(folds, 0.0)
    with _quiet():
        for repeat, fold, train, test in splits:
            X_tr, X_te, y_tr = X.iloc[train], X.iloc[test], y[train]
            g_tr = None if groups is None else groups[train]
            null = np.tile(kaplan_meier_at(event[train], time[train], times), (len(test), 1))
            for name in settings.models:
                say(f"repeat {repeat} fold {fold}: tuning {name}")
                start = _time.perf_counter()
                best, params = tune_survival(name, X_tr, y_tr, g_tr, settings)
                cutoff = risk_cutoff(best, X_tr, y_tr, g_tr, settings)
                folds[name].append(SurvivalFoldFit(repeat, fold, train, test, best, params,
                                                   np.asarray(best.predict(X_te), dtype=float),
                                                   survival_matrix(best, X_te, times), null, cutoff))
                seconds[name] += _time.perf_counter() - start
                done(f"{name}, repeat {repeat} fold {fold}")
    return SurvivalCVResult(folds, splits, seconds)


# ---------------------------------------------------------------- training: files of the model folder


def _oof(fits: list[SurvivalFoldFit], n: int, repeats: int, width: int):
    risk = np.full((repeats, n), np.nan)
    surv = np.full((repeats, n, width), np.nan)
    null = np.full((repeats, n, width), np.nan)
    high = np.zeros((repeats, n), dtype=bool)
    for f in fits:
        risk[f.repeat, f.test_idx] = f.test_risk
        surv[f.repeat, f.test_idx] = f.test_surv
        null[f.repeat, f.test_idx] = f.null_surv
        high[f.repeat, f.test_idx] = f.test_risk > f.cutoff
    return risk, surv, null, high


def _fold_c(fits, event, time) -> tuple[float, float]:
    values = [harrell_c(event[f.test_idx], time[f.test_idx], f.test_risk) for f in fits]
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


@dataclass
class _Summary:
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    calibration: pd.DataFrame
    best: str
    per_repeat_c: dict[str, list[float]] = field(default_factory=dict)


def _summarise(cv: SurvivalCVResult, X, y, horizons, grid, settings) -> _Summary:
    event, time = _event_time(y)
    n, nh = len(event), len(horizons)
    rows, frames, calib = [], [], []
    for name, fits in cv.folds.items():
        risk, surv, null, high = _oof(fits, n, settings.outer_repeats, nh + len(grid))
        # a case's CV numbers: its out-of-fold risk and curves averaged over repeats; it counts as high risk when
        # its own fold models put it above their training cut-off in at least half of the repeats
        mean_risk, mean_surv, mean_null = risk.mean(axis=0), surv.mean(axis=0), null.mean(axis=0)
        group_high = high.mean(axis=0) >= 0.5
        row = survival_metrics(y, event, time, mean_risk, mean_surv[:, nh:], mean_null[:, nh:], grid, horizons,
                               group_high, n_boot=settings.bootstrap, seed=settings.seed)
        row["c_fold_mean"], row["c_fold_sd"] = _fold_c(fits, event, time)
        rows.append({"cohort": "cv", "model": name, **row})
        for f in fits:
            frames.append(_prediction_frame(X.index[f.test_idx], name, f.repeat, f.fold, time[f.test_idx],
                                            event[f.test_idx], f.test_risk, f.test_surv[:, :nh], horizons, f.cutoff,
                                            "cv"))
        at_h = pd.DataFrame(mean_surv[:, :nh], columns=[f"surv_{horizon_label(h)}" for h in horizons])
        calib.append(calibration_table(event, time, mean_risk, at_h, horizons).assign(model=name, cohort="cv"))
    metrics = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(settings.models)}
    best = max(metrics["model"], key=lambda m: (np.nan_to_num(metrics.set_index("model").loc[m, "c_harrell"],
                                                              nan=-1), -order[m]))
    return _Summary(metrics, pd.concat(frames, ignore_index=True), pd.concat(calib, ignore_index=True), best)


def _prediction_frame(case_ids, model, repeat, fold, time, event, risk, surv, horizons, cutoff, cohort):
    return pd.DataFrame({
        "case_id": case_ids, "model": model, "repeat": repeat, "fold": fold, "time": time,
        "event": np.asarray(event).astype(int), "risk": risk,
        **{f"surv_{horizon_label(h)}": surv[:, k] for k, h in enumerate(horizons)},
        "risk_cutoff": cutoff, "risk_group": risk_groups(risk, cutoff), "cohort": cohort,
    })


def _external(name, Xe, time_e, event_e, final, cutoffs, y_train, horizons, settings):
    grid = evaluation_grid(time_e)
    event_tr, time_tr = _event_time(y_train)
    null = np.tile(kaplan_meier_at(event_tr, time_tr, grid), (len(Xe), 1))
    rows, frames, calib = [], [], []
    for model in settings.models:
        pipeline = final[model][0]
        risk = np.asarray(pipeline.predict(Xe), dtype=float)
        surv_h = survival_matrix(pipeline, Xe, horizons)
        high = risk > cutoffs[model]
        row = survival_metrics(y_train, event_e, time_e, risk, survival_matrix(pipeline, Xe, grid), null, grid,
                               horizons, high, n_boot=settings.bootstrap, seed=settings.seed)
        rows.append({"cohort": name, "model": model, **row})
        frames.append(_prediction_frame(Xe.index, model, pd.NA, pd.NA, time_e, event_e, risk, surv_h, horizons,
                                        cutoffs[model], name))
        at_h = pd.DataFrame(surv_h, columns=[f"surv_{horizon_label(h)}" for h in horizons])
        calib.append(calibration_table(event_e, time_e, risk, at_h, horizons).assign(model=model, cohort=name))
    return rows, frames, calib


def _card(name, pipeline, params, cv_row, inputs, horizons, cutoff, **extra) -> dict:
    from radpipe.model.train import _jsonable, _selected_features, _steps_text

    settings, outcome = inputs.settings, inputs.settings.outcome
    n_events = int(inputs.event.sum())
    return {
        "model_name": name,
        "outcome_type": "survival",
        "outcome": {"time": outcome.time, "event": outcome.event, "time_unit": outcome.time_unit},
        "classes": [],
        "positive_class": None,
        "threshold": None,
        "horizons": [float(h) for h in horizons],
        "risk_cutoff": float(cutoff),
        "risk_cutoff_rule": RISK_CUTOFF_RULE,
        "n_cases": int(len(inputs.X)),
        "n_events": n_events,
        "censoring_fraction": float(1 - n_events / len(inputs.X)),
        "feature_names": [str(c) for c in inputs.X.columns],
        "selected_features": _selected_features(pipeline),
        "metrics": _jsonable(cv_row),
        "best_params": _jsonable(params),
        "pipeline_steps": _steps_text(pipeline),
        "cv": settings.cv_summary(),
        "intended_use": INTENDED_USE_SURVIVAL,
        "limitations": LIMITATIONS_SURVIVAL,
        "prediction_encoding": "pipeline.predict(X) is the risk score (higher = worse); "
                               "pipeline.predict_survival_function(X) the survival curves "
                               "(radpipe.model.survival.survival_at reads them at the horizons)",
        **extra,
    }


def fit_survival_models(inputs, out_dir: str | Path, *, external: dict | None = None,
                        progress: Callable[[str], None] | None = None,
                        advance: Callable[[str], None] | None = None, discretisation: dict | None = None):
    """Nested CV, final refits, external cohorts and the model folder for checked survival inputs.

    ``inputs`` comes from :func:`radpipe.model.inputs.survival_training_inputs`; ``external`` maps a cohort name
    to ``(features, outcome table)`` holding the same time and event columns. Writes the files of a classifier's
    model folder with the survival columns (:func:`survival_metric_columns`, :func:`survival_prediction_columns`)
    and ``calibration_survival.csv``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile
    >>> from radpipe.model.inputs import survival_training_inputs
    >>> from radpipe.model.settings import ModelSettings
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"f1": rng.normal(size=60), "f2": rng.normal(size=60)},
    ...                  index=pd.Index([f"c{i:02d}" for i in range(60)], name="case_id"))
    >>> outcome = pd.DataFrame({"t": np.round(100 * np.exp(-X["f1"]) + 1), "e": [1, 1, 0] * 20}, index=X.index)
    >>> settings = ModelSettings(outcome={"type": "survival", "time": "t", "event": "e"}, models=["coxnet"],
    ...                          bootstrap=0, outer_folds=3)
    >>> result = fit_survival_models(survival_training_inputs(X, outcome, settings), tempfile.mkdtemp())
    >>> result.metrics.loc[0, "c_harrell"] > 0.7
    np.True_
    """
    from radpipe._io import atomic_write_text
    from radpipe.model.folder import ModelFolder
    from radpipe.model.inputs import survival_external_inputs
    from radpipe.model.persist import save_model, write_model_card_md
    from radpipe.model.train import TrainResult, _inputs_card, _jsonable

    require_survival()
    say = progress or (lambda message: None)
    folder = ModelFolder(Path(out_dir))
    out_dir = folder.path
    out_dir.mkdir(parents=True, exist_ok=True)
    settings, X = inputs.settings, inputs.X
    y = survival_array(inputs.event, inputs.time)
    event, time = _event_time(y)
    horizons = inputs.horizons
    grid = evaluation_grid(time)
    g = inputs.group_array
    if inputs.folds.reduced:
        say(inputs.folds.describe())

    cv = survival_nested_cv(X, y, settings, g, np.concatenate([horizons, grid]), progress=say, advance=advance)
    summary = _summarise(cv, X, y, horizons, grid, settings)
    metrics, predictions, calibration, best = summary.metrics, summary.predictions, summary.calibration, summary.best
    say(f"best model by out-of-fold Harrell's C: {best}")

    final, cutoffs = {}, {}
    with _quiet():
        for name in settings.models:
            say(f"final fit: tuning {name} on all {len(X)} cases")
            final[name] = tune_survival(name, X, y, g, settings)
            cutoffs[name] = risk_cutoff(final[name][0], X, y, g, settings)
            (advance or (lambda n: None))(f"{name}, final fit")

    ext_rows: list[dict] = []
    for name, (Xe, table) in (external or {}).items():
        Xe, time_e, event_e = survival_external_inputs(name, Xe, table, inputs)
        say(f"external cohort {name}: {len(Xe)} cases, {int(event_e.sum())} events")
        rows, frames, calib = _external(name, Xe, time_e.to_numpy(float), event_e.to_numpy(bool), final, cutoffs,
                                        y, horizons, settings)
        ext_rows += rows
        predictions = pd.concat([predictions, *frames], ignore_index=True)
        calibration = pd.concat([calibration, *calib], ignore_index=True)
    if ext_rows:
        metrics = pd.concat([metrics, pd.DataFrame(ext_rows)], ignore_index=True)
    metrics = metrics.reindex(columns=survival_metric_columns(horizons))
    predictions = predictions.reindex(columns=survival_prediction_columns(horizons))

    metrics.to_csv(folder.metrics_path, index=False)
    predictions.to_csv(folder.predictions_path, index=False)
    calibration.reindex(columns=CALIBRATION_COLUMNS).to_csv(folder.calibration_survival_path, index=False)
    _write_splits(folder, X, cv, inputs)
    atomic_write_text(folder.timings_path, json.dumps({n: round(s, 2) for n, s in cv.seconds.items()}, indent=2))
    X.reset_index().to_csv(folder.train_features_path, index=False)
    pd.DataFrame({"case_id": X.index, "time": time, "event": event.astype(int)}).to_csv(
        folder.train_labels_path, index=False)

    extra = _inputs_card(inputs)
    if discretisation:
        extra["discretisation"] = discretisation
    model_dirs: dict[str, Path] = {}
    for name in settings.models:
        pipeline, params = final[name]
        cv_row = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == name)].iloc[0].to_dict()
        external_rows = {r["cohort"]: _jsonable(r) for r in ext_rows if r["model"] == name}
        card = _card(name, pipeline, params, cv_row, inputs, horizons, cutoffs[name], is_best=name == best,
                     external_metrics=external_rows, **extra)
        model_dirs[name] = folder.model_dir(name)
        for where in (model_dirs[name], out_dir) if name == best else (model_dirs[name],):
            save_model(pipeline, card, where)
            write_model_card_md(ModelFolder(where).card(), where)
    for f in cv.folds[best]:
        fold_card = _card(best, f.estimator, f.best_params, {}, inputs, horizons, f.cutoff, repeat=f.repeat,
                          fold=f.fold, train_case_ids=[str(c) for c in X.index[f.train_idx]],
                          test_case_ids=[str(c) for c in X.index[f.test_idx]])
        fold_card["risk_cutoff_rule"] = "median inner-CV out-of-fold risk of this fold's training cases"
        save_model(f.estimator, fold_card, folder.fold_dir(f.repeat, f.fold))
    say(f"wrote {out_dir}")
    return TrainResult(metrics=metrics, predictions=predictions, best_model=best, out_dir=out_dir,
                       model_dirs=model_dirs)


def _write_splits(folder, X, cv: SurvivalCVResult, inputs) -> None:
    from radpipe._io import atomic_write_text

    settings, grouped = inputs.settings, inputs.groups is not None
    ids = X.index.astype(str).to_numpy()
    splits: dict[str, Any] = {
        "seed": settings.seed,
        "outer": ("StratifiedGroupKFold on the event indicator (shuffled, random_state = seed + repeat)" if grouped
                  else "RepeatedStratifiedKFold on the event indicator (random_state = seed)"),
        "outer_folds": settings.outer_folds, "outer_repeats": settings.outer_repeats,
        "inner_folds": settings.inner_folds, "inner_seed": settings.seed,
        "folds": [{"repeat": r, "fold": f, "train": ids[train].tolist(), "test": ids[test].tolist()}
                  for r, f, train, test in cv.splits],
    }
    if inputs.folds.reduced:
        splits["folds_reduced"] = inputs.folds.record()
    atomic_write_text(folder.splits_path, json.dumps(splits, indent=1))


# ---------------------------------------------------------------- a saved model


def predict_survival(loaded, X: pd.DataFrame) -> pd.DataFrame:
    """``case_id, risk, surv_<h>…, risk_group`` of a saved survival model (its card's horizons and frozen cut-off).

    ``X`` holds the model's input columns (see :func:`radpipe.model.inputs.features_for_model`).
    """
    require_survival()
    card = loaded.card
    horizons = [float(h) for h in card.get("horizons", [])]
    risk = np.asarray(loaded.pipeline.predict(X), dtype=float)
    surv = survival_at(loaded.pipeline, X, horizons)
    return pd.DataFrame({"case_id": X.index, "risk": risk, **{c: surv[c].to_numpy() for c in surv.columns},
                         "risk_group": risk_groups(risk, float(card["risk_cutoff"]))})
