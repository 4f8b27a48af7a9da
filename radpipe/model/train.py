"""Train and compare models on a feature table: nested CV, metrics with CIs, final refits, model cards.

``train_models`` is the model stage's entry point; it writes everything the explain stage and a
reader of the paper need into one folder (see its docstring for the file list).

A label with two classes is a binary outcome (the positive class is thresholded); with more, a
multi-class outcome: estimators see class indices 0..K-1 of the sorted labels, models are tuned and
compared by macro one-vs-rest ROC AUC, and a case's predicted class is its most probable one.
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
from radpipe.model.calibration_curve import write_calibration
from radpipe.model.decision_curve import write_decision_curve
from radpipe.model.folder import ModelFolder
from radpipe.model.inputs import ModelInputs, batch_label, encode_labels, external_inputs, training_inputs
from radpipe.model.metrics import (
    METRIC_COLUMNS,
    delong_test,
    macro_ovr_auc,
    metrics_with_ci,
    multiclass_metric_columns,
    multiclass_metrics_with_ci,
    roc_auc,
)
from radpipe.model.neighbours import Neighbours, fold_ood
from radpipe.model.persist import save_model, save_neighbours, write_model_card_md
from radpipe.model.settings import ModelSettings
from radpipe.model.validate import (
    NestedCVResult,
    choose_threshold,
    class_probabilities,
    nested_cv,
    refit_all,
)

METRICS_COLUMNS = ["cohort", "model", *METRIC_COLUMNS, "delong_p_vs_best", "auc_fold_mean", "auc_fold_sd"]
#: appended to every classifier's predictions.csv: how unlike the training cases a case is (a warning only, see
#: radpipe.model.neighbours); out-of-fold rows are scored by their fold's own scorer
OOD_COLUMNS = ["ood_percentile", "ood_flag"]
#: rad_score: the linear predictor of a linear model (radpipe.model.radscore), empty for the others
PREDICTION_COLUMNS = ["case_id", "model", "repeat", "fold", "label", "y_true", "y_prob", "cohort", "threshold", "y_pred",
                      "rad_score", *OOD_COLUMNS]

MULTICLASS_SCORING = "roc_auc_ovr (macro one-vs-rest ROC AUC)"
MULTICLASS_RULE = "no threshold: the predicted class is the most probable one (argmax of predict_proba)"
MULTICLASS_NOTE = (
    "multi-class outcome: each class is scored one-vs-rest (auc_ovr_<class>) and the headline AUC is their "
    "unweighted (macro) mean; sensitivity (= balanced accuracy), specificity, PPV, NPV and F1 are macro averages of "
    "the one-vs-rest values (an undefined ratio counts as 0); Brier is the mean over cases and classes of the "
    "squared error. DeLong's test and the calibration slope/intercept are defined for binary outcomes only and "
    "are left empty (NaN)."
)
INTENDED_USE_MULTICLASS = (
    "Research use: estimating, from radiomics features computed with the same extraction settings, "
    "the probability of each outcome class for cases like those in the training cohort. "
    "Not a medical device; not validated for clinical decisions."
)
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
        if "c_harrell" in cv.columns:  # a survival outcome
            cs = ", ".join(f"{m}={cv.loc[m, 'c_harrell']:.3f}" for m in cv.index)
            return f"TrainResult(best={self.best_model!r}, cv Harrell's C: {cs}, out_dir={str(self.out_dir)!r})"
        aucs = ", ".join(f"{m}={cv.loc[m, 'auc']:.3f}" for m in cv.index)
        return f"TrainResult(best={self.best_model!r}, cv AUC: {aucs}, out_dir={str(self.out_dir)!r})"


def _auc(y, prob) -> float:
    """ROC AUC of positive-class probabilities, or macro one-vs-rest AUC of a probability matrix."""
    return macro_ovr_auc(y, prob) if np.ndim(prob) == 2 else roc_auc(y, prob)


def _predicted_index(prob: np.ndarray, threshold: float) -> np.ndarray:
    """0/1 at the threshold (binary), or the index of the most probable class (multi-class)."""
    return prob.argmax(axis=1) if prob.ndim == 2 else (prob >= threshold).astype(int)


def _fold_auc_stats(fits, y_idx) -> tuple[float, float]:
    aucs = [_auc(y_idx[f.test_idx], f.test_prob) for f in fits]
    aucs = [a for a in aucs if np.isfinite(a)]
    return (float(np.mean(aucs)), float(np.std(aucs, ddof=1)) if len(aucs) > 1 else float("nan")) if aucs else (
        float("nan"), float("nan"))


def _oof_matrices(fits, n_cases: int, n_repeats: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs = np.full((n_repeats, n_cases, *np.shape(fits[0].test_prob)[1:]), np.nan)
    preds = np.zeros((n_repeats, n_cases), dtype=int)
    thresholds = np.full((n_repeats, n_cases), np.nan)
    for fit in fits:
        probs[fit.repeat, fit.test_idx] = fit.test_prob
        preds[fit.repeat, fit.test_idx] = _predicted_index(fit.test_prob, fit.threshold)
        thresholds[fit.repeat, fit.test_idx] = fit.threshold
    return probs, preds, thresholds


def metrics_columns(classes: list[str]) -> list[str]:
    """Columns of ``metrics.csv``: :data:`METRICS_COLUMNS` for a binary outcome, per-class AUCs added otherwise."""
    if len(classes) == 2:
        return METRICS_COLUMNS
    return ["cohort", "model", *multiclass_metric_columns(classes), "delong_p_vs_best", "auc_fold_mean", "auc_fold_sd"]


def prediction_columns(classes: list[str]) -> list[str]:
    """Columns of ``predictions.csv``: :data:`PREDICTION_COLUMNS` when binary; for a multi-class outcome one
    ``y_prob_<class>`` per class, ``y_true``/``y_pred`` as class indices and ``predicted`` as a label."""
    if len(classes) == 2:
        return PREDICTION_COLUMNS
    return ["case_id", "model", "repeat", "fold", "label", "y_true", *(f"y_prob_{c}" for c in classes), "cohort",
            "y_pred", "predicted", *OOD_COLUMNS]


def _prediction_frame(case_ids, model, repeat, fold, labels, codes, prob, cohort, threshold, classes) -> pd.DataFrame:
    pred = _predicted_index(prob, threshold)
    if prob.ndim == 1:
        return pd.DataFrame({
            "case_id": case_ids, "model": model, "repeat": repeat, "fold": fold, "label": labels,
            "y_true": codes, "y_prob": prob, "cohort": cohort, "threshold": threshold, "y_pred": pred,
        })
    return pd.DataFrame({
        "case_id": case_ids, "model": model, "repeat": repeat, "fold": fold, "label": labels, "y_true": codes,
        **{f"y_prob_{c}": prob[:, k] for k, c in enumerate(classes)}, "cohort": cohort, "y_pred": pred,
        "predicted": np.asarray(classes, dtype=object)[pred],
    })


def _metrics_row(codes, probs, threshold, preds, classes, settings) -> dict:
    if len(classes) > 2:
        return multiclass_metrics_with_ci(codes, probs, classes, n_boot=settings.bootstrap, seed=settings.seed)
    return metrics_with_ci(codes, probs, threshold, y_pred=preds, n_boot=settings.bootstrap, seed=settings.seed)


def _summarise_cv(cv: NestedCVResult, X, y, y_idx, classes, settings) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rows, pred_frames, final_thresholds, mean_probs = [], [], {}, {}
    for name, fits in cv.folds.items():
        if name not in settings.models:
            continue
        probs, preds, thresholds = _oof_matrices(fits, len(y_idx), settings.outer_repeats)
        mean_probs[name] = probs.mean(axis=0)
        final_thresholds[name] = choose_threshold(y_idx, mean_probs[name], settings)
        row = _metrics_row(y_idx, probs, final_thresholds[name], preds, classes, settings)
        fold_mean, fold_sd = _fold_auc_stats(fits, y_idx)
        # wall times go to timings.json, not here: metrics.csv must be byte-identical between runs
        rows.append({"cohort": "cv", "model": name, **row, "auc_fold_mean": fold_mean, "auc_fold_sd": fold_sd})
        ood = fold_ood(fits, X, seed=settings.seed)
        for fit in fits:
            frame = _prediction_frame(
                X.index[fit.test_idx], name, fit.repeat, fit.fold, y.to_numpy()[fit.test_idx], y_idx[fit.test_idx],
                fit.test_prob, "cv", fit.threshold, classes,
            )
            mine = ood[(ood["repeat"] == fit.repeat) & (ood["fold"] == fit.fold)]
            pred_frames.append(frame.assign(**{c: mine[c].to_numpy() for c in OOD_COLUMNS}))
    metrics = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(settings.models)}
    best = max(metrics["model"], key=lambda m: (np.nan_to_num(metrics.set_index("model").loc[m, "auc"], nan=-1),
                                                -order[m]))
    metrics["delong_p_vs_best"] = [
        np.nan if m == best else _delong_p(y_idx, mean_probs[best], mean_probs[m]) for m in metrics["model"]
    ]
    predictions = pd.concat(pred_frames, ignore_index=True)
    return metrics, predictions, {"best": best, "thresholds": final_thresholds}


def _delong_p(y_idx, prob_best, prob_other) -> float:
    if np.ndim(prob_best) == 2:  # DeLong compares binary ROC curves: not defined for a multi-class outcome
        return float("nan")
    try:
        return delong_test(y_idx, prob_best, prob_other)[2]
    except ValueError:
        return float("nan")


def _external(name, Xe, ye, final, thresholds, best, classes, settings, neighbours):
    ye_idx = encode_labels(ye, classes)
    probs = {m: class_probabilities(final[m][0].predict_proba(Xe)) for m in settings.models}
    rows, frames = [], []
    for m in settings.models:
        row = _metrics_row(ye_idx, probs[m], thresholds[m], None, classes, settings)
        p = np.nan if m == best or ye_idx.min() == ye_idx.max() else _delong_p(ye_idx, probs[best], probs[m])
        rows.append({"cohort": name, "model": m, **row, "delong_p_vs_best": p})
        ood = neighbours[m].score(final[m][0], Xe)
        frames.append(_prediction_frame(Xe.index, m, pd.NA, pd.NA, ye.to_numpy(), ye_idx, probs[m], name,
                                        thresholds[m], classes).assign(**{c: ood[c].to_numpy() for c in OOD_COLUMNS}))
    return rows, frames


def _steps_text(pipeline) -> str:
    return "\n".join(f"{step}: {est!r}" for step, est in pipeline.steps)


def _selected_features(pipeline) -> list[str]:
    return [str(n) for n in pipeline[:-1].get_feature_names_out()]


def _batch_card(X: pd.DataFrame, settings: ModelSettings) -> dict:
    """For a harmonised model: the batches of the training cohort and their case counts (a case from another
    batch cannot be harmonised); nothing otherwise, so other cards are unchanged."""
    if not settings.harmonise:
        return {}
    counts = X[settings.batch_column].map(batch_label).value_counts().sort_index()
    return {"training_batches": {str(k): int(v) for k, v in counts.items()}}


def _card(name, pipeline, params, metrics_row, X, y, classes, threshold, settings, **extra) -> dict:
    extra = {**_batch_card(X, settings), **extra}
    if len(classes) > 2:
        return {
            "model_name": name,
            "classes": list(classes),
            "positive_class": None,
            "outcome_type": "multiclass",
            "multiclass": MULTICLASS_NOTE,
            "feature_names": [str(c) for c in X.columns],
            "threshold": None,
            "threshold_rule": MULTICLASS_RULE,
            "metrics": _jsonable(metrics_row),
            "best_params": _jsonable(params),
            "pipeline_steps": _steps_text(pipeline),
            "selected_features": _selected_features(pipeline),
            "n_cases": int(len(y)),
            "class_counts": {str(k): int(v) for k, v in y.value_counts().reindex(classes).items()},
            "cv": {**settings.cv_summary(scoring=MULTICLASS_SCORING), "inner_scoring": MULTICLASS_SCORING},
            "intended_use": INTENDED_USE_MULTICLASS,
            "limitations": LIMITATIONS,
            "prediction_encoding": "pipeline.predict_proba(X)[:, k] is the probability of classes[k]; "
                                   "pipeline.predict(X) returns class indices into classes",
            **extra,
        }
    negative, positive = classes
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
    write_model_card_md(ModelFolder(model_dir).card(), model_dir)


def train_models(
    X: pd.DataFrame,
    y: pd.Series | pd.DataFrame,
    settings: ModelSettings,
    out_dir: Path,
    groups: pd.Series | None = None,
    external: dict[str, tuple[pd.DataFrame, pd.Series]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Nested-CV comparison of ``settings.models`` on (X, y), final refits, external evaluation, files.

    ``y`` holds each case's label; for a time-to-event outcome (``settings.outcome``) it is the outcome table
    with the time and event columns, and :func:`radpipe.model.survival.fit_survival_models` trains.

    The inputs are checked by :func:`radpipe.model.inputs.training_inputs` first (a positive class that
    is set or plain 0/1, fold counts that fit the smallest class, ...); :func:`fit_models` does the rest.

    Writes into ``out_dir``: ``metrics.csv`` (one row per model and cohort), ``predictions.csv``
    (out-of-fold and external), ``splits.json``, ``train_features.csv``, ``train_labels.csv``,
    the best model (``model.joblib`` + ``.sha256`` + ``model_card.json``/``.md``), every model under
    ``models/<name>/`` and the best model's outer-fold pipelines under ``folds/<repeat>_<fold>/``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile
    >>> rng = np.random.default_rng(0)
    >>> y = pd.Series(["benign", "malignant"] * 10, index=[f"c{i:02d}" for i in range(20)])
    >>> X = pd.DataFrame({"f1": rng.normal(size=20) + (y == "malignant"), "f2": rng.normal(size=20)}, index=y.index)
    >>> settings = ModelSettings(models=["logreg"], positive_class="malignant", bootstrap=0)
    >>> result = train_models(X, y, settings, tempfile.mkdtemp())
    >>> result.best_model
    'logreg'
    """
    if settings.outcome is not None:  # time-to-event: y is the outcome table with the time and event columns
        from radpipe.model.inputs import survival_training_inputs
        from radpipe.model.survival import fit_survival_models

        if not isinstance(y, pd.DataFrame):
            raise ConfigError(f"a survival outcome needs y as a table with the columns '{settings.outcome.time}' and "
                              f"'{settings.outcome.event}' (indexed by case_id), not a {type(y).__name__}",
                              key="model.outcome")
        return fit_survival_models(survival_training_inputs(X, y, settings, groups=groups), out_dir,
                                   external=external, progress=progress)
    return fit_models(training_inputs(X, y, settings, groups=groups), out_dir, external=external,
                      progress=progress)


