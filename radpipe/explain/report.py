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
from radpipe.explain.pages import b64, card_rows, env, render_patients
from radpipe.explain.performance import binary_performance, multiclass_performance
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
) -> ExplainResult:
    """Explain a saved model on a feature table and write the reports into ``out_dir``.

    Parameters
    ----------
    model_dir : folder written by ``radpipe train`` (``model.joblib``, its sha256, ``model_card.json``).
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

    Returns
    -------
    ExplainResult
    """
    started = time.time()
    settings = settings or ExplainSettings()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model = load_model(model_dir, trust=trust)
    folder = ModelFolder(model.path)
    card, pipe = model.card, model.pipeline
    columns = [str(n) for n in (card.get("feature_names") or features.columns)]
    # a harmonised model also reads each case's batch (scanner, centre): an input column, never a feature
    batch = model.batch_column if model.batch_column in columns else None
    names = [n for n in columns if n != batch]
    X = _feature_table(features, columns, batch=batch)
    positive = card.get("positive_class")
    est = final_estimator(pipe)
    multiclass = len(est.classes_) > 2
    if multiclass:  # one-vs-rest view: no positive class and no threshold; classes in predict_proba order
        classes = [str(c) for c in card.get("classes") or []]
        classes = classes if len(classes) == len(est.classes_) else [str(c) for c in est.classes_]
        pos, negative, threshold = None, "other classes", None
    else:
        pos = positive_index(est.classes_, positive)
        classes = [str(c) for c in card.get("classes") or est.classes_]
        negative = next((c for c in classes if c != str(positive)), "negative")
        threshold = model.threshold
    X_train = _training_features(model.path, columns, batch=batch)
    train_note = "training features of the model folder"
    if X_train is None:
        X_train, train_note = X, "the explained cases (the model folder has no train_features.csv)"
    labels = _align_labels(labels, X.index)

    page_cases = _page_cases(X.index, patients, settings.max_patients)
    class_proba = predicted = None
    if multiclass:
        class_proba = pd.DataFrame(pipe.predict_proba(X), index=X.index, columns=classes)
        predicted = pd.Series(np.asarray(classes, dtype=object)[class_proba.to_numpy().argmax(axis=1)],
                              index=X.index, name="predicted")
        proba = pd.Series(class_proba.to_numpy().max(axis=1) if len(X) else [], index=X.index, name="probability",
                          dtype=float)
    else:
        proba = pd.Series(pipe.predict_proba(X)[:, pos], index=X.index, name="probability")

    timings: dict[str, float] = {}
    tick = time.time()
    shap_args = dict(explainer=settings.explainer, background=settings.shap_background,
                     agnostic_background=settings.agnostic_background, max_evals=settings.shap_max_evals,
                     seed=settings.seed, n_jobs=n_jobs)
    shap_by_class: dict[str, ShapResult] = {}
    if multiclass:
        shap_by_class = compute_shap_classes(pipe, X, X_train, class_names=classes, **shap_args)
        shap_res = predicted_class_view(shap_by_class, predicted)
        additivity = max((float(np.max(np.abs(r.base_value + r.values.sum(axis=1) - class_proba[c])))
                          for c, r in shap_by_class.items()), default=0.0) if len(X) else 0.0
    else:
        shap_res = compute_shap(pipe, X, X_train, positive_class=positive, **shap_args)
        additivity = float(np.max(np.abs(shap_res.base_value + shap_res.values.sum(axis=1) - proba))) if len(X) else 0.0
    shap_orig = to_original(shap_res.values, names)
    shap_orig_by_class = {c: to_original(r.values, names) for c, r in shap_by_class.items()}
    timings["shap"], tick = time.time() - tick, time.time()
    lime = compute_lime(
        pipe, X.loc[page_cases], X_train, positive_index=0 if multiclass else pos,
        class_names=classes if multiclass else [str(c) for c in est.classes_],
        num_samples=settings.lime_samples, top=settings.lime_top, seed=settings.seed, n_jobs=n_jobs,
        perturb=_reaching_inputs(shap_res.values.columns, names),
        case_classes={c: classes.index(predicted[c]) for c in page_cases} if multiclass else None,
        fixed=[batch] if batch else None,
    )
    if multiclass:
        lime.insert(1, "explained_class", lime["case_id"].map(predicted))

    timings["lime"], tick = time.time() - tick, time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(exist_ok=True)
    if multiclass:  # long tables: one block of rows per class, the class in the first column
        _write_csv(out_dir / "shap_values.csv", _by_class_table({c: r.to_frame() for c, r in shap_by_class.items()}))
        _write_csv(out_dir / "shap_values_original.csv", _by_class_table(
            {c: shap_orig_by_class[c].assign(base_value=r.base_value) for c, r in shap_by_class.items()}))
    else:
        _write_csv(out_dir / "shap_values.csv", shap_res.to_frame())
        _write_csv(out_dir / "shap_values_original.csv", shap_orig.assign(base_value=shap_res.base_value))
    atomic_write_text(out_dir / "lime.csv", lime.to_csv(index=False, float_format="%.12g"))

    # agreement between the top SHAP and top LIME features of each case with a page
    lime_by_case = {c: g for c, g in lime.groupby("case_id", sort=False)}
    agree = {c: agreement(shap_orig.loc[c], lime_by_case.get(c, lime.iloc[:0]), settings.lime_top)
             for c in page_cases}

    stability = fold_stability(model.path, X, X_train, names, positive, settings, n_jobs, multiclass=multiclass)
    timings["fold_stability"], tick = time.time() - tick, time.time()
    if multiclass:
        perf = multiclass_performance(model.path, card, classes, class_proba, labels, settings)
        # importance of a feature: its mean |SHAP| on each class's probability, averaged over the classes
        per_class_abs = pd.DataFrame({c: t.abs().mean() for c, t in shap_orig_by_class.items()},
                                     index=shap_orig.columns)
        mean_abs = per_class_abs.mean(axis=1).sort_values(ascending=False, kind="stable")
        family_abs = pd.concat([grouped(t, "family").abs().mean() for t in shap_orig_by_class.values()],
                               axis=1).mean(axis=1).sort_values(ascending=False)
        filter_abs = pd.concat([grouped(t, "filter").abs().mean() for t in shap_orig_by_class.values()],
                               axis=1).mean(axis=1).sort_values(ascending=False)
    else:
        perf = binary_performance(model.path, card, proba, labels, threshold, settings)
        mean_abs = shap_orig.abs().mean().sort_values(ascending=False, kind="stable")
        family_abs = grouped(shap_orig, "family").abs().mean().sort_values(ascending=False)
        filter_abs = grouped(shap_orig, "filter").abs().mean().sort_values(ascending=False)
    top_names = [n for n in mean_abs.index[: settings.top_features] if mean_abs[n] > 0]

    # -------- patient pages
    mapping = original_name_map(shap_res.values.columns, names)
    pages_dir = out_dir / "patients"
    pages_dir.mkdir(exist_ok=True)
    (out_dir / "figures" / "patients").mkdir(exist_ok=True)
    file_names = {c: _safe_name(c) for c in page_cases}
    common = dict(
        positive=str(positive), negative=negative, threshold=threshold, base=shap_res.base_value,
        settings=settings.model_dump(), explainer=shap_res.explainer, notes=shap_res.notes,
        model_name=str(card.get("model_name", "model")), out_dir=str(out_dir), draw_images=settings.images,
        multiclass=multiclass,
    )
    train_num = X_train[names].apply(pd.to_numeric, errors="coerce")
    items = []
    for c in page_cases:
        contrib = shap_res.values.loc[c]
        raw = pd.Series({f: _raw_value(f, mapping, X.loc[c], shap_res.features.loc[c]) for f in contrib.index})
        top = contrib.abs().sort_values(ascending=False, kind="stable").index[: settings.top_features]
        rows = []
        for f in top:
            orig = mapping[f]
            dist = train_num[orig] if orig in train_num else None
            rows.append({
                **parse_feature_name(orig), "feature": orig, "value": raw[f],
                "percentile": _percentile(dist, raw[f]) if dist is not None else None,
                "shap": float(contrib[f]),
            })
        items.append({
            "case_id": c, "file": file_names[c], "probability": float(proba[c]),
            "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
            "contrib": contrib, "raw": raw, "top": rows, "lime": lime_by_case.get(c, lime.iloc[:0]),
            "agreement": agree[c], "family": grouped(shap_orig.loc[[c]], "family").iloc[0],
            "filter": grouped(shap_orig.loc[[c]], "filter").iloc[0],
            "image": tuple(map(str, images[c])) if images and c in images else None,
        })
        if multiclass:  # the page explains the predicted class against the others
            items[-1].update(predicted=str(predicted[c]), base=float(shap_res.base_value[c]),
                             class_probs=[(k, float(class_proba.loc[c, k])) for k in classes])
    tick = time.time()
    rows = render_patients(items, common, pages_dir, out_dir / "figures" / "patients", n_jobs, progress)
    timings["patient_pages"], tick = time.time() - tick, time.time()
    patients_table = pd.DataFrame(rows).set_index("case_id") if rows else pd.DataFrame()

    # -------- cohort page
    raw_all = X[names].apply(pd.to_numeric, errors="coerce")
    figs = {}
    if len(X) and multiclass:
        shown = [n for n in mean_abs.index[:15] if mean_abs[n] > 0] or list(mean_abs.index[:15])
        for k, c in enumerate(classes):
            figs[f"beeswarm_{k}"] = plots.beeswarm(shap_orig_by_class[c][shown], raw_all.reindex(columns=shown),
                                                   top=15, seed=settings.seed)
        figs["mean_abs"] = plots.class_magnitude_bars(per_class_abs.loc[mean_abs.index[: settings.top_features]],
                                                      xlabel="mean |SHAP value| on each class's probability")
        figs["groups"] = plots.grouped_bars(family_abs, filter_abs, xlabel="mean |summed SHAP value|",
                                            color="#34495e")
        for k, name in enumerate(top_names[: settings.dependence_plots]):
            x = raw_all[name] if name in raw_all else shap_orig[name] * np.nan
            figs[f"dependence_{k + 1}"] = plots.dependence_by_class(
                name, x, {c: shap_orig_by_class[c][name] for c in classes})
    elif len(X):
        shown = [n for n in mean_abs.index[:15] if mean_abs[n] > 0] or list(mean_abs.index[:15])
        figs["beeswarm"] = plots.beeswarm(shap_orig[shown], raw_all.reindex(columns=shown), top=15,
                                          seed=settings.seed)
        figs["mean_abs"] = plots.magnitude_bars(mean_abs.head(settings.top_features),
                                                xlabel="mean |SHAP value| (probability)")
        figs["groups"] = plots.grouped_bars(family_abs, filter_abs, xlabel="mean |summed SHAP value|",
                                            color="#34495e")
        for k, name in enumerate(top_names[: settings.dependence_plots]):
            figs[f"dependence_{k + 1}"] = plots.dependence(name, raw_all[name] if name in raw_all else
                                                           shap_orig[name] * np.nan, shap_orig[name], labels)
    figs.update(perf.pop("figures", {}))
    if stability.get("matrix") is not None:
        figs["stability"] = plots.heatmap(stability.pop("matrix"), title="Spearman correlation of mean |SHAP|")
    else:
        stability.pop("matrix", None)
    for key, png in figs.items():
        atomic_write_bytes(out_dir / "figures" / f"cohort_{key}.png", png)

    summary = {
        "model_name": card.get("model_name"),
        "positive_class": positive,
        "threshold": threshold,
        "explainer": shap_res.explainer,
        "explainer_notes": shap_res.notes,
        "background_source": train_note,
        "base_value": shap_res.base_value,
        "additivity_max_error": additivity,
        "n_cases": int(len(X)),
        "n_patients": len(page_cases),
        "n_final_features": int(shap_res.values.shape[1]),
        "top_features": [{**parse_feature_name(n), "feature": n, "mean_abs_shap": float(mean_abs[n])}
                         for n in top_names],
        "by_family": {k: float(v) for k, v in family_abs.items()},
        "by_filter": {k: float(v) for k, v in filter_abs.items()},
        "shap_lime_agreement": _agreement_summary(agree, settings.lime_top),
        "fold_stability": stability,
        "performance": {k: v for k, v in perf.items() if k not in ("metrics_table", "oof")},
        "settings": settings.model_dump(),
        "files": sorted(str(p.relative_to(out_dir)) for p in out_dir.glob("*.csv")),
    }
    if multiclass:
        summary.update(outcome_type="multiclass", classes=classes,
                       base_value={c: r.base_value for c, r in shap_by_class.items()},
                       mean_abs_shap_by_class={c: {n: float(per_class_abs.loc[n, c]) for n in top_names}
                                               for c in classes})
    cohort_rows = []
    for c in X.index:
        pr = float(proba[c])
        oof = perf.get("oof", {}).get(c)
        cohort_rows.append({
            "case_id": c, "file": file_names.get(c), "probability": pr,
            "predicted": str(predicted[c]) if multiclass else str(positive) if pr >= threshold else negative,
            "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
            "top_feature": shap_orig.loc[c].abs().idxmax() if shap_orig.shape[1] else "",
            "overlap": agree[c]["overlap"] if c in agree else None,
            "oof": oof.get(str(predicted[c])) if multiclass and oof is not None else oof,
        })
    html = env(settings.banner).get_template("cohort.html").render(
        title=f"{card.get('model_name', 'model')}: explanations", summary=summary, card=card_rows(card),
        card_md=folder.card_md(), figs={k: b64(v) for k, v in figs.items()},
        perf=perf, metrics=perf.get("metrics_table"), has_oof=bool(perf.get("oof")), stability=stability, rows=cohort_rows,
        top=summary["top_features"], dependence=[(n, f"dependence_{k + 1}") for k, n in
                                                  enumerate(top_names[: settings.dependence_plots])],
        positive=str(positive), negative=negative, threshold=threshold, notes=shap_res.notes,
        multiclass=multiclass, classes=classes,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), versions=software_versions(),
    )
    cohort_page = out_dir / "cohort.html"
    atomic_write_text(cohort_page, html)
    if len(patients_table):
        _write_csv(out_dir / "patients.csv", patients_table)
    timings["cohort_page"] = time.time() - tick
    summary["elapsed_seconds"] = round(time.time() - started, 2)
    summary["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    summary["patients"] = {c: {"probability": float(proba[c]), **agree[c]} for c in page_cases}
    if multiclass:
        for c in page_cases:
            summary["patients"][c]["predicted"] = str(predicted[c])
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
        shap=shap_res, shap_original=shap_orig, lime=lime, summary=summary, shap_by_class=shap_by_class,
    )


