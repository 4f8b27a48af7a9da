"""HTML rendering of the explain reports: jinja templates (``templates/``) filled with numbers computed
elsewhere; patient pages are rendered in worker processes when ``n_jobs > 1``.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_bytes, atomic_write_text
from radpipe.explain import plots
from radpipe.explain._format import plain_number
from radpipe.extract.feature_docs import display_name, feature_unit
from radpipe.extract.slices import read_lesion_slice

TEMPLATES = Path(__file__).with_name("templates")
# units of texture features (grey levels, voxels, runs, zones) mean nothing to a reader of a patient page
_UNSHOWN_UNIT = re.compile(r"grey level|voxel|run|zone|dimensionless")


@dataclass
class FeatureLabels:
    """Readable names of feature columns and the unit suffix their values are printed with (" mm", " HU", "")."""

    names: dict[str, str]
    units: dict[str, str]


def feature_labels(columns, codebook: pd.DataFrame | None = None) -> FeatureLabels:
    """Display names and units of ``columns``: from the extract stage's codebook when given (it knows the image's
    intensity unit), else from :mod:`radpipe.extract.feature_docs` with intensities in arbitrary units.

    >>> labels = feature_labels(["original_shape2D_Perimeter", "original_glcm_Contrast", "age"])
    >>> labels.names["original_shape2D_Perimeter"], labels.units["original_shape2D_Perimeter"]
    ('Perimeter (2D shape)', ' mm')
    >>> labels.units["original_glcm_Contrast"], labels.names["age"]
    ('', 'age')
    """
    columns = [str(c) for c in columns]
    book = None
    if codebook is not None and {"column", "display_name", "unit"} <= set(codebook.columns):
        book = codebook.drop_duplicates("column").set_index("column")
    names, units = {}, {}
    for column in columns:
        if book is not None and column in book.index and pd.notna(book.at[column, "display_name"]):
            names[column] = str(book.at[column, "display_name"])
            unit = book.at[column, "unit"]
            unit = "" if pd.isna(unit) else str(unit)
        else:
            names[column], unit = display_name(column), feature_unit(column)
        units[column] = "" if not unit or _UNSHOWN_UNIT.search(unit) else f" {unit}"
    return FeatureLabels(names, units)


def render_patients(items, common, pages_dir, fig_dir, n_jobs, progress) -> list[dict]:
    total = len(items)
    done = 0
    rows: list[dict] = []
    if progress:
        progress(0, total)
    if n_jobs == 1 or total < 2:
        for item in items:
            rows.append(_render_patient(item, common, pages_dir, fig_dir))
            done += 1
            if progress:
                progress(done, total)
        return rows
    from joblib import Parallel, delayed

    size = max(1, min(16, total // (n_jobs * 4) or 1))
    batches = [items[i: i + size] for i in range(0, total, size)]
    for batch_rows in Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_render_batch)(b, common, pages_dir, fig_dir) for b in batches
    ):
        rows.extend(batch_rows)
        done += len(batch_rows)
        if progress:
            progress(done, total)
    return rows


def _waterfall(contrib: pd.Series, raw: pd.Series, base: float, prob: float, threshold: float | None,
               top: int) -> dict:
    """Rows of an HTML waterfall: from the base value, the ``top`` largest contributions, the rest, to ``prob``.

    Positions are percentages of a probability axis that spans every intermediate value (and the threshold,
    unless it is None, as for a multi-class model).
    """
    order = contrib.abs().sort_values(ascending=False, kind="stable").index
    steps = [(name, float(contrib[name])) for name in order[:top]]
    if len(order) > top:
        steps.append((f"{len(order) - top} other features", float(contrib[order[top:]].sum())))
    points = np.cumsum([base] + [d for _, d in steps])
    marks = points if threshold is None else np.append(points, threshold)
    lo, hi = float(marks.min()), float(marks.max())
    span = max(hi - lo, 0.05)
    lo, hi = max(0.0, lo - 0.08 * span), min(1.0, hi + 0.08 * span)
    span = hi - lo

    def at(v):
        return round(100 * (float(v) - lo) / span, 3)

    rows = waterfall_rows(steps, base, raw, at, span)
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25) if span / s <= 8)
    ticks = [(at(t), f"{t:.2f}") for t in np.arange(np.ceil(lo / step) * step, hi + 1e-9, step)]
    return {"rows": rows, "ticks": ticks, "base": at(base), "prob": at(prob),
            "threshold": None if threshold is None else at(threshold),
            "base_value": base, "probability": prob}


def waterfall_rows(steps: list[tuple[str, float]], base: float, raw: pd.Series, at, span: float) -> list[dict]:
    """One HTML waterfall row per (label, contribution) step, walking from ``base``: its bar's left edge and width
    in percent of the axis (``at`` maps a value to its position, ``span`` is the axis length), the patient's
    value of the feature when known, and whether it pushes up."""
    rows, level = [], base
    for name, d in steps:
        rows.append({"label": name, "value": raw.get(name) if name in raw.index else None, "delta": d,
                     "left": at(min(level, level + d)), "width": max(0.4, round(100 * abs(d) / span, 3)),
                     "up": d >= 0, "end": at(level + d)})
        level += d
    return rows


def _bars(series: pd.Series, width: int = 160) -> list[dict]:
    """Label, value, bar width in px and direction for signed HTML bars scaled to the largest |value|."""
    scale = float(series.abs().max()) if len(series) else 0.0
    return [{"label": str(k), "value": float(v), "px": 0 if scale == 0 else round(width * abs(float(v)) / scale),
             "up": float(v) >= 0} for k, v in series.items()]


def _readable_rule(rule: str, feature: str, names: dict[str, str], units: dict[str, str]) -> str:
    """A LIME condition with the feature's display name and unit: "0.83 < Sphericity (shape) ≤ 0.87"."""
    text = str(rule).replace("<=", "≤").replace(">=", "≥")
    if feature and feature in text:
        text = text.replace(feature, names.get(feature, feature)) + (f" ({units[feature].strip()})"
                                                                     if units.get(feature) else "")
    return text


