"""The explain stage: SHAP and LIME for a saved model and a feature table, written as tables, PNG figures and
self-contained HTML reports (``cohort.html`` and one ``patients/<case_id>.html`` per case).

``explain`` is the entry point; everything it reads from the model folder besides the model itself
(metrics, out-of-fold predictions, training features, outer-fold models, the model card text) is optional.

A binary model is explained on the probability of its positive class. A multi-class model is explained on
the probability of every class (SHAP per class, cohort figures per class, importance averaged over classes);
each patient page explains the patient's predicted (most probable) class, with SHAP and LIME.
A survival model (card ``outcome_type: "survival"``) is explained on its risk score by
:mod:`radpipe.explain.survival_report`.
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
from radpipe.controls.report import negative_controls_section
from radpipe.errors import RadpipeError
from radpipe.explain.attributions import (
    Attributions,
    Importance,
    attributions,
    cohort_figures,
    feature_parts,
    importance,
    patient_item,
    reaching_inputs,
    write_csv,
    write_value_tables,
)
from radpipe.explain.examples import ood_of_cases, page_section, similar_patients, thumbnails
from radpipe.explain.headline import SOURCE_TEXT, ModelView, final_predictions, headline, training_cases
from radpipe.explain.lime_values import agreement, compute_lime
from radpipe.explain.pages import card_rows, feature_labels, render_cohort, render_patients
from radpipe.explain.performance import Performance, cv_predictions, model_performance, out_of_fold
from radpipe.explain.settings import ExplainSettings
from radpipe.explain.shap_values import ShapResult
from radpipe.explain.stability import fold_stability
from radpipe.explain.study import write_study
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
    >>> import tempfile
    >>> import numpy as np, pandas as pd
    >>> from radpipe.model import ModelSettings, train_models
    >>> rng = np.random.default_rng(0)
    >>> y = pd.Series(["benign", "malignant"] * 15, index=[f"case_{i:03d}" for i in range(30)])
    >>> X = pd.DataFrame({"original_firstorder_Mean": rng.normal(size=30) + (y == "malignant") * 2,
    ...                   "original_shape_Sphericity": rng.uniform(0.5, 0.9, 30)}, index=y.index)
    >>> work = Path(tempfile.mkdtemp())
    >>> _ = train_models(X, y, ModelSettings(models=["logreg"], positive_class="malignant", bootstrap=0),
    ...                  work / "models")
    >>> result = explain(work / "models", X, work / "explain", labels=y, patients=["case_001"],
    ...                  settings=ExplainSettings(lime_samples=200))
    >>> result.patient_pages["case_001"].name, result.cohort_page.name
    ('case_001.html', 'cohort.html')
    """
    started = time.time()
    settings = settings or ExplainSettings()
    out_dir = Path(out_dir)
    model = load_model(Path(model_dir), trust=trust)
    folder = ModelFolder(model.path)
    if model.card.get("outcome_type") == "survival":
        return _explain_survival(model, folder, features, out_dir, labels=labels, images=images, patients=patients,
                                 settings=settings, n_jobs=n_jobs, progress=progress, codebook=codebook,
                                 started=started)
    view = ModelView.of(model)
    X = features_for_model(model, features)
    X_train = _training_features(folder, model, view.batch)
    train_note = "training features of the model folder"
    if X_train is None:
        X_train, train_note = X, "the explained cases (the model folder has no training features)"
    labels = _align_labels(labels, X.index)
    page_cases = _page_cases(X.index, patients, settings.max_patients)
    final = final_predictions(model.pipeline, X, view)
    timings: dict[str, float] = {}

    tick = time.time()
    values = attributions(model.pipeline, X, X_train, view, final, settings, n_jobs)
    timings["shap"], tick = time.time() - tick, time.time()
    lime = _lime(model.pipeline, X.loc[page_cases], X_train, values, view, final, settings, n_jobs)
    timings["lime"], tick = time.time() - tick, time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(exist_ok=True)
    write_value_tables(out_dir, values, lime)
    lime_by_case = {c: g for c, g in lime.groupby("case_id", sort=False)}
    agree = {c: agreement(values.original.loc[c], lime_by_case.get(c, lime.iloc[:0]), settings.lime_top)
             for c in page_cases}

    stability = fold_stability(folder.path, X, X_train, view.names, view.positive, settings, n_jobs,
                               multiclass=view.multiclass)
    if "importance_all" in stability:
        write_csv(out_dir / "fold_stability.csv", _stability_long(stability.pop("importance_all")))
    timings["fold_stability"], tick = time.time() - tick, time.time()

    # the numbers that lead every page: out-of-fold where the model folder has them, never recomputed
    cv_rows = cv_predictions(folder, view.model_name)
    oof = out_of_fold(cv_rows, view.classes, view.positive)
    trained_on = training_cases(folder, X_train if X_train is not X else None)
    headlines = {c: headline(c, oof, final, view, trained_on) for c in X.index}
    perf = model_performance(folder, model.card, view.classes,
                             final_proba=final.class_proba if view.multiclass else final.proba,
                             labels=labels, predictions=cv_rows)
    imp = importance(values, view)

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
    items = [patient_item(c, X, X_train, values, view, final, headlines[c], labels, lime_by_case, agree,
                           file_names[c], images, settings) for c in page_cases]
    similar = _similar(model, folder, X, page_cases, headlines, oof, cv_rows, view, images, settings, out_dir)
    for item in items:
        item["similar"] = similar[item["case_id"]]
    rows = render_patients(items, common, pages_dir, out_dir / "figures" / "patients", n_jobs, progress)
    timings["patient_pages"], tick = time.time() - tick, time.time()

    figs = cohort_figures(X, values, imp, view, labels, settings, labels_of)
    figs.update(perf.figures)
    for key, png in figs.items():
        atomic_write_bytes(out_dir / "figures" / f"cohort_{key}.png", png)
    summary = _summary(view, values, imp, agree, stability, perf, settings, X, page_cases, train_note,
                       out_dir)
    cohort_rows = [{
        "case_id": c, "file": file_names.get(c), **headlines[c],
        "top_feature": values.original.loc[c].abs().idxmax() if values.original.shape[1] else "",
        "overlap": agree[c]["overlap"] if c in agree else None,
        "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
    } for c in X.index]
    cohort_page = out_dir / "cohort.html"
    atomic_write_text(cohort_page, _cohort_html(model.card, folder, view, values, imp, summary, figs, perf, stability,
                                                cohort_rows, labels_of, settings, has_oof=len(oof) > 0,
                                                has_labels=labels is not None and labels.notna().any()))
    if rows:
        write_csv(out_dir / "patients.csv", pd.DataFrame(rows).set_index("case_id"))
    # study.html and the CLEAR/METRICS checklists; the features folder is the one holding the codebook
    write_study(folder.path, out_dir, features_dir=Path(codebook).parent if isinstance(codebook, str | Path) else None,
                banner=settings.banner)
    timings["cohort_page"] = time.time() - tick
    summary["elapsed_seconds"] = round(time.time() - started, 2)
    summary["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    # per patient: the explained (final-model) probability and class, and the headline the page leads with
    summary["patients"] = {c: {"probability": float(final.proba[c]), "predicted": str(final.predicted[c]),
                               "headline": headlines[c], **agree[c]} for c in page_cases}
    atomic_write_text(out_dir / "summary.json", json.dumps(_jsonable(summary), indent=2))
    _write_manifest(out_dir, folder, X, settings, started, n_jobs)
    return ExplainResult(
        out_dir=out_dir, cohort_page=cohort_page,
        patient_pages={c: pages_dir / f"{file_names[c]}.html" for c in page_cases},
        shap=values.shap, shap_original=values.original, lime=lime, summary=summary,
        shap_by_class=values.by_class,
    )






def _explain_survival(model, folder: ModelFolder, features, out_dir: Path, *, labels, images, patients, settings,
                      n_jobs, progress, codebook, started: float) -> ExplainResult:
    """A time-to-event model: the survival reports (``survival_report``), then summary.json and manifest.json."""
    from radpipe.explain.survival_report import explain_survival

    X = features_for_model(model, features)
    X_train = _training_features(folder, model, model.batch_column)
    train_note = "training features of the model folder"
    if X_train is None:
        X_train, train_note = X, "the explained cases (the model folder has no training features)"
    page_cases = _page_cases(X.index, patients, settings.max_patients)
    parts = explain_survival(model, folder, X, X_train, train_note, out_dir, labels=labels, images=images,
                             page_cases=page_cases, file_names={c: _safe_name(c) for c in page_cases},
                             settings=settings, n_jobs=n_jobs, progress=progress, codebook=_read_codebook(codebook))
    parts["summary"]["elapsed_seconds"] = round(time.time() - started, 2)
    atomic_write_text(out_dir / "summary.json", json.dumps(_jsonable(parts["summary"]), indent=2))
    _write_manifest(out_dir, folder, X, settings, started, n_jobs)
    return ExplainResult(**parts)


def _similar(model, folder: ModelFolder, X, page_cases, headlines, oof, cv_rows, view, images, settings,
             out_dir: Path) -> dict:
    """Each page's similar patients and OOD flag (None without ``neighbours.joblib``); writes similar_patients.csv."""
    if model.neighbours is None:
        return dict.fromkeys(page_cases)
    try:
        train_labels = folder.train_labels()
    except Exception as exc:  # an unreadable optional table: neighbours are shown without outcomes
        warnings.warn(f"ignoring {folder.train_labels_path}: {exc}", stacklevel=2)
        train_labels = None
    table = similar_patients(model, X, page_cases, headlines, oof, train_labels, settings.similar_patients)
    if len(table):
        write_csv(out_dir / "similar_patients.csv", table.set_index("case_id"))
    ood = ood_of_cases(model, X, page_cases, headlines, cv_rows)
    thumbs = thumbnails(table["neighbour"], images) if settings.images else {}
    return {c: page_section(c, table, ood, thumbs, view, settings.similar_patients, model.neighbours)
            for c in page_cases}


def _lime(pipe, X_pages, X_train, values: Attributions, view: ModelView, final, settings, n_jobs) -> pd.DataFrame:
    """LIME weights of the cases with a page; a multi-class model's explain each case's predicted class."""
    lime = compute_lime(
        pipe, X_pages, X_train, positive_index=0 if view.multiclass else view.pos,
        class_names=view.classes if view.multiclass else view.estimator_classes,
        num_samples=settings.lime_samples, top=settings.lime_top, seed=settings.seed, n_jobs=n_jobs,
        perturb=reaching_inputs(values.shap.values.columns, view.names),
        case_classes={c: view.classes.index(final.predicted[c]) for c in X_pages.index} if view.multiclass else None,
        fixed=[view.batch] if view.batch else None,
    )
    if view.multiclass:
        lime.insert(1, "explained_class", lime["case_id"].map(final.predicted))
    return lime


def _cohort_html(card, folder: ModelFolder, view: ModelView, values: Attributions, imp: Importance, summary, figs,
                 perf, stability, rows, labels_of, settings, *, has_oof: bool, has_labels: bool) -> str:
    shown = stability["importance"].to_numpy(dtype=float) if "importance" in stability else np.array([])
    return render_cohort(
        title=f"{view.model_name}: explanations", summary=summary, card=card_rows(card),
        card_md=folder.card_md(), figs=figs, perf=perf, stability=stability, rows=rows,
        top=summary["top_features"], dependence=[(n, f"dependence_{k + 1}") for k, n in
                                                  enumerate(imp.top[: settings.dependence_plots])],
        positive=str(view.positive), negative=view.negative, threshold=view.threshold, notes=values.shap.notes,
        multiclass=view.multiclass, classes=view.classes, banner=settings.banner, names=labels_of.names,
        has_oof=has_oof, has_labels=has_labels, source_text=SOURCE_TEXT,
        controls=negative_controls_section(folder.path, view.model_name),
        stability_scale=float(np.nanmax(shown)) if np.isfinite(shown).any() else 0.0,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), versions=software_versions(),
    )


