"""Train and compare models on a feature table: nested CV, metrics with CIs, final refits, model cards.

``train_models`` is the model stage's entry point; it writes everything the explain stage and a
reader of the paper need into one folder (see its docstring for the file list).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.errors import ConfigError
from radpipe.model.metrics import METRIC_COLUMNS, delong_test, metrics_with_ci
from radpipe.model.persist import save_model, write_model_card_md
from radpipe.model.settings import ModelSettings
from radpipe.model.validate import NestedCVResult, choose_threshold, nested_cv, refit_all

METRICS_COLUMNS = ["cohort", "model", *METRIC_COLUMNS, "delong_p_vs_best", "auc_fold_mean", "auc_fold_sd"]
PREDICTION_COLUMNS = ["case_id", "model", "repeat", "fold", "label", "y_true", "y_prob", "cohort", "threshold", "y_pred"]

THRESHOLD_RULE = (
    "chosen on training data only: Youden's J on the out-of-fold probabilities of the nested CV "
    "(each outer fold's own threshold, from its inner folds, is used for the CV sensitivity/specificity)"
)
INTENDED_USE = (
    "Research use: estimating, from radiomics features computed with the same extraction settings, "
    "the probability of the positive class for cases like those in the training cohort. "
    "Not a medical device; not validated for clinical decisions."
)
LIMITATIONS = (
    "Performance is estimated by nested cross-validation on one cohort; it may not transfer to other "
    "scanners, protocols, segmentations or populations without external validation. Probabilities are "
    "calibrated only as far as the calibration slope/intercept show. Small cohorts give wide CIs."
)


@dataclass
class TrainResult:
    """What ``train_models`` produced: the tables it wrote and where."""

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    best_model: str
    out_dir: Path
    model_dirs: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        cv = self.metrics[self.metrics["cohort"] == "cv"].set_index("model")
        aucs = ", ".join(f"{m}={cv.loc[m, 'auc']:.3f}" for m in cv.index)
        return f"TrainResult(best={self.best_model!r}, cv AUC: {aucs}, out_dir={str(self.out_dir)!r})"


def _positive_class(y: pd.Series, settings: ModelSettings) -> tuple[str, str]:
    counts = y.value_counts()
    labels = sorted(counts.index)
    if len(labels) != 2:
        raise ConfigError(
            f"the outcome has {len(labels)} classes {labels[:10]}; radpipe's model stage handles binary "
            "outcomes (merge classes or choose another label column)", key="label",
        )
    if settings.positive_class is not None:
        if settings.positive_class not in labels:
            raise ConfigError(f"positive_class {settings.positive_class!r} is not a label; labels are {labels}",
                              key="model.positive_class")
        positive = settings.positive_class
    else:  # the minority class; on a tie, the later label in sorted order
        positive = min(labels, key=lambda label: (counts[label], labels.index(label) * -1))
    negative = next(label for label in labels if label != positive)
    return negative, positive


def check_training_data(X: pd.DataFrame, y: pd.Series, groups: pd.Series | None = None):
    """Align y (and groups) to X's case ids and check types; returns (X, y as str, groups array or None)."""
    if not isinstance(X, pd.DataFrame):
        raise ConfigError("X must be a pandas DataFrame indexed by case_id")
    if X.index.has_duplicates:
        raise ConfigError(f"duplicate case ids in X: {X.index[X.index.duplicated()].unique()[:5].tolist()}")
    non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if non_numeric:
        raise ConfigError(f"feature columns must be numeric; not numeric: {non_numeric[:10]}")
    missing = X.index.difference(y.index)
    if len(missing):
        raise ConfigError(f"{len(missing)} case(s) of X have no label, e.g. {missing[:5].tolist()}")
    awkward = [c for c in X.columns if any(ch in str(c) for ch in "[]<")]
    if awkward:
        raise ConfigError(f"feature names may not contain '[', ']' or '<' (XGBoost refuses them): {awkward[:5]}")
    y = y.loc[X.index]
    if y.isna().any():
        raise ConfigError(f"{int(y.isna().sum())} case(s) have an empty label, e.g. {y.index[y.isna()][:5].tolist()}")
    y = y.astype(str)
    X = X.replace([np.inf, -np.inf], np.nan).astype(float)
    X.index.name = "case_id"
    g = None
    if groups is not None:
        absent = X.index.difference(groups.index)
        if len(absent):
            raise ConfigError(f"{len(absent)} case(s) have no group, e.g. {absent[:5].tolist()}", key="group_column")
        g = groups.loc[X.index].astype(str).to_numpy()
    return X, y, g