def fit_models(
    inputs: ModelInputs,
    out_dir: Path,
    *,
    external: dict[str, tuple[pd.DataFrame, pd.Series | pd.DataFrame]] | None = None,
    progress: Callable[[str], None] | None = None,
    advance: Callable[[str], None] | None = None,
    discretisation: dict | None = None,
) -> TrainResult:
    """Train on checked inputs (see :func:`train_models` for what is written).

    ``discretisation`` is the extraction's bin-width record (see
    :func:`radpipe.extract.discretisation.read_discretisation`); the model cards carry it, so ``radpipe
    predict`` can refuse features discretised differently and ``radpipe extract --reference`` can reuse it.

    ``progress(message)`` hears what is being done; ``advance(note)`` is called after each of the
    :func:`radpipe.model.validate.fit_count` fits (a model in an outer fold, or a final refit), for a
    progress bar.
    """
    say = progress or (lambda message: None)
    folder = ModelFolder(Path(out_dir))
    out_dir = folder.path
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y, classes, settings = inputs.X, inputs.y, inputs.classes, inputs.settings
    g = inputs.group_array
    y_idx = encode_labels(y, classes)
    if inputs.folds.reduced:
        say(inputs.folds.describe())

    cv = nested_cv(X, y_idx, settings, g, progress=say, advance=advance)
    metrics, predictions, info = _summarise_cv(cv, X, y, y_idx, classes, settings)
    best, thresholds = info["best"], info["thresholds"]
    say(f"best model by out-of-fold AUC: {best}")

    final = refit_all(X, y_idx, settings, g, progress=say, advance=advance)
    neighbours = {m: Neighbours.fit(final[m][0], X, groups=g, seed=settings.seed) for m in settings.models}
    fold_fits = {m: cv.folds[m] for m in settings.models}
    clinical = None
    if inputs.clinical is not None:  # clinical-only and combined models on the same outer folds
        clinical = _clinical_models(inputs, cv, y, y_idx, classes, say, predictions, best)
        metrics = pd.concat([metrics, clinical["metrics"]], ignore_index=True)
        predictions = pd.concat([predictions, clinical["predictions"]], ignore_index=True)
        thresholds.update(clinical["thresholds"])
        fold_fits.update(clinical["folds"])
        cv.seconds.update(clinical["seconds"])
    if len(classes) == 2:
        predictions = _with_rad_scores(predictions, fold_fits, X if clinical is None else clinical["X"])

    ext_rows: list[dict] = []
    for name, (Xe, ye) in (external or {}).items():
        Xe, ye = external_inputs(name, Xe, ye, inputs)
        say(f"external cohort {name}: {len(Xe)} cases")
        rows, frames = _external(name, Xe, ye, final, thresholds, best, classes, settings, neighbours)
        if len(classes) == 2:
            frames = [f.assign(rad_score=_linear_score(final[str(f["model"].iloc[0])][0], Xe)) for f in frames]
        ext_rows += rows
        predictions = pd.concat([predictions, *frames], ignore_index=True)
    if ext_rows:
        metrics = pd.concat([metrics, pd.DataFrame(ext_rows)], ignore_index=True)
    metrics = metrics.reindex(columns=metrics_columns(classes))
    predictions = predictions.reindex(columns=prediction_columns(classes))

    metrics.to_csv(folder.metrics_path, index=False)
    predictions.to_csv(folder.predictions_path, index=False)
    write_decision_curve(out_dir, predictions)  # binary outcomes only: net benefit, cv and external cohorts
    write_calibration(out_dir, predictions, n_boot=settings.bootstrap, seed=settings.seed)
    _write_splits(folder, X, cv, inputs)
    family_aucs = _write_search_families(folder, cv, y_idx)
    atomic_write_text(folder.timings_path,
                      json.dumps({name: round(sec, 2) for name, sec in cv.seconds.items()}, indent=2))
    X.reset_index().to_csv(folder.train_features_path, index=False)
    pd.DataFrame({"case_id": X.index, "label": y.to_numpy()}).to_csv(folder.train_labels_path, index=False)

    inputs_card = _inputs_card(inputs)
    if discretisation:
        inputs_card["discretisation"] = discretisation
    if len(classes) == 2:
        _write_study_tables(folder, inputs, predictions, best, settings, inputs_card)
    model_dirs: dict[str, Path] = {}
    for name in settings.models:
        pipeline, params = final[name]
        cv_row = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == name)].iloc[0].to_dict()
        external_rows = {r["cohort"]: _jsonable(r) for r in ext_rows if r["model"] == name}
        card = _card(name, pipeline, params, cv_row, X, y, classes, thresholds[name], settings,
                     is_best=name == best, external_metrics=external_rows, **inputs_card, **_search_card(name, cv, family_aucs))
        model_dirs[name] = folder.model_dir(name)
        _save(pipeline, card, model_dirs[name])
        save_neighbours(neighbours[name], model_dirs[name])
        _write_radscore(pipeline, X, model_dirs[name])
        if name == best:
            _save(pipeline, card, out_dir)
            save_neighbours(neighbours[name], out_dir)
            _write_radscore(pipeline, X, out_dir)
    if clinical is not None:
        for name, (pipeline, params) in clinical["final"].items():
            cv_row = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == name)].iloc[0].to_dict()
            card = _card(name, pipeline, params, cv_row, clinical["X"], y, classes, thresholds[name], settings,
                         is_best=False, kind=name, clinical_types=dict(inputs.clinical_types), **inputs_card)
            model_dirs[name] = folder.model_dir(name)
            _save(pipeline, card, model_dirs[name])
            _write_radscore(pipeline, clinical["X"], model_dirs[name])
    for fit in cv.folds[best]:
        fold_card = _card(best, fit.estimator, fit.best_params, {}, X, y, classes, fit.threshold,
                          settings, repeat=fit.repeat, fold=fit.fold,
                          train_case_ids=[str(c) for c in X.index[fit.train_idx]],
                          test_case_ids=[str(c) for c in X.index[fit.test_idx]])
        if len(classes) == 2:
            fold_card["threshold_rule"] = "Youden's J on inner-CV out-of-fold probabilities of this fold's training cases"
        save_model(fit.estimator, fold_card, folder.fold_dir(fit.repeat, fit.fold))
    say(f"wrote {out_dir}")
    return TrainResult(metrics=metrics, predictions=predictions, best_model=best, out_dir=out_dir,
                       model_dirs=model_dirs)