def _write_manifest(out_dir: Path, folder: ModelFolder, X: pd.DataFrame, settings, started: float, n_jobs: int) -> None:
    atomic_write_text(out_dir / "manifest.json", json.dumps(_jsonable({
        "stage": "explain", "versions": software_versions(), "settings": settings.model_dump(),
        "model": str(folder.path), "model_sha256": _sha_of(folder.model_path),
        "features_sha256": hashlib.sha256(pd.util.hash_pandas_object(X, index=True).values.tobytes()).hexdigest(),
        "seed": settings.seed, "started": _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(), "n_jobs": n_jobs,
    }), indent=2))


def _summary(view: ModelView, values: Attributions, imp: Importance, agree, stability, perf: Performance,
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
        "top_features": [{**feature_parts(n), "feature": n, "mean_abs_shap": float(imp.mean_abs[n])}
                         for n in top],
        "by_family": {k: float(v) for k, v in imp.family.items()},
        "by_modality": {k: float(v) for k, v in imp.modality.items()},
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


def _safe_name(case_id: str) -> str:
    """A file name for a case id: itself when it is safe, else a cleaned form plus a short hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", str(case_id)).strip(".") or "case"
    if clean == str(case_id):
        return clean
    return f"{clean[:60]}-{hashlib.sha1(str(case_id).encode()).hexdigest()[:8]}"


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
