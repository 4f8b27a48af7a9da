"""The explain stage: SHAP and LIME for a saved model and a feature table, written as tables, PNG figures and
self-contained HTML reports (``cohort.html`` and one ``patients/<case_id>.html`` per case).

``explain`` is the entry point; everything it reads from the model folder besides the model itself
(metrics, out-of-fold predictions, training features, outer-fold models, the model card text) is optional.

A binary model is explained on the probability of its positive class. A multi-class model is explained on
the probability of every class (SHAP per class, cohort figures per class, importance averaged over classes);
each patient page explains the patient's predicted (most probable) class, with SHAP and LIME.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_bytes, atomic_write_text, software_versions
from radpipe.errors import RadpipeError
from radpipe.explain import plots
from radpipe.explain.lime_values import agreement, compute_lime
from radpipe.explain.pages import FeatureLabels, card_rows, feature_labels, render_cohort, render_patients
from radpipe.explain.performance import Performance, cv_predictions, model_performance, out_of_fold
from radpipe.explain.settings import ExplainSettings
from radpipe.explain.shap_values import (
    ShapResult,
    compute_shap,
    compute_shap_classes,
    final_estimator,
    grouped,
    original_name_map,
    parse_feature_name,
    positive_index,
    predicted_class_view,
    to_original,
)
from radpipe.explain.stability import fold_stability
from radpipe.model.folder import ModelFolder
from radpipe.model.inputs import features_for_model
from radpipe.model.persist import load_model


@dataclass
class ExplainResult:
    """What ``explain`` wrote and computed.

    Attributes
    ----------
    out_dir : the output folder.
    cohort_page : path of ``cohort.html``.
    patient_pages : case_id -> path of its page.
    shap : the SHAP values of every case (final-estimator features); for a multi-class model, towards each
        case's predicted class (``base_value`` is then a Series per case).
    shap_original : the same summed onto the input feature names.
    lime : LIME weights (long table) of the cases with a page.
    summary : the content of ``summary.json``.
    shap_by_class : multi-class models only: class -> SHAP values of every case on that class's probability.
    """

    out_dir: Path
    cohort_page: Path
    patient_pages: dict[str, Path]
    shap: ShapResult
    shap_original: pd.DataFrame
    lime: pd.DataFrame
    summary: dict = field(default_factory=dict)
    shap_by_class: dict[str, ShapResult] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ExplainResult({len(self.patient_pages)} patient pages, explainer={self.shap.explainer!r}, "
                f"out_dir='{self.out_dir}')")


class ExplainError(RadpipeError):
    """The inputs of the explain stage do not fit together (missing features, unknown patients, ...)."""


def explain(
    model_dir: Path,
    features: pd.DataFrame,
    out_dir: Path,
    *,
    labels: pd.Series | None = None,
    images: dict[str, tuple[Path, Path]] | None = None,
    patients: list[str] | None = None,
    settings: ExplainSettings | None = None,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    trust: bool = False,
    codebook: pd.DataFrame | str | Path | None = None,
) -> ExplainResult:
    """Explain a saved model on a feature table and write the reports into ``out_dir``.

    Each patient page leads with the case's cross-validated (out-of-fold) probability from the model folder's
    ``predictions.csv`` when the case was in the training cohort, and with the final model's prediction,
    labelled external, otherwise. SHAP and LIME explain the final model.

    Parameters
    ----------
    model_dir : folder written by ``radpipe train`` (read through :class:`radpipe.model.folder.ModelFolder`).
    features : feature table indexed by case_id with at least the model's ``feature_names`` columns
        (a ``case_id`` column is used as the index when the index is unnamed).
    out_dir : output folder; created when missing.
    labels : true class labels indexed by case_id (shown on the pages; performance figures use
        ``predictions.csv`` of the model folder when present, these labels otherwise).
    images : case_id -> (image path, mask path), for the lesion slice on patient pages.
    patients : case ids that get a patient page (default: all, up to ``settings.max_patients``).
    settings : ``ExplainSettings``; defaults when omitted.
    n_jobs : worker processes for SHAP, LIME and the patient pages; results do not depend on it.
    progress : called as ``progress(done, total)`` while patient pages are written.
    trust : open a model whose sha256 sidecar is missing or does not match (see ``load_model``).
    codebook : the extract stage's ``codebook.csv`` (a table, or its path; a missing file is ignored): display
        names and units (with the image's intensity unit, e.g. HU) for the pages; without it names come from
        ``radpipe.extract.feature_docs`` and intensities are in arbitrary units.

    Returns
    -------
    ExplainResult

    Examples
    --------
    >>> result = explain("out/models", features, "out/explain", labels=labels, n_jobs=2)  # doctest: +SKIP
    >>> result.patient_pages["case_001"]  # doctest: +SKIP
    PosixPath('out/explain/patients/case_001.html')
    """
    started = time.time()
    settings = settings or ExplainSettings()
    out_dir = Path(out_dir)
    model = load_model(Path(model_dir), trust=trust)
    folder = ModelFolder(model.path)
    view = _ModelView.of(model)
    X = features_for_model(model, features)
    X_train = _training_features(folder, model, view.batch)
    train_note = "training features of the model folder"
    if X_train is None:
        X_train, train_note = X, "the explained cases (the model folder has no training features)"
    labels = _align_labels(labels, X.index)
    page_cases = _page_cases(X.index, patients, settings.max_patients)
    final = _final_predictions(model.pipeline, X, view)
    timings: dict[str, float] = {}

    tick = time.time()
    values = _shap(model.pipeline, X, X_train, view, final, settings, n_jobs)
    timings["shap"], tick = time.time() - tick, time.time()
    lime = compute_lime(
        model.pipeline, X.loc[page_cases], X_train, positive_index=0 if view.multiclass else view.pos,
        class_names=view.classes if view.multiclass else view.estimator_classes,
        num_samples=settings.lime_samples, top=settings.lime_top, seed=settings.seed, n_jobs=n_jobs,
        perturb=_reaching_inputs(values.shap.values.columns, view.names),
        case_classes={c: view.classes.index(final.predicted[c]) for c in page_cases} if view.multiclass else None,
        fixed=[view.batch] if view.batch else None,
    )
    if view.multiclass:
        lime.insert(1, "explained_class", lime["case_id"].map(final.predicted))
    timings["lime"], tick = time.time() - tick, time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(exist_ok=True)
    _write_value_tables(out_dir, values, lime)
    lime_by_case = {c: g for c, g in lime.groupby("case_id", sort=False)}
    agree = {c: agreement(values.original.loc[c], lime_by_case.get(c, lime.iloc[:0]), settings.lime_top)
             for c in page_cases}

    stability = fold_stability(folder.path, X, X_train, view.names, view.positive, settings, n_jobs,
                               multiclass=view.multiclass)
    if "importance_all" in stability:
        _write_csv(out_dir / "fold_stability.csv", _stability_long(stability.pop("importance_all")))
    timings["fold_stability"], tick = time.time() - tick, time.time()

    # the numbers that lead every page: out-of-fold where the model folder has them, never recomputed
    cv_rows = cv_predictions(folder, view.model_name)
    oof = out_of_fold(cv_rows, view.classes, view.positive)
    trained_on = _training_cases(folder, X_train if X_train is not X else None)
    headlines = {c: _headline(c, oof, final, view, trained_on) for c in X.index}
    perf = model_performance(folder, model.card, view.classes,
                             final_proba=final.class_proba if view.multiclass else final.proba,
                             labels=labels, predictions=cv_rows)
    importance = _importance(values, view)

    labels_of = feature_labels(view.names, _read_codebook(codebook))
    pages_dir = out_dir / "patients"
    pages_dir.mkdir(exist_ok=True)
    (out_dir / "figures" / "patients").mkdir(exist_ok=True)
    file_names = {c: _safe_name(c) for c in page_cases}
    common = dict(
        positive=str(view.positive), negative=view.negative, threshold=view.threshold, base=values.shap.base_value,
        settings=settings.model_dump(), explainer=values.shap.explainer, notes=values.shap.notes,
        model_name=view.model_name, out_dir=str(out_dir), draw_images=settings.images,
        multiclass=view.multiclass, n_train=len(trained_on) if trained_on else None,
        n_repeats=perf.n_repeats, names=labels_of.names, units=labels_of.units,
    )
    items = [_patient_item(c, X, X_train, values, view, final, headlines[c], labels, lime_by_case, agree,
                           file_names[c], images, settings) for c in page_cases]
    rows = render_patients(items, common, pages_dir, out_dir / "figures" / "patients", n_jobs, progress)
    timings["patient_pages"], tick = time.time() - tick, time.time()

    figs = _cohort_figures(X, values, importance, view, labels, settings, labels_of)
    figs.update(perf.figures)
    for key, png in figs.items():
        atomic_write_bytes(out_dir / "figures" / f"cohort_{key}.png", png)
    summary = _summary(view, values, importance, agree, stability, perf, settings, X, page_cases, train_note,
                       out_dir)
    cohort_rows = [{
        "case_id": c, "file": file_names.get(c), **headlines[c],
        "top_feature": values.original.loc[c].abs().idxmax() if values.original.shape[1] else "",
        "overlap": agree[c]["overlap"] if c in agree else None,
        "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
    } for c in X.index]
    html = render_cohort(
        title=f"{view.model_name}: explanations", summary=summary, card=card_rows(model.card),
        card_md=folder.card_md(), figs=figs, perf=perf, stability=stability, rows=cohort_rows,
        top=summary["top_features"], dependence=[(n, f"dependence_{k + 1}") for k, n in
                                                  enumerate(importance.top[: settings.dependence_plots])],
        positive=str(view.positive), negative=view.negative, threshold=view.threshold, notes=values.shap.notes,
        multiclass=view.multiclass, classes=view.classes, banner=settings.banner, names=labels_of.names,
        has_oof=len(oof) > 0, has_labels=labels is not None and labels.notna().any(),
        stability_scale=float(np.nanmax(stability["importance"].to_numpy())) if "importance" in stability
        and np.isfinite(stability["importance"].to_numpy(dtype=float)).any() else 0.0,
        source_text=SOURCE_TEXT,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), versions=software_versions(),
    )
    cohort_page = out_dir / "cohort.html"
    atomic_write_text(cohort_page, html)
    if rows:
        _write_csv(out_dir / "patients.csv", pd.DataFrame(rows).set_index("case_id"))
    timings["cohort_page"] = time.time() - tick
    summary["elapsed_seconds"] = round(time.time() - started, 2)
    summary["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    # per patient: the explained (final-model) probability and class, and the headline the page leads with
    summary["patients"] = {c: {"probability": float(final.proba[c]), "predicted": str(final.predicted[c]),
                               "headline": headlines[c], **agree[c]} for c in page_cases}
    atomic_write_text(out_dir / "summary.json", json.dumps(_jsonable(summary), indent=2))
    atomic_write_text(out_dir / "manifest.json", json.dumps(_jsonable({
        "stage": "explain", "versions": software_versions(), "settings": settings.model_dump(),
        "model": str(model.path), "model_sha256": _sha_of(folder.model_path),
        "features_sha256": hashlib.sha256(pd.util.hash_pandas_object(X, index=True).values.tobytes()).hexdigest(),
        "seed": settings.seed, "started": _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(), "n_jobs": n_jobs,
    }), indent=2))
    return ExplainResult(
        out_dir=out_dir, cohort_page=cohort_page,
        patient_pages={c: pages_dir / f"{file_names[c]}.html" for c in page_cases},
        shap=values.shap, shap_original=values.original, lime=lime, summary=summary,
        shap_by_class=values.by_class,
    )


# ---------------------------------------------------------------- the model and its final predictions

#: What each headline source means, for hovers and the summary.
SOURCE_TEXT = {
    "cv": "cross-validated: from the fold models that never saw this case",
    "training": "final model, in-sample: a training case without a cross-validated probability (optimistic)",
    "external": "final model: the case was not among its training cases",
    "final": "final model (the model folder does not list its training cases)",
}


@dataclass
class _ModelView:
    """What the report needs to know about a loaded model: its classes, threshold and input columns."""

    model_name: str
    columns: list[str]          # input columns in training order, batch column included
    names: list[str]            # feature columns (no batch column)
    batch: str | None
    multiclass: bool
    classes: list[str]
    estimator_classes: list[str]
    positive: str | None
    negative: str
    pos: int | None             # index of the positive class in predict_proba
    threshold: float | None

    @classmethod
    def of(cls, model) -> _ModelView:
        card, est = model.card, final_estimator(model.pipeline)
        columns = [str(n) for n in model.feature_names]
        # a harmonised model also reads each case's batch (scanner, centre): an input column, never a feature
        batch = model.batch_column if model.batch_column in columns else None
        est_classes = [str(c) for c in est.classes_]
        multiclass = len(est_classes) > 2
        if multiclass:  # one-vs-rest view: no positive class and no threshold; classes in predict_proba order
            classes = [str(c) for c in card.get("classes") or []]
            classes = classes if len(classes) == len(est_classes) else est_classes
            positive, negative, pos, threshold = None, "other classes", None, None
        else:
            positive = card.get("positive_class")
            pos = positive_index(est.classes_, positive)
            classes = [str(c) for c in card.get("classes") or est_classes]
            negative = next((c for c in classes if c != str(positive)), "negative")
            threshold = model.threshold
        return cls(str(card.get("model_name", "model")), columns, [n for n in columns if n != batch], batch,
                   multiclass, classes, est_classes, positive, negative, pos, threshold)


@dataclass
class _Final:
    """The final model's predictions on the explained cases (in-sample for its training cases)."""

    proba: pd.Series                       # positive class (binary) or the predicted class (multi-class)
    predicted: pd.Series
    class_proba: pd.DataFrame | None = None


def _final_predictions(pipe, X: pd.DataFrame, view: _ModelView) -> _Final:
    if view.multiclass:
        class_proba = pd.DataFrame(pipe.predict_proba(X), index=X.index, columns=view.classes)
        best = class_proba.to_numpy().argmax(axis=1) if len(X) else np.array([], dtype=int)
        predicted = pd.Series(np.asarray(view.classes, dtype=object)[best], index=X.index, name="predicted")
        proba = pd.Series(class_proba.to_numpy().max(axis=1) if len(X) else [], index=X.index,
                          name="probability", dtype=float)
        return _Final(proba, predicted, class_proba)
    proba = pd.Series(pipe.predict_proba(X)[:, view.pos], index=X.index, name="probability")
    predicted = pd.Series(np.where(proba >= view.threshold, str(view.positive), view.negative), index=X.index,
                          name="predicted", dtype=object)
    return _Final(proba, predicted)


def _training_cases(folder: ModelFolder, X_train: pd.DataFrame | None) -> set[str] | None:
    """Case ids the final model was trained on (None when the model folder does not say)."""
    try:
        labels = folder.train_labels()
    except Exception:  # an unreadable optional table: fall back to the training features
        labels = None
    if labels is not None:
        return set(map(str, labels.index))
    return set(map(str, X_train.index)) if X_train is not None else None


def _headline(case: str, oof: pd.DataFrame, final: _Final, view: _ModelView, trained_on: set[str] | None) -> dict:
    """The number a page leads with, and where it comes from.

    ``source`` is ``cv`` (out-of-fold from the model folder), ``training`` (a training case without an
    out-of-fold prediction: the final model's in-sample number), ``external`` (a case the final model was
    not trained on) or ``final`` (the model folder does not say which cases it was trained on).
    """
    out = {"final_probability": float(final.proba[case]), "final_predicted": str(final.predicted[case])}
    if case in oof.index:
        row = oof.loc[case]
        repeats = int(row["repeats"])
        out.update(source="cv", probability=float(row["probability"]), low=float(row["low"]),
                   high=float(row["high"]), repeats=repeats)
        if view.multiclass:
            out.update(predicted=str(row["predicted"]),
                       class_probs=[(c, float(row[f"p_{c}"])) for c in view.classes])
        elif "positive_calls" in row and pd.notna(row["positive_calls"]):
            calls = int(row["positive_calls"])
            out["positive_calls"] = calls
            out["predicted"] = (str(view.positive) if 2 * calls > repeats else view.negative if 2 * calls < repeats
                                else "split")
        else:
            out["predicted"] = str(view.positive) if row["probability"] >= view.threshold else view.negative
        return out
    source = "final" if trained_on is None else "training" if case in trained_on else "external"
    out.update(source=source, probability=out["final_probability"], low=None, high=None, repeats=0,
               predicted=out["final_predicted"])
    if view.multiclass:
        out["class_probs"] = [(c, float(final.class_proba.loc[case, c])) for c in view.classes]
    return out


# ---------------------------------------------------------------- SHAP values and importance


@dataclass
class _Values:
    shap: ShapResult
    original: pd.DataFrame                  # SHAP summed onto the input features
    by_class: dict[str, ShapResult]
    original_by_class: dict[str, pd.DataFrame]
    additivity: float


def _shap(pipe, X, X_train, view: _ModelView, final: _Final, settings: ExplainSettings, n_jobs: int) -> _Values:
    args = dict(explainer=settings.explainer, background=settings.shap_background,
                agnostic_background=settings.agnostic_background, max_evals=settings.shap_max_evals,
                seed=settings.seed, n_jobs=n_jobs)
    by_class: dict[str, ShapResult] = {}
    if view.multiclass:
        by_class = compute_shap_classes(pipe, X, X_train, class_names=view.classes, **args)
        res = predicted_class_view(by_class, final.predicted)
        additivity = max((float(np.max(np.abs(r.base_value + r.values.sum(axis=1) - final.class_proba[c])))
                          for c, r in by_class.items()), default=0.0) if len(X) else 0.0
    else:
        res = compute_shap(pipe, X, X_train, positive_class=view.positive, **args)
        additivity = float(np.max(np.abs(res.base_value + res.values.sum(axis=1) - final.proba))) if len(X) else 0.0
    return _Values(res, to_original(res.values, view.names), by_class,
                   {c: to_original(r.values, view.names) for c, r in by_class.items()}, additivity)


def _write_value_tables(out_dir: Path, values: _Values, lime: pd.DataFrame) -> None:
    if values.by_class:  # long tables: one block of rows per class, the class in the first column
        _write_csv(out_dir / "shap_values.csv", _by_class_table({c: r.to_frame() for c, r in values.by_class.items()}))
        _write_csv(out_dir / "shap_values_original.csv", _by_class_table(
            {c: values.original_by_class[c].assign(base_value=r.base_value) for c, r in values.by_class.items()}))
    else:
        _write_csv(out_dir / "shap_values.csv", values.shap.to_frame())
        _write_csv(out_dir / "shap_values_original.csv", values.original.assign(base_value=values.shap.base_value))
    atomic_write_text(out_dir / "lime.csv", lime.to_csv(index=False, float_format="%.12g"))


@dataclass
class _Importance:
    mean_abs: pd.Series
    family: pd.Series
    image_filter: pd.Series
    per_class: pd.DataFrame | None
    top: list[str]


def _importance(values: _Values, view: _ModelView) -> _Importance:
    """Mean |SHAP| per feature, family and filter; for a multi-class model averaged over the classes."""
    if view.multiclass:
        tables = values.original_by_class
        per_class = pd.DataFrame({c: t.abs().mean() for c, t in tables.items()}, index=values.original.columns)
        mean_abs = per_class.mean(axis=1).sort_values(ascending=False, kind="stable")
        family = pd.concat([grouped(t, "family").abs().mean() for t in tables.values()], axis=1).mean(axis=1)
        image_filter = pd.concat([grouped(t, "filter").abs().mean() for t in tables.values()], axis=1).mean(axis=1)
    else:
        per_class = None
        mean_abs = values.original.abs().mean().sort_values(ascending=False, kind="stable")
        family = grouped(values.original, "family").abs().mean()
        image_filter = grouped(values.original, "filter").abs().mean()
    return _Importance(mean_abs, family.sort_values(ascending=False), image_filter.sort_values(ascending=False),
                       per_class, [n for n in mean_abs.index if mean_abs[n] > 0])


def _cohort_figures(X, values: _Values, imp: _Importance, view: _ModelView, labels, settings,
                    names: FeatureLabels) -> dict[str, bytes]:
    """Beeswarm, importance bars and dependence plots of the cohort page (SHAP of the final model)."""
    figs: dict[str, bytes] = {}
    if not len(X):
        return figs
    raw_all = X[view.names].apply(pd.to_numeric, errors="coerce")
    top = imp.top[: settings.top_features]
    shown = [n for n in imp.mean_abs.index[:15] if imp.mean_abs[n] > 0] or list(imp.mean_abs.index[:15])
    display = {"display_names": names.names}
    units = {c: u.strip() for c, u in names.units.items() if u}
    figs["groups"] = plots.grouped_bars(imp.family, imp.image_filter, xlabel="mean |summed SHAP value|",
                                        color="#34495e")
    if view.multiclass:
        for k, c in enumerate(view.classes):
            figs[f"beeswarm_{k}"] = plots.beeswarm(values.original_by_class[c][shown], raw_all.reindex(columns=shown),
                                                   top=15, seed=settings.seed, positive=c, negative="other classes",
                                                   **display)
        figs["mean_abs"] = plots.class_magnitude_bars(imp.per_class.loc[imp.mean_abs.index[: settings.top_features]],
                                                      xlabel="mean |SHAP value| on each class's probability", **display)
        for k, name in enumerate(top[: settings.dependence_plots]):
            x = raw_all[name] if name in raw_all else values.original[name] * np.nan
            figs[f"dependence_{k + 1}"] = plots.dependence_by_class(
                name, x, {c: values.original_by_class[c][name] for c in view.classes}, units=units, **display)
        return figs
    sides = {"positive": str(view.positive), "negative": view.negative}
    figs["beeswarm"] = plots.beeswarm(values.original[shown], raw_all.reindex(columns=shown), top=15,
                                      seed=settings.seed, **sides, **display)
    figs["mean_abs"] = plots.magnitude_bars(imp.mean_abs.head(settings.top_features),
                                            xlabel="mean |SHAP value| (probability)", **display)
    for k, name in enumerate(top[: settings.dependence_plots]):
        x = raw_all[name] if name in raw_all else values.original[name] * np.nan
        figs[f"dependence_{k + 1}"] = plots.dependence(name, x, values.original[name], labels, units=units, **sides,
                                                       **display)
    return figs


def _patient_item(c, X, X_train, values: _Values, view: _ModelView, final: _Final, headline: dict, labels,
                  lime_by_case, agree, file_name: str, images, settings) -> dict:
    """Everything one patient page shows, as plain values a worker process can render."""
    mapping = original_name_map(values.shap.values.columns, view.names)
    contrib = values.shap.values.loc[c]
    raw = pd.Series({f: _raw_value(f, mapping, X.loc[c], values.shap.features.loc[c]) for f in contrib.index})
    top_names = contrib.abs().sort_values(ascending=False, kind="stable").index[: settings.top_features]
    train_num = X_train[view.names].apply(pd.to_numeric, errors="coerce")
    top = []
    for f in top_names:
        orig = mapping[f]
        dist = train_num[orig] if orig in train_num else None
        top.append({**parse_feature_name(orig), "feature": orig, "value": raw[f],
                    "percentile": _percentile(dist, raw[f]) if dist is not None else None,
                    "shap": float(contrib[f])})
    item = {
        "case_id": c, "file": file_name, "probability": float(final.proba[c]), "headline": headline,
        "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
        "contrib": contrib, "raw": raw, "top": top, "lime": lime_by_case.get(c, pd.DataFrame(columns=["weight", "feature_rule"])),
        "agreement": agree[c], "family": grouped(values.original.loc[[c]], "family").iloc[0],
        "filter": grouped(values.original.loc[[c]], "filter").iloc[0],
        "image": tuple(images[c]) if images and c in images else None,  # a DICOM series is a tuple of files
    }
    if view.multiclass:  # the page explains the final model's predicted class against the others
        item.update(predicted=str(final.predicted[c]), base=float(values.shap.base_value[c]),
                    class_probs=[(k, float(final.class_proba.loc[c, k])) for k in view.classes])
    return item


def _summary(view: _ModelView, values: _Values, imp: _Importance, agree, stability, perf: Performance,
             settings, X, page_cases, train_note, out_dir: Path) -> dict:
    top = imp.top[: settings.top_features]
    summary = {
        "model_name": view.model_name,
        "positive_class": view.positive,
        "threshold": view.threshold,
        "explainer": values.shap.explainer,
        "explainer_notes": values.shap.notes,
        "background_source": train_note,
        "base_value": values.shap.base_value,
        "additivity_max_error": values.additivity,
        "n_cases": int(len(X)),
        "n_patients": len(page_cases),
        "n_final_features": int(values.shap.values.shape[1]),
        "top_features": [{**parse_feature_name(n), "feature": n, "mean_abs_shap": float(imp.mean_abs[n])}
                         for n in top],
        "by_family": {k: float(v) for k, v in imp.family.items()},
        "by_filter": {k: float(v) for k, v in imp.image_filter.items()},
        "shap_lime_agreement": _agreement_summary(agree, settings.lime_top),
        "fold_stability": {k: v for k, v in stability.items() if k not in ("matrix", "importance")},
        "performance": {"source": perf.source, "description": perf.description, "confusion": perf.confusion,
                        "n_repeats": perf.n_repeats},
        "settings": settings.model_dump(),
        "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.glob("*.csv")),
    }
    if view.multiclass:
        summary.update(outcome_type="multiclass", classes=view.classes,
                       base_value={c: r.base_value for c, r in values.by_class.items()},
                       mean_abs_shap_by_class={c: {n: float(imp.per_class.loc[n, c]) for n in top}
                                               for c in view.classes})
    return summary


def _stability_long(importance: pd.DataFrame) -> pd.DataFrame:
    """fold_stability.csv: one row per (feature, fold model) with mean |SHAP| and whether selection kept it."""
    long = importance.rename_axis("feature").reset_index().melt(id_vars="feature", var_name="fold",
                                                                 value_name="mean_abs_shap")
    long["selected"] = long["mean_abs_shap"].notna()
    return long.set_index("feature")


# ---------------------------------------------------------------- inputs


def _training_features(folder: ModelFolder, model, batch: str | None) -> pd.DataFrame | None:
    """The model folder's training features as the model reads them (None when absent or unusable)."""
    path = folder.train_features_path
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path, dtype={"case_id": str, **({batch: str} if batch else {})})  # "007" stays "007"
        return features_for_model(model, table)
    except Exception as exc:  # an unreadable optional file must not stop the reports
        warnings.warn(f"ignoring {path}: {exc}", stacklevel=2)
        return None