def _search_card(name: str, cv: NestedCVResult, family_aucs: pd.DataFrame | None = None) -> dict:
    """For the joint search model only: the configuration chosen in each outer fold, how often each family and
    selection method won (radpipe.model.search.search_summary) and, labelled as information, each family's outer
    AUC (search_families.csv)."""
    if name != "search":
        return {}
    from radpipe.model.search import FAMILY_AUC_NOTE, search_summary

    record = search_summary([(f.repeat, f.fold, f.best_params) for f in cv.folds[name]])
    if family_aucs is not None and len(family_aucs):
        record["family_outer_auc"] = dict(zip(family_aucs["family"], family_aucs["outer_auc"], strict=True))
        record["family_outer_auc_note"] = FAMILY_AUC_NOTE
    return {"search": _jsonable(record)}


def _write_search_families(folder: ModelFolder, cv: NestedCVResult, y_idx: np.ndarray) -> pd.DataFrame | None:
    """search_families.csv: each family's outer AUC, for information (see radpipe.model.search.family_outer_aucs)."""
    if "search" not in cv.folds:
        return None
    from radpipe.model.search import family_outer_aucs

    table = family_outer_aucs(cv.folds["search"], y_idx, _auc)
    table.to_csv(folder.search_families_path, index=False)
    return table