def _render_batch(items, common, pages_dir, fig_dir):
    return [_render_patient(item, common, pages_dir, fig_dir) for item in items]


def _render_patient(item, common, pages_dir: Path, fig_dir: Path) -> dict:
    c, prob, thr = item["case_id"], item["probability"], common["threshold"]
    positive, negative, base = common["positive"], common["negative"], common["base"]
    multiclass = common.get("multiclass", False)
    if multiclass:  # explain the predicted class against the others; no threshold
        predicted = positive = item["predicted"]
        base = item["base"]
    else:
        predicted = positive if prob >= thr else negative
    s = common["settings"]
    figs = {}
    if s["waterfall_png"]:
        atomic_write_bytes(fig_dir / f"{item['file']}_waterfall.png", plots.waterfall(
            item["contrib"], item["raw"], base, prob, top=s["top_features"], threshold=thr,
            positive=positive, negative=negative, display_names=common["names"],
            units={c: u.strip() for c, u in common["units"].items() if u}))
    waterfall = _waterfall(item["contrib"], item["raw"], base, prob, thr, s["top_features"])
    lime = item["lime"]
    # LIME and the grouped sums are drawn as HTML bars: text stays selectable and pages render fast
    lime_bars = _bars(pd.Series(lime["weight"].to_numpy(), index=[
        _readable_rule(rule, feature, common["names"], common["units"])
        for rule, feature in zip(lime["feature_rule"], lime["feature"], strict=True)]))
    for bar, rule in zip(lime_bars, lime["feature_rule"], strict=True):
        bar["raw"] = rule
    group_bars = {"family": _bars(item["family"].sort_values(key=np.abs, ascending=False)),
                  "filter": _bars(item["filter"].sort_values(key=np.abs, ascending=False))}
    by_modality = item.get("modality")
    if by_modality is not None and len(by_modality.index.difference(["none"])) > 1:
        group_bars["modality"] = _bars(by_modality.sort_values(key=np.abs, ascending=False))
    image_note = None
    lesions = []  # a multimodal case: one slice per modality, each with its own figure and note
    if common["draw_images"] and item["image"]:
        parts = getattr(item["image"], "parts", ()) or ((None, *item["image"]),)
        for k, (modality, *files) in enumerate(parts):
            key = "image" if k == 0 else f"image_{k}"
            try:
                img, msk, spacing, where = read_lesion_slice(*files)
                figs[key] = plots.lesion_slice(img, msk, spacing)
                note = where[:1].upper() + where[1:]
            except Exception as exc:  # a missing or unreadable image must not stop the page
                note = f"image not shown: {exc}"
            lesions.append({"key": key, "modality": modality, "note": note})
            if key in figs:
                suffix = f"_{modality}" if modality else ""
                atomic_write_bytes(fig_dir / f"{item['file']}_image{suffix}.jpg", figs[key])
        image_note = lesions[0]["note"] if lesions else None
    top = item["top"]
    lead = top[0] if top else None
    html = env(s["banner"]).get_template("patient.html").render(
        title=f"Patient {c}", case_id=c, probability=prob, predicted=predicted, positive=positive,
        negative=negative, threshold=thr, label=item["label"], base=base,
        multiclass=multiclass, class_probs=item.get("class_probs"),
        figs={k: b64(v) for k, v in figs.items()}, top=top, lime=lime.to_dict("records"), lime_bars=lime_bars,
        group_bars=group_bars, waterfall=waterfall,
        agreement=item["agreement"], explainer=common["explainer"], notes=common["notes"], image_note=image_note,
        lesions=lesions if len(lesions) > 1 else [],
        model_name=common["model_name"], lead=lead, settings=s, head=item["headline"],
        names=common["names"], units=common["units"],
        n_train=common["n_train"], n_repeats=common["n_repeats"],
        correct=None if item["label"] is None or item["headline"]["predicted"] == "split"
        else item["label"] == item["headline"]["predicted"],
        up=[t for t in top if t["shap"] > 0][:3], down=[t for t in top if t["shap"] < 0][:3],
        similar=item.get("similar"),
    )
    atomic_write_text(pages_dir / f"{item['file']}.html", html)
    head = item["headline"]
    return {"case_id": c, "probability": head["probability"], "probability_source": head["source"],
            "probability_low": head["low"], "probability_high": head["high"], "predicted": head["predicted"],
            "final_model_probability": prob, "final_model_predicted": predicted, "label": item["label"],
            "shap_lime_overlap": item["agreement"]["overlap"], "page": f"patients/{item['file']}.html",
            **_ood_columns(item.get("similar"))}