def _read_codebook(codebook) -> pd.DataFrame | None:
    if codebook is None or isinstance(codebook, pd.DataFrame):
        return codebook
    path = Path(codebook)
    try:
        return pd.read_csv(path) if path.is_file() else None
    except Exception as exc:  # the codebook only names and units the features: the pages work without it
        warnings.warn(f"ignoring {path}: {exc}", stacklevel=2)
        return None


def _align_labels(labels, index) -> pd.Series | None:
    if labels is None:
        return None
    labels = pd.Series(labels).copy()
    labels.index = labels.index.map(str)
    return labels.reindex(index)


def _page_cases(index, patients, max_patients) -> list[str]:
    if patients:
        wanted = [str(p) for p in patients]
        unknown = [p for p in wanted if p not in set(index)]
        if unknown:
            raise ExplainError(f"patients not in the feature table: {', '.join(unknown[:10])}")
        cases = list(dict.fromkeys(wanted))
    else:
        cases = list(index)
    return cases[:max_patients] if max_patients else cases


def _reaching_inputs(final_names, input_names) -> list[str] | None:
    """The input features that reach the final estimator, when every final feature is one of them."""
    mapping = original_name_map(final_names, input_names)
    inputs = set(map(str, input_names))
    if all(v in inputs for v in mapping.values()):
        return [n for n in map(str, input_names) if n in set(mapping.values())]
    return None