def _inputs_card(inputs: ModelInputs) -> dict:
    """What the card says about the inputs beyond the settings: only what happened, so other cards stay as
    they were (reduced folds, features left out before modelling)."""
    extra: dict[str, Any] = {}
    if inputs.folds.reduced:
        extra["folds_reduced"] = inputs.folds.record()
    if inputs.dropped:
        extra["dropped_features"] = dict(inputs.dropped)
    return extra


def _write_splits(folder: ModelFolder, X: pd.DataFrame, cv: NestedCVResult, inputs: ModelInputs) -> None:
    settings, grouped = inputs.settings, inputs.groups is not None
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
    if inputs.folds.reduced:  # only then: the splits.json of other runs stays byte-identical
        splits["folds_reduced"] = inputs.folds.record()
    if settings.harmonise:
        splits["stratified_on"] = ("outcome x batch" if cv.stratified_on_batch else
                                   "outcome (an outcome x batch stratum has fewer cases than outer folds)")
    atomic_write_text(folder.splits_path, json.dumps(splits, indent=1))


# ---------------------------------------------------------------- clinical covariates, rad-score, comparison


def _clinical_models(inputs: ModelInputs, cv: NestedCVResult, y, y_idx, classes, say, radiomics_predictions,
                     best: str) -> dict:
    """The clinical-only and combined models (radpipe.model.clinical) on the radiomics models' outer folds:
    their metrics and out-of-fold prediction rows, thresholds, fold fits and final refits. Their
    ``delong_p_vs_best`` compares them with the best radiomics model."""
    from radpipe.model.clinical import clinical_nested_cv, refit_clinical
    from radpipe.model.compare import case_probabilities

    settings, g = inputs.settings, inputs.group_array
    Xc = inputs.X.join(inputs.clinical)
    radiomics = list(inputs.X.columns)
    folds, seconds = clinical_nested_cv(Xc, y_idx, settings, g, cv.splits, inputs.clinical_types, radiomics,
                                        progress=say)
    names = list(folds)
    metrics, predictions, info = _summarise_cv(NestedCVResult(folds, cv.splits, seconds), Xc, y, y_idx, classes,
                                               settings.model_copy(update={"models": names}))
    table, codes, _ = case_probabilities(pd.concat([radiomics_predictions, predictions], ignore_index=True))
    metrics["delong_p_vs_best"] = [_delong_p(codes.to_numpy(), table[best].to_numpy(), table[m].to_numpy())
                                   for m in metrics["model"]]
    say("final fit: clinical and combined models")
    final = refit_clinical(Xc, y_idx, settings, g, inputs.clinical_types, radiomics)
    return {"X": Xc, "metrics": metrics, "predictions": predictions, "thresholds": info["thresholds"],
            "folds": folds, "seconds": seconds, "final": final}