def _fold_auc_stats(fits, y01) -> tuple[float, float]:
    from radpipe.model.metrics import roc_auc

    aucs = [roc_auc(y01[f.test_idx], f.test_prob) for f in fits]
    aucs = [a for a in aucs if np.isfinite(a)]
    return (float(np.mean(aucs)), float(np.std(aucs, ddof=1)) if len(aucs) > 1 else float("nan")) if aucs else (
        float("nan"), float("nan"))


def _oof_matrices(fits, n_cases: int, n_repeats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs = np.full((n_repeats, n_cases), np.nan)
    preds = np.zeros((n_repeats, n_cases), dtype=int)
    thresholds = np.full((n_repeats, n_cases), np.nan)
    for fit in fits:
        probs[fit.repeat, fit.test_idx] = fit.test_prob
        preds[fit.repeat, fit.test_idx] = (fit.test_prob >= fit.threshold).astype(int)
        thresholds[fit.repeat, fit.test_idx] = fit.threshold
    return probs, preds, thresholds


def _summarise_cv(cv: NestedCVResult, X, y, y01, settings) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rows, pred_frames, final_thresholds, mean_probs = [], [], {}, {}
    for name, fits in cv.folds.items():
        if name not in settings.models:
            continue
        probs, preds, thresholds = _oof_matrices(fits, len(y01), settings.outer_repeats)
        mean_probs[name] = probs.mean(axis=0)
        final_thresholds[name] = choose_threshold(y01, mean_probs[name], settings)
        row = metrics_with_ci(y01, probs, final_thresholds[name], y_pred=preds, n_boot=settings.bootstrap,
                              seed=settings.seed)
        fold_mean, fold_sd = _fold_auc_stats(fits, y01)
        # wall times go to timings.json, not here: metrics.csv must be byte-identical between runs
        rows.append({"cohort": "cv", "model": name, **row, "auc_fold_mean": fold_mean, "auc_fold_sd": fold_sd})
        for fit in fits:
            pred_frames.append(pd.DataFrame({
                "case_id": X.index[fit.test_idx], "model": name, "repeat": fit.repeat, "fold": fit.fold,
                "label": y.to_numpy()[fit.test_idx], "y_true": y01[fit.test_idx], "y_prob": fit.test_prob,
                "cohort": "cv", "threshold": fit.threshold,
                "y_pred": (fit.test_prob >= fit.threshold).astype(int),
            }))
    metrics = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(settings.models)}
    best = max(metrics["model"], key=lambda m: (np.nan_to_num(metrics.set_index("model").loc[m, "auc"], nan=-1),
                                                -order[m]))
    metrics["delong_p_vs_best"] = [
        np.nan if m == best else _delong_p(y01, mean_probs[best], mean_probs[m]) for m in metrics["model"]
    ]
    predictions = pd.concat(pred_frames, ignore_index=True)
    return metrics, predictions, {"best": best, "thresholds": final_thresholds}


def _delong_p(y01, prob_best, prob_other) -> float:
    try:
        return delong_test(y01, prob_best, prob_other)[2]
    except ValueError:
        return float("nan")