def _safe_name(case_id: str) -> str:
    """A file name for a case id: itself when it is safe, else a cleaned form plus a short hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", str(case_id)).strip(".") or "case"
    if clean == str(case_id):
        return clean
    return f"{clean[:60]}-{hashlib.sha1(str(case_id).encode()).hexdigest()[:8]}"


def _raw_value(final_name, mapping, raw_row, transformed_row):
    orig = mapping[final_name]
    return raw_row[orig] if orig in raw_row.index else transformed_row[final_name]


def _percentile(dist: pd.Series, value) -> float | None:
    d = pd.to_numeric(dist, errors="coerce").dropna().to_numpy()
    if d.size == 0 or value is None or pd.isna(value):
        return None
    return float(100.0 * ((d < value).mean() + 0.5 * (d == value).mean()))


def _agreement_summary(agree: dict, k: int) -> dict:
    if not agree:
        return {}
    overlap = np.array([a["overlap"] for a in agree.values()], dtype=float)
    sign = np.array([a["sign_agreement"] for a in agree.values()], dtype=float)
    return {"k": k, "mean_overlap": float(np.nanmean(overlap)),
            "mean_sign_agreement": float(np.nanmean(sign)) if np.isfinite(sign).any() else None}


def _sha_of(path: Path) -> str | None:
    from radpipe._io import sha256_bytes_of

    return sha256_bytes_of(path) if path.exists() else None


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(float_format="%.12g"))


def _by_class_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-class tables (same index and columns) stacked into one, the class in a first ``class`` column."""
    return pd.concat([frame.assign(**{"class": name})[["class", *frame.columns]] for name, frame in frames.items()])


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
