"""SHAP values of the final model summed onto the input features, feature importance, the cohort page's SHAP
figures and the per-patient content of a page (all explaining the final model, trained on every training case).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.explain import plots
from radpipe.explain.headline import FinalPredictions, ModelView
from radpipe.explain.pages import FeatureLabels
from radpipe.explain.settings import ExplainSettings
from radpipe.explain.shap_values import (
    ShapResult,
    compute_shap,
    compute_shap_classes,
    original_name_map,
    parse_feature_name,
    predicted_class_view,
    to_original,
)


@dataclass
class Attributions:
    shap: ShapResult
    original: pd.DataFrame                  # SHAP summed onto the input features
    by_class: dict[str, ShapResult]
    original_by_class: dict[str, pd.DataFrame]
    additivity: float


def attributions(pipe, X, X_train, view: ModelView, final: FinalPredictions, settings: ExplainSettings, n_jobs: int) -> Attributions:
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
    return Attributions(res, to_original(res.values, view.names), by_class,
                   {c: to_original(r.values, view.names) for c, r in by_class.items()}, additivity)


def write_value_tables(out_dir: Path, values: Attributions, lime: pd.DataFrame) -> None:
    if values.by_class:  # long tables: one block of rows per class, the class in the first column
        write_csv(out_dir / "shap_values.csv", _by_class_table({c: r.to_frame() for c, r in values.by_class.items()}))
        write_csv(out_dir / "shap_values_original.csv", _by_class_table(
            {c: values.original_by_class[c].assign(base_value=r.base_value) for c, r in values.by_class.items()}))
    else:
        write_csv(out_dir / "shap_values.csv", values.shap.to_frame())
        write_csv(out_dir / "shap_values_original.csv", values.original.assign(base_value=values.shap.base_value))
    atomic_write_text(out_dir / "lime.csv", lime.to_csv(index=False, float_format="%.12g"))


@dataclass
class Importance:
    mean_abs: pd.Series
    family: pd.Series
    image_filter: pd.Series
    per_class: pd.DataFrame | None
    top: list[str]
    modality: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # empty for one modality


def feature_parts(name: str) -> dict[str, str]:
    """:func:`~radpipe.explain.shap_values.parse_feature_name` plus the ``modality`` of a multimodal column.

    A multimodal feature table prefixes pyradiomics names with the modality (``pet_original_glcm_Contrast``,
    ``mr_t1_…``; longitudinal tables with ``baseline_``, ``delta_``, …): the prefix is the shortest run of
    leading words after which the rest parses as a pyradiomics name. Other columns have modality ``""``.

    >>> feature_parts("mr_t1_wavelet-LLH_glcm_Contrast")["modality"], feature_parts("mr_t1_original_glcm_Contrast")["family"]
    ('mr_t1', 'texture')
    >>> feature_parts("original_firstorder_Mean")["modality"], feature_parts("age")["family"]
    ('', 'other')
    """
    parsed = parse_feature_name(name)
    if parsed["family"] != "other":
        return {**parsed, "modality": ""}
    base = str(name).split("__", 1)[1] if "__" in str(name) else str(name)
    words = base.split("_")
    for k in range(1, min(len(words) - 2, 4) + 1):
        rest = parse_feature_name("_".join(words[k:]))
        if rest["family"] != "other":
            return {**rest, "modality": "_".join(words[:k])}
    return {**parsed, "modality": ""}


def grouped_parts(values: pd.DataFrame, by: str) -> pd.DataFrame:
    """SHAP values summed per ``family``, ``filter`` or ``modality`` (:func:`feature_parts`), one row per case.

    >>> shap = pd.DataFrame({"pet_original_glcm_Contrast": [0.2], "pet_original_shape_VoxelVolume": [-0.05],
    ...                      "mr_t1_original_glcm_Contrast": [0.1]})
    >>> grouped_parts(shap, "modality").round(3).iloc[0].to_dict()
    {'mr_t1': 0.1, 'pet': 0.15}
    """
    keys = {c: feature_parts(c)[by] or "none" for c in values.columns}
    return values.T.groupby(lambda c: keys[c], sort=True).sum().T


def importance(values: Attributions, view: ModelView) -> Importance:
    """Mean |SHAP| per feature, family and filter; for a multi-class model averaged over the classes."""
    if view.multiclass:
        tables = values.original_by_class
        per_class = pd.DataFrame({c: t.abs().mean() for c, t in tables.items()}, index=values.original.columns)
        mean_abs = per_class.mean(axis=1).sort_values(ascending=False, kind="stable")
        family = pd.concat([grouped_parts(t, "family").abs().mean() for t in tables.values()], axis=1).mean(axis=1)
        image_filter = pd.concat([grouped_parts(t, "filter").abs().mean() for t in tables.values()], axis=1).mean(axis=1)
        modality = pd.concat([grouped_parts(t, "modality").abs().mean() for t in tables.values()], axis=1).mean(axis=1)
    else:
        per_class = None
        mean_abs = values.original.abs().mean().sort_values(ascending=False, kind="stable")
        family = grouped_parts(values.original, "family").abs().mean()
        image_filter = grouped_parts(values.original, "filter").abs().mean()
        modality = grouped_parts(values.original, "modality").abs().mean()
    modality = modality if len(modality.index.difference(["none"])) > 1 else pd.Series(dtype=float)
    return Importance(mean_abs, family.sort_values(ascending=False), image_filter.sort_values(ascending=False),
                       per_class, [n for n in mean_abs.index if mean_abs[n] > 0], modality.sort_values(ascending=False))


def cohort_figures(X, values: Attributions, imp: Importance, view: ModelView, labels, settings,
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
    if len(imp.modality):  # a multimodal model: how much each modality's features move the prediction
        figs["modality"] = plots.magnitude_bars(imp.modality, xlabel="mean |summed SHAP value|", title="by modality")
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


def patient_item(c, X, X_train, values: Attributions, view: ModelView, final: FinalPredictions, headline: dict, labels,
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
        top.append({**feature_parts(orig), "feature": orig, "value": raw[f],
                    "percentile": _percentile(dist, raw[f]) if dist is not None else None,
                    "shap": float(contrib[f])})
    item = {
        "case_id": c, "file": file_name, "probability": float(final.proba[c]), "headline": headline,
        "label": None if labels is None or pd.isna(labels.get(c)) else str(labels[c]),
        "contrib": contrib, "raw": raw, "top": top, "lime": lime_by_case.get(c, pd.DataFrame(columns=["weight", "feature_rule"])),
        "agreement": agree[c], "family": grouped_parts(values.original.loc[[c]], "family").iloc[0],
        "filter": grouped_parts(values.original.loc[[c]], "filter").iloc[0],
        "modality": grouped_parts(values.original.loc[[c]], "modality").iloc[0],
        # (image, mask), the image a DICOM series' files; a multimodal case's pair has .parts (one per modality)
        "image": _lesion_images(images[c]) if images and c in images else None,
    }
    if view.multiclass:  # the page explains the final model's predicted class against the others
        item.update(predicted=str(final.predicted[c]), base=float(values.shap.base_value[c]),
                    class_probs=[(k, float(final.class_proba.loc[c, k])) for k in view.classes])
    return item


def _lesion_images(value):
    """Images as a worker gets them: ``cohort.LesionImages`` (with ``parts``) as it is, anything else as a tuple."""
    return value if getattr(value, "parts", None) is not None else tuple(value)


def reaching_inputs(final_names, input_names) -> list[str] | None:
    """The input features that reach the final estimator, when every final feature is one of them."""
    mapping = original_name_map(final_names, input_names)
    inputs = set(map(str, input_names))
    if all(v in inputs for v in mapping.values()):
        return [n for n in map(str, input_names) if n in set(mapping.values())]
    return None


def _raw_value(final_name, mapping, raw_row, transformed_row):
    orig = mapping[final_name]
    return raw_row[orig] if orig in raw_row.index else transformed_row[final_name]


def _percentile(dist: pd.Series, value) -> float | None:
    d = pd.to_numeric(dist, errors="coerce").dropna().to_numpy()
    if d.size == 0 or value is None or pd.isna(value):
        return None
    return float(100.0 * ((d < value).mean() + 0.5 * (d == value).mean()))


def _by_class_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-class tables (same index and columns) stacked into one, the class in a first ``class`` column."""
    return pd.concat([frame.assign(**{"class": name})[["class", *frame.columns]] for name, frame in frames.items()])


def write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(float_format="%.12g"))