def _external(name, Xe, ye, X, final, thresholds, best, negative, positive, settings):
    missing = [c for c in X.columns if c not in Xe.columns]
    if missing:
        raise ConfigError(f"external cohort {name!r} lacks {len(missing)} feature column(s) the models were "
                          f"trained on, e.g. {missing[:10]}")
    Xe = Xe[list(X.columns)].replace([np.inf, -np.inf], np.nan).astype(float)
    unlabelled = Xe.index.difference(ye.index)
    if len(unlabelled):
        raise ConfigError(f"external cohort {name!r}: {len(unlabelled)} case(s) have no label, "
                          f"e.g. {unlabelled[:5].tolist()}")
    ye = ye.loc[Xe.index].astype(str)
    unknown = sorted(set(ye) - {negative, positive})
    if unknown:
        raise ConfigError(f"external cohort {name!r} has labels {unknown} not seen in training ({negative}, {positive})")
    ye01 = (ye == positive).astype(int).to_numpy()
    probs = {m: final[m][0].predict_proba(Xe)[:, 1] for m in settings.models}
    rows, frames = [], []
    for m in settings.models:
        row = metrics_with_ci(ye01, probs[m], thresholds[m], n_boot=settings.bootstrap, seed=settings.seed)
        p = np.nan if m == best or ye01.min() == ye01.max() else _delong_p(ye01, probs[best], probs[m])
        rows.append({"cohort": name, "model": m, **row, "delong_p_vs_best": p})
        frames.append(pd.DataFrame({
            "case_id": Xe.index, "model": m, "repeat": pd.NA, "fold": pd.NA, "label": ye.to_numpy(),
            "y_true": ye01, "y_prob": probs[m], "cohort": name, "threshold": thresholds[m],
            "y_pred": (probs[m] >= thresholds[m]).astype(int),
        }))
    return rows, frames


def _steps_text(pipeline) -> str:
    return "\n".join(f"{step}: {est!r}" for step, est in pipeline.steps)


def _selected_features(pipeline) -> list[str]:
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]


def _card(name, pipeline, params, metrics_row, X, y, negative, positive, threshold, settings, **extra) -> dict:
    return {
        "model_name": name,
        "classes": [negative, positive],
        "positive_class": positive,
        "feature_names": [str(c) for c in X.columns],
        "threshold": float(threshold),
        "threshold_rule": THRESHOLD_RULE,
        "metrics": _jsonable(metrics_row),
        "best_params": _jsonable(params),
        "pipeline_steps": _steps_text(pipeline),
        "selected_features": _selected_features(pipeline),
        "n_cases": int(len(y)),
        "class_counts": {str(k): int(v) for k, v in y.value_counts().sort_index().items()},
        "cv": settings.cv_summary(),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "prediction_encoding": "pipeline.predict_proba(X)[:, 1] is the probability of positive_class",
        **extra,
    }


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


def _save(pipeline, card, model_dir: Path) -> None:
    save_model(pipeline, card, model_dir)
    write_model_card_md(json.loads((model_dir / "model_card.json").read_text()), model_dir)