def _linear_score(pipeline, X: pd.DataFrame) -> np.ndarray | float:
    from radpipe.model.radscore import linear_score

    score = linear_score(pipeline, X)
    return np.nan if score is None else score


def _with_rad_scores(predictions: pd.DataFrame, fold_fits: dict, X: pd.DataFrame) -> pd.DataFrame:
    """predictions.csv's out-of-fold rows with each linear model's out-of-fold rad-score (its fold model's linear
    predictor on the fold's test cases); NaN for the other models."""
    parts = []
    for name, fits in fold_fits.items():
        for fit in fits:
            score = _linear_score(fit.estimator, X.iloc[fit.test_idx][list(fit.estimator.feature_names_in_)])
            parts.append(pd.DataFrame({"model": name, "repeat": fit.repeat, "fold": fit.fold,
                                       "case_id": X.index[fit.test_idx], "rad_score": score}))
    if not parts:
        return predictions.assign(rad_score=np.nan)
    scores = pd.concat(parts, ignore_index=True)
    keys = ["model", "repeat", "fold", "case_id"]
    merged = predictions.drop(columns=["rad_score"], errors="ignore").merge(scores, on=keys, how="left")
    return merged


def _write_radscore(pipeline, X: pd.DataFrame, model_dir: Path) -> None:
    from radpipe.model.radscore import training_ranges, write_radscore

    numeric = X.select_dtypes("number")
    write_radscore(pipeline, model_dir, ranges=training_ranges(numeric))


def _write_study_tables(folder: ModelFolder, inputs: ModelInputs, predictions: pd.DataFrame, best: str,
                        settings: ModelSettings, card: dict) -> None:
    """comparison.csv (models compared with the clinical one, else with the best) and sample_size.json; the
    sample size goes into every card of the run."""
    from radpipe.model.clinical import model_kind
    from radpipe.model.compare import compare_models

    cv = predictions[predictions["cohort"].astype(str) == "cv"]
    names = list(dict.fromkeys(cv["model"].astype(str)))
    reference = "clinical" if "clinical" in names else best
    table = compare_models(cv, {m: model_kind(m) for m in names}, reference, n_boot=settings.bootstrap,
                           seed=settings.seed)
    table.to_csv(folder.comparison_path, index=False)
    record = inputs.sample_size()
    atomic_write_text(folder.sample_size_path, json.dumps(_jsonable(record), indent=1))
    card["sample_size"] = _jsonable(record)