def _ood_columns(similar: dict | None) -> dict:
    """patients.csv's OOD columns (the percentile and flag the page shows); none without neighbours.joblib."""
    ood = (similar or {}).get("ood")
    return {} if not ood else {"ood_percentile": ood["percentile"], "ood_flag": ood["flag"],
                               "ood_source": ood["source"]}




@functools.cache
def env(banner: str = ""):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["banner"] = banner
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["ordinal"] = _ordinal
    env.filters["family_label"] = lambda f: {"shape": "shape", "first order": "first-order intensity",
                                             "texture": "texture"}.get(f, f)
    return env


_num = plain_number


def _pct(v, decimals: int = 0) -> str:
    """A share in [0, 1] as a percentage; "–" for an undefined share."""
    return "–" if v is None or pd.isna(v) else f"{100 * float(v):.{decimals}f}%"


def _ordinal(v) -> str:
    """A percentile as an ordinal: 1st, 2nd, 3rd, 11th, 22nd."""
    n = int(round(float(v)))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def render_cohort(*, banner: str, figs: dict[str, bytes], **context) -> str:
    """The cohort page's HTML (figures embedded as base64 PNG)."""
    return env(banner).get_template("cohort.html").render(figs={k: b64(v) for k, v in figs.items()}, **context)


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def card_rows(card: dict) -> list[tuple[str, str]]:
    keys = ["model_name", "classes", "positive_class", "threshold", "pipeline_steps", "best_params",
            "selected_features", "n_cases", "class_counts", "cv", "intended_use", "limitations", "versions"]
    rows = []
    for k in keys + [k for k in card if k not in keys and k not in ("feature_names", "metrics")]:
        if k in card and card[k] not in (None, "", [], {}):
            v = card[k]
            rows.append((k.replace("_", " "), v if isinstance(v, str) else json.dumps(v, default=str, indent=1)))
    if card.get("feature_names"):
        rows.append(("features expected", f"{len(card['feature_names'])} columns"))
    return rows