def train_models(
    X: pd.DataFrame,
    y: pd.Series,
    settings: ModelSettings,
    out_dir: Path,
    groups: pd.Series | None = None,
    external: dict[str, tuple[pd.DataFrame, pd.Series]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Nested-CV comparison of ``settings.models`` on (X, y), final refits, external evaluation, files.

    Writes into ``out_dir``: ``metrics.csv`` (one row per model and cohort), ``predictions.csv``
    (out-of-fold and external), ``splits.json``, ``train_features.csv``, ``train_labels.csv``,
    the best model (``model.joblib`` + ``.sha256`` + ``model_card.json``/``.md``), every model under
    ``models/<name>/`` and the best model's outer-fold pipelines under ``folds/<repeat>_<fold>/``.
    """
    say = progress or (lambda message: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y, g = check_training_data(X, y, groups)
    negative, positive = _positive_class(y, settings)
    y01 = (y == positive).to_numpy().astype(int)
    n_min = int(min(y01.sum(), len(y01) - y01.sum()))
    if n_min < settings.outer_folds:
        raise ConfigError(f"the smaller class has {n_min} case(s), fewer than outer_folds={settings.outer_folds}",
                          key="model.outer_folds")

    cv = nested_cv(X, y01, settings, g, progress=say)
    metrics, predictions, info = _summarise_cv(cv, X, y, y01, settings)
    best, thresholds = info["best"], info["thresholds"]
    say(f"best model by out-of-fold AUC: {best}")

    final = refit_all(X, y01, settings, g, progress=say)

    ext_rows: list[dict] = []
    for name, (Xe, ye) in (external or {}).items():
        say(f"external cohort {name}: {len(Xe)} cases")
        rows, frames = _external(name, Xe, ye, X, final, thresholds, best, negative, positive, settings)
        ext_rows += rows
        predictions = pd.concat([predictions, *frames], ignore_index=True)
    if ext_rows:
        metrics = pd.concat([metrics, pd.DataFrame(ext_rows)], ignore_index=True)
    metrics = metrics.reindex(columns=METRICS_COLUMNS)
    predictions = predictions.reindex(columns=PREDICTION_COLUMNS)

    metrics.to_csv(out_dir / "metrics.csv", index=False)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    _write_splits(out_dir, X, cv, settings, g is not None)
    atomic_write_text(out_dir / "timings.json",
                      json.dumps({name: round(sec, 2) for name, sec in cv.seconds.items()}, indent=2))
    X.reset_index().to_csv(out_dir / "train_features.csv", index=False)
    pd.DataFrame({"case_id": X.index, "label": y.to_numpy()}).to_csv(out_dir / "train_labels.csv", index=False)

    model_dirs: dict[str, Path] = {}
    for name in settings.models:
        pipeline, params = final[name]
        cv_row = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == name)].iloc[0].to_dict()
        external_rows = {r["cohort"]: _jsonable(r) for r in ext_rows if r["model"] == name}
        card = _card(name, pipeline, params, cv_row, X, y, negative, positive, thresholds[name], settings,
                     is_best=name == best, external_metrics=external_rows)
        model_dirs[name] = out_dir / "models" / name
        _save(pipeline, card, model_dirs[name])
        if name == best:
            _save(pipeline, card, out_dir)
    for fit in cv.folds[best]:
        fold_card = _card(best, fit.estimator, fit.best_params, {}, X, y, negative, positive, fit.threshold,
                          settings, repeat=fit.repeat, fold=fit.fold,
                          train_case_ids=[str(c) for c in X.index[fit.train_idx]],
                          test_case_ids=[str(c) for c in X.index[fit.test_idx]])
        fold_card["threshold_rule"] = "Youden's J on inner-CV out-of-fold probabilities of this fold's training cases"
        save_model(fit.estimator, fold_card, out_dir / "folds" / f"{fit.repeat}_{fit.fold}")
    say(f"wrote {out_dir}")
    return TrainResult(metrics=metrics, predictions=predictions, best_model=best, out_dir=out_dir,
                       model_dirs=model_dirs)


def _write_splits(out_dir: Path, X: pd.DataFrame, cv: NestedCVResult, settings: ModelSettings, grouped: bool) -> None:
    ids = X.index.astype(str).to_numpy()
    splits: dict[str, Any] = {
        "seed": settings.seed,
        "outer": "StratifiedGroupKFold (shuffled, random_state = seed + repeat)" if grouped
        else "RepeatedStratifiedKFold (random_state = seed)",
        "outer_folds": settings.outer_folds,
        "outer_repeats": settings.outer_repeats,
        "inner_folds": settings.inner_folds,
        "inner_seed": settings.seed,
        "repeat_seeds": [settings.seed + r for r in range(settings.outer_repeats)] if grouped else None,
        "folds": [
            {"repeat": r, "fold": f, "train": ids[train].tolist(), "test": ids[test].tolist()}
            for r, f, train, test in cv.splits
        ],
    }
    atomic_write_text(out_dir / "splits.json", json.dumps(splits, indent=1))