# ---------------------------------------------------------------- inputs


def _feature_table(features: pd.DataFrame, names: list[str], batch: str | None = None) -> pd.DataFrame:
    """The model's input columns of ``features``, numeric; the batch column of a harmonised model kept as given."""
    df = features
    if "case_id" in df.columns and df.index.name != "case_id":
        df = df.set_index("case_id")
    if batch is not None and batch not in df.columns:
        raise ExplainError(
            f"the model harmonises features with ComBat and needs each case's batch (scanner, centre) in a column "
            f"'{batch}', which the feature table lacks: add the '{batch}' column of the cohort's labels to it")
    missing = [n for n in names if n not in df.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ExplainError(
            f"the feature table lacks {len(missing)} of the model's {len(names)} features ({shown}): "
            "extract features with the same settings the model was trained on"
        )
    X = _numeric(df[names], batch)
    X.index = X.index.map(str)
    X.index.name = "case_id"
    if X.index.has_duplicates:
        dup = X.index[X.index.duplicated()].unique()[:5].tolist()
        raise ExplainError(f"case ids are not unique in the feature table: {dup}")
    return X


def _numeric(df: pd.DataFrame, batch: str | None) -> pd.DataFrame:
    """Every column as numbers (unreadable cells NaN), except the batch column, kept as it is."""
    out = df.drop(columns=[batch]).apply(pd.to_numeric, errors="coerce") if batch else df.apply(
        pd.to_numeric, errors="coerce")
    if batch:
        out[batch] = df[batch]
        out = out[list(df.columns)]
    return out


def _training_features(model_path: Path, names: list[str], batch: str | None = None) -> pd.DataFrame | None:
    path = ModelFolder(model_path).train_features_path
    if not path.exists():
        return None
    try:
        df = pd.read_csv(path, dtype={batch: str} if batch else None)  # batch labels as written ("007" stays)
        if "case_id" in df.columns:
            df = df.set_index("case_id")
        if not set(names) <= set(df.columns):
            return None
        return _numeric(df[names], batch)
    except Exception as exc:  # an unreadable optional file must not stop the reports
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
